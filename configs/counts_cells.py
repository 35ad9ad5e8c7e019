"""Count flow matching on simulated scRNA-seq counts (100 genes, 5 cell types, counts into the
hundreds): the default experiment of the counts family (docs/math.md §4)."""

from difflab.configs.common import base, counts_process


def get_config():
    c = base("counts_cells")
    c.data.name = "cells"
    c.data.dim = 100
    c.model.net = "count_mlp"
    c.model.width = 128
    c.model.depth = 3
    c.process = counts_process()
    c.process.source = "poisson"
    c.process.source_rate = 1.0
    c.optim.lr = 1e-3
    c.optim.warmup_steps = 200
    c.train.steps = 16000
    c.train.batch_size = 256
    c.train.steps_per_call = 10
    c.train.log_every = 100
    c.train.eval_every = 8000
    c.train.save_every = 1000
    c.eval.sampler = "tau_leaping"
    c.eval.steps = 100
    c.eval.num_samples = 2000
    return c
