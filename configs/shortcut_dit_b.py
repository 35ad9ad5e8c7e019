"""Shortcut model sized for an accelerator: DiT-B/2 (768 wide, 12 blocks, 12 heads, patch 2) on
32x32x3 images with classifier-free bootstrap targets, bfloat16 compute. Point it at the user's
images: --config.data.name=image_folder --config.data.path=DIR (sub-folders = classes) or an .npz
(--config.data.name=npz); nothing is downloaded."""

from difflab.configs.common import base, shortcut_process


def get_config():
    c = base("shortcut_dit_b")
    c.data.name = "image_folder"
    c.data.path = ""
    c.model.net = "dit"
    c.model.dtype = "bfloat16"
    c.model.width = 768
    c.model.depth = 12
    c.model.heads = 12
    c.model.patch = 2
    c.model.mlp_ratio = 4.0
    c.model.conditional = True
    c.model.step_conditioning = True
    c.process = shortcut_process()
    c.process.bootstrap_cfg = True
    c.process.cfg_scale = 1.5
    c.optim.lr = 1e-4
    c.optim.warmup_steps = 1000
    c.optim.weight_decay = 0.1
    c.train.steps = 400_000
    c.train.batch_size = 256
    c.train.steps_per_call = 1
    c.train.ema_decay = 0.999
    c.train.log_every = 100
    c.train.eval_every = 20_000
    c.train.save_every = 5000
    c.eval.sampler = "few_step"
    c.eval.steps = 1
    c.eval.num_samples = 1000
    return c
