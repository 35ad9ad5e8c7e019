"""Token data for masked diffusion: character or byte text (CPython's bundled pydoc topics by
default, or a user's file), digits as 17-level pixel tokens, a user's .npz token matrix, and the
Markov-chain source with a known law (data.markov).

Text is one long token stream; example `row` of training step `step` is a window of seq_len tokens
at an offset drawn from (seed, step), so batches are pure functions of the step as for every data
set here. The train/test split cuts the stream at 90%.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from difflab.data.validate import check_tokens

TEXT_MODES = ("chars", "bytes")


@dataclasses.dataclass(frozen=True, eq=False)
class TokenWindows:
    """Windows of `seq_len` tokens from one stream; `vocab[i]` is the text of token i."""

    name: str
    stream: np.ndarray
    seq_len: int
    seed: int
    vocab: tuple
    kind: str = "tokens"
    num_classes: int = 0
    law: object = None

    def __post_init__(self):
        if not 0 < self.seq_len <= len(self.stream):
            raise ValueError(
                f"config.data.seq_len={self.seq_len} must be positive and at most the "
                f"{len(self.stream)} tokens of {self.name!r}"
            )

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    @property
    def shape(self):
        return (self.seq_len,)

    def windows(self, offsets: np.ndarray) -> np.ndarray:
        return self.stream[offsets[:, None] + np.arange(self.seq_len)]

    def batch(self, step: int, start: int, size: int, global_batch: int | None = None) -> dict:
        n = len(self.stream) - self.seq_len + 1
        offsets = np.random.default_rng([self.seed, step]).integers(0, n, global_batch or size)
        return {"x": self.windows(offsets[start : start + size])}

    def reference(self, n: int, seed: int) -> np.ndarray:
        """n windows at random offsets from a key stream no training batch uses."""
        rng = np.random.default_rng([self.seed, 7919, seed])
        return self.windows(rng.integers(0, len(self.stream) - self.seq_len + 1, n))

    def decode(self, x) -> list[str]:
        """Each token sequence as text."""
        sep = b"" if isinstance(self.vocab[0], bytes) else ""
        out = [sep.join(self.vocab[int(i)] for i in row) for row in np.asarray(x)]
        return [o.decode("utf-8", "replace") if isinstance(o, bytes) else o for o in out]


def split_stream(stream: np.ndarray, split: str) -> np.ndarray:
    """The first 90% of the stream ('train'), the last 10% ('test'), or all of it."""
    cut = int(0.9 * len(stream))
    parts = {"train": stream[:cut], "test": stream[cut:], "all": stream}
    if split not in parts:
        raise ValueError(f"text split must be one of {sorted(parts)}, got {split!r}")
    return parts[split]


def encode_text(text: str, mode: str) -> tuple[np.ndarray, tuple]:
    """(token stream, vocabulary): sorted distinct characters, or the 256 byte values."""
    if mode == "chars":
        vocab = tuple(sorted(set(text)))
        index = {c: i for i, c in enumerate(vocab)}
        return np.array([index[c] for c in text], np.int32), vocab
    if mode == "bytes":
        data = np.frombuffer(text.encode("utf-8"), np.uint8).astype(np.int32)
        return data, tuple(bytes([b]) for b in range(256))
    raise ValueError(f"config.data.text_mode must be one of {TEXT_MODES}, got {mode!r}")


def pydoc_text() -> str:
    """CPython's bundled pydoc topic help (about 0.5M characters of English and code)."""
    from pydoc_data.topics import topics

    return "".join(topics[k] for k in sorted(topics))


def text(
    source: str, seq_len: int, seed: int, split: str = "train", mode: str = "chars", path=""
) -> TokenWindows:
    """Character- (or byte-) level windows of the pydoc text or of the UTF-8 file at `path`."""
    if path:
        from difflab.data.files import read_text

        body = read_text(path)
    else:
        body = pydoc_text()
    stream, vocab = encode_text(body, mode)
    return TokenWindows(source, split_stream(stream, split), seq_len, seed, vocab)


def digit_tokens(images: np.ndarray) -> np.ndarray:
    """Digits images in [-1, 1] (v / 8 - 1, v in 0..16) -> int32 pixel tokens v, [N, 64]."""
    return np.rint((images.reshape(len(images), -1) + 1.0) * 8.0).astype(np.int32)


def tokens_to_digits(tokens) -> np.ndarray:
    """Pixel tokens v in 0..16 [N, 64] -> images v / 8 - 1 [N, 8, 8, 1]."""
    return (np.asarray(tokens, np.float32) / 8.0 - 1.0).reshape(-1, 8, 8, 1)


def check_array_tokens(name: str, x: np.ndarray, vocab_size: int, seq_len: int) -> None:
    """User token matrices: [N, L] integers in [0, vocab_size), L = seq_len when given."""
    check_tokens(name, x, vocab_size)
    if seq_len and x.shape[1] != seq_len:
        raise ValueError(
            f"{name} has sequences of length {x.shape[1]}, but config.data.seq_len={seq_len}"
        )
