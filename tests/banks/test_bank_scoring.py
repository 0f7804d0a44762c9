"""Bank scoring formulas: the contrastive score orders items by which side they lean to, and the
per-source aggregate surfaces a pattern of borderline items."""

from __future__ import annotations

import numpy as np
import pytest

from bastion.banks.scoring import contrastive_scores, source_aggregate, suppressed


def test_near_positive_outscores_its_near_negative_look_alike() -> None:
    # Both items are close to the positives; the second is closer still to a negative.
    pos = np.array([[0.82, 0.80, 0.78], [0.80, 0.79, 0.77]])
    neg = np.array([[0.30, 0.25, 0.20], [0.90, 0.85, 0.60]])
    scores = contrastive_scores(pos, neg, k=3)
    assert scores[0] > 0 > scores[1]


def test_contrastive_score_is_sentinels_log_ratio_of_mean_exponentials() -> None:
    pos = np.array([[0.9, 0.5, 0.1]])
    neg = np.array([[0.4, 0.2, -0.3]])
    expected = np.log(np.mean(np.exp([0.9, 0.5]))) - np.log(np.mean(np.exp([0.4, 0.2])))
    assert contrastive_scores(pos, neg, k=2)[0] == pytest.approx(expected)
    # Column order does not matter: the top k are taken per row.
    assert contrastive_scores(pos[:, ::-1], neg[:, ::-1], k=2)[0] == pytest.approx(expected)


def test_missing_neighbours_are_left_out_and_no_positives_is_no_score() -> None:
    pos = np.array([[0.7, -np.inf, np.nan], [-np.inf, -np.inf, -np.inf]])
    neg = np.array([[0.2, np.nan, -np.inf], [0.2, 0.1, 0.0]])
    scores = contrastive_scores(pos, neg, k=3)
    assert scores[0] == pytest.approx(0.7 - 0.2)
    assert np.isnan(scores[1])


def test_without_negatives_the_score_is_against_the_baseline() -> None:
    pos = np.array([[0.6, 0.6], [0.1, 0.1]])
    none = np.zeros((2, 0))
    assert contrastive_scores(pos, none, k=2) == pytest.approx([0.6, 0.1])
    assert contrastive_scores(pos, none, k=2, baseline=0.2) == pytest.approx([0.4, -0.1])


def test_contrastive_scores_refuse_bad_shapes() -> None:
    with pytest.raises(ValueError, match="one row per item"):
        contrastive_scores(np.zeros((2, 3)), np.zeros((3, 3)), k=1)
    with pytest.raises(ValueError, match="k must be"):
        contrastive_scores(np.zeros((2, 3)), np.zeros((2, 3)), k=0)
    with pytest.raises(ValueError, match="2-D"):
        contrastive_scores(np.zeros(3), np.zeros((3, 1)), k=1)


def test_suppressed_when_a_negative_is_at_least_as_near() -> None:
    pos = np.array([0.9, 0.9, 0.9, 0.9])
    neg = np.array([0.5, 0.9, 0.95, np.nan])
    assert suppressed(pos, neg).tolist() == [False, True, True, False]


def _borderline_vs_one_spike() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    pattern = np.linspace(0.08, 0.1, 12)  # twelve borderline items, evenly spread
    spike = np.r_[0.35, -0.3 + 0.1 * rng.random(11)]  # one strong item, eleven benign
    scores = np.r_[pattern, spike]
    sources = np.array(["pattern"] * 12 + ["spike"] * 12)
    return scores, sources


def test_topk_mean_surfaces_a_source_posting_many_borderline_items() -> None:
    scores, sources = _borderline_vs_one_spike()
    out = source_aggregate(scores, sources, "topk_mean", k=5)
    assert out.sources.tolist() == ["pattern", "spike"]
    assert out.counts.tolist() == [12, 12]
    assert out.scores[0] > out.scores[1]
    # The borderline source's top-5 mean is its level; the spike is diluted to 1/k.
    assert out.scores[1] == pytest.approx(0.35 / 5)


def test_skewness_answers_spikes_above_a_sources_usual_level() -> None:
    scores, sources = _borderline_vs_one_spike()
    out = source_aggregate(scores, sources, "skewness", floor=None)
    assert out.scores[1] > 0.2
    assert out.scores[0] == pytest.approx(0.0, abs=1e-9)  # symmetric: no spikes


def test_single_item_sources_ties_and_nan() -> None:
    scores = np.array([0.5, np.nan, 0.2, 0.2, 0.2, np.nan, 0.1])
    sources = ["one", "gone", "tie", "tie", "tie", "tie", "x"]
    topk = source_aggregate(scores, sources, "topk_mean", k=2)
    assert topk.sources.tolist() == ["one", "gone", "tie", "x"]
    assert topk.scores[0] == pytest.approx(0.25)  # one item is worth half of itself at k=2
    assert np.isnan(topk.scores[1]) and topk.counts[1] == 0  # only NaN scores: no opinion
    assert topk.scores[2] == pytest.approx(0.2) and topk.counts[2] == 3
    skew = source_aggregate(scores, sources, "skewness", min_items=1)
    assert skew.scores[0] == 0.0  # one item: no spread, no skew
    assert skew.scores[2] == 0.0  # all tied: std 0 gives 0, not NaN
    few = source_aggregate(np.r_[np.zeros(5), 1.0], ["a"] * 6, "skewness")
    assert few.scores[0] == 0.0  # fewer than min_items (10)


def test_source_aggregate_is_order_free_and_floors_benign_items() -> None:
    scores, sources = _borderline_vs_one_spike()
    order = np.random.default_rng(1).permutation(len(scores))
    a = source_aggregate(scores, sources, "topk_mean", k=5)
    b = source_aggregate(scores[order], sources[order], "topk_mean", k=5)
    assert dict(zip(a.sources, a.scores, strict=True)) == pytest.approx(
        dict(zip(b.sources, b.scores, strict=True))
    )
    # Benign items (negative scores) do not cancel evidence when floored at 0 ...
    floored = source_aggregate(np.array([0.3, -0.9, -0.9]), ["s"] * 3, "topk_mean", k=3)
    assert floored.scores[0] == pytest.approx(0.1)
    # ... and do without a floor.
    raw = source_aggregate(np.array([0.3, -0.9, -0.9]), ["s"] * 3, "topk_mean", k=3, floor=None)
    assert raw.scores[0] == pytest.approx(-0.5)


def test_source_aggregate_refuses_bad_input() -> None:
    with pytest.raises(ValueError, match="one source per item"):
        source_aggregate(np.zeros(3), ["a", "b"])
    with pytest.raises(ValueError, match="not one of"):
        source_aggregate(np.zeros(2), ["a", "b"], "max")  # type: ignore[arg-type]
    empty = source_aggregate(np.zeros(0), [])
    assert len(empty.sources) == 0 and len(empty.scores) == 0


def test_aggregates_match_their_formulas_for_interleaved_sources() -> None:
    rng = np.random.default_rng(3)
    scores = rng.exponential(size=61)
    sources = rng.choice(["a", "b", "c"], size=61)
    skew = source_aggregate(scores, sources, "skewness", floor=None, min_items=1)
    topk = source_aggregate(scores, sources, "topk_mean", k=4)
    for name, s, t in zip(skew.sources, skew.scores, topk.scores, strict=True):
        mine = scores[sources == name]
        assert s == pytest.approx((mine.mean() - np.median(mine)) / mine.std())
        assert t == pytest.approx(np.sort(mine)[-4:].mean())
