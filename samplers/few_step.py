"""Few-step sampling with an average-velocity network (shortcut models, MeanFlow; docs/math.md §5).

One move is x_s = x_t - (t - s) u_theta(x_t, t, h = t - s): K uniform steps from t = 1 to 0 (one
step: x_0 = eps - u_theta(eps, 1, 1)). It runs on the shared `solvers.scan_grid` loop through
`make_sampler`, so it has the common sampler interface.
"""

from __future__ import annotations

import jax.numpy as jnp

from difflab.samplers.solvers import Step, make_sampler


def flow_map_move(key, model, x, t, s):
    """x_s = x_t - (t - s) u_theta(x_t, t, h = t - s)."""
    del key
    batch = x.shape[:1]
    h = jnp.full(batch, t - s, jnp.float32)
    u = model.denoiser(x, jnp.full(batch, t, jnp.float32), model.cond, h)
    return x - (t - s) * u


flow_map = make_sampler(Step(flow_map_move, nfe=1))
