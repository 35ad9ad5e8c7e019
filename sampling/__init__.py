"""Drawing from trained runs: the validated sampling job of `draw` (guides, particle settings,
observations, shards on disk), the runs it loads (`runs.load_run`, `Run.sample`), and the
evaluation `train.py` hands to the training loop. training/ trains; this package samples."""
