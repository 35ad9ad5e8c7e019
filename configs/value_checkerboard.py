"""A noise-conditional value network f(x_t, t) ~ E[r(x_0) | x_t] for SVDD-MC on
flow_checkerboard (reward: -|x - (1, 1)|^2 / 2), under its linear flow path (docs/math.md §6.4).

SVDD-MC regresses on rollouts of the trained model: draw them with
`python sample.py --workdir runs/flow_checkerboard --num_samples 50000` and train on them with
`--config.data.name=npz --config.data.path=<that folder>/samples.npz`. By default it trains on
fresh checkerboard data, the law a well-trained model's rollouts follow."""

from difflab.configs.common import base, flow_process, value_process


def get_config():
    c = base("value_checkerboard")
    c.data.name = "checkerboard"
    c.model.net = "value_mlp"
    c.model.width = 128
    c.model.depth = 3
    c.process = value_process(flow_process(), "target", "1,1")
    c.optim.lr = 1e-3
    c.train.steps = 3000
    c.train.batch_size = 256
    c.train.log_every = 500
    c.train.eval_every = 1500
    c.train.save_every = 1500
    c.eval.num_samples = 4000  # held-out examples the error is measured on, per t
    return c
