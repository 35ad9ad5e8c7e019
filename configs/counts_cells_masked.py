"""Baseline for counts_cells: masked diffusion on counts capped at 63 (64 tokens per gene, one
sequence position per gene); the share of data counts above the cap is lost to this view."""

from difflab.configs.common import base, masked_process


def get_config():
    c = base("counts_cells_masked")
    c.data.name = "cells"
    c.data.dim = 100
    c.data.count_view = "tokens"
    c.data.count_cap = 63
    c.model.net = "transformer"
    c.model.width = 128
    c.model.depth = 3
    c.model.heads = 4
    c.model.time_conditioning = False
    c.process = masked_process()
    c.optim.lr = 1e-3
    c.optim.warmup_steps = 200
    c.train.steps = 2000  # CPU budget: ~1.5 steps/s at L = 100 on 2 cores
    c.train.batch_size = 64
    c.train.steps_per_call = 10
    c.train.eval_every = 2000
    c.eval.sampler = "first_hitting"
    c.eval.steps = 100
    c.eval.num_samples = 2000
    return c
