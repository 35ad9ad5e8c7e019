"""Training: the train state, the jitted step, the loop, checkpoints, logging, and the runs that
sample.py and the notebooks draw from."""
