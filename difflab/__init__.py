"""difflab under one namespaced name: `import difflab.samplers`, `from difflab.training.run import
load_run`. The code lives in the repository's top-level folders (models, samplers, data, metrics,
training, configs, benchmarks); this package's search path is the repository root, so those
folders are reached as `difflab.<folder>` and never installed as top-level modules that would
shadow a user's own `models` or `data`."""

import os

__path__ = [os.path.dirname(os.path.dirname(os.path.abspath(__file__)))]
