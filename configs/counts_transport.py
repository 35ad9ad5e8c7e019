"""Count transport between two simulated cell populations: the source is the base tissue's
population (not a noise law), the target the 'aged' tissue (shifted programs, smaller
libraries); pairs are coupled by exact minibatch OT on the L1 cost."""

from difflab.configs.common import base, counts_process


def get_config():
    c = base("counts_transport")
    c.data.name = "cells_transport"
    c.data.dim = 100
    c.model.net = "count_mlp"
    c.model.width = 128
    c.model.depth = 3
    c.process = counts_process()
    c.process.source = "data"
    c.process.coupling = "ot"
    c.process.ot_cost = "l1"
    c.optim.lr = 1e-3
    c.optim.warmup_steps = 200
    c.train.steps = 4000
    c.train.batch_size = 256
    c.train.steps_per_call = 10
    c.train.eval_every = 2000
    c.eval.sampler = "tau_leaping"
    c.eval.steps = 100
    c.eval.num_samples = 2000
    return c
