"""Uniform-state diffusion on the Markov-chain source of configs/masked_markov.py (8 tokens,
length 32) with the same network and steps: scored by the exact NLL of its samples under the
chain, and its NELBO against the masked model's."""

from difflab.configs import masked_markov
from difflab.configs.common import uniform_process


def get_config():
    c = masked_markov.get_config()
    c.name = "uniform_markov"
    c.model.time_conditioning = True  # uniform noise: the network must know t
    c.process = uniform_process()
    c.eval.sampler = "uniform_ancestral"
    c.eval.steps = 32
    return c
