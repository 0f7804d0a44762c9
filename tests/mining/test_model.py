"""The mining model learns from labels, stands aside for the prior until it can, and saves whole."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bastion.mining.model import MiningModel


def _data(n: int = 200) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    y = (rng.random(n) < 0.3).astype(float)
    X = rng.normal(size=(n, 8)).astype(np.float32)
    X[:, 0] += 3 * y
    return X, y


def test_the_model_ranks_violations_above_the_rest() -> None:
    X, y = _data()
    p = MiningModel().fit(X, y).predict_proba(X, prior=np.zeros(len(X)))
    assert p[y == 1].mean() > 0.7 > 0.3 > p[y == 0].mean()


def test_with_too_few_labels_of_a_class_the_prior_stands_in() -> None:
    X, _ = _data(10)
    y = np.array([1] + [0] * 9, dtype=float)
    prior = np.linspace(0, 1, 10)
    model = MiningModel(min_per_class=2).fit(X, y)
    assert not model.fitted
    assert np.array_equal(model.predict_proba(X, prior), prior)


def test_save_and_load_give_the_same_scores(tmp_path: Path) -> None:
    X, y = _data()
    model = MiningModel().fit(X, y)
    model.save(tmp_path / "model.npz")
    again = MiningModel.load(tmp_path / "model.npz")
    prior = np.zeros(len(X))
    assert np.allclose(again.predict_proba(X, prior), model.predict_proba(X, prior))
    MiningModel().save(tmp_path / "empty.npz")
    assert not MiningModel.load(tmp_path / "empty.npz").fitted
