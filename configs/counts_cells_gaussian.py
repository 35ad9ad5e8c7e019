"""Baseline for counts_cells: Gaussian flow matching on dequantised log1p counts,
y = log1p(x + u), u ~ U[0, 1), decoded by floor(expm1(y)) (negatives to 0). A residual MLP of
width 256, about 3x the parameters of the count net of counts_cells."""

from difflab.configs.common import base, flow_process


def get_config():
    c = base("counts_cells_gaussian")
    c.data.name = "cells"
    c.data.dim = 100
    c.data.count_view = "log1p"
    c.model.net = "mlp"
    c.model.width = 256
    c.model.depth = 3
    c.process = flow_process()
    c.optim.lr = 1e-3
    c.optim.warmup_steps = 200
    c.train.steps = 6000
    c.train.batch_size = 256
    c.train.steps_per_call = 10
    c.train.eval_every = 3000
    c.eval.sampler = "heun"
    c.eval.steps = 50
    c.eval.num_samples = 2000
    return c
