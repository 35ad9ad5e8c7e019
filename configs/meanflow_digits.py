"""Class-conditional MeanFlow on 8x8 digits with a DiT (docs/math.md §5.2): the average velocity
u(z, t, h) trained through the MeanFlow identity (one jax.jvp per step); samples in 1 or 2 steps
(`--sampler few_step --steps 1`)."""

from difflab.configs.common import base, meanflow_process


def get_config():
    c = base("meanflow_digits")
    c.data.name = "digits"
    c.model.net = "dit"
    c.model.width = 128
    c.model.depth = 4
    c.model.heads = 4
    c.model.patch = 2
    c.model.mlp_ratio = 4.0
    c.model.conditional = True
    c.model.step_conditioning = True
    c.model.time_scale = 10.0  # the JVP differentiates the time features (see embeddings.py)
    c.process = meanflow_process()
    c.optim.lr = 5e-4
    c.optim.warmup_steps = 500
    c.optim.b2 = 0.95
    c.optim.weight_decay = 0.01
    c.train.steps = 4000  # the measured run's CPU time budget (12.4 steps/s on 2 cores)
    c.train.batch_size = 128
    c.train.steps_per_call = 10
    c.train.ema_decay = 0.999
    c.train.eval_every = 2000
    c.eval.sampler = "few_step"
    c.eval.steps = 1
    c.eval.num_samples = 800
    return c
