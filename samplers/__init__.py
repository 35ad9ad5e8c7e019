"""How samples are drawn: every sampler is
`sampler(key, denoiser, process, shape, cond, grid) -> (samples, info)`."""

from samplers import solvers

# Samplers each model family supports, by the name `sample.py --sampler` takes.
FLOW_SAMPLERS = {"euler": solvers.euler, "heun": solvers.heun, "adaptive": solvers.adaptive}
SAMPLERS = {"flow": FLOW_SAMPLERS}


def get(family: str, name: str):
    """The sampler `name` of model family `family`, or a clear error listing the valid ones."""
    if family not in SAMPLERS:
        raise ValueError(f"no samplers for model family {family!r}; known: {sorted(SAMPLERS)}")
    if name not in SAMPLERS[family]:
        raise ValueError(
            f"sampler {name!r} is not available for the {family!r} family; "
            f"expected one of {sorted(SAMPLERS[family])}"
        )
    return SAMPLERS[family][name]
