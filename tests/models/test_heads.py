"""Multi-label heads: a missing label must never act as a negative."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from bastion.models.heads import MultiLabelHead


def _patchwork(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Two categories along two directions; labels come from three kinds of 'dataset'.

    - set A (binary only): safe rows are 0 for both categories, violating rows unknown;
    - set B (only positives, like AILuminate): category 1 positives, all in one style (x2 < 0);
    - set C (another source, style x2 > 0): category 0 labelled, category 1 not given.
    Set C contains category-1 violations too. Reading its missing category-1 labels as 0
    teaches the head that set C's style means "not category 1".
    """
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(3000, 8)).astype(np.float32)
    truth = np.column_stack([X[:, 0] > 0.5, X[:, 1] > 0.5]).astype(float)
    Y = np.full(truth.shape, np.nan)
    group = rng.integers(0, 3, size=len(X))
    a = (group == 0) & (truth.sum(axis=1) == 0)
    Y[a] = 0.0
    b = (group == 1) & (truth[:, 1] == 1) & (X[:, 2] < 0)
    Y[b, 1] = 1.0
    c = (group == 2) & (X[:, 2] > 0)
    Y[c, 0] = truth[c, 0]
    keep = a | b | c
    return X[keep], Y[keep], truth[keep]


def test_missing_labels_are_masked_not_negative() -> None:
    X, Y, _ = _patchwork()
    rng = np.random.default_rng(7)
    Xt = rng.normal(size=(4000, 8)).astype(np.float32)
    c_style_cat1 = (Xt[:, 1] > 0.5) & (Xt[:, 2] > 0)  # category-1 violations in set C's style
    head = MultiLabelHead(epochs=200, patience=30, lr=1e-2, seed=0).fit(X, Y)
    wrong = MultiLabelHead(epochs=200, patience=30, lr=1e-2, seed=0).fit(X, np.nan_to_num(Y))
    p, q = head.predict_proba(Xt), wrong.predict_proba(Xt)
    assert (p[c_style_cat1, 1] >= 0.5).mean() > 0.65
    assert (q[c_style_cat1, 1] >= 0.5).mean() < (p[c_style_cat1, 1] >= 0.5).mean() - 0.25
    assert roc_auc_score(Xt[:, 0] > 0.5, p[:, 0]) > 0.95
    assert head.n_known_.tolist() == np.isfinite(Y).sum(axis=0).tolist() or (
        head.n_known_.sum() < np.isfinite(Y).sum()  # the validation split holds some back
    )


def test_fit_returns_self_and_learned_state_ends_in_underscore() -> None:
    X, Y, _ = _patchwork()
    head = MultiLabelHead(epochs=5)
    assert head.fit(X, Y) is head
    assert head.predict_proba(X).shape == (len(X), 2)
    assert head.history_.train_loss and head.n_categories_ == 2
    assert set(head.state_dict()) and all(
        isinstance(v, np.ndarray) for v in head.state_dict().values()
    )


def test_early_stopping_keeps_the_best_epoch() -> None:
    X, Y, _ = _patchwork()
    head = MultiLabelHead(epochs=400, patience=5, lr=5e-2, hidden=64, seed=3).fit(X, Y)
    h = head.history_
    assert len(h.val_loss) < 400  # stopped early
    assert h.best_epoch == int(np.argmin(h.val_loss))


def test_shape_mismatch_is_refused() -> None:
    with pytest.raises(ValueError, match="same number of rows"):
        MultiLabelHead().fit(np.zeros((3, 4)), np.zeros((2, 1)))


def test_unnamed_violations_teach_at_least_one_category() -> None:
    """Style x3 > 0 has labelled safe rows and violations that name no category (like WildGuard's
    harmful prompts). Dropping those violations teaches "this style is safe"; the noisy-OR loss
    keeps them, so violations in that style score higher, and the named categories stay learned."""
    rng = np.random.default_rng(1)
    X = rng.normal(size=(4000, 8)).astype(np.float32)
    truth = np.column_stack([X[:, 0] > 0.5, X[:, 1] > 0.5]).astype(float)
    violating = truth.any(axis=1)
    styled = X[:, 3] > 0.3
    Y = np.where(styled[:, None], np.nan, truth)
    Y[styled & ~violating] = 0.0
    unnamed = styled & violating
    X[styled, 4] += 4.0  # the style is easy to see: a linear head can learn "style => safe"
    keep = ~unnamed
    dropped = MultiLabelHead(epochs=150, patience=30, lr=1e-2, seed=0).fit(X[keep], Y[keep])
    with_one = MultiLabelHead(epochs=150, patience=30, lr=1e-2, seed=0).fit(
        X, Y, at_least_one=unnamed
    )
    Xt = rng.normal(size=(4000, 8)).astype(np.float32)
    t_truth = np.column_stack([Xt[:, 0] > 0.5, Xt[:, 1] > 0.5]).any(axis=1)
    t_styled = Xt[:, 3] > 0.3
    Xt[t_styled, 4] += 4.0
    target = t_styled & t_truth
    p, q = with_one.predict_proba(Xt).max(axis=1), dropped.predict_proba(Xt).max(axis=1)
    assert (p[target] >= 0.5).mean() > (q[target] >= 0.5).mean() + 0.15
    assert roc_auc_score(t_truth[t_styled], p[t_styled]) > 0.9


def test_at_least_one_must_match_the_rows() -> None:
    with pytest.raises(ValueError, match="at_least_one has 2 rows"):
        MultiLabelHead().fit(np.zeros((3, 4)), np.zeros((3, 1)), at_least_one=np.ones(2, bool))
