"""Fine-tuning the whole encoder as the multi-label classifier, on the CPU, with checkpoints.

A head over frozen all-MiniLM-L6-v2 embeddings can only separate what the general sentence space
already separates, and that space groups texts by topic and style: "I will kill this presentation"
sits beside "I will kill you", and a source's register says more than its labels. Training every
transformer layer together with one logit per category lets the encoder learn what makes a text
violate each category.

The objective is the head's (`masked_multilabel_loss`): binary cross-entropy per category over the
labels a source gives (NaN is masked, never read as safe), plus the noisy-OR term for rows known to
violate some category without saying which. Rows are drawn by source with probability proportional
to (source size) ** `source_temperature`: 0.5 lets the large comment sets count more than a 300-row
set without drowning it, and keeps small sets from being repeated dozens of times. Each batch is
cut from a larger random pool sorted by length, so a batch pads to texts of similar length, which
on a CPU is most of the speed.

Two choices keep what the base encoder knew about text unlike the training sets. The head starts
as the linear head fitted on the frozen encoder's embeddings (`head_init: linear_probe`, LP-FT,
Kumar et al. 2022): a random head would send large, arbitrary gradients into every layer in the
first steps and bend the features towards whatever separates the training sources. And the
finished weights can be pulled back towards the start, base + share x (fine-tuned - base)
(`fine_tuned_share`, weight-space ensembling, Wortsman et al. 2022): one model, served at the same
cost, that trades some of what the training sets taught for robustness elsewhere.
`bench/generalisation.py` measures both on left-out datasets.

The embedding layer (the word table is half of MiniLM's weights) stays frozen by default: the
vocabulary's meaning is not what moderation data should teach, freezing it halves what the optimiser
keeps, and the transformer blocks are then all that differs from the base, which is what
`save_top_layers` writes.
The sentence embedding is the base model's (mean pooling, L2 normalisation), so the fine-tuned
encoder exports to ONNX, and its head loads as a linear `MultiLabelHead`, exactly as before.

Every `checkpoint_every` steps the trainable weights, the optimiser, the schedule and the step are
written whole-or-nothing to `checkpoint_dir`; a run started again on the same data and settings
continues from there (the batch plan is drawn from the seed, so the resumed run sees the same
batches it would have seen). A checkpoint of other data or settings is ignored and replaced.
"""

from __future__ import annotations

import copy
import hashlib
import io
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from bastion.atomic import write_atomic
from bastion.errors import ModelError
from bastion.models.finetune import _embed, _encoder_layers, _fresh_model
from bastion.models.heads import MultiLabelHead, masked_multilabel_loss

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

CHECKPOINT_FILE = "finetune-checkpoint.pt"


class ClassifierTuning(BaseModel):
    """How to fine-tune the encoder with the category head; defaults suit MiniLM on 2 CPU cores
    (2,000 steps of 32 texts took 22 minutes for the default model)."""

    model_config = ConfigDict(extra="forbid")

    steps: int = Field(2000, ge=1, description="optimiser steps")
    batch_size: int = Field(32, ge=2)
    lr: float = Field(5e-5, gt=0, description="encoder learning rate (linear decay after warm-up)")
    head_lr: float = Field(3e-3, gt=0, description="learning rate of the category head")
    warmup: float = Field(0.06, ge=0, lt=1, description="share of steps spent warming up")
    weight_decay: float = Field(0.01, ge=0)
    max_length: int = Field(64, ge=8, description="tokens per text while training")
    source_temperature: float = Field(
        0.5, ge=0, le=1, description="rows drawn per source in proportion to size ** this"
    )
    pos_weight_cap: float = Field(
        10.0, ge=1, description="largest up-weighting of a category's positives"
    )
    head_init: Literal["linear_probe", "random"] = Field(
        "linear_probe",
        description="start the head as the linear head fitted on the frozen encoder's embeddings "
        "(linear probe, then fine-tune) or from random weights",
    )
    fine_tuned_share: float = Field(
        1.0,
        gt=0,
        le=1,
        description="the final weights are base + share x (fine-tuned - base), the head's likewise "
        "from where it started (weight-space ensembling, WiSE-FT): below 1 keeps more of what the "
        "base encoder knew, for text unlike the training sets",
    )
    freeze_embeddings: bool = Field(
        True, description="keep the embedding layer (token and position tables) as the base's"
    )
    checkpoint_every: int = Field(100, ge=1)

    eval_every: int = Field(400, ge=1, description="steps between held-out loss measurements")
    eval_rows: int = Field(1024, ge=1)
    seed: int = 0


@dataclass
class TuningHistory:
    """Training loss per step window and held-out loss at each evaluation (a learning curve)."""

    steps: list[int] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)
    val_steps: list[int] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    resumed_from: int = 0


def source_probabilities(
    source: np.ndarray, temperature: float, weights: np.ndarray | None = None
) -> np.ndarray:
    """Per-row sampling probability: each source gets mass size ** temperature (normalised),
    times its `weights` entry where given, shared equally by its rows."""
    source = np.asarray(source)
    counts = np.bincount(source)
    mass = np.where(counts > 0, counts.astype(np.float64) ** temperature, 0.0)
    if weights is not None:
        mass = mass * np.asarray(weights, dtype=np.float64)[: len(mass)]
    p = mass[source] / counts[source]
    return np.asarray(p / p.sum())


def batch_plan(
    lengths: np.ndarray,
    p: np.ndarray,
    steps: int,
    batch_size: int,
    rng: np.random.Generator,
    pool: int = 16,
) -> np.ndarray:
    """(steps, batch_size) row indices: rows drawn with probability `p`, in pools of `pool`
    batches sorted by length and cut into batches, whose order is then shuffled."""
    n_pools = math.ceil(steps / pool)
    batches: list[np.ndarray] = []
    for _ in range(n_pools):
        rows = rng.choice(len(p), size=pool * batch_size, p=p)
        rows = rows[np.argsort(lengths[rows], kind="stable")]
        chunk = rows.reshape(pool, batch_size)
        batches.extend(chunk[rng.permutation(pool)])
    return np.stack(batches[:steps])


def positive_weights(labels: np.ndarray, p: np.ndarray, cap: float) -> np.ndarray:
    """Per category, known negatives / known positives under the sampling distribution, clipped
    to [1 / cap, cap]: a rare category's positives count more, as in the linear head."""
    known = np.isfinite(labels)
    pos = (np.where(known, labels, 0.0) * p[:, None]).sum(axis=0)
    neg = ((known & (labels == 0)) * p[:, None]).sum(axis=0)
    ratio = np.where(pos > 0, neg / np.maximum(pos, 1e-12), 1.0)
    return np.asarray(np.clip(ratio, 1.0 / cap, cap), dtype=np.float32)


def _fingerprint(texts: Sequence[str], arrays: Sequence[np.ndarray], extra: dict[str, Any]) -> str:
    """Digest of everything that decides a run: texts, labels, sources (they decide the batches),
    the 'at least one' rows and the settings."""
    digest = hashlib.sha256(json.dumps(extra, sort_keys=True).encode())
    for t in texts:
        digest.update(t.encode("utf-8", "replace"))
        digest.update(b"\0")
    for a in arrays:
        digest.update(np.nan_to_num(np.asarray(a, np.float64), nan=-1.0).tobytes())
    return digest.hexdigest()[:24]


def fine_tune_classifier(
    texts: Sequence[str],
    labels: np.ndarray,
    source: np.ndarray,
    *,
    config: ClassifierTuning,
    at_least_one: np.ndarray | None = None,
    source_weights: np.ndarray | None = None,
    validation: tuple[Sequence[str], np.ndarray, np.ndarray] | None = None,
    base: str | Path | None = None,
    checkpoint_dir: Path | None = None,
    progress: Callable[[int, int], None] | None = None,
    init_head: MultiLabelHead | None = None,
) -> tuple[SentenceTransformer, MultiLabelHead, TuningHistory]:
    """Fine-tune every layer of the encoder (the word-embedding table frozen by default) with a
    linear head, one logit per category; returns the encoder (eval mode, a private copy), the head
    as a fitted `MultiLabelHead` over its normalised embeddings, and the learning curve.

    `labels` (n, C) in {0, 1, NaN}; `source` (n,) the source index of each row; `at_least_one`
    marks rows that violate some category not named; `source_weights` (one per source index)
    multiplies a source's sampling mass; `validation` is (texts, labels,
    at_least_one) for the held-out curve. `progress(step, total)` after every step.
    `init_head` (a fitted linear head over the base encoder's embeddings) is where the head
    starts; without it the head starts from random weights.
    """
    import torch

    labels = np.asarray(labels, dtype=np.float32)
    n, n_cat = labels.shape if labels.ndim == 2 else (0, 0)
    if labels.ndim != 2 or n != len(texts) or len(source) != n:
        raise ValueError(f"{len(texts)} texts, {len(source)} sources, labels {labels.shape}")
    a1 = np.zeros(n, bool) if at_least_one is None else np.asarray(at_least_one, bool)
    usable = np.isfinite(labels).any(axis=1) | a1
    if not usable.any():
        raise ModelError("cannot fine-tune the encoder: no row has a known label")
    if not (labels == 1).any() and not a1.any():
        raise ModelError("cannot fine-tune the encoder: no row violates any category")
    if not (labels == 0).any():
        raise ModelError(
            "cannot fine-tune the encoder: no row is labelled safe for any category; add safe texts"
        )

    rng = np.random.default_rng(config.seed)
    p = source_probabilities(np.asarray(source), config.source_temperature, source_weights)
    p = p * usable
    p = p / p.sum()
    plan = batch_plan(
        np.array([len(t) for t in texts]), p, config.steps, config.batch_size, rng
    )  # characters stand in for tokens: sorting only needs the order
    pos_weight = torch.from_numpy(positive_weights(labels, p, config.pos_weight_cap))

    torch.manual_seed(config.seed)
    model = _fresh_model(base)
    model.max_seq_length = config.max_length
    _encoder_layers(model)  # refuses encoders it cannot train, before any work
    if config.freeze_embeddings:
        auto: Any = model[0].auto_model
        embeddings: Any = auto.embeddings
        for q in embeddings.parameters():
            q.requires_grad_(False)
    encoder_params = [q for q in model.parameters() if q.requires_grad]
    dim = int(model.get_embedding_dimension() or 0)
    head = MultiLabelHead(hidden=0, dropout=0.1, seed=config.seed)
    head_net = head._build(dim, n_cat)
    assert isinstance(head_net, torch.nn.Sequential)
    if init_head is not None:
        head_net.load_state_dict(
            {k: torch.from_numpy(v) for k, v in init_head.state_dict().items()}
        )
    head_start = copy.deepcopy(head_net)
    optimiser = torch.optim.AdamW(
        [
            {"params": encoder_params, "lr": config.lr},
            {"params": list(head_net.parameters()), "lr": config.head_lr},
        ],
        weight_decay=config.weight_decay,
    )
    warmup = max(1, round(config.steps * config.warmup))
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimiser,
        lambda s: min(
            (s + 1) / warmup, max(0.0, (config.steps - s) / max(1, config.steps - warmup))
        ),
    )
    history = TuningHistory()
    fingerprint = _fingerprint(
        texts,
        [
            labels,
            np.asarray(source),
            a1,
            np.asarray(source_weights if source_weights is not None else []),
            *([] if init_head is None else list(init_head.state_dict().values())),
        ],
        {  # the share only moves the finished weights: changing it reuses a finished run
            **config.model_dump(exclude={"fine_tuned_share"}),
            "base": str(base),
            "n_cat": n_cat,
        },
    )
    start = 0
    checkpoint = None if checkpoint_dir is None else Path(checkpoint_dir) / CHECKPOINT_FILE
    if checkpoint is not None and checkpoint.is_file():
        start = _resume(checkpoint, fingerprint, model, head_net, optimiser, schedule, history)

    y_all = torch.from_numpy(labels)
    a1_all = torch.from_numpy(a1)
    ones = torch.ones(config.batch_size)
    window: list[float] = []
    model.train()
    head_net.train()
    try:
        for step in range(start, config.steps):
            idx = plan[step]
            emb = _embed(model, [texts[int(i)] for i in idx])
            logits = head_net(emb)
            rows = torch.from_numpy(idx)
            loss = masked_multilabel_loss(
                logits, y_all[rows], ones[: len(idx)], a1_all[rows], pos_weight
            )
            optimiser.zero_grad()
            loss.backward()  # type: ignore[no-untyped-call]
            torch.nn.utils.clip_grad_norm_(encoder_params + list(head_net.parameters()), 1.0)
            optimiser.step()
            schedule.step()
            window.append(loss.item())
            done = step + 1
            if done % 50 == 0 or done == config.steps:
                history.steps.append(done)
                history.train_loss.append(float(np.mean(window)))
                window = []
            if validation is not None and (done % config.eval_every == 0 or done == config.steps):
                history.val_steps.append(done)
                history.val_loss.append(
                    _held_out_loss(model, head_net, validation, pos_weight, config)
                )
            if checkpoint is not None and (
                done % config.checkpoint_every == 0 or done == config.steps
            ):
                _save(checkpoint, fingerprint, done, model, head_net, optimiser, schedule, history)
            if progress is not None:
                progress(done, config.steps)
    finally:
        model.eval()
        head_net.eval()
        for q in model.parameters():
            q.requires_grad_(False)
    if config.fine_tuned_share < 1:
        _interpolate(model, _fresh_model(base), config.fine_tuned_share)
        _interpolate(head_net, head_start, config.fine_tuned_share)
    head.model_ = head_net
    head.step_layer_, head.step_sizes_ = None, []
    head.n_categories_ = n_cat
    head.pos_weight_ = pos_weight.numpy()
    return model, head, history


def _interpolate(model: Any, start: Any, share: float) -> None:
    """Move `model`'s floating-point weights to start + share x (model - start), in place."""
    import torch

    begin = start.state_dict()
    with torch.no_grad():
        for name, value in model.state_dict().items():
            if value.is_floating_point():
                value.copy_(begin[name] + share * (value - begin[name]))


def _held_out_loss(
    model: Any,
    head_net: Any,
    validation: tuple[Sequence[str], np.ndarray, np.ndarray],
    pos_weight: Any,
    config: ClassifierTuning,
) -> float:
    import torch

    texts, y, a1 = validation
    k = min(len(texts), config.eval_rows)
    if k == 0:
        return float("nan")
    model.eval()
    head_net.eval()
    total, weight = 0.0, 0
    with torch.no_grad():
        for s in range(0, k, 64):
            emb = _embed(model, list(texts[s : min(k, s + 64)]))
            yy = torch.from_numpy(np.asarray(y[s : s + len(emb)], np.float32))
            aa = torch.from_numpy(np.asarray(a1[s : s + len(emb)], bool))
            loss = masked_multilabel_loss(head_net(emb), yy, torch.ones(len(emb)), aa, pos_weight)
            total += float(loss) * len(emb)
            weight += len(emb)
    model.train()
    head_net.train()
    return total / max(weight, 1)


def _save(
    path: Path,
    fingerprint: str,
    step: int,
    model: Any,
    head_net: Any,
    optimiser: Any,
    schedule: Any,
    history: TuningHistory,
) -> None:
    import torch

    frozen = {
        n for n, q in model.named_parameters() if not q.requires_grad
    }  # the base's: not saved
    state = {
        "fingerprint": fingerprint,
        "step": step,
        "model": {k: v for k, v in model.state_dict().items() if k not in frozen},
        "head": head_net.state_dict(),
        "optimiser": optimiser.state_dict(),
        "schedule": schedule.state_dict(),
        "torch_rng": torch.get_rng_state(),
        "history": history.__dict__,
    }
    buffer = io.BytesIO()
    torch.save(state, buffer)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, [buffer.getvalue()])


def _resume(
    path: Path,
    fingerprint: str,
    model: Any,
    head_net: Any,
    optimiser: Any,
    schedule: Any,
    history: TuningHistory,
) -> int:
    """Load a checkpoint of this very run; returns the step to continue from (0 when the file
    belongs to other data or settings, or cannot be read)."""
    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception:  # a torn or foreign file: start over rather than fail the run
        return 0
    if not isinstance(state, dict) or state.get("fingerprint") != fingerprint:
        return 0
    model.load_state_dict(state["model"], strict=False)
    head_net.load_state_dict(state["head"])
    optimiser.load_state_dict(state["optimiser"])
    schedule.load_state_dict(state["schedule"])
    torch.set_rng_state(state["torch_rng"])
    for k, v in state["history"].items():
        setattr(history, k, v)
    history.resumed_from = int(state["step"])
    return int(state["step"])
