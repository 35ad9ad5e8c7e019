"""Class-conditional uniform-state diffusion on the digits as 64 pixel tokens with 17 levels:
configs/masked_digits.py's network and training with uniform noise (docs/math.md §3.9); CFG
(`--cfg_scale`) and classifier guidance (`--classifier runs/classifier_digits_uniform`)."""

from difflab.configs import masked_digits
from difflab.configs.common import uniform_process


def get_config():
    c = masked_digits.get_config()
    c.name = "uniform_digits"
    c.model.time_conditioning = True  # uniform noise: the network must know t
    c.process = uniform_process()
    c.process.label_dropout = 0.1
    c.eval.sampler = "uniform_ancestral"
    return c
