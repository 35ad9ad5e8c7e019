"""Class-conditional VP diffusion on 8x8 digits with a DiT (patch 2, adaLN-zero), v-prediction."""

from difflab.configs import diffusion_digits


def get_config():
    c = diffusion_digits.get_config()
    c.name = "diffusion_digits_dit"
    c.data.dequantize = 0.0
    c.model.net = "dit"
    c.model.width = 128
    c.model.depth = 4
    c.model.heads = 4
    c.model.patch = 2
    c.model.mlp_ratio = 4.0
    c.optim.lr = 5e-4
    c.optim.warmup_steps = 500
    c.optim.weight_decay = 0.01
    c.train.steps = 6000
    c.train.steps_per_call = 10  # no convolutions in the scanned step: fast on XLA:CPU too
    c.train.eval_every = 3000
    return c
