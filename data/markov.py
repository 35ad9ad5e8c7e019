"""A Markov-chain token source with a known law: exact log-probabilities, entropy rate, and the
exact masked-diffusion denoiser by forward-backward (docs/math.md §8.1e).

x^1 ~ pi0, x^{i+1} | x^i ~ P[x^i]; for an all-masked-but-some sequence z, the exact denoiser is
p(x^i = v | x^U), the smoothing marginal of the chain with the unmasked positions clamped.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

NEG = -1e9


@dataclasses.dataclass(frozen=True, eq=False)
class MarkovChain:
    """Initial law pi0 [V] and transition matrix P [V, V] (rows: the current token)."""

    pi0: np.ndarray
    transition: np.ndarray

    def __post_init__(self):
        v = len(self.pi0)
        if self.transition.shape != (v, v):
            raise ValueError(f"transition must be [{v}, {v}], got {self.transition.shape}")
        for name, p in (("pi0", self.pi0), ("transition rows", self.transition)):
            if (p < 0).any() or not np.allclose(p.sum(-1), 1.0):
                raise ValueError(f"{name} must be probability vectors, got {p}")

    @property
    def vocab_size(self) -> int:
        return len(self.pi0)

    def sample(self, key: jax.Array, length: int) -> jax.Array:
        """One sequence [length] of int32 tokens."""
        k0, k_rest = jax.random.split(key)
        log_p = jnp.log(jnp.asarray(self.transition, jnp.float32))
        x0 = jax.random.categorical(k0, jnp.log(jnp.asarray(self.pi0, jnp.float32)))

        def step(x, k):
            nxt = jax.random.categorical(k, log_p[x])
            return nxt, nxt

        _, rest = jax.lax.scan(step, x0, jax.random.split(k_rest, length - 1))
        return jnp.concatenate([x0[None], rest]).astype(jnp.int32)

    def log_prob(self, x: np.ndarray) -> np.ndarray:
        """log p(x) per sequence, x [N, L] (float64, numpy)."""
        x = np.asarray(x)
        lp = np.log(self.pi0)[x[:, 0]]
        return lp + np.log(self.transition)[x[:, :-1], x[:, 1:]].sum(axis=1)

    def stationary(self) -> np.ndarray:
        """pi with pi P = pi (the left eigenvector of eigenvalue 1)."""
        w, vecs = np.linalg.eig(self.transition.T)
        pi = np.real(vecs[:, np.argmin(np.abs(w - 1.0))])
        return pi / pi.sum()

    def entropy_rate(self) -> float:
        """h = sum_v pi(v) H(P[v]) in nats per token (pi stationary)."""
        row_h = -np.sum(self.transition * np.log(self.transition + 1e-300), axis=1)
        return float(self.stationary() @ row_h)

    def sequence_entropy(self, length: int) -> float:
        """H(x^1..x^L) in nats = H(pi0) + sum_i E_{x^i ~ pi_i} H(P[x^i])."""
        row_h = -np.sum(self.transition * np.log(self.transition + 1e-300), axis=1)
        pi, total = self.pi0.astype(np.float64), -np.sum(self.pi0 * np.log(self.pi0 + 1e-300))
        for _ in range(length - 1):
            total += pi @ row_h
            pi = pi @ self.transition
        return float(total)

    def tilted(self, length: int, beta: float = 1.0, bonus=None) -> ChainLaw:
        """p(x)^beta exp(sum_i bonus[x^i]) / Z over `length` positions, again a chain: with
        W(a, b) = P(a, b)^beta e^bonus(b), backward messages m_L = 1, m_i = W m_{i+1}, it starts
        from pi0^beta e^bonus m_1 and moves by Q_i(a, b) = W(a, b) m_{i+1}(b) / m_i(a) (annealing:
        bonus = 0; a token-count reward lambda #v: bonus = lambda e_v)."""
        bonus = np.zeros(self.vocab_size) if bonus is None else np.asarray(bonus, np.float64)
        weights = np.asarray(self.transition, np.float64) ** beta * np.exp(bonus)[None]
        messages = [np.ones(self.vocab_size)]
        for _ in range(length - 1):
            m = weights @ messages[-1]
            messages.append(m / m.sum())  # only ratios within a position matter
        messages = messages[::-1]  # messages[i]: m at position i + 1 (1-based)
        first = np.asarray(self.pi0, np.float64) ** beta * np.exp(bonus) * messages[0]
        steps = [weights * m[None] / (weights @ m)[:, None] for m in messages[1:]]  # Q_1..Q_L-1
        return ChainLaw(first / first.sum(), np.array(steps).reshape(-1, *weights.shape))

    def all_sequences(self, length: int) -> np.ndarray:
        """Every sequence of `length` tokens [V^L, L], in lexicographic order."""
        v = self.vocab_size
        return np.stack(np.unravel_index(np.arange(v**length), (v,) * length), axis=1)

    def denoiser_logits(self, z: jax.Array, mask_id: int) -> jax.Array:
        """log p(x^i = v | unmasked positions of z) for every position, z [B, L] -> [B, L, V].

        Forward-backward in log space with the observations clamped: e_i(v) = 0 if z^i is the
        mask or v, else NEG. It does not depend on t (the exact denoiser is time-agnostic).
        """
        v = self.vocab_size
        obs = jnp.where(
            (z[..., None] == mask_id) | (z[..., None] == jnp.arange(v)), 0.0, NEG
        )  # [B, L, V]
        return self.smoothing(obs)

    def uniform_denoiser_logits(self, z: jax.Array, alpha) -> jax.Array:
        """log p(x^i = v | z_t) [B, L, V] under uniform noise (docs/math.md §3.9): forward-backward
        with e_i(v) = log q_t(z^i | v) = log(alpha [z^i = v] + (1 - alpha) / V), alpha [B] or a
        scalar (alpha_t)."""
        v = self.vocab_size
        a = jnp.reshape(jnp.asarray(alpha, jnp.float32), (-1, 1, 1))
        hit = (z[..., None] == jnp.arange(v)).astype(jnp.float32)
        return self.smoothing(jnp.log(a * hit + (1.0 - a) / v))

    def uniform_denoiser(self, alpha):
        """The exact uniform-noise denoiser (z, t, cond) -> logits of a schedule alpha(t)."""
        return lambda z, t, cond=None: self.uniform_denoiser_logits(z, alpha(t))

    def onehot_logits(self, h: jax.Array) -> jax.Array:
        """`denoiser_logits` of one-hot inputs h [B, L, V + 1] (last: the mask), differentiable
        in h: e_i(v) = log(h_iv + h_im) (floored at 1e-30), the relaxation a first-order
        classifier guidance differentiates (docs/math.md §6.2)."""
        return self.smoothing(jnp.log(jnp.maximum(h[..., :-1] + h[..., -1:], 1e-30)))

    def smoothing(self, obs: jax.Array) -> jax.Array:
        """log p(x^i = v | e) [B, L, V], the chain's smoothing marginals under log-evidence
        obs [B, L, V]."""
        log_pi0 = jnp.log(jnp.asarray(self.pi0, jnp.float32))
        log_p = jnp.log(jnp.asarray(self.transition, jnp.float32))

        def fwd(a, e):
            a = jax.nn.logsumexp(a[:, :, None] + log_p[None], axis=1) + e
            return a, a

        def bwd(b, e):
            b = jax.nn.logsumexp(log_p[None] + (e + b)[:, None, :], axis=2)
            return b, b

        obs_t = jnp.swapaxes(obs, 0, 1)  # [L, B, V]
        a0 = log_pi0[None] + obs_t[0]
        _, a_rest = jax.lax.scan(fwd, a0, obs_t[1:])
        alpha = jnp.concatenate([a0[None], a_rest])
        b_last = jnp.zeros_like(a0)
        _, b_rest = jax.lax.scan(bwd, b_last, obs_t[1:], reverse=True)
        beta = jnp.concatenate([b_rest, b_last[None]])
        post = alpha + beta
        post = post - jax.nn.logsumexp(post, axis=-1, keepdims=True)
        return jnp.swapaxes(post, 0, 1)

    def denoiser(self, mask_id: int):
        """The exact denoiser (z, t, cond) -> logits, for samplers and the ELBO."""
        return lambda z, t, cond=None: self.denoiser_logits(z, mask_id)


@dataclasses.dataclass(frozen=True)
class ChainLaw:
    """A chain whose transitions change with the position: initial law [V], Q_i [L - 1, V, V]."""

    first: np.ndarray
    steps: np.ndarray

    def pair_marginals(self) -> np.ndarray:
        """p(x^i = a, x^{i+1} = b) [L - 1, V, V]: p_{i+1} = p_i Q_i."""
        pairs, marginal = [], self.first
        for q in self.steps:
            pairs.append(marginal[:, None] * q)
            marginal = pairs[-1].sum(0)
        return np.array(pairs).reshape(-1, *self.steps.shape[1:])

    def marginals(self) -> np.ndarray:
        """p(x^i = v) [L, V]."""
        return np.concatenate([self.first[None], self.pair_marginals().sum(1)])


def toy_chain() -> MarkovChain:
    """docs/math.md §8.1e: V = 3, pi0 = (0.5, 0.3, 0.2), entropy of 4 tokens 3.944881 nats."""
    return MarkovChain(
        np.array([0.5, 0.3, 0.2]),
        np.array([[0.1, 0.6, 0.3], [0.5, 0.1, 0.4], [0.3, 0.3, 0.4]]),
    )


def source_chain(vocab_size: int = 8, seed: int = 0, concentration: float = 0.3) -> MarkovChain:
    """A random chain for training ("masked_markov"): Dirichlet(concentration) rows, started from
    its stationary law so every position has the same marginal."""
    rng = np.random.default_rng(seed)
    p = rng.dirichlet(np.full(vocab_size, concentration), size=vocab_size)
    p = 0.98 * p + 0.02 / vocab_size  # every transition possible: finite log-probabilities
    chain = MarkovChain(np.full(vocab_size, 1.0 / vocab_size), p)
    return MarkovChain(chain.stationary(), p)
