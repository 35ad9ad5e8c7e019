"""VP diffusion on the 8-component 2-D Gaussian mixture: flow_gmm with the diffusion process."""

from difflab.configs import flow_gmm
from difflab.configs.common import diffusion_process


def get_config():
    c = flow_gmm.get_config()
    c.name = "diffusion_gmm"
    c.process = diffusion_process()
    c.eval.sampler = "ddim"
    c.eval.steps = 100
    return c
