"""A persistent embedding cache (SQLite), so training and benchmarks encode each text once.

Keyed by the encoder's identity and a hash of the exact text, so a different model or a changed
text can never return a stale vector. Used by training and evaluation over fixed datasets; the
serving path does not need it.
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from bastion.models.encoder import TextEncoder


def text_key(text: str) -> bytes:
    return hashlib.blake2b(text.encode("utf-8", errors="replace"), digest_size=16).digest()


class EmbeddingCache:
    """Embeddings by (encoder id, text hash) in one SQLite file."""

    def __init__(self, path: Path | str, encoder: TextEncoder) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.encoder = encoder
        self.encoder_id = f"{encoder.name}:{encoder.dim}:{encoder.max_length}:{encoder.path}"
        self._db = sqlite3.connect(self.path)
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS embedding ("
            " encoder TEXT NOT NULL, key BLOB NOT NULL, vector BLOB NOT NULL,"
            " PRIMARY KEY (encoder, key))"
        )

    @property
    def name(self) -> str:
        return self.encoder.name

    @property
    def dim(self) -> int:
        return self.encoder.dim

    @property
    def max_length(self) -> int:
        return self.encoder.max_length

    def encode(
        self, texts: Sequence[str], progress: Callable[[int], None] | None = None
    ) -> np.ndarray:
        """Like `TextEncoder.encode`, reading what is cached and encoding only the rest."""
        keys = [text_key(t) for t in texts]
        found = self._lookup(set(keys))
        missing = list(dict.fromkeys(t for t, k in zip(texts, keys, strict=True) if k not in found))
        if progress is not None:
            progress(len(texts) - len(missing))
        if missing:
            vectors = self.encoder.encode(missing, progress=progress)
            rows = [
                (self.encoder_id, text_key(t), v.astype(np.float32).tobytes())
                for t, v in zip(missing, vectors, strict=True)
            ]
            with self._db:
                self._db.executemany("INSERT OR REPLACE INTO embedding VALUES (?, ?, ?)", rows)
            found.update({r[1]: vectors[i] for i, r in enumerate(rows)})
        out = np.zeros((len(texts), self.encoder.dim), dtype=np.float32)
        for i, k in enumerate(keys):
            out[i] = found[k]
        return out

    def _lookup(self, keys: set[bytes]) -> dict[bytes, np.ndarray]:
        found: dict[bytes, np.ndarray] = {}
        key_list = list(keys)
        for start in range(0, len(key_list), 900):  # SQLite's host-parameter limit
            chunk = key_list[start : start + 900]
            marks = ",".join("?" * len(chunk))
            cur = self._db.execute(
                f"SELECT key, vector FROM embedding WHERE encoder = ? AND key IN ({marks})",  # noqa: S608
                [self.encoder_id, *chunk],
            )
            for key, blob in cur:
                found[key] = np.frombuffer(blob, dtype=np.float32)
        return found

    def __len__(self) -> int:
        row = self._db.execute(
            "SELECT COUNT(*) FROM embedding WHERE encoder = ?", [self.encoder_id]
        ).fetchone()
        return int(row[0])

    def close(self) -> None:
        self._db.close()
