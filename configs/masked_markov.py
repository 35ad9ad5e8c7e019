"""Masked diffusion on a Markov-chain source with a known law (8 tokens, length 32): samples are
scored by their exact NLL under the chain against its entropy."""

from difflab.configs.common import base, masked_process


def get_config():
    c = base("masked_markov")
    c.data.name = "markov"
    c.data.vocab_size = 8
    c.data.seq_len = 32
    c.model.net = "transformer"
    c.model.width = 128
    c.model.depth = 3
    c.model.heads = 4
    c.model.mlp_ratio = 4.0
    c.model.time_conditioning = False
    c.process = masked_process()
    c.optim.lr = 1e-3
    c.optim.warmup_steps = 200
    c.train.steps = 6000
    c.train.batch_size = 128
    c.train.steps_per_call = 10
    c.train.log_every = 100
    c.train.eval_every = 3000
    c.train.save_every = 1000
    c.eval.sampler = "first_hitting"  # exact: one token per call, L calls
    c.eval.steps = 32
    c.eval.num_samples = 2000
    return c
