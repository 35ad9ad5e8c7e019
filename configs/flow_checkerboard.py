"""Flow matching (linear path) on the 2-D checkerboard with a residual MLP: the default run."""

from difflab.configs.common import base


def get_config():
    c = base("flow_checkerboard")
    c.data.name = "checkerboard"
    c.model.width = 256
    c.model.depth = 3
    c.optim.lr = 2e-3
    c.train.steps = 6000
    c.train.batch_size = 512
    c.train.steps_per_call = 50
    c.train.log_every = 500
    c.train.eval_every = 3000
    c.train.save_every = 1000
    c.eval.num_samples = 4000
    return c
