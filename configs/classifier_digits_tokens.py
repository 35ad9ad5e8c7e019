"""A noise-conditional digit classifier p(c | z_t, t) under masked_digits's masking process (the
pixel tokens enter one-hot, mask included), for masked classifier guidance
(`sample.py --workdir runs/masked_digits --unconditional --classifier
runs/classifier_digits_tokens --classifier_scale 1 [--noclassifier_exact]`; docs/math.md §6.2).
classifier_digits's network and training, on the pixel tokens."""

from difflab.configs import classifier_digits
from difflab.configs.common import classifier_process, masked_process


def get_config():
    c = classifier_digits.get_config()
    c.name = "classifier_digits_tokens"
    c.data.name = "digits_tokens"
    c.process = classifier_process(masked_process())
    return c
