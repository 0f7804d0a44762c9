"""Acquisition strategies order the unlabelled pool by their own bet, never offering a labelled item."""

from __future__ import annotations

import numpy as np
import pytest

from bastion.errors import InputError
from bastion.mining.strategies import (
    PoolView,
    check_strategies,
    disagreement,
    diversity,
    neighbours,
    novelty,
    top_score,
    uncertainty,
)


def _unit(rows: list[list[float]]) -> np.ndarray:
    X = np.asarray(rows, dtype=np.float32)
    return X / np.linalg.norm(X, axis=1, keepdims=True)


def _view(score, zero_shot=None, label=None, X=None, threshold=0.5) -> PoolView:  # type: ignore[no-untyped-def]
    score = np.asarray(score, dtype=float)
    n = len(score)
    return PoolView(
        X=np.eye(n, dtype=np.float32) if X is None else X,
        score=score,
        zero_shot=score if zero_shot is None else np.asarray(zero_shot, dtype=float),
        label=np.full(n, np.nan) if label is None else np.asarray(label, dtype=float),
        threshold=threshold,
    )


RNG = np.random.default_rng(0)


def test_top_score_orders_by_score_and_skips_labelled_items() -> None:
    view = _view([0.1, 0.9, 0.5, 0.95], label=[np.nan, np.nan, np.nan, 1])
    assert top_score(view, RNG).tolist() == [1, 2, 0]


def test_uncertainty_puts_items_nearest_the_models_threshold_first() -> None:
    view = _view([0.05, 0.31, 0.9, 0.29, 0.6], threshold=0.3)
    assert uncertainty(view, RNG).tolist()[:2] == [1, 3]
    assert uncertainty(view, RNG).tolist()[-1] == 2


def test_disagreement_puts_the_widest_gap_between_detectors_first() -> None:
    view = _view([0.9, 0.2, 0.5], zero_shot=[0.1, 0.25, 0.9])
    assert disagreement(view, RNG).tolist() == [0, 2, 1]


def test_neighbours_of_a_confirmed_positive_come_first() -> None:
    X = _unit([[1, 0, 0], [0.95, 0.1, 0], [0, 1, 0], [0.7, 0.7, 0], [0, 0, 1]])
    view = _view([0.9, 0.1, 0.8, 0.2, 0.7], X=X, label=[1, np.nan, np.nan, np.nan, np.nan])
    assert neighbours(view, RNG).tolist() == [1, 3, 2, 4]


def test_neighbours_without_any_positive_fall_back_to_top_score() -> None:
    view = _view([0.2, 0.9, 0.5], label=[0, np.nan, np.nan])
    assert neighbours(view, RNG).tolist() == [1, 2]


def test_novelty_puts_the_item_farthest_from_everything_labelled_first() -> None:
    X = _unit([[1, 0, 0], [0.9, 0.1, 0], [0, 0, 1], [0.5, 0.5, 0]])
    view = _view([0.5] * 4, X=X, label=[0, np.nan, np.nan, np.nan])
    assert novelty(view, RNG).tolist() == [2, 3, 1]


def test_diversity_covers_every_cluster_before_repeating_one() -> None:
    rng = np.random.default_rng(1)
    centres = np.eye(8, 16)
    X = np.concatenate([c + 0.05 * rng.normal(size=(40, 16)) for c in centres])
    X = (X / np.linalg.norm(X, axis=1, keepdims=True)).astype(np.float32)
    view = _view(np.full(len(X), 0.5), X=X)
    order = diversity(view, np.random.default_rng(2), clusters=8)
    first = order[:8] // 40  # the cluster of each of the first eight picks
    assert sorted(first.tolist()) == list(range(8))
    assert sorted(order.tolist()) == list(range(len(X)))


def test_strategy_names_are_checked_and_random_is_required() -> None:
    assert check_strategies(["top_score", "random"]) == ["top_score", "random"]
    with pytest.raises(InputError, match="unknown strategy 'toppest'"):
        check_strategies(["toppest", "random"])
    with pytest.raises(InputError, match="must include 'random'"):
        check_strategies(["top_score", "uncertainty"])
