"""Class-conditional masked diffusion on the digits as 64 pixel tokens with 17 levels."""

from difflab.configs.common import base, masked_process


def get_config():
    c = base("masked_digits")
    c.data.name = "digits_tokens"
    c.model.net = "transformer"
    c.model.width = 128
    c.model.depth = 4
    c.model.heads = 4
    c.model.mlp_ratio = 4.0
    c.model.conditional = True
    c.model.time_conditioning = False
    c.process = masked_process()
    c.process.label_dropout = 0.1
    c.optim.lr = 1e-3
    c.optim.warmup_steps = 300
    c.optim.weight_decay = 0.01
    c.train.steps = 4000
    c.train.batch_size = 128
    c.train.steps_per_call = 10
    c.train.log_every = 200
    c.train.eval_every = 2000
    c.train.save_every = 1000
    c.eval.sampler = "ancestral"
    c.eval.steps = 64
    c.eval.num_samples = 800
    return c
