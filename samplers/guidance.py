"""Guidance: functions from denoisers to denoisers, so every sampler takes every guidance
(docs/math.md §6).

- `classifier_free` (§6.1): pred(null) + w (pred(c) - pred(null)) in one batched network call,
  optionally only on a t-interval. The mixing lives in `models.mixing` (the shortcut process uses
  it for its guided bootstrap targets); it is linear in each family's natural prediction:
  velocity / eps / x0 / v (Gaussian families), logits (masked: mixing log-probabilities and
  renormalising), log-rates (counts: geometric mixing of the rates).
- `masked_classifier` (§6.2), masked diffusion: log p_theta(v | z) + gamma log p_phi(c | z^{i<-v})
  at each masked position, exactly (L V classifier calls per step; small vocabularies) or to first
  order through the gradient with respect to the one-hot input (one call and its backward pass).
- `gradient` (§6.2, §6.3), Gaussian families: the score plus scale * grad_x log h(x_t, t), written
  back into the process's own parameterisation. `classifier_potential` gives h = p_phi(c | x_t, t)
  (classifier guidance); `reward_potential` gives h = exp(r(x_hat(x_t, t))) at the denoised
  estimate, differentiated through the denoiser (reward guidance; with r = log N(y; A x_hat, s^2)
  the score form of DPS for a linear measurement y = A x + noise).
- `projected` (§6.6): APG, CFG's update with its part parallel to the conditional estimate
  down-weighted and its norm capped.
- `autoguided` (§6.5): D_weak + w (D - D_weak), guidance by a weaker version of the model.
- `shaped` (§3.7), masked diffusion: temperature and nucleus (top-p) sampling of the token
  logits. It changes the law the samplers draw (off by default; never for likelihoods).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from difflab.models.common import expand
from difflab.models.masked import NEG
from difflab.models.mixing import (
    classifier_free,
    conditional_and_null,
    interval_scale,
    network_passes,
)
from difflab.samplers.solvers import Memory

__all__ = [
    "classifier_free",
    "masked_classifier",
    "classifier_potential",
    "gradient",
    "interval_scale",
    "measurement_potential",
    "network_passes",
    "reward_potential",
    "score_shifted",
    "shaped",
    "autoguided",
    "projected",
]

ALPHA_FLOOR_T = 1.0 - 1e-4  # sigma^2 / alpha is evaluated at t <= this (alpha_1 = 0 on flows)


def score_shifted(process, pred, x, t, delta):
    """The prediction whose score is s_hat + delta: by Tweedie x_hat' = x_hat + sigma^2 / alpha
    delta and eps' = eps - sigma delta (docs/math.md §6.2; a velocity moves by u' = u - g^2/2
    delta), written back from the pair (x_hat', eps'), never from x_hat' alone: a flow's velocity of
    x_hat alone is (x_t - alpha x_hat) / sigma-singular at t = 0, where Heun's corrector and
    the adaptive solvers evaluate it."""
    tt = expand(jnp.broadcast_to(jnp.asarray(t, jnp.float32), x.shape[:1]), x)
    x0, eps = process.x0_eps(pred, x, tt)
    tc = jnp.minimum(tt, ALPHA_FLOOR_T)
    sigma = process.sigma(tc)
    x0, eps = x0 + sigma**2 / process.alpha(tc) * delta, eps - sigma * delta
    return process.pred_from_x0_eps(x0, eps, x, tt).astype(pred.dtype)


def gradient(denoiser, process, log_potential, scale: float, interval=None, calls: int = 0):
    """The denoiser whose score is s_hat + scale grad_x log h(x_t, t, c), log_potential(x, t,
    cond, pred) -> [B] (pred: the denoiser's output at (x, t), for potentials at the denoised
    estimate). interval = (t_lo, t_hi): guide only there (the plain score elsewhere). One
    network call per call (with the backward pass when log h depends on pred); `calls` counts
    the potential's own model calls (a classifier) per call, reported as `guidance_calls`.

    An average-velocity model's step h passes through: its u(x, t, h) moves as a velocity at
    t does, exact at h = 0 (the ODE and SDE samplers) and first order in h for flow-map jumps.

    Args:
        denoiser: (x [B, ...], t [B], cond[, h]) -> prediction [B, ...] of a flow, diffusion or
            average-velocity model.
        process: its process (flow.FlowMatching or continuous.GaussianDiffusion, or the
            shortcut / MeanFlow processes, which are linear flows).
        log_potential: (x, t, cond, pred) -> log h [B], differentiable in x
            (`classifier_potential`, `reward_potential`, `measurement_potential`).
        scale: the factor of grad log h.

    Returns:
        The guided denoiser, same signature and parameterisation.
    """

    def guided(x, t, cond=None, h=None):
        def objective(x):
            pred = denoiser(x, t, cond) if h is None else denoiser(x, t, cond, h)
            return jnp.sum(log_potential(x, t, cond, pred)), pred

        grad, pred = jax.grad(objective, has_aux=True)(x)
        w = interval_scale(scale, interval, t, x, outside=0.0)
        return score_shifted(process, pred, x, t, w * grad)

    guided.network_passes = network_passes(denoiser)
    guided.guidance_calls = calls + getattr(denoiser, "guidance_calls", 0)
    return guided


def classifier_potential(log_probs):
    """log h = log p_phi(c | x_t, t) from log_probs(x, t) -> [B, C] class log-probabilities (a
    noise-conditional classifier), for the label c = cond."""

    def log_potential(x, t, cond, pred):
        del pred
        if cond is None:
            raise ValueError("classifier guidance needs the class to guide toward (cond), got None")
        lp = log_probs(x, t)
        return jnp.take_along_axis(lp, jnp.asarray(cond, jnp.int32)[:, None], axis=1)[:, 0]

    return log_potential


def reward_potential(process, reward):
    """log h = r(x_hat(x_t, t)): a differentiable reward [B, ...] -> [B] at Tweedie's estimate
    (docs/math.md §6.3; a heuristic for the target p(x) exp(scale r(x)))."""

    def log_potential(x, t, cond, pred):
        del cond
        tt = jnp.broadcast_to(jnp.asarray(t, jnp.float32), x.shape[:1])
        return reward(process.x0_eps(pred, x, tt)[0])

    return log_potential


def measurement_potential(process, observed, known, noise_std: float):
    """log p(y | x_t) ~ log N(y; A x_hat, s^2 + r_t^2) for the linear measurement A =
    restriction to the `known` coordinates (inpainting; observed and known [B, ...]): the DPS
    likelihood at the denoised estimate (docs/math.md §6.3), with the variance widened by
    r_t^2 = sigma_t^2 / (alpha_t^2 + sigma_t^2), the posterior variance of x given x_t for
    unit-variance data (Song et al. 2023, PiGDM), so the pull is gentle at high noise."""
    if not noise_std > 0:
        raise ValueError(f"measurement noise std must be positive, got {noise_std}")

    def log_potential(x, t, cond, pred):
        del cond
        tt = jnp.broadcast_to(jnp.asarray(t, jnp.float32), x.shape[:1])
        x0 = process.x0_eps(pred, x, tt)[0]
        a, s = process.alpha(tt), process.sigma(tt)
        var = noise_std**2 + s**2 / (a**2 + s**2)
        err = jnp.where(known, x0 - observed, 0.0).reshape(x0.shape[0], -1)
        return -0.5 * jnp.sum(err**2, axis=1) / var

    return log_potential


def masked_classifier(
    denoiser, process, log_classifier, scale: float, length: int, exact: bool = True
):
    """Classifier guidance of a masked model (Nisonoff et al. 2024; docs/math.md §6.2):
    logits log p_theta(v | z) + gamma log p_phi(c | z^{i<-v}, t) at each masked position i, c =
    cond, from log_classifier(one-hot z [N, L, V + 1], t [N]) -> [N, C] class log-probabilities.
    exact=True evaluates the classifier on all L V single-token substitutions (L V passes per
    call); exact=False uses log p_phi(c | z^{i<-v}) - log p_phi(c | z) ~ g_iv - g_im, g the
    gradient of log p_phi(c | h) at h = one-hot(z) (one pass and its backward). length: the
    sequence length L (for the reported classifier passes)."""
    mask = process.mask_id

    def guided(z, t, cond=None):
        if cond is None:
            raise ValueError("classifier guidance needs the class to guide toward (cond), got None")
        batch, length = z.shape
        vocab = process.vocab_size
        t = jnp.broadcast_to(jnp.asarray(t, jnp.float32), (batch,))
        lp = process.log_probs(denoiser(z, t, cond), z)  # [B, L, V]
        onehot = jax.nn.one_hot(z, vocab + 1)
        if exact:
            delta = substituted_log_probs(log_classifier, z, t, cond, vocab)
        else:
            grad = jax.grad(lambda h: jnp.sum(picked(log_classifier(h, t), cond)))(onehot)
            delta = grad[..., :vocab] - grad[..., mask : mask + 1]
        return lp + scale * jnp.where((z == mask)[..., None], delta, 0.0)

    guided.network_passes = network_passes(denoiser)
    guided.guidance_calls = length * process.vocab_size if exact else 1
    return guided


def picked(log_probs, cond):
    """log p(c | .) [N] of each row's class cond [N] from class log-probabilities [N, C]."""
    return jnp.take_along_axis(log_probs, cond[:, None], axis=1)[:, 0]


def substituted_log_probs(log_classifier, z, t, cond, vocab: int):
    """log p_phi(c | z^{i<-v}, t) [B, L, V] for every position i and token v, c = cond: the
    classifier on all L V single-token substitutions of z [B, L] (L V passes), its input one-hot
    over V + 1 columns (the last, a mask, unused here)."""
    batch, length = z.shape
    eye = jnp.eye(length, dtype=bool)[None, :, None, :]
    subs = jnp.where(eye, jnp.arange(vocab)[None, None, :, None], z[:, None, None, :])
    n = length * vocab
    onehot = jax.nn.one_hot(subs.reshape(batch * n, length), vocab + 1)
    lc = log_classifier(onehot, jnp.repeat(t, n))
    return picked(lc, jnp.repeat(cond, n)).reshape(batch, length, vocab)


def uniform_classifier(log_classifier, scale: float):
    """Classifier guidance of a uniform-state model (Nisonoff et al. 2024; docs/math.md §3.9):
    the log-tilt gamma log p_phi(c | z_t^{i<-j}, t) [B, L, V] of each position's next token j,
    which `discrete.tilted_step` adds to the reverse step (the exact guided rates' ratio
    p_phi(c | z') / p_phi(c | z) for one-token jumps; p_phi(c | z) cancels in the
    normalisation). log_classifier(one-hot [N, L, V + 1], t [N]) -> [N, C]."""

    def log_tilt(model, z, t):
        if model.cond is None:
            raise ValueError("classifier guidance needs the class to guide toward (cond), got None")
        t = jnp.broadcast_to(jnp.asarray(t, jnp.float32), z.shape[:1])
        vocab = model.process.vocab_size
        return scale * substituted_log_probs(log_classifier, z, t, model.cond, vocab)

    return log_tilt


def check_shape(temperature: float, top_p: float) -> None:
    """A clear error for a temperature <= 0 or a top_p outside (0, 1]."""
    if not temperature > 0 or not 0 < top_p <= 1:
        raise ValueError(
            f"temperature={temperature} must be > 0 and top_p={top_p} in (0, 1] (masked runs)"
        )


def shaped(denoiser, vocab_size: int, temperature: float = 1.0, top_p: float = 1.0):
    """Masked token logits l [..., V'] reshaped for sampling (docs/math.md §3.7): l / temperature
    over the V = vocab_size real tokens, then only the smallest set of most probable tokens whose
    probability reaches top_p kept (the most probable always; the rest at NEG). Columns past V
    (the mask's) pass through. temperature = top_p = 1: the denoiser itself."""
    check_shape(temperature, top_p)
    if temperature == 1 and top_p == 1:
        return denoiser

    def reshaped(z, t, cond=None, **kw):
        logits = denoiser(z, t, cond, **kw).astype(jnp.float32)
        tokens = logits[..., :vocab_size] / temperature
        if top_p < 1:
            probs = jax.nn.softmax(tokens, axis=-1)
            order = jnp.argsort(-probs, axis=-1)
            sorted_p = jnp.take_along_axis(probs, order, axis=-1)
            before = jnp.cumsum(sorted_p, axis=-1) - sorted_p  # mass of the more probable ones
            keep_sorted = before < top_p  # the first always (before = 0)
            keep = jnp.put_along_axis(
                jnp.zeros_like(keep_sorted), order, keep_sorted, axis=-1, inplace=False
            )
            tokens = jnp.where(keep, tokens, NEG)
        return jnp.concatenate([tokens, logits[..., vocab_size:]], axis=-1)

    reshaped.network_passes = network_passes(denoiser)
    reshaped.guidance_calls = getattr(denoiser, "guidance_calls", 0)
    return reshaped


def autoguided(denoiser, weak, scale: float, interval=None):
    """Autoguidance (Karras et al. 2024; docs/math.md §6.5): D_w = D_weak + w (D - D_weak), the
    model guided away from a weaker version of itself (an earlier checkpoint, a smaller model),
    linear in the family's natural prediction as CFG is; w = 1: the model itself. Each call
    evaluates both networks (`network_passes` adds up).

    Args:
        denoiser, weak: (x [B, ...], t [B], cond, **kw) -> prediction [B, ...] of the same
            family, process and data shape.
        scale: w. interval: (t_lo, t_hi) where w applies (1 elsewhere), or None.
    """

    def guided(x, t, cond=None, **kw):
        strong, poor = denoiser(x, t, cond, **kw), weak(x, t, cond, **kw)
        return poor + interval_scale(scale, interval, t, strong) * (strong - poor)

    guided.network_passes = network_passes(denoiser) + network_passes(weak)
    return guided


def projected(
    denoiser,
    process,
    scale: float,
    parallel: float = 0.0,
    threshold=None,
    interval=None,
    momentum: float = 0.0,
):
    """Adaptive projected guidance (APG, Sadat et al. 2024; docs/math.md §6.6): in the denoised
    estimate, Delta = x_hat_c - x_hat_null, with momentum beta the running sum D_k = Delta_k +
    beta D_{k-1} over the sampler's calls, scaled to norm <= threshold per sample, split into its
    part parallel to x_hat_c and the rest, and x_hat = x_hat_c + (w - 1) (D_orth + parallel
    D_par); written back as the family's prediction. parallel = 1 without a threshold or
    momentum is CFG. Where sigma_t = 0 (a flow's t = 0) the prediction cannot be written from
    x_hat alone and CFG is used. One network call on the doubled batch.

    Args:
        denoiser: a class-conditional denoiser trained with label dropout (as `classifier_free`).
        process: its Gaussian process (x0_eps, pred_from_x0).
        scale: w. parallel: eta, the weight of the parallel part (APG: 0). threshold: r or None.
        interval: (t_lo, t_hi) where w applies (1 elsewhere; the running sum is kept on all
            calls), or None.
        momentum: beta (APG uses negative values, e.g. -0.5); 0: none. With momentum the
            denoiser remembers across calls (`solvers.Memory`), so it runs with the samplers of
            one call per step, which thread that memory.
    """

    def parts(x, t, cond, h):
        pred_c, pred_null = conditional_and_null(denoiser, x, t, cond, h)
        x_c, x_null = process.x0_eps(pred_c, x, t)[0], process.x0_eps(pred_null, x, t)[0]
        return pred_c, pred_null, x_c, x_c - x_null

    def combined(x, t, pred_c, pred_null, x_c, delta):
        w = interval_scale(scale, interval, t, pred_c)
        axes = tuple(range(1, x.ndim))
        if threshold is not None:
            norm = jnp.sqrt(jnp.sum(delta**2, axis=axes, keepdims=True))
            delta = delta * jnp.minimum(1.0, threshold / jnp.maximum(norm, 1e-12))
        along = jnp.sum(delta * x_c, axis=axes, keepdims=True)
        along = along / jnp.maximum(jnp.sum(x_c**2, axis=axes, keepdims=True), 1e-12)
        orth = delta - along * x_c
        x_hat = x_c + (w - 1.0) * (orth + parallel * along * x_c)
        cfg = pred_null + w * (pred_c - pred_null)
        tt = jnp.broadcast_to(jnp.asarray(t, jnp.float32), x.shape[:1])
        positive = (process.sigma(tt) > 0).reshape((-1,) + (1,) * (x.ndim - 1))
        return jnp.where(positive, process.pred_from_x0(x_hat, x, tt), cfg)

    def guided(x, t, cond=None, h=None):
        if momentum:
            raise ValueError(
                f"APG with momentum {momentum} remembers across calls; it runs with the samplers "
                f"of one network call per step (euler, ddim, ddpm, em, dpmpp_*, unipc)"
            )
        pred_c, pred_null, x_c, delta = parts(x, t, cond, h)
        return combined(x, t, pred_c, pred_null, x_c, delta)

    def remembered(x, t, cond, running):
        """(the guided prediction, D_k = Delta_k + beta D_{k-1})."""
        pred_c, pred_null, x_c, delta = parts(x, t, cond, None)
        running = delta + momentum * running
        return combined(x, t, pred_c, pred_null, x_c, running), running

    guided.network_passes = 2 * network_passes(denoiser)
    guided.memory = Memory(jnp.zeros_like, remembered) if momentum else None
    return guided
