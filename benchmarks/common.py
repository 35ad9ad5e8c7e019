"""Shared by the benchmark scripts: the machine description, a JSON result, timing calls."""

from __future__ import annotations

import datetime
import json
import math
import os
import platform
import time

import jax


def machine() -> dict:
    dev = jax.devices()[0]
    return {
        "platform": dev.platform,
        "device_kind": dev.device_kind,
        "device_count": jax.device_count(),
        "process_count": jax.process_count(),
        "cpu_count": os.cpu_count(),
        "processor": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "jax": jax.__version__,
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }


def first_and_best_seconds(fn, repeats: int) -> tuple[float, float]:
    """(seconds of the first call, which compiles, and of the fastest of `repeats` later calls);
    each call waits for its result."""
    start = time.perf_counter()
    jax.block_until_ready(fn())
    first = time.perf_counter() - start
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - start)
    return first, min(times)


def write_result(name: str, result: dict, out_dir: str | None = None) -> str:
    out_dir = out_dir or os.path.join(os.path.dirname(__file__), "results")
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, f"{name}.json")
    with open(path, "w") as f:
        json.dump({"machine": machine(), **result}, f, indent=2)
    print(f"wrote {path}")
    return path


def scored_digits(comp, params, sampler: str, steps: int, n: int, labels, ref, data_fd: float):
    """Digit samples and their row: NFE, Frechet distance against ref[:n] and its ratio to the
    data-vs-data value, and the wall time of the draw (compile included)."""
    import time

    from difflab.metrics import frechet
    from difflab.sampling.draw import draw

    t0 = time.perf_counter()
    x, info = draw(comp, params, sampler, steps, n, seed=1, labels=labels)
    wall = time.perf_counter() - t0
    fd = frechet.frechet_distance(x, ref[:n])
    return x, {
        "sampler": sampler,
        "steps": steps,
        "nfe": int(info["nfe"]),
        "frechet_distance": round(fd, 3),
        "ratio_to_data": round(fd / data_fd, 2),
        "sample_wall_s_incl_compile": round(wall, 2),
    }


def digit_scores(x, labels, ref):
    """(accuracy of the project's digit classifier on `labels`, Frechet distance to ref)."""
    import numpy as np

    from difflab.metrics import frechet

    params, _ = frechet.classifier()
    predicted = np.argmax(np.asarray(frechet.logits(params, x)), -1)
    return float(np.mean(predicted == labels)), frechet.frechet_distance(x, ref)


def heldout(run, n: int, num_t: int) -> dict:
    """NELBO bits per token of n test-split sequences, and n-gram baselines for text."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from difflab import data
    from difflab.metrics.tokens import NGram

    dc = run.config.data.copy_and_resolve_references()
    dc.unlock()
    dc.split = "test"
    test = data.build(dc)
    x = test.reference(n, seed=12345)
    labels = getattr(test, "reference_labels", lambda n, s: None)(n, 12345)
    cond = None if labels is None or not run.components.num_classes else jnp.asarray(labels)
    length = x.shape[1]
    nelbo = jax.jit(lambda k, xb, c: run.process.nelbo(run.denoiser, k, xb, c, num_t=num_t))
    per_seq = np.concatenate(
        [
            np.asarray(
                nelbo(
                    jax.random.key(i),
                    jnp.asarray(x[i : i + 64]),
                    None if cond is None else cond[i : i + 64],
                )
            )
            for i in range(0, n, 64)
        ]
    )
    bits = per_seq / (length * math.log(2))
    out = {
        "num_sequences": n,
        "length": length,
        "nelbo_bits_per_token": round(float(bits.mean()), 4),
        "nelbo_bits_per_token_se": round(float(bits.std() / math.sqrt(n)), 4),
    }
    if hasattr(run.components.dataset, "stream"):
        train_stream = run.components.dataset.stream
        out["ngram_bits_per_token"] = {
            order: round(NGram.fit(train_stream, test.vocab_size, order).bits_per_token(x), 4)
            for order in range(1, 7)
        }
    if getattr(test, "law", None) is not None:
        out["data_entropy_bits_per_token"] = round(
            test.law.sequence_entropy(length) / length / math.log(2), 4
        )
    return out
