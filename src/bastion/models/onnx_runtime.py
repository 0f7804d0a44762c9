"""Serving-time inference without PyTorch: the int8 ONNX encoder, ONNX heads, and an embedding LRU.

`OnnxTextEncoder` has `TextEncoder`'s interface (name, dim, max_length, `encode`), so detectors
take either. It tokenises with the Rust `tokenizers` library, sorts a batch by *token* count (not
characters) so each ONNX call pads to similar lengths, and runs the graph `onnx_export` wrote:
transformer, mean pooling and L2 normalisation in one call, weights in int8.

`LruEmbeddings` wraps any encoder with an in-memory LRU keyed by a hash of the exact text: a
platform sees the same spam, copypasta and reposts again and again, and the encoder is almost all
of the cost of a text verdict.
"""

from __future__ import annotations

import json
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bastion.cpus import model_threads
from bastion.errors import ModelError
from bastion.models.embedding_cache import text_key
from bastion.models.encoder import Encoder
from bastion.models.parts import file_sha256
from bastion.paths import cache_root

ENCODER_FILE = "model.int8.onnx"
TOKENIZER_FILE = "tokenizer.json"
EXPORT_FILE = "export.json"
RUNTIME = "onnx-int8"


@dataclass(frozen=True)
class EncoderExport:
    """What `export.json` says about an exported encoder (see `onnx_export.export_encoder`)."""

    encoder: str
    dim: int
    max_length: int
    sha256: str
    quantization: str
    check: dict[str, float]
    fused: dict[str, int]  # fused node counts by type; empty for an unfused graph

    @classmethod
    def read(cls, directory: Path) -> EncoderExport:
        path = directory / EXPORT_FILE
        try:
            raw = json.loads(path.read_text("utf-8"))
            return cls(
                encoder=str(raw["encoder"]),
                dim=int(raw["dim"]),
                max_length=int(raw["max_length"]),
                sha256=str(raw["sha256"]),
                quantization=str(raw["quantization"]),
                check={k: float(v) for k, v in raw.get("check", {}).items()},
                fused={k: int(v) for k, v in raw.get("fused", {}).items()},
            )
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ModelError(f"{path}: not a readable encoder export ({exc})") from None


def encoder_file(directory: Path, sha256: str) -> Path:
    """The int8 graph of an exported encoder: `model.int8.onnx` in the directory, or its xz
    archive unpacked once into the cache (the package ships the archive: 18 MB, not 23) and
    checked against the sha256 in export.json before it is used."""
    plain = directory / ENCODER_FILE
    if plain.is_file():
        return plain
    packed = directory / (ENCODER_FILE + ".xz")
    if not packed.is_file():
        raise ModelError(f"{directory}: not an exported encoder ({ENCODER_FILE} is missing)")
    target = cache_root() / "encoders" / sha256[:16] / ENCODER_FILE
    if target.is_file():
        return target  # only ever renamed into place after its hash matched
    import lzma
    import shutil
    import tempfile

    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=target.parent, delete=False) as out:
        staging = Path(out.name)
        with lzma.open(packed) as source:
            shutil.copyfileobj(source, out, 1 << 20)
    if file_sha256(staging) != sha256:
        staging.unlink()
        raise ModelError(f"{packed} does not unpack to the graph export.json names (sha256)")
    staging.replace(target)
    return target


#: "0" stops ONNX Runtime's worker threads spinning between ops; `bastion serve` sets it.
SPINNING_ENV = "BASTION_ORT_SPINNING"


def session_options(threads: int | None = None) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or model_threads()
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    # ONNX Runtime's worker threads spin for a while after each op, waiting for the next one.
    # For a batch job that is right: on 2 cores 4,000 posts went 477 → 550/s with it. For the
    # service it is wrong: between small model calls the spinning takes the CPU its own threads
    # (HTTP, batching, logging) need; with it off the service used 11-16 ms of CPU per request
    # at 40 requests/s instead of 26, and its median latency fell from 56 ms to 16-25 ms. So
    # `bastion serve` sets $BASTION_ORT_SPINNING=0 and everything else spins.
    if os.environ.get(SPINNING_ENV, "1") == "0":
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


#: A model call's default size: padded tokens, and texts (`token_batches`).
MAX_TOKENS, MAX_ITEMS = 2048, 64


def token_batches(lengths: np.ndarray, max_tokens: int, max_items: int) -> list[np.ndarray]:
    """Indices into `lengths` (token counts) in groups for one model call each, longest first.

    A group pads to its longest text, so it holds as many texts as fit in `max_tokens` padded
    tokens (at least one, at most `max_items`): a few of the rare long texts per call, many of
    the short ones. Fixed-size groups pad the long tail's neighbours to its length instead."""
    order = np.argsort(-np.asarray(lengths), kind="stable")
    groups = []
    start = 0
    while start < len(order):
        width = max(1, int(lengths[order[start]]))
        count = max(1, min(max_items, max_tokens // width))
        groups.append(order[start : start + count])
        start += count
    return groups


def encoder_tokenizer(path: Path, max_length: int) -> Any:
    """An exported encoder's tokenizer (`tokenizers.Tokenizer`), cutting at `max_length` and
    leaving the padding to `padded_batches`."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(path))
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_length)
    return tokenizer


def padded_batches(
    tokenizer: Any, texts: Sequence[str], max_tokens: int, max_items: int
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """`texts` tokenised and grouped for one model call each (`token_batches`): per group, the
    texts' indices, their token ids padded with 0 to the group's longest, and the mask of real
    tokens."""
    encodings = tokenizer.encode_batch(list(texts), add_special_tokens=True)
    lengths = np.array([len(e.ids) for e in encodings])
    for idx in token_batches(lengths, max_tokens, max_items):
        width = int(lengths[idx].max())
        ids = np.zeros((len(idx), width), dtype=np.int64)
        mask = np.zeros((len(idx), width), dtype=np.int64)
        for row, i in enumerate(idx):
            ids[row, : lengths[i]] = encodings[i].ids
            mask[row, : lengths[i]] = 1
        yield idx, ids, mask


class OnnxTextEncoder:
    """Unit-length sentence embeddings from an exported encoder directory (see `onnx_export`).

    Each model call holds up to `max_tokens` padded tokens and `batch_size` texts of similar
    length (`token_batches`). On 2 cores, Davidson posts in the Moderator's groups of 1,024
    went 461 → 496 a second against fixed groups of 32 texts, and long texts' sentence windows
    242 → 274 (2026-12-06, one-off sweep; `bench/throughput.py` has the record)."""

    runtime = RUNTIME

    def __init__(
        self,
        directory: Path | str,
        *,
        batch_size: int = MAX_ITEMS,
        max_tokens: int = MAX_TOKENS,
        threads: int | None = None,
    ) -> None:
        import onnxruntime as ort

        self.path = Path(directory)
        for needed in (TOKENIZER_FILE, EXPORT_FILE):
            if not (self.path / needed).is_file():
                raise ModelError(f"{self.path}: not an exported encoder ({needed} is missing)")
        self.export = EncoderExport.read(self.path)
        self.model_file = encoder_file(self.path, self.export.sha256)
        self.name = self.export.encoder
        self.dim = self.export.dim
        self.max_length = self.export.max_length
        self.batch_size = batch_size
        self.max_tokens = max_tokens
        self._tokenizer = encoder_tokenizer(self.path / TOKENIZER_FILE, self.max_length)
        self._session = ort.InferenceSession(
            str(self.model_file),
            session_options(threads),
            providers=["CPUExecutionProvider"],
        )
        self._inputs = {i.name for i in self._session.get_inputs()}

    def encode(
        self, texts: Sequence[str], progress: Callable[[int], None] | None = None
    ) -> np.ndarray:
        """Embed `texts`: float32 (len(texts), dim), rows in input order."""
        n = len(texts)
        out = np.zeros((n, self.dim), dtype=np.float32)
        if n == 0:
            return out
        batches = padded_batches(self._tokenizer, texts, self.max_tokens, self.batch_size)
        for idx, ids, mask in batches:
            feeds = {"input_ids": ids, "attention_mask": mask}
            if "token_type_ids" in self._inputs:
                feeds["token_type_ids"] = np.zeros_like(ids)
            out[idx] = self._session.run(None, feeds)[0]
            if progress is not None:
                progress(len(idx))
        return out


class OnnxHead:
    """A trained head's logits from its ONNX export (`head.onnx`), sigmoid applied here."""

    def __init__(self, path: Path | str) -> None:
        import onnxruntime as ort

        self.path = Path(path)
        self._session = ort.InferenceSession(
            str(self.path), session_options(1), providers=["CPUExecutionProvider"]
        )
        self._input = self._session.get_inputs()[0].name

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        logits = self._session.run(None, {self._input: np.asarray(X, dtype=np.float32)})[0]
        return np.asarray(logits, dtype=np.float64)

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        return np.asarray(1.0 / (1.0 + np.exp(-self.decision_function(X))))


class LruEmbeddings:
    """An encoder with an in-memory LRU of embeddings keyed by the text's hash; thread-safe.

    The vectors live in one array allocated (and touched) up front, so the cache's memory is
    fixed from the start rather than growing until it is full: a long-running service's memory
    should be flat.
    """

    def __init__(self, encoder: Encoder, capacity: int = 20_000) -> None:
        if capacity < 1:
            raise ValueError("an embedding cache needs room for at least one text")
        self.encoder = encoder
        self.name = encoder.name
        self.dim = encoder.dim
        self.max_length = encoder.max_length
        self.capacity = capacity
        self.hits = 0
        self.misses = 0
        self._vectors = np.zeros((capacity, encoder.dim), dtype=np.float32)
        self._vectors.fill(0.0)  # commit the pages now
        self._slots: OrderedDict[bytes, int] = OrderedDict()
        self._lock = threading.Lock()

    @property
    def runtime(self) -> str:
        return str(getattr(self.encoder, "runtime", "torch"))

    def encode(
        self, texts: Sequence[str], progress: Callable[[int], None] | None = None
    ) -> np.ndarray:
        keys = [text_key(t) for t in texts]
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        missing: dict[bytes, list[int]] = {}
        with self._lock:
            for i, key in enumerate(keys):
                slot = self._slots.get(key)
                if slot is None:
                    missing.setdefault(key, []).append(i)
                else:
                    self._slots.move_to_end(key)
                    out[i] = self._vectors[slot]
        n_missing = sum(len(rows) for rows in missing.values())
        if progress is not None:
            progress(len(texts) - n_missing)
        if missing:
            firsts = [rows[0] for rows in missing.values()]
            vectors = self.encoder.encode([texts[i] for i in firsts], progress=progress)
            if progress is not None and n_missing > len(firsts):
                progress(n_missing - len(firsts))  # repeats within this batch
            with self._lock:
                for (key, rows), vector in zip(missing.items(), vectors, strict=True):
                    out[rows] = vector
                    self._store(key, vector)
        with self._lock:  # a repeat within the batch is a hit: it was encoded once
            self.hits += len(texts) - len(missing)
            self.misses += len(missing)
        return out

    def _store(self, key: bytes, vector: np.ndarray) -> None:
        slot = self._slots.get(key)  # another thread may have stored it meanwhile
        if slot is None:
            if len(self._slots) < self.capacity:
                slot = len(self._slots)
            else:
                _, slot = self._slots.popitem(last=False)
            self._slots[key] = slot
        self._slots.move_to_end(key)
        self._vectors[slot] = vector

    def __len__(self) -> int:
        return len(self._slots)
