"""Risk ranking: order recalled candidates so that a limited review budget covers the most harm.

Two rankers, one interface (`score(candidates)`, higher first):

* `ExpectedHarm`, the cold start: before reviewers have decided anything, order by
  P(violation) × severity × reach, the harm left standing if nobody acts. Probability alone puts
  a certain-but-harmless spam post seen by three people above a likely threat seen by a million;
  reach alone puts every viral post first.
* `LearnedRanker`, once decisions exist: LightGBM `lambdarank` over the candidates' features
  (`FEATURES`), trained on the review queue's decisions. It learns what the formula cannot:
  which channels are reliable on this platform, that reports from a fresh account mean less,
  that an author's history matters. Its target is graded by harm too (`relevance`), so it is
  pushed toward the same goal the formula approximates.

Features are computed once, when a candidate is queued, and stored with it (`QueueItem.features`),
so training sees exactly what ranking saw.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from bastion.errors import BastionError, InputError
from bastion.triage.queue import QueueItem, ReviewLabel, TrainingExample

if TYPE_CHECKING:
    from bastion.policy import Category, LoadedPolicy, Policy

#: Recall channels, in the order their features appear.
CHANNELS = ("hash", "text", "embedding", "classifier", "source")

#: Feature names, in column order. NaN where a feature does not apply (no match on a channel,
#: no reach known); LightGBM learns its own direction for missing values.
FEATURES = (
    "p_violation",  # the largest calibrated category probability
    "p_severity",  # the largest probability × severity / 4 over categories
    "severity",  # severity of the most probable category
    *(f"hit_{c}" for c in CHANNELS),
    "channels",  # how many channels found it
    "hash_distance",  # PDQ bits / 256 (0 for an exact file match)
    "text_distance",  # 1 - Jaccard to the nearest banked text
    "embedding_similarity",  # cosine to the nearest positive exemplar
    "contrastive",  # the embedding bank's contrastive score
    "source_score",  # the author's aggregate over recent items
    "log_reach",
    "log_reports",
    "author_violations",  # the author's confirmed violations so far
    "age_hours",
)


class RankError(BastionError):
    """A ranker could not be trained, saved or loaded."""


@dataclass
class Candidate:
    """An item recall found: what it is, how it was found, and what is known about its spread.

    `channels` maps each channel that found it to its strength (a score or a similarity);
    `distances` the best match distance per matching channel; `scores` the calibrated
    probability per policy category and `severity` each category's severity (1-4).
    """

    item_id: str
    text: str | None = None
    media: list[str] = field(default_factory=list)
    channels: dict[str, float] = field(default_factory=dict)
    distances: dict[str, float] = field(default_factory=dict)
    scores: dict[str, float] = field(default_factory=dict)
    severity: dict[str, int] = field(default_factory=dict)
    reach: float | None = None
    reports: float | None = None
    author: str | None = None
    author_violations: int | None = None
    created_at: datetime | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    def top_category(self) -> str | None:
        return max(self.scores, key=lambda c: self.scores[c]) if self.scores else None

    def to_json(self) -> dict[str, Any]:
        """One line of a candidates file (`bastion recall` writes them, `bastion rank` reads)."""
        return {
            "id": self.item_id,
            "text": self.text,
            "media": self.media,
            "channels": self.channels,
            "distances": self.distances,
            "scores": self.scores,
            "severity": self.severity,
            "reach": self.reach,
            "reports": self.reports,
            "author": self.author,
            "author_violations": self.author_violations,
            "created_at": None if self.created_at is None else self.created_at.isoformat(),
            "metadata": self.metadata,
        }

    @classmethod
    def from_json(cls, row: Mapping[str, Any]) -> Candidate:
        """The inverse of `to_json`; InputError naming the field that is wrong."""
        if not isinstance(row, Mapping) or not isinstance(row.get("id"), str) or not row["id"]:
            raise InputError("a candidate needs a non-empty string 'id'")
        try:
            created = row.get("created_at")
            created_at = None if created in (None, "") else datetime.fromisoformat(str(created))
            if created_at is not None and created_at.tzinfo is None:
                raise ValueError(f"created_at {created!r} has no time zone")
            return cls(
                item_id=row["id"],
                text=None if row.get("text") is None else str(row["text"]),
                media=[str(m) for m in row.get("media") or []],
                channels={str(k): float(v) for k, v in (row.get("channels") or {}).items()},
                distances={str(k): float(v) for k, v in (row.get("distances") or {}).items()},
                scores={str(k): float(v) for k, v in (row.get("scores") or {}).items()},
                severity={str(k): int(v) for k, v in (row.get("severity") or {}).items()},
                reach=_optional_float(row.get("reach")),
                reports=_optional_float(row.get("reports")),
                author=None if row.get("author") is None else str(row["author"]),
                author_violations=None
                if row.get("author_violations") is None
                else int(row["author_violations"]),
                created_at=created_at,
                metadata=dict(row.get("metadata") or {}),
            )
        except (TypeError, ValueError, AttributeError) as exc:
            raise InputError(f"candidate {row['id']!r}: {exc}") from None


def _optional_float(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool):
        raise ValueError(f"expected a number, got {value!r}")
    return float(value)


def category_severity(policy: LoadedPolicy | Policy) -> dict[str, int]:
    """Each category's severity (1-4) in a policy: the weight of harm per category."""
    categories: list[Category] = policy.categories
    return {c.id: int(c.severity) for c in categories}


def expected_harm(p_violation: np.ndarray, severity: np.ndarray, reach: np.ndarray) -> np.ndarray:
    """P(violation) × severity × reach, elementwise; an unknown reach counts as 1 (one viewer).

    Why a product: harm needs all three. A near-certain violation nobody sees, a severe one that
    is probably benign, and a viral post that is fine all deserve little review time.
    """
    p = np.nan_to_num(np.asarray(p_violation, dtype=float), nan=0.0)
    s = np.nan_to_num(np.asarray(severity, dtype=float), nan=1.0)
    r = np.asarray(reach, dtype=float)
    r = np.where(np.isfinite(r) & (r >= 0), r, 1.0)
    harm: np.ndarray = p * s * np.maximum(r, 1.0)
    return harm


def candidate_harm(candidates: Sequence[Candidate]) -> np.ndarray:
    """Expected harm per candidate, from its most harmful category (probability × severity)."""
    p = np.zeros(len(candidates))
    s = np.ones(len(candidates))
    for i, c in enumerate(candidates):
        best = -1.0
        for category, prob in c.scores.items():
            sev = c.severity.get(category, 2)
            if math.isfinite(prob) and prob * sev > best:
                best, p[i], s[i] = prob * sev, prob, sev
    reach = np.array([np.nan if c.reach is None else c.reach for c in candidates], dtype=float)
    return expected_harm(p, s, reach)


def features(candidates: Sequence[Candidate], now: datetime | None = None) -> np.ndarray:
    """The `FEATURES` matrix, one row per candidate."""
    now = now or datetime.now(UTC)
    X = np.full((len(candidates), len(FEATURES)), np.nan)
    col = {name: j for j, name in enumerate(FEATURES)}
    for i, c in enumerate(candidates):
        row = X[i]
        top = c.top_category()
        if top is not None:
            row[col["p_violation"]] = c.scores[top]
            row[col["severity"]] = c.severity.get(top, 2)
            row[col["p_severity"]] = max(
                p * c.severity.get(k, 2) / 4 for k, p in c.scores.items() if math.isfinite(p)
            )
        for channel in CHANNELS:
            row[col[f"hit_{channel}"]] = 1.0 if channel in c.channels else 0.0
        row[col["channels"]] = float(sum(ch in c.channels for ch in CHANNELS))
        if "hash" in c.distances:
            row[col["hash_distance"]] = c.distances["hash"] / 256
        if "text" in c.distances:
            row[col["text_distance"]] = c.distances["text"]
        if "embedding" in c.distances:
            row[col["embedding_similarity"]] = 1 - c.distances["embedding"]
        if "embedding" in c.channels:
            row[col["contrastive"]] = c.channels["embedding"]
        if "source" in c.channels:
            row[col["source_score"]] = c.channels["source"]
        if c.reach is not None and c.reach >= 0:
            row[col["log_reach"]] = math.log1p(c.reach)
        if c.reports is not None and c.reports >= 0:
            row[col["log_reports"]] = math.log1p(c.reports)
        if c.author_violations is not None:
            row[col["author_violations"]] = float(c.author_violations)
        if c.created_at is not None and c.created_at.tzinfo is not None:
            row[col["age_hours"]] = max(0.0, (now - c.created_at).total_seconds() / 3600)
    return X


def feature_dict(row: np.ndarray) -> dict[str, float]:
    """A feature row as the queue stores it (name → value, NaN kept)."""
    return {name: float(v) for name, v in zip(FEATURES, row, strict=True)}


def relevance(example: TrainingExample, severity: Mapping[str, int]) -> int | None:
    """The graded target of one decision: 0 for not violating, else 1 + log2(1 + severity ×
    reach) rounded down and capped at 30 (LightGBM's default label gains go to 31 grades);
    None for "unsure", which teaches nothing.

    Why graded by harm and not 0/1: the queue's purpose is harm covered per review, so a severe
    violation seen by thousands should outrank a mild one seen by a few, and the ranker should
    learn that from its target, not only from a formula. The log keeps reach's heavy tail from
    flattening every other grade into 1.
    """
    if example.label is ReviewLabel.unsure:
        return None
    if example.label is ReviewLabel.not_violating:
        return 0
    sev = max((severity.get(c, 2) for c in example.categories), default=2)
    log_reach = example.features.get("log_reach", float("nan"))
    reach = math.expm1(log_reach) if math.isfinite(log_reach) else 1.0
    return int(min(30, 1 + math.floor(math.log2(1 + sev * max(reach, 1.0)))))


class Ranker(Protocol):
    def score(self, candidates: Sequence[Candidate], X: np.ndarray) -> np.ndarray: ...


class ExpectedHarm:
    """The cold-start ranker: expected harm, no training."""

    name = "expected-harm"

    def score(self, candidates: Sequence[Candidate], X: np.ndarray) -> np.ndarray:
        return candidate_harm(candidates)


class LearnedRanker:
    """LightGBM lambdarank over `FEATURES`, trained from review decisions (scikit-learn style:
    hyper-parameters in `__init__`, `fit` returns self, learned state ends in `_`)."""

    name = "lambdarank"
    model_: Any  # the fitted LGBMRanker, or a loaded Booster behind the same two calls

    def __init__(
        self,
        *,
        n_estimators: int = 200,
        learning_rate: float = 0.05,
        num_leaves: int = 15,
        min_child_samples: int = 10,
        group_size: int = 100,
        random_state: int = 0,
    ) -> None:
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.num_leaves = num_leaves
        self.min_child_samples = min_child_samples
        self.group_size = group_size
        self.random_state = random_state

    def fit(
        self, X: np.ndarray, y: np.ndarray, group: Sequence[int] | None = None
    ) -> LearnedRanker:
        """Fit on feature rows `X` and integer grades `y` (see `relevance`). `group` gives the
        sizes of consecutive query groups; by default rows are shuffled (seeded) into groups of
        `group_size`, as lambdarank only compares items within a group."""
        from lightgbm import LGBMRanker

        X = np.asarray(X, dtype=float)
        y = np.asarray(y)
        if X.ndim != 2 or X.shape[1] != len(FEATURES):
            raise RankError(f"expected {len(FEATURES)} feature columns, got shape {X.shape}")
        if len(y) != len(X):
            raise RankError(f"{len(X)} feature rows but {len(y)} labels")
        if len(np.unique(y)) < 2:
            raise RankError(
                "the decisions hold only one grade (all violating or none): a ranker needs both; "
                "rank by expected harm until reviewers have decided both kinds"
            )
        if group is None:
            order = np.random.default_rng(self.random_state).permutation(len(y))
            X, y = X[order], y[order]
            group = [min(self.group_size, len(y) - s) for s in range(0, len(y), self.group_size)]
        if sum(group) != len(y):
            raise RankError(f"group sizes add up to {sum(group)}, not {len(y)} rows")
        model = LGBMRanker(
            objective="lambdarank",
            n_estimators=self.n_estimators,
            learning_rate=self.learning_rate,
            num_leaves=self.num_leaves,
            min_child_samples=self.min_child_samples,
            random_state=self.random_state,
            n_jobs=1,
            verbose=-1,
        )
        model.fit(X, y.astype(int), group=list(group))
        self.model_ = model
        return self

    def fit_decisions(
        self, examples: Sequence[TrainingExample], severity: Mapping[str, int]
    ) -> LearnedRanker:
        """Fit on the review queue's decisions ("unsure" ones are left out)."""
        rows, grades = [], []
        for example in examples:
            grade = relevance(example, severity)
            if grade is not None:
                rows.append([example.features.get(name, np.nan) for name in FEATURES])
                grades.append(grade)
        if not rows:
            raise RankError("no decided items to learn from")
        return self.fit(np.array(rows, dtype=float), np.array(grades))

    def predict(self, X: np.ndarray) -> np.ndarray:
        if not hasattr(self, "model_"):
            raise RankError("this ranker is not fitted; call fit or load one")
        return np.asarray(self.model_.predict(np.asarray(X, dtype=float)), dtype=float)

    def score(self, candidates: Sequence[Candidate], X: np.ndarray) -> np.ndarray:
        return self.predict(X)

    def save(self, path: Path | str) -> Path:
        """One JSON file: the feature names and LightGBM's own text model."""
        if not hasattr(self, "model_"):
            raise RankError("this ranker is not fitted; nothing to save")
        target = Path(path)
        body = {
            "kind": self.name,
            "features": list(FEATURES),
            "model": self.model_.booster_.model_to_string(),
        }
        tmp = target.with_name(f".{target.name}.tmp")
        tmp.write_text(json.dumps(body), "utf-8")
        tmp.replace(target)
        return target

    @classmethod
    def load(cls, path: Path | str) -> LearnedRanker:
        from lightgbm import Booster

        try:
            body = json.loads(Path(path).read_text("utf-8"))
            if body.get("kind") != cls.name:
                raise RankError(f"{path}: not a lambdarank ranker file")
            if body.get("features") != list(FEATURES):
                raise RankError(
                    f"{path}: trained on other features than this Bastion computes; retrain it"
                )
            booster = Booster(model_str=body["model"])
        except (OSError, ValueError, KeyError) as exc:
            raise RankError(f"{path}: cannot load the ranker ({exc})") from None
        ranker = cls()
        ranker.model_ = _BoosterModel(booster)
        return ranker


class _BoosterModel:
    """A loaded Booster behind the two calls the ranker makes on a fitted LGBMRanker."""

    def __init__(self, booster: Any) -> None:
        self.booster_ = booster

    def predict(self, X: np.ndarray) -> np.ndarray:
        return np.asarray(self.booster_.predict(X))


@dataclass(frozen=True)
class Ranked:
    """A candidate in queue order: its position (0 first), the ranker's score, expected harm and
    the feature row it was scored on."""

    position: int
    candidate: Candidate
    score: float
    expected_harm: float
    features: dict[str, float]

    def to_json(self) -> dict[str, Any]:
        """One line of a ranked queue file (`bastion rank --out`, the service's recall jobs):
        the candidate's fields with its place, score and features (a NaN feature as null)."""
        return {
            "position": self.position,
            "score": self.score,
            "expected_harm": self.expected_harm,
            **self.candidate.to_json(),
            "features": {k: v if math.isfinite(v) else None for k, v in self.features.items()},
        }

    def queue_item(self, total: int) -> QueueItem:
        """The review-queue item for this candidate, out of `total` ranked together: the first
        gets priority `total`, the last 1, so the queue keeps the ranker's order."""
        c = self.candidate
        return QueueItem(
            c.item_id,
            priority=float(total - self.position),
            expected_harm=self.expected_harm,
            text=c.text,
            media=c.media,
            metadata=c.metadata,
            channels=list(c.channels),
            features=self.features,
        )


def rank(
    candidates: Sequence[Candidate],
    ranker: Ranker | None = None,
    *,
    now: datetime | None = None,
) -> list[Ranked]:
    """Candidates in review order, highest score first (ties: higher expected harm, then id)."""
    if not candidates:
        return []
    ids = [c.item_id for c in candidates]
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise InputError(f"candidate {dup!r} appears more than once; merge its channels first")
    X = features(candidates, now)
    harm = candidate_harm(candidates)
    scores = (ranker or ExpectedHarm()).score(candidates, X)
    order = sorted(range(len(candidates)), key=lambda i: (-scores[i], -harm[i], ids[i]))
    return [
        Ranked(pos, candidates[i], float(scores[i]), float(harm[i]), feature_dict(X[i]))
        for pos, i in enumerate(order)
    ]
