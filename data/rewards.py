"""Named rewards r(samples [N, ...]) -> [N] for FK steering from the command line
(`sample.py --steer=reward --reward=NAME --reward_arg=ARG`), checked against the data they score.

- target  points: r = -1/2 ||x - a||^2, ARG = the point a ("x,y")
- class   digits (images, tokens or counts): log p(k | x) of the project's digit classifier, ARG = k
- token   token data: the number of positions holding a token, ARG = the token's text (a
          character of a text data set) or its id
- total   count data: the sum of all counts (a negative --reward_scale steers toward fewer)
- word    text data: the number of times a word (any string) occurs in the decoded text, ARG =
          the word; computed in NumPy on the host (jax.pure_callback): no gradient, for SVDD
          and FK steering
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def need_kind(dataset, kind: str, reward: str) -> None:
    if dataset.kind != kind:
        raise ValueError(
            f"reward {reward!r} scores {kind}; data set {dataset.name!r} holds {dataset.kind}"
        )


def target(dataset, arg: str):
    need_kind(dataset, "points", "target")
    try:
        a = jnp.asarray([float(v) for v in arg.split(",")], jnp.float32)
    except ValueError:
        a = None
    if a is None or a.shape != tuple(dataset.shape):
        raise ValueError(
            f"--reward_arg={arg!r} must be a point of {dataset.shape[0]} comma-separated numbers "
            f"for reward 'target'"
        )
    return lambda x: -0.5 * jnp.sum((x - a) ** 2, axis=-1)


def digit_class(dataset, arg: str):
    from difflab.metrics import frechet

    views = {"digits": lambda x: x, "digits_counts": lambda x: x / 8.0 - 1.0}
    if dataset.name == "digits_tokens":
        from difflab.data.tokens import tokens_to_digits

        views["digits_tokens"] = tokens_to_digits
    if dataset.name not in views:
        raise ValueError(f"reward 'class' scores the digits; data set is {dataset.name!r}")
    if not arg.isdigit() or int(arg) > 9:
        raise ValueError(f"--reward_arg={arg!r} must be a digit class 0-9 for reward 'class'")
    (params, _), k, view = frechet.classifier(), int(arg), views[dataset.name]
    return lambda x: jax.nn.log_softmax(frechet.logits(params, view(x).reshape(len(x), 8, 8, 1)))[
        :, k
    ]


def token(dataset, arg: str):
    need_kind(dataset, "tokens", "token")
    vocab = [v.decode() if isinstance(v, bytes) else v for v in getattr(dataset, "vocab", ())]
    if arg in vocab:
        tid = vocab.index(arg)
    elif arg.isdigit() and int(arg) < dataset.vocab_size:
        tid = int(arg)
    else:
        raise ValueError(
            f"--reward_arg={arg!r} is neither a token of {dataset.name!r} nor a token id below "
            f"{dataset.vocab_size}"
        )
    return lambda x: jnp.sum(x == tid, axis=-1).astype(jnp.float32)


def total(dataset, arg: str):
    need_kind(dataset, "counts", "total")
    del arg
    return lambda x: jnp.sum(x, axis=tuple(range(1, x.ndim))).astype(jnp.float32)


def word(dataset, arg: str):
    need_kind(dataset, "tokens", "word")
    if not hasattr(dataset, "decode"):
        raise ValueError(
            f"reward 'word' counts words in text; data set {dataset.name!r} is not text"
        )
    if not arg:
        raise ValueError("--reward_arg must be the word whose occurrences reward 'word' counts")
    from difflab.samplers.steering import host_reward

    return host_reward(lambda x: [row.count(arg) for row in dataset.decode(x)])


REWARDS = {"target": target, "class": digit_class, "token": token, "total": total, "word": word}


def build(name: str, arg: str, dataset):
    """The reward `name` for samples of `dataset` (errors name the flag and what was expected)."""
    if name not in REWARDS:
        raise ValueError(f"--reward must be one of {sorted(REWARDS)}, got {name!r}")
    return REWARDS[name](dataset, arg or "")
