"""Class-conditional shortcut model on 8x8 digits with a DiT (MATH.md §5.1): one network samples
in 1, 2, 4, ..., 128 steps (`--sampler few_step --steps K`)."""

from configs.common import base, shortcut_process


def get_config():
    c = base("shortcut_digits")
    c.data.name = "digits"
    c.model.net = "dit"
    c.model.width = 128
    c.model.depth = 4
    c.model.heads = 4
    c.model.patch = 2
    c.model.mlp_ratio = 4.0
    c.model.conditional = True
    c.model.step_conditioning = True
    c.process = shortcut_process()  # EMA bootstrap targets, 1/8 of the batch, 7 levels
    c.optim.lr = 5e-4
    c.optim.warmup_steps = 500
    c.optim.weight_decay = 0.01
    c.train.steps = 8000
    c.train.batch_size = 128  # 16 self-consistency rows: >= 2 per level
    c.train.steps_per_call = 10
    c.train.ema_decay = 0.999
    c.train.eval_every = 4000
    c.eval.sampler = "few_step"
    c.eval.steps = 1
    c.eval.num_samples = 800
    return c
