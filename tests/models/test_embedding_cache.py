"""The embedding cache returns what the encoder would, and encodes each text only once."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from bastion.models.embedding_cache import EmbeddingCache


class CountingEncoder:
    """A deterministic stand-in encoder that records what it was asked to encode."""

    def __init__(self, name: str = "fake", dim: int = 4) -> None:
        self.name, self.dim, self.max_length, self.path = name, dim, 16, Path("/nowhere")
        self.calls: list[list[str]] = []

    def encode(
        self, texts: Sequence[str], progress: Callable[[int], None] | None = None
    ) -> np.ndarray:
        self.calls.append(list(texts))
        return np.array([[len(t), t.count("a"), self.dim, 1.0] for t in texts], dtype=np.float32)


def test_cached_vectors_equal_fresh_ones_and_are_encoded_once(tmp_path: Path) -> None:
    enc = CountingEncoder()
    cache = EmbeddingCache(tmp_path / "emb.sqlite", enc)  # type: ignore[arg-type]
    first = cache.encode(["alpha", "beta", "alpha"])
    assert enc.calls == [["alpha", "beta"]]  # duplicates encoded once
    np.testing.assert_array_equal(first, enc.encode(["alpha", "beta", "alpha"]))
    enc.calls.clear()
    again = cache.encode(["beta", "gamma", "alpha"])
    assert enc.calls == [["gamma"]]
    np.testing.assert_array_equal(again[[0, 2]], first[[1, 0]])
    assert len(cache) == 3
    cache.close()
    reopened = EmbeddingCache(tmp_path / "emb.sqlite", enc)  # type: ignore[arg-type]
    enc.calls.clear()
    reopened.encode(["alpha", "beta", "gamma"])
    assert enc.calls == []  # persisted on disk


def test_another_encoder_never_reads_these_vectors(tmp_path: Path) -> None:
    EmbeddingCache(tmp_path / "e.sqlite", CountingEncoder("one")).encode(["x"])  # type: ignore[arg-type]
    other = CountingEncoder("two")
    EmbeddingCache(tmp_path / "e.sqlite", other).encode(["x"])  # type: ignore[arg-type]
    assert other.calls == [["x"]]


def test_many_texts_cross_the_sqlite_parameter_limit(tmp_path: Path) -> None:
    enc = CountingEncoder()
    cache = EmbeddingCache(tmp_path / "e.sqlite", enc)  # type: ignore[arg-type]
    texts = [f"text {i}" for i in range(2500)]
    cache.encode(texts)
    enc.calls.clear()
    out = cache.encode(texts)
    assert enc.calls == [] and out.shape == (2500, 4)
    np.testing.assert_array_equal(out[1234], [len("text 1234"), 0, 4, 1])
