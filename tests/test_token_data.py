"""Token data: text windows, digit tokens, the Markov source, user token files, and their errors."""

import ml_collections
import numpy as np
import pytest

from difflab import data
from difflab.configs import masked_digits, masked_markov, masked_text
from difflab.data import markov, tokens
from difflab.sampling import evaluate
from difflab.training import components


def data_config(**kw):
    base = {
        "name": "text",
        "seed": 0,
        "split": "train",
        "path": "",
        "num_classes": 0,
        "dequantize": 0.0,
        "seq_len": 32,
        "vocab_size": 0,
        "text_mode": "chars",
    }
    return ml_collections.ConfigDict({**base, **kw})


def test_pydoc_text_windows_are_keyed_by_step_and_decode_to_the_text():
    d = data.build(data_config())
    body = tokens.pydoc_text()
    assert d.vocab_size == len(set(body)) and d.shape == (32,)
    whole = d.batch(3, 0, 16, 16)["x"]
    np.testing.assert_array_equal(d.batch(3, 8, 8, 16)["x"], whole[8:])
    assert not np.array_equal(d.batch(4, 0, 16, 16)["x"], whole)
    assert all(s in body for s in d.decode(whole))
    test = data.build(data_config(split="test"))
    assert len(test.stream) < len(d.stream) / 5


def test_text_file_in_bytes_and_chars(tmp_path):
    f = tmp_path / "t.txt"
    f.write_text("héllo wörld " * 20, encoding="utf-8")
    b = data.build(data_config(name="text_file", path=str(f), text_mode="bytes", split="all"))
    assert b.vocab_size == 256 and b.decode(b.stream[None, :13])[0] == "héllo wörld"
    c = data.build(data_config(name="text_file", path=str(f), seq_len=8, split="all"))
    assert c.vocab_size == len(set("héllo wörld ")) and c.decode(c.stream[None, :6])[0] == "héllo "
    with pytest.raises(ValueError, match="text_mode must be one of"):
        data.build(data_config(name="text_file", path=str(f), text_mode="words"))
    empty = tmp_path / "e.txt"
    empty.write_text("")
    with pytest.raises(ValueError, match="empty text file"):
        data.build(data_config(name="text_file", path=str(empty)))


def test_digit_tokens_are_17_levels_with_labels():
    d = data.build(data_config(name="digits_tokens", seq_len=0))
    assert d.vocab_size == 17 and d.shape == (64,) and d.x.dtype == np.int32
    assert d.x.min() == 0 and d.x.max() == 16 and d.num_classes == 10
    back = tokens.tokens_to_digits(d.x[:5])
    np.testing.assert_array_equal(tokens.digit_tokens(back), d.x[:5])
    with pytest.raises(ValueError, match="length 64"):
        data.build(data_config(name="digits_tokens", seq_len=32))


def test_markov_source_has_its_chain_law():
    d = data.build(data_config(name="markov", vocab_size=5, seq_len=16))
    chain = d.law
    x = d.batch(0, 0, 4000, 4000)["x"]
    assert x.shape == (4000, 16) and x.max() < 5
    # transition frequencies match the matrix
    counts = np.zeros((5, 5))
    np.add.at(counts, (x[:, :-1].ravel(), x[:, 1:].ravel()), 1)
    freq = counts / counts.sum(1, keepdims=True)
    assert np.abs(freq - chain.transition).max() < 0.03
    nll = -chain.log_prob(x).mean() / 16
    assert abs(nll - chain.sequence_entropy(16) / 16) < 0.03
    toy = markov.toy_chain()
    assert abs(toy.sequence_entropy(4) - 3.944881) < 1e-6


@pytest.mark.parametrize("beta, bonus", [(1.0, None), (2.0, None), (0.5, [0.0, 0.0, 1.5])])
def test_tilted_chain_is_the_tilted_law(beta, bonus):
    """p^beta exp(sum_i bonus[x^i]) / Z by enumeration of all 3^4 sequences: the tilted chain's
    probability of each sequence, and its exact statistics, against the normalised weights."""
    from difflab.metrics.tokens import chain_statistics

    chain, length = markov.toy_chain(), 4
    x = chain.all_sequences(length)
    log_w = beta * chain.log_prob(x) + (0.0 if bonus is None else np.sum(np.take(bonus, x), 1))
    w = np.exp(log_w - log_w.max())
    w /= w.sum()
    law = chain.tilted(length, beta, bonus)
    q = law.first[x[:, 0]] * np.prod(law.steps[np.arange(3), x[:, :-1], x[:, 1:]], axis=1)
    np.testing.assert_allclose(q, w, rtol=1e-10)
    stats = chain_statistics(law, chain)
    marginals = np.stack([np.bincount(x[:, i], w, 3) for i in range(length)])
    np.testing.assert_allclose(stats["marginals"], marginals, atol=1e-12)
    assert abs(stats["log_p_per_token"] - w @ chain.log_prob(x) / length) < 1e-12


def test_token_npz(tmp_path):
    f = tmp_path / "tok.npz"
    np.savez(f, x=np.array([[0, 1, 2], [2, 1, 0]]), label=np.array([0, 1]))
    d = data.build(data_config(name="tokens_npz", path=str(f), vocab_size=3, seq_len=3))
    assert d.vocab_size == 3 and d.num_classes == 2 and d.kind == "tokens"


@pytest.mark.parametrize(
    "x, kw, match",
    [
        (
            np.array([[0, 1, 5]]),
            {"vocab_size": 4},
            r"token 5 at index \(0, 2\), outside the vocabulary \[0, 3\]",
        ),
        (np.array([[0, -1, 2]]), {"vocab_size": 4}, r"token -1 at index \(0, 1\)"),
        (np.array([[0.0, 1.0]]), {"vocab_size": 4}, "must be integer token ids, got dtype float64"),
        (
            np.array([[0, 1, 2]]),
            {"vocab_size": 4, "seq_len": 8},
            "length 3, but config.data.seq_len=8",
        ),
        (np.array([0, 1, 2]), {"vocab_size": 4}, r"token sequences \[N, L\], got shape \(3,\)"),
        (np.array([[0, 1]]), {"vocab_size": 0}, "vocab_size must be positive"),
    ],
)
def test_bad_tokens_are_one_line_errors(tmp_path, x, kw, match):
    f = tmp_path / "bad.npz"
    np.savez(f, x=x)
    with pytest.raises(ValueError, match=match) as err:
        data.build(data_config(name="tokens_npz", path=str(f), **{"seq_len": 0, **kw}))
    assert "\n" not in str(err.value)


def test_family_must_fit_the_data():
    c = masked_text.get_config()
    c.process.family = "flow"
    with pytest.raises(ValueError, match="cannot model the tokens"):
        components.build(c)
    c = masked_markov.get_config()
    c.data.name = "checkerboard"
    with pytest.raises(ValueError, match="cannot model the points"):
        components.build(c)
    c = masked_digits.get_config()
    c.model.net = "dit"
    with pytest.raises(ValueError, match="token data"):
        components.build(c)


def test_ngram_is_normalised_and_learns_a_deterministic_stream():
    from difflab.metrics.tokens import NGram

    stream = np.tile(np.arange(5), 200)
    model = NGram.fit(stream, vocab=6, order=3, k=0.1)
    seq = np.array([0, 1, 2, 3, 4, 0, 1])
    # every conditional sums to one over the vocabulary
    for i in range(len(seq)):
        total = sum(np.exp(model.log_probs(np.r_[seq[:i], v])[-1]) for v in range(6))
        assert abs(total - 1.0) < 1e-9
    # after two tokens of context the next one is nearly certain
    assert model.bits_per_token(np.tile(seq, (3, 1))) < 1.0
    assert NGram.fit(stream, 6, 1, 0.1).bits_per_token(seq[None]) > 2.0


def test_digit_token_samples_are_scored_and_shown_as_images(tmp_path):
    from difflab import metrics

    d = data.build(data_config(name="digits_tokens", seq_len=0))
    real = d.reference(400, seed=3)
    good = metrics.report(real, d, n=200, seed=0)
    noise = np.random.default_rng(0).integers(0, 17, real.shape).astype(np.int32)
    bad = metrics.report(noise, d, n=200, seed=0)
    assert good["frechet_distance"] < 3 * good["frechet_distance_data"] < bad["frechet_distance"]
    path = evaluate.show(d, real[:32], str(tmp_path / "s"), "digits")
    assert path.endswith(".png") and (tmp_path / "s.png").exists()
    text = data.build(data_config())
    path = evaluate.show(text, text.reference(3, 0), str(tmp_path / "t"), "text")
    assert len(open(path, encoding="utf-8").read().splitlines()) == 4
