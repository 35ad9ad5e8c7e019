"""Count flow matching on the 8x8 digits read as 64 pixel counts 0..16, class-conditional (labels
dropped 10% of the time for classifier-free guidance in log-rate space)."""

from difflab.configs.common import base, counts_process


def get_config():
    c = base("counts_digits")
    c.data.name = "digits_counts"
    c.model.net = "count_mlp"
    c.model.width = 256
    c.model.depth = 3
    c.model.conditional = True
    c.process = counts_process()
    c.process.source = "zeros"  # binomial thinning path: pure births from a blank image
    c.process.label_dropout = 0.1
    c.optim.lr = 1e-3
    c.optim.warmup_steps = 200
    c.train.steps = 6000
    c.train.batch_size = 256
    c.train.steps_per_call = 10
    c.train.eval_every = 3000
    c.eval.sampler = "tau_leaping"
    c.eval.steps = 100
    c.eval.num_samples = 1000
    return c
