"""Risk ranking: expected harm before any decisions, a lambdarank model once they exist."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from bastion.errors import InputError
from bastion.triage import QueueItem, ReviewLabel, ReviewQueue, TrainingExample
from bastion.triage.rank import (
    FEATURES,
    Candidate,
    LearnedRanker,
    RankError,
    candidate_harm,
    feature_dict,
    features,
    rank,
    relevance,
)

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
SEVERITY = {"hate": 3, "violence": 4, "spam": 1}


def test_expected_harm_weighs_probability_severity_and_reach() -> None:
    spam = Candidate("spam", scores={"spam": 0.99}, severity=SEVERITY, reach=3)
    threat = Candidate("threat", scores={"violence": 0.6}, severity=SEVERITY, reach=1e6)
    benign_viral = Candidate("viral", scores={"hate": 0.001}, severity=SEVERITY, reach=1e6)
    unknown_reach = Candidate("unknown", scores={"hate": 0.5}, severity=SEVERITY)
    harm = candidate_harm([spam, threat, benign_viral, unknown_reach])
    assert harm.tolist() == pytest.approx([0.99 * 1 * 3, 0.6 * 4 * 1e6, 0.003 * 1e6, 1.5])
    order = [r.candidate.item_id for r in rank([spam, threat, benign_viral, unknown_reach])]
    assert order == ["threat", "viral", "spam", "unknown"]


def test_the_most_harmful_category_sets_probability_and_severity() -> None:
    # Hate is more probable, violence more harmful once severity counts: violence decides.
    c = Candidate("x", scores={"hate": 0.5, "violence": 0.45}, severity=SEVERITY, reach=10)
    assert candidate_harm([c])[0] == pytest.approx(0.45 * 4 * 10)


def test_features_mark_channels_and_leave_what_does_not_apply_as_nan() -> None:
    c = Candidate(
        "x",
        channels={"hash": 1.0, "embedding": 0.4},
        distances={"hash": 12, "embedding": 0.2},
        scores={"hate": 0.3, "violence": 0.2},
        severity=SEVERITY,
        reach=99,
        created_at=NOW - timedelta(hours=5),
    )
    row = feature_dict(features([c], now=NOW)[0])
    assert row["hit_hash"] == 1 and row["hit_embedding"] == 1 and row["hit_text"] == 0
    assert row["channels"] == 2 and row["hash_distance"] == pytest.approx(12 / 256)
    assert row["embedding_similarity"] == pytest.approx(0.8) and row["contrastive"] == 0.4
    assert row["p_violation"] == 0.3 and row["severity"] == 3
    assert row["p_severity"] == pytest.approx(max(0.3 * 3, 0.2 * 4) / 4)
    assert row["log_reach"] == pytest.approx(math.log(100)) and row["age_hours"] == 5
    assert math.isnan(row["text_distance"]) and math.isnan(row["log_reports"])
    assert list(row) == list(FEATURES)


def _example(label: ReviewLabel, categories: list[str], reach: float) -> TrainingExample:
    return TrainingExample(
        queue="q",
        item_id="i",
        label=label,
        categories=categories,
        priority=0.0,
        expected_harm=None,
        channels=[],
        features={"log_reach": math.log1p(reach)},
        metadata={},
        reviewer="r",
        note="",
        decided_at=NOW,
    )


def test_relevance_grades_by_harm_and_skips_unsure() -> None:
    assert relevance(_example(ReviewLabel.unsure, [], 10), SEVERITY) is None
    assert relevance(_example(ReviewLabel.not_violating, [], 1e6), SEVERITY) == 0
    mild = relevance(_example(ReviewLabel.violating, ["spam"], 1000), SEVERITY)
    severe = relevance(_example(ReviewLabel.violating, ["violence"], 1000), SEVERITY)
    viral = relevance(_example(ReviewLabel.violating, ["violence"], 1e9), SEVERITY)
    assert mild is not None and severe is not None and viral is not None
    assert 0 < mild < severe < viral <= 30


def _pool(n: int, seed: int) -> tuple[list[Candidate], np.ndarray]:
    """Candidates whose classifier score misleads: what really violates is a hash hit or many
    reports, which the expected-harm formula does not look at."""
    rng = np.random.default_rng(seed)
    cands, truth = [], np.zeros(n, dtype=bool)
    for i in range(n):
        hashed = rng.random() < 0.15
        reports = float(rng.poisson(8 if rng.random() < 0.2 else 0.3))
        truth[i] = hashed or reports >= 5
        p = float(np.clip(rng.normal(0.5, 0.2), 0.01, 0.99))  # noise, unrelated to truth
        cands.append(
            Candidate(
                f"c{i}",
                channels={"hash": 1.0, "classifier": p} if hashed else {"classifier": p},
                distances={"hash": float(rng.integers(0, 31))} if hashed else {},
                scores={"hate": p},
                severity=SEVERITY,
                reach=float(rng.pareto(1.5) * 100),
                reports=reports,
            )
        )
    return cands, truth


def _harm_covered(order: list[str], cands: list[Candidate], truth: np.ndarray, k: int) -> float:
    harm = {c.item_id: (c.reach or 1) * t for c, t in zip(cands, truth, strict=True)}
    return sum(harm[i] for i in order[:k]) / sum(harm.values())


@pytest.mark.parametrize("backend", ["sqlite"])
def test_a_ranker_learns_from_decisions_what_the_formula_misses(
    tmp_path: Path, queue: ReviewQueue
) -> None:
    train, truth = _pool(600, seed=1)
    X = features(train, now=NOW)
    queue.enqueue(
        QueueItem(c.item_id, priority=0.0, features=feature_dict(X[i])) for i, c in enumerate(train)
    )
    claimed = queue.claim("ana", n=len(train))
    assert len(claimed) == len(train)
    labels = dict(zip((c.item_id for c in train), truth, strict=True))
    for item in claimed:
        violating = labels[item.item_id]
        queue.decide(
            item.item_id,
            "ana",
            ReviewLabel.violating if violating else ReviewLabel.not_violating,
            categories=["hate"] if violating else [],
        )
    ranker = LearnedRanker().fit_decisions(queue.decisions(), SEVERITY)

    test, test_truth = _pool(600, seed=2)
    learned = [r.candidate.item_id for r in rank(test, ranker, now=NOW)]
    formula = [r.candidate.item_id for r in rank(test, now=NOW)]
    k = 60  # 10 % of the pool
    # Reach is heavy-tailed, so the formula already covers much harm (0.63 when written); the
    # learned ranker also knows what a hash hit and many reports mean (0.87).
    covered_learned = _harm_covered(learned, test, test_truth, k)
    assert covered_learned > _harm_covered(formula, test, test_truth, k) + 0.15

    saved = ranker.save(tmp_path / "ranker.json")
    again = LearnedRanker.load(saved)
    X_test = features(test, now=NOW)
    np.testing.assert_allclose(again.predict(X_test), ranker.predict(X_test))


def test_training_needs_both_kinds_of_decision_and_matching_features(tmp_path: Path) -> None:
    X = np.zeros((10, len(FEATURES)))
    with pytest.raises(RankError, match="only one grade"):
        LearnedRanker().fit(X, np.ones(10, dtype=int))
    with pytest.raises(RankError, match="feature columns"):
        LearnedRanker().fit(np.zeros((10, 3)), np.arange(10) % 2)
    with pytest.raises(RankError, match="not fitted"):
        LearnedRanker().predict(X)
    bad = tmp_path / "old.json"
    bad.write_text('{"kind": "lambdarank", "features": ["p"], "model": ""}')
    with pytest.raises(RankError, match="other features"):
        LearnedRanker.load(bad)


def test_a_candidate_listed_twice_is_refused() -> None:
    with pytest.raises(InputError, match="'a' appears more than once"):
        rank([Candidate("a"), Candidate("b"), Candidate("a")])


def test_candidates_round_trip_through_json_and_bad_lines_are_named() -> None:
    c = Candidate(
        "x",
        text="t",
        media=["a.jpg"],
        channels={"hash": 1.0},
        distances={"hash": 3.0},
        scores={"hate": 0.25},
        severity={"hate": 3},
        reach=12.0,
        reports=1.0,
        author="u",
        author_violations=2,
        created_at=NOW,
        metadata={"k": [1, 2]},
    )
    assert Candidate.from_json(json.loads(json.dumps(c.to_json()))) == c
    with pytest.raises(InputError, match="non-empty string 'id'"):
        Candidate.from_json({"text": "no id"})
    with pytest.raises(InputError, match=r"candidate 'y'.*no time zone"):
        Candidate.from_json({"id": "y", "created_at": "2025-01-01T00:00:00"})
    with pytest.raises(InputError, match=r"candidate 'z'.*expected a number"):
        Candidate.from_json({"id": "z", "reach": True})
