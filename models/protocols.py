"""The interfaces every family, sampler and guidance transform meets (docs/architecture.md
"Interfaces"), as runtime-checkable Protocols: code asks `isinstance(process, MaskedProcess)`
instead of probing for attributes, and a type checker follows the same names.

    denoiser(x_t [B, ...], t [B], cond [B] or None) -> prediction [B, ...]
    sampler(key, denoiser, process, shape, cond, grid) -> (x [shape], info dict)
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class Denoiser(Protocol):
    """The network with its parameters bound: the family's prediction at (x_t, t)."""

    def __call__(self, xt, t, cond=None, **kw) -> Any: ...


@runtime_checkable
class Sampler(Protocol):
    """Samples of shape `shape` walked along `grid` [K + 1] (from the prior's time down)."""

    def __call__(self, key, denoiser, process, shape, cond, grid) -> tuple[Any, dict]: ...


@runtime_checkable
class Process(Protocol):
    """A forward corruption with its training loss and its prior; sampling grids run from 1 to
    t_min, t_k = (1 - k/K)^grid_power by default (1: uniform)."""

    t_min: float
    grid_power: float

    def prior(self, key, shape, t=1.0) -> Any: ...

    def loss(self, denoiser, key, batch) -> Any: ...


@runtime_checkable
class GaussianProcess(Process, Protocol):
    """z_t = alpha_t x + sigma_t eps (flows and diffusion): the prediction converts to (x_hat,
    eps_hat), a velocity and a score, and back (docs/math.md §0)."""

    def x0_eps(self, pred, xt, t) -> tuple[Any, Any]: ...

    def pred_from_x0(self, x0_hat, xt, t) -> Any: ...

    def pred_from_x0_eps(self, x0_hat, eps_hat, xt, t) -> Any: ...

    def velocity(self, pred, xt, t) -> Any: ...

    def score(self, pred, xt, t) -> Any: ...


@runtime_checkable
class FlowMapProcess(GaussianProcess, Protocol):
    """An average-velocity flow (shortcut, MeanFlow): x_{t-h} = flow_map(u, x_t, t, h)."""

    def flow_map(self, u, xt, t, h) -> Any: ...


@runtime_checkable
class ShortcutProcess(FlowMapProcess, Protocol):
    """A flow map trained on a fixed set of step sizes (the shortcut model)."""

    def step_sizes(self) -> tuple: ...


@runtime_checkable
class MaskedProcess(Process, Protocol):
    """Absorbing-state (masked) diffusion over tokens 0..mask_id - 1."""

    mask_id: int

    def log_probs(self, pred, zt) -> Any: ...


@runtime_checkable
class UniformProcess(Process, Protocol):
    """Uniform-state diffusion over tokens 0..vocab_size - 1 (no mask): the reverse step mixes
    the posteriors over p_theta(x | z_t)."""

    vocab_size: int

    def log_probs(self, pred, zt) -> Any: ...

    def posterior_probs(self, zt, t, s, probs) -> Any: ...


@runtime_checkable
class CountProcess(Process, Protocol):
    """A birth-death count process: the prediction gives birth and death rates."""

    def rates(self, pred, x) -> tuple[Any, Any]: ...


@runtime_checkable
class Conditioned(Protocol):
    """A process that makes the network call itself and puts its final samples in place
    (observations: `samplers.observed`); `batched` leaves hold one row per sample."""

    batched: bool

    def predict(self, denoiser, x, t, cond) -> Any: ...

    def finish(self, x) -> Any: ...
