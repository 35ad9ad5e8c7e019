"""Character-level masked diffusion on CPython's bundled pydoc text (the masked family default)."""

from difflab.configs.common import base, masked_process


def get_config():
    c = base("masked_text")
    c.data.name = "text"  # pydoc_data.topics; "text_file" with data.path for your own file
    c.data.seq_len = 64
    c.model.net = "transformer"
    c.model.width = 128
    c.model.depth = 3
    c.model.heads = 4
    c.model.mlp_ratio = 4.0
    c.model.time_conditioning = False  # the optimal denoiser is time-agnostic (docs/math.md §3.2)
    c.process = masked_process()
    c.optim.lr = 1e-3
    c.optim.warmup_steps = 1000
    c.optim.weight_decay = 0.01
    c.train.steps = 15000
    c.train.batch_size = 64
    c.train.steps_per_call = 10
    c.train.log_every = 200
    c.train.eval_every = 5000
    c.train.save_every = 1000
    c.eval.sampler = "ancestral"
    c.eval.steps = 64  # T = L
    c.eval.num_samples = 64
    return c
