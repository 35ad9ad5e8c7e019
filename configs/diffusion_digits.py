"""Class-conditional VP diffusion on scikit-learn's 8x8 digits with a small U-Net."""

from configs.common import base, diffusion_process


def get_config():
    c = base("diffusion_digits")
    c.data.name = "digits"
    # uniform dequantisation (bin width 1/8 = the digits' grid): the model then has a density
    # on which held-out bits/dim (ELBO and ODE) are meaningful bounds of the discrete NLL
    c.data.dequantize = 0.125
    c.model.net = "unet"
    c.model.width = 32
    c.model.mults = (1, 2)
    c.model.blocks = 1
    c.model.conditional = True
    c.process = diffusion_process()
    c.process.label_dropout = 0.1
    c.optim.lr = 1e-3
    c.optim.warmup_steps = 200
    c.train.steps = 4000
    c.train.batch_size = 128
    # XLA:CPU runs a lax.scan of conv training steps ~36x slower than single steps (measured:
    # benchmarks/results/train_throughput_flow_digits_cpu_scan10.json); raise it on GPU/TPU.
    c.train.steps_per_call = 1
    c.train.log_every = 200
    c.train.eval_every = 2000
    c.train.save_every = 1000
    c.eval.sampler = "ddim"
    c.eval.steps = 50
    c.eval.num_samples = 800
    return c
