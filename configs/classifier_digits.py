"""A noise-conditional digit classifier p(c | x_t, t) under flow_digits's linear flow path, for
classifier guidance (`sample.py --classifier=runs/classifier_digits`; docs/math.md §6.2)."""

from difflab.configs.common import base, classifier_process, flow_process


def get_config():
    c = base("classifier_digits")
    c.data.name = "digits"
    c.model.net = "classifier_mlp"
    c.model.width = 256
    c.model.depth = 3
    c.process = classifier_process(flow_process())
    c.optim.lr = 1e-3
    c.optim.warmup_steps = 100
    c.train.steps = 3000
    c.train.batch_size = 128
    c.train.log_every = 200
    c.train.eval_every = 1500
    c.train.save_every = 1000
    c.eval.num_samples = 1000  # held-out examples the accuracy is measured on, per t
    return c
