"""VP diffusion (cosine log-SNR, v-prediction) on the checkerboard: flow_checkerboard's data,
network and optimiser with the diffusion process, so the two families compare directly."""

from difflab.configs import flow_checkerboard
from difflab.configs.common import diffusion_process


def get_config():
    c = flow_checkerboard.get_config()
    c.name = "diffusion_checkerboard"
    c.process = diffusion_process()
    c.eval.sampler = "ddim"
    c.eval.steps = 100
    return c
