"""Count flow matching on simulated neural spike counts: 24 neurons x 16 time bins of a population
driven by 2-D latent rotational dynamics (384 counts per trial)."""

from difflab.configs.common import base, counts_process


def get_config():
    c = base("counts_spikes")
    c.data.name = "spikes"
    c.model.net = "count_mlp"
    c.model.width = 256
    c.model.depth = 3
    c.process = counts_process()
    c.process.source = "poisson"
    c.process.source_rate = 1.0
    c.optim.lr = 1e-3
    c.optim.warmup_steps = 200
    c.train.steps = 6000
    c.train.batch_size = 256
    c.train.steps_per_call = 10
    c.train.eval_every = 3000
    c.eval.sampler = "tau_leaping"
    c.eval.steps = 100
    c.eval.num_samples = 2000
    return c
