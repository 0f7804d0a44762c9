"""Encoder fine-tuning: contrastive pairs from moderation labels, top transformer layers only, on CPU.

A head on frozen all-MiniLM-L6-v2 embeddings can only separate what the encoder already separates;
"how do I kill this process" and "how do I kill my neighbour" sit close together in a general
sentence space. Fine-tuning the encoder SetFit-style pulls texts that share a violating category
together and pushes violating texts away from texts known to be safe for that category.

Only the top few transformer layers learn. That keeps a CPU epoch to minutes, keeps the general
knowledge of the lower layers intact when the moderation data is small, and means the saved
delta is the top layers alone (a few MB in float16) on top of the packaged base model.

Labels follow the rest of Bastion: (n, n_categories) in {0, 1, NaN}, where NaN means the source did
not say. A NaN is never evidence: a row that is NaN for a category is never used to push a
violation of that category away.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from bastion.errors import ModelError
from bastion.models.encoder import (
    DEFAULT_ENCODER,
    _load_sentence_transformer,
    default_encoder_path,
    resolve_encoder_path,
)

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

TOP_LAYERS_FILE = "encoder_top.safetensors"
TOP_LAYERS_META = "encoder_top.json"
DELTA_Q, DELTA_SCALE = ".delta_int8", ".delta_scale"  # a weight stored as an int8 difference
_FORMAT = 1
# Attribute paths (from the Hugging Face model) of the list of transformer blocks, by family.
_LAYER_PATHS = ("encoder.layer", "transformer.layer", "layers")


class FineTuneConfig(BaseModel):
    """How to fine-tune the encoder; the defaults suit all-MiniLM-L6-v2 on a laptop CPU."""

    model_config = ConfigDict(extra="forbid")

    layers: int = Field(2, ge=1, description="top transformer layers trained; the rest is frozen")
    pairs: int = Field(4000, ge=2, description="contrastive pairs per epoch (freshly drawn)")
    epochs: int = Field(1, ge=1)
    batch_size: int = Field(16, ge=1, description="pairs per optimiser step")
    lr: float = Field(2e-5, gt=0)
    max_length: int = Field(128, ge=8, description="tokens per text while training")
    seed: int = 0


# ---------------------------------------------------------------------------------------------
# Pairs


def make_pairs(
    labels: np.ndarray,
    n_pairs: int,
    rng: np.random.Generator,
    sample_weight: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Draw contrastive pairs of row indices (a, b) with targets 1 (together) or 0 (apart).

    Positive: a and b are both labelled 1 in one category c (chosen uniformly among the anchor's
    categories that have a second positive).

    Negative: a is labelled 1 in some category, and the pair is *known* not to share a violation:
    every category a violates is labelled 0 for b, and every category b violates is labelled 0
    for a. That covers violating-vs-safe (b has no positives and is 0 where a is 1) and
    violation-vs-other-violation (each known 0 in the other's category). A NaN on either side
    disqualifies the pair, so a source that never labels category c cannot push c's violations
    away from its own rows, which may well be violations of c.

    Half the pairs are positive and half negative; when one kind cannot be drawn often enough
    the other fills the rest, so `n_pairs` pairs always come back. Anchors and partners are drawn
    in proportion to `sample_weight` (rows with weight 0 never appear), so giving each source the
    same total weight makes each source count equally rather than the largest one dominating.

    Raises ModelError when either kind of pair is impossible: training on positives alone would
    collapse every violation onto one point, and negatives alone carry no category structure.
    """
    labels = np.asarray(labels, dtype=np.float64)
    if labels.ndim != 2:
        raise ValueError(f"labels must be (n, n_categories), got shape {labels.shape}")
    n = labels.shape[0]
    w = _weights(sample_weight, n)
    pos = (labels == 1.0) & (w > 0)[:, None]
    zero = (labels == 0.0) & (w > 0)[:, None]

    cat_ok = pos.sum(axis=0) >= 2
    if not cat_ok.any():
        raise ModelError(
            "cannot fine-tune the encoder: no category has two rows labelled 1 (with weight > 0), "
            "so there is no positive pair; label more violations per category"
        )
    if not zero.any():
        raise ModelError(
            "cannot fine-tune the encoder: no row is labelled 0 for any category, so there is no "
            "negative pair; add safe texts (labelled 0) to the training data"
        )

    n_pos_wanted = n_pairs // 2
    pa, pb = _positive_pairs(pos, cat_ok, w, n_pos_wanted, rng)
    na, nb = _negative_pairs(pos, zero, w, n_pairs - len(pa), rng)
    if len(na) == 0:
        raise ModelError(
            "cannot fine-tune the encoder: no pair of rows is known not to share a violation "
            "(every row labelled 0 for a category is unlabelled or violating where the other "
            "row violates); add safe texts labelled 0 for every category"
        )
    if len(pa) + len(na) < n_pairs:  # negatives were scarce: top up with positives
        ea, eb = _positive_pairs(pos, cat_ok, w, n_pairs - len(pa) - len(na), rng)
        pa, pb = np.concatenate([pa, ea]), np.concatenate([pb, eb])

    a = np.concatenate([pa, na]).astype(np.int64)
    b = np.concatenate([pb, nb]).astype(np.int64)
    target = np.concatenate([np.ones(len(pa)), np.zeros(len(na))]).astype(np.float32)
    order = rng.permutation(len(a))
    return a[order], b[order], target[order]


def _weights(sample_weight: np.ndarray | None, n: int) -> np.ndarray:
    if sample_weight is None:
        return np.ones(n, dtype=np.float64)
    w = np.asarray(sample_weight, dtype=np.float64)
    if w.shape != (n,):
        raise ValueError(f"sample_weight has shape {w.shape}, labels have {n} rows")
    if not np.all(np.isfinite(w)) or (w < 0).any():
        raise ValueError("sample_weight must be finite and non-negative")
    return w


def _draw(pool: np.ndarray, w: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    p = w[pool]
    return rng.choice(pool, size=size, p=p / p.sum())


def _pick_category(mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One True column per row of `mask`, uniformly among that row's True columns."""
    scores = np.where(mask, rng.random(mask.shape), -1.0)
    return np.asarray(scores.argmax(axis=1))


def _positive_pairs(
    pos: np.ndarray, cat_ok: np.ndarray, w: np.ndarray, k: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    if k <= 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    usable = pos & cat_ok[None, :]
    anchors = _draw(np.flatnonzero(usable.any(axis=1)), w, k, rng)
    cats = _pick_category(usable[anchors], rng)
    partners = np.empty(k, dtype=np.int64)
    for c in np.unique(cats):
        sel = np.flatnonzero(cats == c)
        members = np.flatnonzero(pos[:, c])
        partners[sel] = _draw(members, w, len(sel), rng)
        # The partner is another positive of c (at least two exist): redraw self-pairs, and
        # after a few rounds (a dominant weight) draw explicitly among the others.
        for attempt in range(8):
            same = sel[partners[sel] == anchors[sel]]
            if len(same) == 0:
                break
            if attempt < 7:
                partners[same] = _draw(members, w, len(same), rng)
            else:
                for i in same:
                    partners[i] = _draw(members[members != anchors[i]], w, 1, rng)[0]
    return anchors.astype(np.int64), partners


def _negative_pairs(
    pos: np.ndarray, zero: np.ndarray, w: np.ndarray, k: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Rejection sampling: anchor a violation, draw a partner known 0 in one of its categories,
    keep the pair if it is known not to share any violation. Vectorised in rounds."""
    empty = np.zeros(0, dtype=np.int64)
    labelled_zero = np.asarray(zero.any(axis=0))  # categories with some row labelled 0
    # Anchors: violating rows with a category for which some row is labelled 0.
    anchor_pool = np.flatnonzero((pos & labelled_zero[None, :]).any(axis=1))
    if k <= 0 or len(anchor_pool) == 0:
        return empty, empty
    zero_pools = [np.flatnonzero(zero[:, c]) for c in range(zero.shape[1])]
    got_a: list[np.ndarray] = []
    got_b: list[np.ndarray] = []
    have = 0
    for _ in range(30):
        m = max(64, 2 * (k - have))
        anchors = _draw(anchor_pool, w, m, rng)
        # Only categories that have some row labelled 0 can supply a partner.
        cats = _pick_category(pos[anchors] & labelled_zero[None, :], rng)
        partners = np.empty(m, dtype=np.int64)
        for c in np.unique(cats):
            sel = cats == c
            partners[sel] = _draw(zero_pools[c], w, int(sel.sum()), rng)
        pa, za = pos[anchors], zero[anchors]
        pb, zb = pos[partners], zero[partners]
        ok = ~(pa & ~zb).any(axis=1) & ~(pb & ~za).any(axis=1)
        got_a.append(anchors[ok])
        got_b.append(partners[ok])
        have += int(ok.sum())
        if have >= k:
            break
    a = np.concatenate(got_a)[:k].astype(np.int64)
    b = np.concatenate(got_b)[:k].astype(np.int64)
    return a, b


# ---------------------------------------------------------------------------------------------
# Training


def fine_tune(
    texts: Sequence[str],
    labels: np.ndarray,
    *,
    config: FineTuneConfig,
    sample_weight: np.ndarray | None = None,
    base: str | Path | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> SentenceTransformer:
    """Fine-tune the top `config.layers` layers of the encoder on pairs drawn from `labels`.

    Returns a new SentenceTransformer (a copy; the memoised model that `TextEncoder` shares is
    never touched), in eval mode with `max_seq_length = config.max_length`.
    `progress(done_steps, total_steps)` is called after each optimiser step.

    The objective is SetFit's CosineSimilarityLoss: mean squared error between the cosine of the
    two embeddings and the target (1 together, 0 apart). It needs no margin to tune, every pair
    contributes a bounded gradient, and it does not depend on mining hard pairs inside a batch,
    which with 16 pairs of mixed kinds would mostly mine noise. A target of 0 asks for orthogonal
    embeddings, not opposite ones, so safe texts are not forced into one "anti-violation" point.
    """
    import torch

    labels = np.asarray(labels, dtype=np.float64)
    if labels.ndim != 2 or labels.shape[0] != len(texts):
        raise ValueError(f"{len(texts)} texts but labels have shape {labels.shape}")
    rng = np.random.default_rng(config.seed)
    # Draw every epoch's pairs first so a data problem surfaces before the model is copied.
    epochs = [make_pairs(labels, config.pairs, rng, sample_weight) for _ in range(config.epochs)]

    torch.manual_seed(config.seed)
    model = _fresh_model(base)
    model.max_seq_length = config.max_length
    layers = _encoder_layers(model)
    if config.layers > len(layers):
        raise ModelError(
            f"cannot train the top {config.layers} layers: the encoder has only {len(layers)}"
        )
    for p in model.parameters():
        p.requires_grad_(False)
    trained = [p for layer in layers[-config.layers :] for p in layer.parameters()]
    for p in trained:
        p.requires_grad_(True)

    steps_per_epoch = math.ceil(config.pairs / config.batch_size)
    total = steps_per_epoch * config.epochs
    optimiser = torch.optim.AdamW(trained, lr=config.lr, weight_decay=0.01)
    warmup = max(1, total // 10)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimiser,
        lambda s: min((s + 1) / warmup, max(0.0, (total - s) / max(1, total - warmup))),
    )

    model.train()
    done = 0
    try:
        for a, b, target in epochs:
            for start in range(0, len(a), config.batch_size):
                ia = a[start : start + config.batch_size]
                ib = b[start : start + config.batch_size]
                # Embed each distinct text of the batch once.
                rows, inverse = np.unique(np.concatenate([ia, ib]), return_inverse=True)
                emb = _embed(model, [texts[int(i)] for i in rows])
                inv = torch.as_tensor(inverse, dtype=torch.long)
                cos = (emb[inv[: len(ia)]] * emb[inv[len(ia) :]]).sum(dim=1)
                y = torch.as_tensor(target[start : start + config.batch_size])
                loss = torch.nn.functional.mse_loss(cos, y)
                optimiser.zero_grad()
                loss.backward()  # type: ignore[no-untyped-call]
                torch.nn.utils.clip_grad_norm_(trained, 1.0)
                optimiser.step()
                schedule.step()
                done += 1
                if progress is not None:
                    progress(done, total)
    finally:
        model.eval()
        for p in trained:
            p.requires_grad_(False)
    return model


def _embed(model: Any, texts: list[str]) -> Any:
    """Unit-length sentence embeddings with gradients (model.encode runs without them)."""
    import torch

    prepare = getattr(model, "preprocess", None) or model.tokenize  # tokenize: ST < 6
    features = prepare(texts)
    out = model(features)["sentence_embedding"]
    return torch.nn.functional.normalize(out, dim=1)


def _fresh_model(base: str | Path | None) -> SentenceTransformer:
    """A private copy of the base encoder.

    Copying the memoised model is ~10x faster than loading from disk again, and the copy shares
    no tensors with it, so training or loading weights into it cannot change what `TextEncoder`
    embeds elsewhere in the process.
    """
    path = resolve_encoder_path(base)
    model: SentenceTransformer = copy.deepcopy(_load_sentence_transformer(str(path), "cpu"))
    return model


def _encoder_layers(model: Any) -> Any:
    """The ModuleList of transformer blocks (BERT/MPNet: encoder.layer, DistilBERT: transformer.layer)."""
    auto = model[0].auto_model
    for dotted in _LAYER_PATHS:
        obj = auto
        for part in dotted.split("."):
            obj = getattr(obj, part, None)
            if obj is None:
                break
        if obj is not None:
            return obj
    raise ModelError(
        f"cannot find the transformer layers of {type(auto).__name__} "
        f"(looked for {', '.join(_LAYER_PATHS)}); fine-tuning supports BERT-like encoders"
    )


# ---------------------------------------------------------------------------------------------
# Saving and loading the trained layers


def _base_name(model: Any) -> str:
    """How the metadata names the base: the packaged default by name, anything else by path."""
    source = str(getattr(model[0].auto_model.config, "name_or_path", "") or "")
    try:
        if source and Path(source).resolve() == default_encoder_path().resolve():
            return DEFAULT_ENCODER
    except ModelError:  # pragma: no cover - the default package is a hard dependency
        pass
    return source or DEFAULT_ENCODER


def _fingerprint(model: Any) -> str:
    """Digest of the frozen token embeddings: tells "same architecture, different base" apart,
    which would otherwise load without error and embed nonsense."""
    weight = model[0].auto_model.get_input_embeddings().weight
    data = weight.detach().to("cpu").contiguous().float().numpy().tobytes()
    return hashlib.sha256(data).hexdigest()[:16]


def save_top_layers(
    model: SentenceTransformer, directory: Path, layers: int, *, delta: bool = False
) -> Path:
    """Save the top `layers` transformer layers plus a small JSON.

    Only these parameters differ from the base after fine-tuning, so this file and the packaged
    base model are the whole fine-tuned encoder. By default the layers are stored in float16:
    two MiniLM layers (3.5 M parameters) are 7.1 MB instead of 14 MB in float32 or 90 MB for a
    full copy, and float16 moves sentence embeddings by a cosine of about 1e-6.

    With `delta` (for a model whose every layer was trained) each weight matrix is stored as its
    difference from the base, quantised to int8 per output row, and vectors in float32. The
    differences are small next to the weights, so int8 steps of a difference are finer than
    float16 steps of the weight itself (the reconstruction is closer to the trained weights than a
    float16 copy), at half the size: six MiniLM layers are 10.7 MB instead of 21 MB, which keeps
    a shipped model with its int8 ONNX export under 30 MB.
    Returns the path of the safetensors file.
    """
    import torch
    from safetensors.torch import save_file

    blocks = _encoder_layers(model)
    if not 1 <= layers <= len(blocks):
        raise ModelError(f"cannot save the top {layers} layers of an encoder with {len(blocks)}")
    first = len(blocks) - layers
    trained = {
        f"layer.{first + i}.{name}": p.detach().to("cpu").float()
        for i, block in enumerate(blocks[first:])
        for name, p in block.named_parameters()
    }
    tensors: dict[str, torch.Tensor] = {}
    if delta:
        base = _base_layer_tensors(model, first)
        for key, p in trained.items():
            if p.ndim != 2:
                tensors[key] = p.contiguous()
                continue
            diff = p - base[key]
            scale = (diff.abs().amax(dim=1, keepdim=True) / 127.0).clamp_min(1e-12)
            tensors[key + DELTA_Q] = torch.round(diff / scale).to(torch.int8).contiguous()
            tensors[key + DELTA_SCALE] = scale.contiguous()
    else:
        tensors = {k: p.half().contiguous() for k, p in trained.items()}
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / TOP_LAYERS_FILE
    save_file(tensors, str(target))
    meta = {
        "format": _FORMAT,
        "base_encoder": _base_name(model),
        "base_fingerprint": _fingerprint(model),
        "layers": layers,
        "total_layers": len(blocks),
        "dtype": "int8-delta" if delta else "float16",
    }
    (directory / TOP_LAYERS_META).write_text(json.dumps(meta, indent=2) + "\n", "utf-8")
    return target


def _undelta(tensors: dict[str, Any], base: dict[str, Any], path: Path) -> dict[str, Any]:
    """Weights from int8 differences to the base (see `save_top_layers`); vectors as stored."""
    out: dict[str, Any] = {}
    for key, t in tensors.items():
        if key.endswith(DELTA_SCALE):
            continue
        if key.endswith(DELTA_Q):
            name = key.removesuffix(DELTA_Q)
            scale = tensors.get(name + DELTA_SCALE)
            if scale is None or name not in base or tuple(base[name].shape) != tuple(t.shape):
                raise ModelError(f"{path}: the stored difference {name} does not fit the base")
            out[name] = base[name] + t.float() * scale.float()
        else:
            out[key] = t
    return out


def _base_layer_tensors(model: Any, first: int) -> dict[str, Any]:
    """The base encoder's parameters of layers `first`.. (the memoised, untouched copy)."""
    base = _load_sentence_transformer(str(resolve_encoder_path(_base_name(model))), "cpu")
    blocks = _encoder_layers(base)
    return {
        f"layer.{first + i}.{name}": p.detach().to("cpu").float()
        for i, block in enumerate(blocks[first:])
        for name, p in block.named_parameters()
    }


def load_fine_tuned(directory: Path, base: str | Path | None = None) -> SentenceTransformer:
    """A fresh copy of the base encoder with the saved top layers put in.

    `base` defaults to the encoder named in the saved metadata. Every mismatch is refused with a
    ModelError rather than loaded half-way: a missing or unreadable file, a layer count or
    architecture that differs from the base, a tensor missing, extra or of the wrong shape.
    """
    import torch
    from safetensors.torch import load_file

    directory = Path(directory)
    weights, meta_path = directory / TOP_LAYERS_FILE, directory / TOP_LAYERS_META
    if not weights.is_file():
        raise ModelError(f"{directory}: fine-tuned encoder layers {TOP_LAYERS_FILE} are missing")
    if not meta_path.is_file():
        raise ModelError(f"{directory}: fine-tuned encoder metadata {TOP_LAYERS_META} is missing")
    try:
        meta = json.loads(meta_path.read_text("utf-8"))
        layers = int(meta["layers"])
        total = int(meta["total_layers"])
        base_name = str(meta["base_encoder"])
        fingerprint = str(meta.get("base_fingerprint", ""))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ModelError(f"{meta_path}: not valid fine-tuning metadata: {exc}") from None
    try:
        tensors = load_file(str(weights))
    except Exception as exc:  # safetensors raises its own error types for a corrupt header
        raise ModelError(f"{weights}: cannot read the fine-tuned layers: {exc}") from None

    model = _fresh_model(base if base is not None else base_name)
    blocks = _encoder_layers(model)
    if total != len(blocks) or not 1 <= layers <= len(blocks):
        raise ModelError(
            f"{directory}: the saved top {layers} layers are for an encoder with {total} layers, "
            f"but the base encoder has {len(blocks)}; load them onto the encoder they were "
            f"trained from ({base_name})"
        )
    if fingerprint and fingerprint != _fingerprint(model):
        raise ModelError(
            f"{directory}: the saved layers were trained from a different base encoder "
            f"({base_name}); its token embeddings do not match the one given"
        )
    first = len(blocks) - layers
    expected = {
        f"layer.{first + i}.{name}": p
        for i, block in enumerate(blocks[first:])
        for name, p in block.named_parameters()
    }
    if meta.get("dtype") == "int8-delta":
        tensors = _undelta(tensors, _base_layer_tensors(model, first), weights)
    missing = sorted(set(expected) - set(tensors))
    extra = sorted(set(tensors) - set(expected))
    if missing or extra:
        raise ModelError(
            f"{weights}: tensors do not match the top {layers} layers of the base encoder "
            f"(missing: {', '.join(missing[:3]) or 'none'}; "
            f"unexpected: {', '.join(extra[:3]) or 'none'})"
        )
    wrong = [
        f"{k} {tuple(tensors[k].shape)} != {tuple(p.shape)}"
        for k, p in expected.items()
        if tuple(tensors[k].shape) != tuple(p.shape)
    ]
    if wrong:
        raise ModelError(f"{weights}: tensors have the wrong shape: {'; '.join(wrong[:3])}")
    with torch.no_grad():
        for k, p in expected.items():
            p.copy_(tensors[k].to(dtype=p.dtype))
    model.eval()
    return model
