"""Heads, calibration and thresholds fitted on embedded rows: a model artifact, not yet saved."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from bastion.eval.metrics import binary_metrics
from bastion.models.artifact import (
    Manifest,
    ModelArtifact,
    calibration_params,
)
from bastion.models.calibration import (
    CategoryCalibrator,
    raise_for_flag_rate,
    shift_for_binary_fbeta,
    threshold_for_f1,
    threshold_for_fpr,
    threshold_for_precision,
    wholly_safe_groups,
)
from bastion.models.heads import MultiLabelHead
from bastion.models.scoring import any_category, blend_with_zero_shot
from bastion.models.steps import (
    StepColumn,
    answer_accuracy,
)
from bastion.policy import LoadedPolicy
from bastion.training.data import TrainingData, source_weights, training_split
from bastion.training.recipe import Recipe

if TYPE_CHECKING:
    from bastion.models.encoder import Encoder


STEP_METRIC = "val_step_accuracy/"  # + "category:step", in a manifest's metrics


def fit_tuned(
    recipe: Recipe,
    policy: LoadedPolicy,
    data: TrainingData,
    encoder: Encoder,
    head: MultiLabelHead,
    progress: Callable[[int], None] | None = None,
) -> tuple[ModelArtifact, np.ndarray, np.ndarray]:
    """Calibration and thresholds for a head trained with its encoder: only the calibration
    rows are embedded with the new weights. Returns the artifact and the embeddings and
    zero-shot probabilities (filled on the calibration rows only)."""
    _, _, cal = training_split(recipe, policy, data)
    X = np.zeros((len(data.texts), encoder.dim), dtype=np.float32)
    X[cal] = encoder.encode([data.texts[i] for i in cal], progress=progress)
    zero_shot = np.zeros((len(data.texts), len(policy.category_ids)))
    zero_shot[cal] = zero_shot_probs(policy, encoder, X[cal])
    artifact = fit_model(recipe, policy, data, X, zero_shot, encoder.name, encoder.dim, head=head)
    return artifact, X, zero_shot


def zero_shot_probs(policy: LoadedPolicy, encoder: Encoder, X: np.ndarray) -> np.ndarray:
    """The zero-shot detector's probabilities for embedded rows (what the model blends with)."""
    from bastion.detectors.zero_shot import ZeroShotDetector

    probs, _ = ZeroShotDetector(encoder).fit(policy).window_probs(X)
    return probs


def fit_head(
    recipe: Recipe, policy: LoadedPolicy, data: TrainingData, X: np.ndarray
) -> MultiLabelHead:
    """The recipe's head over embedded rows `X`, trained on the training split (sources weighted
    equally, times their `weight`) and stopped early on the early-stopping split."""
    tr, stop, _ = training_split(recipe, policy, data)
    Y = data.labels
    w = source_weights(data.source, np.array([s.weight for s in data.sources]))
    h = recipe.head
    learn_steps = h.step_targets and bool(data.step_columns)
    return MultiLabelHead(
        hidden=h.hidden, epochs=h.epochs, lr=h.lr, weight_decay=h.weight_decay,
        patience=h.patience, dropout=h.dropout, step_weight=h.step_weight, seed=recipe.seed,
    ).fit(
        X[tr], Y[tr], sample_weight=w[tr], at_least_one=data.at_least_one[tr],
        validation=(X[stop], Y[stop], data.at_least_one[stop]),
        steps=data.steps[tr] if learn_steps else None,
        step_sizes=[len(c.answers) for c in data.step_columns] if learn_steps else None,
    )  # fmt: skip


def fit_model(
    recipe: Recipe,
    policy: LoadedPolicy,
    data: TrainingData,
    X: np.ndarray,
    zero_shot: np.ndarray,
    encoder_name: str,
    encoder_dim: int,
    head: MultiLabelHead | None = None,
) -> ModelArtifact:
    """Head, calibration and thresholds from labelled rows, their embeddings and their zero-shot
    probabilities (`zero_shot_probs`); the artifact is not saved. A `head` already trained (with
    the encoder) is used as it is: then only the calibration rows of `X` and `zero_shot` are read."""
    tr, _, cal = training_split(recipe, policy, data)
    Y = data.labels
    learn_steps = recipe.head.step_targets and bool(data.step_columns) and head is None
    head = head or fit_head(recipe, policy, data, X)
    ids = policy.category_ids
    positives = np.nansum(Y[tr], axis=0)
    fallback = [c for c, n in zip(ids, positives, strict=True) if n < recipe.min_positives]
    blend = np.array([1.0 if c in fallback else recipe.zero_shot_weight for c in ids])
    raw_cal = blend_with_zero_shot(head.predict_proba(X[cal]), zero_shot[cal], blend)
    calibrator = CategoryCalibrator(recipe.calibration).fit(raw_cal, Y[cal])
    scores = calibrator.transform(raw_cal)
    thresholds, shifts = _choose_thresholds(recipe, policy, data, cal, calibrator, scores)
    manifest = Manifest(
        name=recipe.name,
        policy_id=policy.policy.id,
        policy_version=policy.version,
        encoder=encoder_name,
        encoder_dim=encoder_dim,
        categories=ids,
        hidden=head.hidden,
        calibration=calibration_params(calibrator),
        thresholds=thresholds,
        threshold_target=recipe.threshold,
        zero_shot_fallback=fallback,
        zero_shot_weight=recipe.zero_shot_weight,
        sources=data.sources,
        metrics={
            **_validation_metrics(Y[cal], data.binary()[cal], scores, ids, thresholds),
            **shifts,
            **(
                _step_metrics(head, X[cal], data.steps[cal], data.step_columns)
                if learn_steps
                else {}
            ),
        },
        recipe=recipe.model_dump(mode="json"),
    )
    return ModelArtifact(manifest, head, calibrator)


def _choose_thresholds(
    recipe: Recipe,
    policy: LoadedPolicy,
    data: TrainingData,
    cal: np.ndarray,
    calibrator: CategoryCalibrator,
    scores: np.ndarray,
) -> tuple[dict[str, float], dict[str, float]]:
    """Thresholds per category from the calibrated scores of the calibration rows, as the
    recipe's `threshold` says; and the logit shifts applied after the per-category choice."""
    ids = policy.category_ids
    Y = data.labels[cal]
    target = recipe.threshold
    pick = {
        "precision": threshold_for_precision,
        "fpr": threshold_for_fpr,
        "f1": threshold_for_f1,
    }[target.kind]
    chosen = [
        pick(Y[:, j], scores[:, j], target.value) if calibrator.fitted_[j] else None
        for j in range(len(ids))
    ]
    default = policy.policy.bands
    th = np.array(
        [
            c if c is not None else policy.policy.category(cid).threshold_or(default)
            for cid, c in zip(ids, chosen, strict=True)
        ],
        dtype=float,
    )
    shifts: dict[str, float] = {}
    binary = data.binary()[cal]
    if target.binary_beta is not None:
        # Only thresholds chosen on calibration move; the policy's defaults stay.
        tuned = np.array([c is not None for c in chosen])
        th, shifts["threshold_binary_shift"] = shift_for_binary_fbeta(
            scores, th, binary, target.binary_beta, adjustable=tuned
        )
    if target.max_safe_flagged is not None:
        groups = wholly_safe_groups(data.source[cal], binary)
        th, shifts["threshold_logit_shift"] = raise_for_flag_rate(
            scores, th, groups, target.max_safe_flagged
        )
    return {c: float(t) for c, t in zip(ids, th, strict=True)}, shifts


def _validation_metrics(
    Y: np.ndarray,
    binary: np.ndarray,
    scores: np.ndarray,
    ids: list[str],
    thresholds: dict[str, float],
) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    m = binary_metrics(binary, any_category(scores), 0.5)
    out["val_binary_auprc"] = m.auprc
    out["val_rows"] = float(len(Y))
    for j, cid in enumerate(ids):
        if np.nansum(Y[:, j]) > 0:
            out[f"val_auprc/{cid}"] = binary_metrics(Y[:, j], scores[:, j], thresholds[cid]).auprc
    return out


def _step_metrics(
    head: MultiLabelHead, X: np.ndarray, steps: np.ndarray, columns: list[StepColumn]
) -> dict[str, float | None]:
    """How often the auxiliary outputs pick the recorded answer on held-out rows (the decision
    steps are not part of the saved model; this says whether they were learned at all)."""
    accuracy = answer_accuracy(head.predict_steps(X), steps)
    return {
        STEP_METRIC + c.name: a for c, a in zip(columns, accuracy, strict=True) if a is not None
    }


def hard_safe_metrics(
    artifact: ModelArtifact, policy: LoadedPolicy, encoder: Encoder, texts: list[str]
) -> dict[str, float | None]:
    """Share of held-out safe texts flagged in any category at the model's thresholds."""
    X = encoder.encode(texts)
    zero_shot = zero_shot_probs(policy, encoder, X) if artifact.zero_shot_share.any() else None
    scores = artifact.predict_proba(X, zero_shot)
    m = artifact.manifest
    thresholds = np.array([m.thresholds[c] for c in m.categories])
    flagged = (scores >= thresholds).any(axis=1)
    return {"hard_safe_flagged": float(flagged.mean()), "hard_safe_rows": float(len(texts))}
