"""Multi-label heads: a missing label must never act as a negative."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

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


def _and_task(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A category that is a conjunction of two steps (x0 > 0, then x1 > 0); the second step is
    reached only when the first says yes (else unknown), as on a decision path."""
    X = rng.normal(size=(n, 16)).astype(np.float32)
    first, second = X[:, 0] > 0, X[:, 1] > 0
    Y = (first & second).astype(float)[:, None]
    steps = np.column_stack([(~first).astype(int), np.where(first, (~second).astype(int), -1)])
    return X, Y, steps  # answer 0 = "yes", 1 = "no", as the policy lists them


def _small_head(hidden: int, seed: int, step_weight: float = 0.5) -> MultiLabelHead:
    return MultiLabelHead(
        hidden=hidden, epochs=200, patience=30, lr=1e-2, step_weight=step_weight, seed=seed
    )


def test_decision_steps_are_learned_and_help_the_category_through_the_shared_layer() -> None:
    """Labels on 40 items, paths on 1,000: the step outputs shape the hidden layer, so the
    category (a conjunction of the steps) is ranked better than from the labels alone."""
    gains = []
    for seed in range(3):
        rng = np.random.default_rng(seed)
        X, Y, steps = _and_task(1000, rng)
        Y[40:] = np.nan
        Xt, Yt, steps_t = _and_task(4000, rng)
        plain = _small_head(32, seed).fit(X, Y)
        with_steps = _small_head(32, seed, step_weight=1.0).fit(
            X, Y, steps=steps, step_sizes=[2, 2]
        )
        first = with_steps.predict_steps(Xt)[0]
        assert first.shape == (4000, 2) and np.allclose(first.sum(axis=1), 1.0)
        assert (first.argmax(axis=1) == steps_t[:, 0]).mean() > 0.9
        p, q = with_steps.predict_proba(Xt)[:, 0], plain.predict_proba(Xt)[:, 0]
        gains.append(average_precision_score(Yt[:, 0], p) - average_precision_score(Yt[:, 0], q))
    assert np.mean(gains) > 0.03


def test_unknown_step_answers_are_masked_not_read_as_an_answer() -> None:
    """Most "no" answers are unrecorded. Masked, the few left still teach where "no" lies;
    read as "yes" (index 0), they would teach that most of that region answers "yes"."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(3000, 8)).astype(np.float32)
    Y = (X[:, :1] > 0).astype(float)
    answer = (X[:, 0] > 0).astype(int)  # 1 = "no"
    steps = np.where((answer == 1) & (rng.random(3000) < 0.85), -1, answer)[:, None]
    masked = _small_head(16, 0).fit(X, Y, steps=steps, step_sizes=[2])
    wrong = _small_head(16, 0).fit(X, Y, steps=np.maximum(steps, 0), step_sizes=[2])
    Xt = rng.normal(size=(2000, 8)).astype(np.float32)
    region = Xt[:, 0] > 0.5
    says_no = masked.predict_steps(Xt)[0].argmax(axis=1) == 1
    assert says_no[region].mean() > 0.8
    assert (wrong.predict_steps(Xt)[0].argmax(axis=1) == 1)[region].mean() < 0.3


def test_step_outputs_are_not_saved_so_the_model_is_unchanged_in_form() -> None:
    rng = np.random.default_rng(2)
    X, Y, steps = _and_task(600, rng)
    plain = MultiLabelHead(hidden=8, epochs=5).fit(X, Y)
    head = MultiLabelHead(hidden=8, epochs=5).fit(X, Y, steps=steps, step_sizes=[2, 2])
    assert head.predict_proba(X).shape == plain.predict_proba(X).shape == (600, 1)
    state = head.state_dict()
    assert {k: v.shape for k, v in state.items()} == {
        k: v.shape for k, v in plain.state_dict().items()
    }
    again = MultiLabelHead.from_state_dict(state, 1, hidden=8)
    assert np.allclose(again.predict_proba(X), head.predict_proba(X), atol=1e-6)
    with pytest.raises(ValueError, match="not fitted with decision-step targets"):
        again.predict_steps(X)


def test_step_targets_need_a_hidden_layer_and_matching_shapes() -> None:
    X, Y = np.zeros((4, 3)), np.zeros((4, 1))
    with pytest.raises(ValueError, match="need a hidden layer"):
        MultiLabelHead().fit(X, Y, steps=np.zeros((4, 1)), step_sizes=[2])
    with pytest.raises(ValueError, match=r"must be \(4, 2\)"):
        MultiLabelHead(hidden=4).fit(X, Y, steps=np.zeros((4, 1)), step_sizes=[2, 3])
    with pytest.raises(ValueError, match="not below its step's number of answers"):
        MultiLabelHead(hidden=4).fit(X, Y, steps=np.full((4, 1), 2), step_sizes=[2])
