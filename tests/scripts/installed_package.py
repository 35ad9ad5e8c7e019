"""Run from outside the clone against an installed difflab (a wheel or `pip install <clone>`):
every subpackage imports from site-packages, and an exact-denoiser sampler draws 16 samples of
the 1-D mixture. Prints one line; exits non-zero on failure. (.ci/run runs it.)"""

import importlib
import os
import sys

SUBPACKAGES = ("benchmarks", "configs", "data", "metrics", "models", "models.nets", "samplers",
               "sampling", "training")  # fmt: skip


def main():
    clone = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    import difflab

    where = os.path.dirname(os.path.abspath(difflab.__file__))
    if where.startswith(clone + os.sep) or os.path.abspath(os.getcwd()) == clone:
        sys.exit(f"difflab was imported from the clone ({where}), not from an installation")
    for name in SUBPACKAGES:
        module = importlib.import_module(f"difflab.{name}")
        if not os.path.abspath(module.__file__).startswith(where):
            sys.exit(f"difflab.{name} comes from {module.__file__}, outside {where}")
    importlib.import_module("difflab.sampling.runs")
    importlib.import_module("difflab.configs.flow_checkerboard")

    import jax
    import numpy as np

    from difflab import samplers
    from difflab.data import toy
    from difflab.metrics import oracles
    from difflab.models import flow

    process = flow.FlowMatching()
    gmm = toy.standard_mixture_1d()
    den = oracles.exact_denoiser(gmm, process)
    x, info = samplers.get("flow", "heun")(
        jax.random.key(0), den, process, (16, 1), None, samplers.grid("heun", process, 20)
    )
    x = np.asarray(x)
    if x.shape != (16, 1) or not np.isfinite(x).all() or int(info["nfe"]) != 40:
        sys.exit(
            f"sampling failed: shape {x.shape}, nfe {info['nfe']}, finite {np.isfinite(x).all()}"
        )
    print(f"installed difflab at {where}: {len(SUBPACKAGES)} subpackages, 16 samples, nfe 40")


if __name__ == "__main__":
    main()
