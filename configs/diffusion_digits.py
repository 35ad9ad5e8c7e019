"""Class-conditional VP diffusion on 8x8 digits: flow_digits's U-Net, data and optimiser with the
diffusion process (v-prediction, label dropout 0.1)."""

from difflab.configs import flow_digits
from difflab.configs.common import diffusion_process


def get_config():
    c = flow_digits.get_config()
    c.name = "diffusion_digits"
    # uniform dequantisation (bin width 1/8 = the digits' grid): the model then has a density
    # on which held-out bits/dim (ELBO and ODE) are meaningful bounds of the discrete NLL
    c.data.dequantize = 0.125
    c.process = diffusion_process()
    c.process.label_dropout = 0.1
    c.eval.sampler = "ddim"
    c.eval.steps = 50
    return c
