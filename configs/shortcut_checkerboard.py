"""Shortcut model on the 2-D checkerboard with a residual MLP (docs/math.md §5.1)."""

from difflab.configs.common import base, shortcut_process


def get_config():
    c = base("shortcut_checkerboard")
    c.data.name = "checkerboard"
    c.model.width = 256
    c.model.depth = 3
    c.model.step_conditioning = True
    c.process = shortcut_process()
    c.process.label_dropout = 0.0
    c.optim.lr = 1e-3
    c.train.steps = 8000
    c.train.batch_size = 512
    c.train.steps_per_call = 50
    c.train.log_every = 500
    c.train.eval_every = 4000
    c.train.save_every = 1000
    c.eval.sampler = "few_step"
    c.eval.steps = 1
    c.eval.num_samples = 4000
    return c
