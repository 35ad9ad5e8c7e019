"""Token-sequence metrics: the negative log-likelihood of samples under a known law (the Markov
source) and under a character n-gram model, each next to the same number for held-out data; and
the statistics of samples against an exact chain law (marginals, bigrams, E log p).

The n-gram model is also the baseline the masked-text benchmark reports: interpolated additive
smoothing, p_n(c | h) = (N(h, c) + k V p_{n-1}(c | h')) / (N(h) + k V), h' = h without its
oldest token, down to the add-k unigram (a Dirichlet-prior back-off; MacKay & Peto 1995).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np


def _context_ids(x: np.ndarray, order: int, vocab: int) -> np.ndarray:
    """For each position i >= order of a 1-D stream, sum_j x[i - j] V^(j-1), j = 1..order."""
    ids = np.zeros(len(x) - order, np.int64)
    for j in range(1, order + 1):
        ids += x[order - j : len(x) - j].astype(np.int64) * vocab ** (j - 1)
    return ids


@dataclasses.dataclass(frozen=True)
class NGram:
    """Counts of (context, next token) for context lengths 0..order-1."""

    vocab: int
    order: int
    k: float
    tables: tuple  # per context length: (sorted keys context*V+c, counts, sorted ctx, ctx counts)

    @classmethod
    def fit(cls, stream: np.ndarray, vocab: int, order: int = 4, k: float = 0.5) -> NGram:
        stream = np.asarray(stream, np.int64)
        if vocab**order > 2**62:
            raise ValueError(f"n-gram order {order} with vocabulary {vocab} overflows int64 ids")
        tables = []
        for n in range(order):
            ctx = _context_ids(stream, n, vocab)
            keys, counts = np.unique(ctx * vocab + stream[n:], return_counts=True)
            ctx_keys, ctx_counts = np.unique(ctx, return_counts=True)
            tables.append((keys, counts, ctx_keys, ctx_counts))
        return cls(vocab, order, k, tuple(tables))

    @staticmethod
    def _lookup(keys, counts, query):
        pos = np.clip(np.searchsorted(keys, query), 0, len(keys) - 1)
        return np.where(keys[pos] == query, counts[pos], 0)

    def log_probs(self, seq: np.ndarray) -> np.ndarray:
        """log p(x_i | up to order-1 previous tokens) for every position of a 1-D sequence (nats);
        near the start the context is truncated, so every token is scored."""
        seq = np.asarray(seq, np.int64)
        p = np.full(len(seq), 1.0 / self.vocab)
        kv = self.k * self.vocab
        for n in range(min(self.order, len(seq))):
            keys, counts, ctx_keys, ctx_counts = self.tables[n]
            ctx = _context_ids(seq, n, self.vocab)
            joint = self._lookup(keys, counts, ctx * self.vocab + seq[n:])
            total = self._lookup(ctx_keys, ctx_counts, ctx)
            p[n:] = (joint + kv * p[n:]) / (total + kv)
        return np.log(p)

    def bits_per_token(self, sequences: np.ndarray) -> float:
        """Mean bits per token over sequences [N, L], each scored on its own (no outside context,
        as the masked model's NELBO)."""
        lp = np.concatenate([self.log_probs(row) for row in np.asarray(sequences)])
        return float(-np.mean(lp) / math.log(2))


def markov_report(samples, chain, reference) -> dict:
    """NLL per token of samples under the true chain, next to that of fresh data and the exact
    per-token entropy H(x^1..x^L) / L."""
    length = np.asarray(samples).shape[1]
    return {
        "nll_per_token": float(-np.mean(chain.log_prob(samples)) / length),
        "nll_per_token_data": float(-np.mean(chain.log_prob(reference)) / length),
        "entropy_per_token": chain.sequence_entropy(length) / length,
        "entropy_rate": chain.entropy_rate(),
    }


def chain_statistics(law, chain) -> dict:
    """Exact per-position marginals [L, V], pooled bigram law [V, V] and E log p(x) / L under the
    chain (pi0, P) of a `data.markov.ChainLaw` (e.g. `chain.tilted(L, beta)`, the annealed law)."""
    pairs = law.pair_marginals()
    length = len(pairs) + 1
    expected = law.first @ np.log(chain.pi0) + np.sum(pairs * np.log(chain.transition))
    return {
        "marginals": law.marginals(),
        "bigrams": pairs.sum(0) / max(length - 1, 1),
        "log_p_per_token": float(expected) / length,
    }


def sample_statistics(x, chain) -> dict:
    """The statistics of `chain_statistics` estimated from samples x [N, L]."""
    x = np.asarray(x)
    (n, length), vocab = x.shape, chain.vocab_size
    marginals = np.stack([np.bincount(x[:, i], minlength=vocab) / n for i in range(length)])
    pairs = np.bincount((x[:, :-1] * vocab + x[:, 1:]).ravel(), minlength=vocab * vocab)
    return {
        "marginals": marginals,
        "bigrams": pairs.reshape(vocab, vocab) / max(pairs.sum(), 1),
        "log_p_per_token": float(np.mean(chain.log_prob(x)) / length),
    }


def statistic_distances(got: dict, exact: dict) -> dict:
    """Mean per-position total variation, bigram total variation, error of E log p per token."""
    return {
        "marginal_tv": float(0.5 * np.abs(got["marginals"] - exact["marginals"]).sum(1).mean()),
        "bigram_tv": float(0.5 * np.abs(got["bigrams"] - exact["bigrams"]).sum()),
        "log_p_error": got["log_p_per_token"] - exact["log_p_per_token"],
    }


def text_report(samples, dataset, n: int, seed: int = 0, order: int = 4) -> dict:
    """Bits per character of samples under an n-gram model fitted on the first 80% of the
    training stream, next to the bits of n windows from the other 20% (text the n-gram has not
    seen, so the data reference is not flattered by memorisation)."""
    import dataclasses

    cut = int(0.8 * len(dataset.stream))
    model = NGram.fit(dataset.stream[:cut], dataset.vocab_size, order)
    held = dataclasses.replace(dataset, stream=dataset.stream[cut:])
    return {
        "ngram_bits_per_token": model.bits_per_token(samples),
        "ngram_bits_per_token_data": model.bits_per_token(held.reference(n, seed)),
    }
