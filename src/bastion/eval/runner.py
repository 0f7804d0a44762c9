"""Running a Moderator over a labelled set and collecting binary and per-category metrics."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from pydantic import BaseModel

from bastion.eval.labels import LabelledSet, LabelMap, category_labels
from bastion.eval.metrics import BinaryMetrics, binary_metrics
from bastion.items import Item
from bastion.models.scoring import any_category
from bastion.moderator import Moderator


class EvalResult(BaseModel):
    """What `bastion eval` writes to metrics.json."""

    dataset: str
    description: str
    licence: str
    use: str
    rows: int
    unscored: int
    policy_version: str
    model_version: str
    label_map: dict[str, list[str]] | None
    binary: BinaryMetrics
    per_category: dict[str, BinaryMetrics]
    seconds: float
    items_per_second: float


@dataclass
class EvalRun:
    """The result plus the arrays the report draws from."""

    result: EvalResult
    scores: np.ndarray  # (n, n_categories) fused probabilities
    binary_score: np.ndarray
    flagged: np.ndarray
    y_binary: np.ndarray
    y_categories: np.ndarray
    category_ids: list[str]


def evaluate(
    moderator: Moderator,
    data: LabelledSet,
    label_map: LabelMap | None = None,
    y_categories: np.ndarray | None = None,
    progress: Callable[[int], None] | None = None,
) -> EvalRun:
    """Score every row and compute metrics; rows that cannot be scored count as `unscored`."""
    policy = moderator.policy
    if label_map is not None:
        label_map.check(policy, source=f"label map for {data.name}")
    ids = policy.category_ids
    if y_categories is None:
        y_categories = category_labels(data, policy, label_map)
    start = time.perf_counter()
    items = [Item(text=t, id=i) for t, i in zip(data.texts, data.ids, strict=True)]
    verdicts = moderator.moderate(items, progress=progress)
    seconds = time.perf_counter() - start
    scores = np.full((len(data), len(ids)), np.nan)
    flagged = np.zeros(len(data), dtype=bool)
    unscored = 0
    for i, v in enumerate(verdicts):
        if v.error:
            unscored += 1
            continue
        scores[i] = [v.category_scores[c] for c in ids]
        flagged[i] = v.flagged
    scored = np.isfinite(scores).any(axis=1)
    binary_score = np.where(scored, any_category(scores), np.nan)
    binary = binary_metrics(
        data.binary, binary_score, float(moderator.thresholds.min()), flagged=flagged
    )
    per_category: dict[str, BinaryMetrics] = {}
    for j, cid in enumerate(ids):
        col = y_categories[:, j]
        if np.nansum(col) == 0:
            continue  # no known positives for this category in this data
        per_category[cid] = binary_metrics(col, scores[:, j], float(moderator.thresholds[j]))
    result = EvalResult(
        dataset=data.name,
        description=data.description,
        licence=data.licence,
        use=data.use,
        rows=len(data),
        unscored=unscored,
        policy_version=policy.version,
        model_version=moderator.model_version,
        label_map={k: list(v) for k, v in label_map.mapping.items()} if label_map else None,
        binary=binary,
        per_category=per_category,
        seconds=round(seconds, 2),
        items_per_second=round(len(data) / seconds, 1) if seconds > 0 else 0.0,
    )
    return EvalRun(result, scores, binary_score, flagged, data.binary, y_categories, ids)
