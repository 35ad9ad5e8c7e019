"""Samplers of the discrete families, through the shared `solvers.scan_grid` loop. Each is
`sampler(key, denoiser, process, shape, cond, grid) -> (x, info)`.

Masked diffusion (docs/math.md §3.3):

- `ancestral`: the exact T-step reverse chain in decoupled form; a time-agnostic network's output
  is reused while no token of the batch has changed (MDLM's cache), so NFE <= min(T, L).
- `first_hitting`: exactly one token per network call at a time drawn from the first-hitting law
  (Zheng et al. 2024); equal in distribution to the ancestral sampler as T -> infinity.
- `confidence`: MaskGIT-style unmasking of the most confident positions. A heuristic: it does not
  sample the model's distribution (biased), so never use it for likelihoods or oracle tests.
- `entropy_bounded`: several tokens per network call while an entropy bound on the error holds
  (EB-sampler); adaptive NFE.
- `remdm`: ReMDM's remasking samplers (cap, rescale, loop): unmasked tokens may be masked again
  and redrawn, with every marginal q(z_s | x) kept; eta = 0 is the ancestral sampler.

Categorical draws are float64 Gumbel-max by default (`float64=False` for the float32 variant).

Count flows (birth-death processes, docs/math.md §4.5):
- `tau_leaping`: Poisson births and binomially thinned deaths per step; never negative.
- `unit_jump`: at most one jump per coordinate per step (competing linear hazards).
- `exact`: event-by-event simulation (Gillespie); exact by thinning when an upper bound on the
  total rate is given, otherwise with rates frozen between events and grid times.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from difflab.models.categorical import categorical
from difflab.models.counts import NEG
from difflab.samplers.observed import Observed
from difflab.samplers.solvers import Bound, Step, make_sampler, scan_grid


def log_probs(model: Bound, z, t):
    """log p_theta(x | z_t) [B, L, V] from one network call."""
    return model.process.log_probs(model.pred(z, t), z)


def ancestral(float64: bool = True):
    """The decoupled ancestral sampler on the grid (docs/math.md §3.3A), with output caching."""

    def sampler(key, denoiser, process, shape, cond, grid):
        model = Bound(denoiser, process, cond)
        z = process.prior(None, shape)
        lp = jnp.zeros((*shape, process.vocab_size), jnp.float32)
        cache = bool(process.time_agnostic)

        def move(k, state, t, s):
            z, lp, fresh, nfe = state
            call = ~fresh & jnp.any(z == process.mask_id)  # nothing left to unmask: no call
            lp = jax.lax.cond(call, lambda: log_probs(model, z, t), lambda: lp)
            nfe = nfe + call.astype(jnp.int32)
            z_s = process.posterior(k, z, t, s, lp, float64)
            return z_s, lp, cache & jnp.all(z_s == z), nfe

        state = (z, lp, jnp.array(False), jnp.array(0, jnp.int32))
        z, _, _, nfe = scan_grid(move, key, state, grid)
        return z, {"nfe": nfe}

    return sampler


def ancestral_step(float64: bool = True, logits=None) -> Step:
    """One decoupled ancestral move t -> s without the output cache (a `Step`, for particle
    systems, where resampling would invalidate a cached output). logits(model, z, t) gives the
    token log-probabilities (default: the model's own, `log_probs`)."""
    token_logits = logits or log_probs

    def move(key, model, z, t, s):
        return model.process.posterior(key, z, t, s, token_logits(model, z, t), float64)

    return Step(move, nfe=1)


def tilted_step(log_tilt, float64: bool = True) -> Step:
    """The uniform-state ancestral step with each position's next-token law tilted by
    exp(log_tilt(model, z, t)) [B, L, V] (classifier guidance, `guidance.uniform_classifier`;
    docs/math.md §3.9)."""

    def move(key, model, z, t, s):
        lp = log_probs(model, z, t)
        return model.process.posterior(key, z, t, s, lp, float64, log_tilt(model, z, t))

    return Step(move, nfe=1)


def first_hitting(float64: bool = True):
    """First-hitting sampler (docs/math.md §3.3B): with n masked positions at time t, the next
    unmasking happens at 1 - alpha_s = (1 - alpha_t) u^(1/n); a uniformly chosen masked position
    takes a token from p_theta(. | z, s). One network call per masked position of the prior (L, or
    fewer under a prompt), whatever the grid (only grid[0], the start time, is used); the scan runs
    L steps and counts the calls that unmask a token."""

    def sampler(key, denoiser, process, shape, cond, grid):
        model = Bound(denoiser, process, cond)
        z = process.prior(None, shape)
        batch, length = shape
        sched = process.schedule

        def move(k, state, t_unused, s_unused):
            del t_unused, s_unused
            z, t, calls = state
            k_time, k_pos, k_tok = jax.random.split(k, 3)
            masked = z == process.mask_id
            n = jnp.sum(masked, axis=1)
            u = jax.random.uniform(k_time, (batch,), minval=jnp.finfo(jnp.float32).tiny)
            target = sched.mask_prob(t) * u ** (1.0 / jnp.maximum(n, 1))
            s = jnp.where(n > 0, sched.time_of_mask_prob(target), t)
            # a uniformly random masked position: argmax of uniform scores over masked positions
            scores = jnp.where(masked, jax.random.uniform(k_pos, (batch, length)), -1.0)
            pos = jnp.argmax(scores, axis=1)
            vocab = model.process.vocab_size
            lp = jax.lax.cond(  # no call once every position is filled (prompts)
                jnp.any(n > 0),
                lambda: model.process.log_probs(model.pred(z, s), z),
                lambda: jnp.zeros((batch, length, vocab), jnp.float32),
            )
            lp_pos = jnp.take_along_axis(lp, pos[:, None, None], axis=1)[:, 0]
            token = categorical(k_tok, lp_pos, float64)
            hit = jax.nn.one_hot(pos, length, dtype=jnp.bool_) & (n > 0)[:, None]
            return jnp.where(hit, token[:, None], z), s, calls + jnp.any(n > 0)

        t0 = jnp.full((batch,), grid[0], jnp.float32)
        steps = jnp.linspace(grid[0], 0.0, length + 1)  # only the trip count matters
        z, _, nfe = scan_grid(move, key, (z, t0, jnp.array(0, jnp.int32)), steps)
        return z, {"nfe": nfe}

    return sampler


def entropy_bounded(gamma: float = 0.1, float64: bool = True):
    """The entropy-bounded (EB) sampler (Ben-Hamu et al. 2025; docs/math.md §3.8): each network
    call unmasks the masked positions in order of increasing entropy H_i of p_theta(. | z), as
    many as keep sum_U H_i - max_U H_i <= gamma (at least one), each drawn independently from
    p_theta(. | z). gamma = 0: one token per call (exact with the exact denoiser, in this
    state-dependent order); large gamma: every position in one call. The network sees the time
    whose masking probability is the masked fraction. Only the grid's trip count matters (L
    steps); info["nfe"] counts the calls that unmasked something (the adaptive cost)."""
    if not gamma >= 0:
        raise ValueError(f"entropy-bounded sampler: gamma={gamma} must be >= 0")

    def sampler(key, denoiser, process, shape, cond, grid):
        model = Bound(denoiser, process, cond)
        z = process.prior(None, shape)
        batch, length = shape

        def move(k, state, t_unused, s_unused):
            del t_unused, s_unused
            z, calls = state
            masked = z == process.mask_id
            n = jnp.sum(masked, axis=1)
            t = process.schedule.time_of_mask_prob(n / length)
            lp = jax.lax.cond(  # no call once every position is filled
                jnp.any(n > 0),
                lambda: log_probs(model, z, t),
                lambda: jnp.zeros((batch, length, process.vocab_size), jnp.float32),
            )
            entropy = -jnp.sum(jnp.exp(lp) * lp, axis=-1)
            order = jnp.argsort(jnp.where(masked, entropy, jnp.inf), axis=1)  # masked first
            ranked = jnp.take_along_axis(jnp.where(masked, entropy, 0.0), order, axis=1)
            spent = jnp.cumsum(ranked, axis=1) - jax.lax.cummax(ranked, axis=1)
            within = jnp.take_along_axis(masked, order, axis=1) & (spent <= gamma)
            count = jnp.maximum(jnp.sum(within, axis=1), 1)
            rank = jnp.argsort(order, axis=1)
            chosen = masked & (rank < count[:, None])
            z = jnp.where(chosen, categorical(k, lp, float64), z)
            return z, calls + jnp.any(n > 0)

        steps = jnp.linspace(grid[0], 0.0, length + 1)  # only the trip count matters
        z, nfe = scan_grid(move, key, (z, jnp.array(0, jnp.int32)), steps)
        return z, {"nfe": nfe}

    return sampler


def confidence(float64: bool = True):
    """Confidence-ordered unmasking (MaskGIT; SMDM "greedy"), a biased heuristic (docs/math.md
    §3.3C): draw a candidate y^i ~ p_theta(. | z_t) at every masked position, then unmask the
    k = round(n_masked p_u(s, t)) positions whose candidates are most probable (all on the final
    step)."""

    def sampler(key, denoiser, process, shape, cond, grid):
        model = Bound(denoiser, process, cond)
        z = process.prior(None, shape)

        def move(k, z, t, s):
            lp = log_probs(model, z, t)
            y = categorical(k, lp, float64)
            conf = jnp.take_along_axis(lp, y[..., None], axis=-1)[..., 0]
            masked = z == process.mask_id
            n = jnp.sum(masked, axis=1)
            p_u = jnp.where(s <= process.t_min, 1.0, process.schedule.unmask_prob(s, t))
            k_new = jnp.round(n * p_u).astype(jnp.int32)
            order = jnp.argsort(-jnp.where(masked, conf, -jnp.inf), axis=1)
            rank = jnp.argsort(order, axis=1)
            return jnp.where(masked & (rank < k_new[:, None]), y, z)

        z = scan_grid(move, key, z, grid)
        return z, {"nfe": jnp.array(grid.shape[0] - 1, jnp.int32)}

    return sampler


# -- remasking (ReMDM) ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Remasking:
    """ReMDM's remasking schedule (Wang et al. 2025; docs/math.md §3.7): on a step t -> s an
    unmasked token is masked again with probability sigma, and a masked one is unmasked with
    probability (alpha_s - (1 - sigma) alpha_t) / (1 - alpha_t), which keeps every marginal
    q(z_s | x). kind "cap": sigma = min(eta, sigma_max); "rescale": sigma = eta sigma_max, with
    sigma_max = min(1, (1 - alpha_s) / alpha_t); "loop": the masking level falls linearly from 1
    to 1 - alpha_on over the sampler's times (t_on, 1], stays at 1 - alpha_on on (t_off, t_on]
    while tokens are remasked with sigma = eta, and falls linearly to 0 on [0, t_off]; the
    network is queried at the model's time of each level. eta = 0: the ancestral sampler."""

    kind: str
    eta: float
    t_on: float = 0.55
    t_off: float = 0.05
    alpha_on: float = 0.9

    def __post_init__(self):
        if self.kind not in REMASKING:
            raise ValueError(f"remasking kind must be one of {REMASKING}, got {self.kind!r}")
        if self.eta < 0 or (self.kind == "rescale" and self.eta > 1):
            raise ValueError(
                f"remasking eta={self.eta} must lie in [0, 1] for rescale, >= 0 otherwise"
            )
        if self.kind == "loop":
            if not 0 < self.t_off < self.t_on < 1 or not 0 < self.alpha_on < 1:
                raise ValueError(
                    f"remasking loop needs 0 < t_off < t_on < 1 and 0 < alpha_on < 1, got "
                    f"t_off={self.t_off}, t_on={self.t_on}, alpha_on={self.alpha_on}"
                )
            if self.eta > (1 - self.alpha_on) / self.alpha_on:
                raise ValueError(
                    f"remasking loop eta={self.eta} exceeds (1 - alpha_on) / alpha_on = "
                    f"{(1 - self.alpha_on) / self.alpha_on:.4g}, where the unmasking "
                    f"probability would turn negative"
                )

    def mask_level(self, tau):
        """loop: the masking level 1 - alpha at the sampler's time tau (piecewise linear)."""
        tau = jnp.asarray(tau, jnp.float32)
        on = 1.0 - self.alpha_on
        above = 1.0 - (1.0 - tau) * self.alpha_on / (1.0 - self.t_on)
        below = tau * on / self.t_off
        return jnp.where(tau > self.t_on, above, jnp.where(tau <= self.t_off, below, on))

    def levels(self, schedule, t, s, t_min):
        """(alpha_t, alpha_s, sigma, the network's time) of a step t -> s."""
        if self.kind == "loop":
            m_t, m_s = self.mask_level(t), jnp.where(s <= t_min, 0.0, self.mask_level(s))
            window = (t > self.t_off) & (t <= self.t_on)
            sigma = jnp.minimum(jnp.where(window, self.eta, 0.0), sigma_max(1 - m_t, 1 - m_s))
            return 1.0 - m_t, 1.0 - m_s, sigma, schedule.time_of_mask_prob(m_t)
        a_t = schedule.alpha(t)
        a_s = jnp.where(s <= t_min, 1.0, schedule.alpha(s))
        if self.kind == "cap":
            return a_t, a_s, jnp.minimum(self.eta, sigma_max(a_t, a_s)), t
        return a_t, a_s, self.eta * sigma_max(a_t, a_s), t


def sigma_max(a_t, a_s):
    """The largest remasking probability that keeps (1 - alpha_s - sigma alpha_t) / (1 -
    alpha_t), a masked token's probability to stay masked, >= 0: min(1, (1 - alpha_s) /
    alpha_t)."""
    return jnp.clip((1.0 - a_s) / jnp.maximum(a_t, 1e-30), 0.0, 1.0)


REMASKING = ("cap", "rescale", "loop")


def remask_move(remasking: Remasking, float64: bool = True):
    """One ReMDM move t -> s (see `Remasking`): one network call at the step's level."""

    def move(key, model, z, t, s):
        p = model.process
        a_t, a_s, sigma, t_net = remasking.levels(p.schedule, t, s, p.t_min)
        lp = log_probs(model, z, t_net)
        k_u, k_y = jax.random.split(key)
        u = jax.random.uniform(k_u, z.shape)
        masked = z == p.mask_id
        unmask = jnp.where(a_t < 1.0, (a_s - (1.0 - sigma) * a_t) / (1.0 - a_t), 1.0)
        y = categorical(k_y, lp, float64)
        # observed tokens (prompts, infilling) are never masked again: they stay given
        given = p.known if isinstance(p, Observed) else False
        z = jnp.where(~masked & ~given & (u < sigma), p.mask_id, z)
        return jnp.where(masked & (u < unmask), y, z)

    return move


def remdm(kind: str, eta: float, float64: bool = True, **loop):
    """The ReMDM sampler of `Remasking(kind, eta, **loop)`: one network call per step (no output
    cache: tokens may change on any step)."""
    return make_sampler(remdm_step(kind, eta, float64, **loop))


def remdm_step(kind: str, eta: float, float64: bool = True, **loop) -> Step:
    """One ReMDM move as a particle-system `Step` (one network call)."""
    return Step(remask_move(Remasking(kind, eta, **loop), float64), nfe=1)


# -- count flows ---------------------------------------------------------------------------------


def tau_leap_move(key, model, x, t, s):
    """x_s = x_t + Poisson(lambda h) - Binomial(x_t, 1 - exp(-beta h)) (docs/math.md §4.5, 1)."""
    return model.process.posterior(key, x, t, s, model.pred(x, t))


def unit_jump_move(key, model, x, t, s):
    """At most one +-1 jump per coordinate with competing hazards (docs/math.md §4.5, 2)."""
    return model.process.unit_jump(key, x, t, s, model.pred(x, t))


tau_leaping = make_sampler(Step(tau_leap_move, nfe=1))
unit_jump = make_sampler(Step(unit_jump_move, nfe=1))


def event_log_rates(process, pred, x):
    """[B, 2D] log-rates of every possible event: births of each coordinate, then deaths
    (log 0 = NEG where x = 0)."""
    lb, ld = process.log_rates(pred, x)
    return jnp.concatenate([lb, process.log_death(ld, x, NEG)], axis=-1)


def exact(float64: bool = True, rate_bound=None, max_events: int = 1_000_000):
    """Event-by-event simulation from grid[0] down to grid[-1], one network call per event for
    the whole batch (docs/math.md §4.5, 3).

    rate_bound(x, t, t_end) -> [B]: an upper bound on the total rate sum_d lambda_d + mu_d at state
    x over [t_end, t]. With it the sampler is exact (Lewis-Shedler thinning): a candidate time
    t - E, E ~ Exp(bound), is accepted with probability R(x, t - E) / bound. Without it the rates
    are frozen from the last event or grid time (exact for rates constant on grid intervals).
    info: nfe, events (accepted jumps per example), unfinished (examples stopped by max_events
    before reaching grid[-1]: raise max_events if it is not 0) and bound_violations (candidates
    whose rate exceeded rate_bound: the result is not exact unless it is 0).
    """

    def sampler(key, denoiser, process, shape, cond, grid):
        k_prior, key = jax.random.split(key)
        x = process.prior(k_prior, shape, grid[0])
        batch, dim = shape
        last = grid.shape[0] - 1
        t_end = grid[-1]

        def body(state):
            x, t, node, done, n, events, violations = state
            k_time, k_accept, k_event = jax.random.split(jax.random.fold_in(key, n), 3)
            wait = jax.random.exponential(k_time, (batch,))
            if rate_bound is None:
                pred = denoiser(x, t, cond)
                total = jnp.sum(jnp.sum(jnp.stack(process.rates(pred, x)), 0), -1)
                t_next = grid[jnp.minimum(node + 1, last)]
                jump = (t - wait / total > t_next) & ~done
                t_new = jnp.where(jump, t - wait / total, t_next)
                node = jnp.where(jump, node, node + 1)
                finished = node >= last
            else:
                bound = rate_bound(x, t, t_end)
                candidate = t - wait / bound
                finished = candidate <= t_end
                t_new = jnp.where(finished, t_end, candidate)
                pred = denoiser(x, t_new, cond)
                total = jnp.sum(jnp.sum(jnp.stack(process.rates(pred, x)), 0), -1)
                accept = jax.random.uniform(k_accept, (batch,)) * bound < total
                jump = accept & ~finished & ~done
                over = total > bound * (1.0 + 1e-5)  # beyond float32 rounding
                violations = violations + jnp.sum(over & ~finished & ~done)
            event = categorical(k_event, event_log_rates(process, pred, x), float64)
            step = jnp.where(event < dim, 1, -1)[:, None] * jax.nn.one_hot(
                event % dim, dim, dtype=jnp.int32
            )
            x = x + jnp.where(jump[:, None], step, 0)
            t = jnp.where(done, t, t_new)
            events = events + jump.astype(jnp.int32)
            return x, t, node, done | finished, n + 1, events, violations

        def going(state):
            return (state[4] < max_events) & ~jnp.all(state[3])

        t0 = jnp.full((batch,), grid[0], jnp.float32)
        zeros = jnp.zeros((batch,), jnp.int32)
        no = jnp.array(0, jnp.int32)
        state = (x, t0, zeros, jnp.zeros((batch,), bool), no, zeros, no)
        x, _, _, done, n, events, violations = jax.lax.while_loop(going, body, state)
        info = {"nfe": n, "events": events, "unfinished": jnp.sum(~done)}
        return x, info | {"bound_violations": violations}

    return sampler
