"""Class-conditional flow matching on scikit-learn's 8x8 digits with a small U-Net."""

from difflab.configs.common import base


def get_config():
    c = base("flow_digits")
    c.data.name = "digits"
    c.model.net = "unet"
    c.model.width = 32
    c.model.mults = (1, 2)
    c.model.blocks = 1
    c.model.conditional = True
    c.process.label_dropout = 0.1
    c.optim.lr = 1e-3
    c.optim.warmup_steps = 200
    c.train.steps = 4000
    c.train.batch_size = 128
    # XLA:CPU runs a lax.scan of conv training steps ~36x slower than single steps (measured:
    # benchmarks/results/train_throughput_cpu.json); on GPU/TPU raise steps_per_call.
    c.train.steps_per_call = 1
    c.train.ema_decay = 0.999
    c.train.log_every = 200
    c.train.eval_every = 2000
    c.train.save_every = 1000
    c.eval.sampler = "heun"
    c.eval.steps = 20
    c.eval.num_samples = 800
    return c
