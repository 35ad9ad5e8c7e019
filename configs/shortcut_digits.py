"""Class-conditional shortcut model on 8x8 digits with a DiT (docs/math.md §5.1): one network
samples in 1, 2, 4, ..., 128 steps (`--sampler few_step --steps K`)."""

from difflab.configs.common import base, shortcut_process


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
    c.process = shortcut_process()
    # CPU budget (8k steps, not the reference's 400k+): every coarse level learns from the one
    # below it, so the EMA target's lag compounds over 7 levels and 1/8 of a batch of 128 gives
    # each level ~2 rows per step. Measured with EMA targets and 1/8: at 5000 steps 1-step FD
    # 241 vs 128-step 8.5. Here: online (stop-gradient) targets on 1/4 of the batch.
    c.process.target_params = "online"
    c.process.bootstrap_every = 4
    c.optim.lr = 5e-4
    c.optim.warmup_steps = 500
    c.optim.weight_decay = 0.01
    c.train.steps = 8000
    c.train.batch_size = 128  # 32 self-consistency rows: >= 4 per level
    c.train.steps_per_call = 10
    c.train.ema_decay = 0.999
    c.train.eval_every = 4000
    c.eval.sampler = "few_step"
    c.eval.steps = 1
    c.eval.num_samples = 800
    return c
