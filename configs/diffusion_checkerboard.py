"""VP diffusion (cosine log-SNR schedule, eps-prediction, simple loss) on the 2-D checkerboard."""

from configs.common import base, diffusion_process


def get_config():
    c = base("diffusion_checkerboard")
    c.data.name = "checkerboard"
    c.process = diffusion_process()
    c.optim.lr = 2e-3
    c.train.steps = 6000
    c.train.batch_size = 512
    c.train.steps_per_call = 50
    c.train.log_every = 500
    c.train.eval_every = 3000
    c.train.save_every = 1000
    c.eval.sampler = "ddim"
    c.eval.steps = 100
    c.eval.num_samples = 4000
    return c
