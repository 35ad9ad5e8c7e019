"""Class-conditional VP diffusion on 8x8 digits with a DiT (patch 2, adaLN-zero), v-prediction."""

from configs.common import base, diffusion_process


def get_config():
    c = base("diffusion_digits_dit")
    c.data.name = "digits"
    c.model.net = "dit"
    c.model.width = 128
    c.model.depth = 4
    c.model.heads = 4
    c.model.patch = 2
    c.model.mlp_ratio = 4.0
    c.model.conditional = True
    c.process = diffusion_process()
    c.process.label_dropout = 0.1
    c.optim.lr = 5e-4
    c.optim.warmup_steps = 500
    c.optim.weight_decay = 0.01
    c.train.steps = 6000
    c.train.batch_size = 128
    c.train.steps_per_call = 10
    c.train.log_every = 200
    c.train.eval_every = 3000
    c.train.save_every = 1000
    c.eval.sampler = "ddim"
    c.eval.steps = 50
    c.eval.num_samples = 800
    return c
