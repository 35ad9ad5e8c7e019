"""A noise-conditional digit classifier p(c | z_t, t) under uniform_digits's uniform noise (the
pixel tokens enter one-hot), for its classifier guidance (`sample.py --workdir
runs/uniform_digits --unconditional --classifier runs/classifier_digits_uniform
--classifier_scale 1`; docs/math.md §3.9). classifier_digits's network and training."""

from difflab.configs import classifier_digits
from difflab.configs.common import classifier_process, uniform_process


def get_config():
    c = classifier_digits.get_config()
    c.name = "classifier_digits_uniform"
    c.data.name = "digits_tokens"
    c.process = classifier_process(uniform_process())
    return c
