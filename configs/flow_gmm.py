"""Flow matching on the 8-component 2-D Gaussian mixture (docs/math.md §8.2) with a residual MLP."""

from difflab.configs.common import base


def get_config():
    c = base("flow_gmm")
    c.data.name = "gmm"
    c.train.steps = 4000
    c.train.batch_size = 512
    c.train.steps_per_call = 50
    c.train.log_every = 500
    c.train.eval_every = 2000
    c.train.save_every = 1000
    c.eval.num_samples = 4000
    return c
