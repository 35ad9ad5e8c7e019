"""difflab: diffusion and flow generative models in JAX.

The code lives in the repository's top-level folders (models, samplers, data, metrics, training,
configs, benchmarks), installed as this package's subpackages (`pyproject.toml` maps
difflab.models to models/, ...): `import difflab.samplers`, `from difflab.sampling.runs import
load_run`.
"""
