"""Zero-shot features for every category at once must be the per-category numbers exactly."""

from __future__ import annotations

import numpy as np
import pytest

from bastion.models.scoring import grouped_max_and_topk, padded_columns, topk_mean


@pytest.mark.parametrize("k", [1, 3, 8])
def test_grouped_features_equal_one_topk_mean_per_group(k: int) -> None:
    rng = np.random.default_rng(k)
    sims = rng.uniform(-1, 1, size=(6, 40))
    # groups longer and shorter than k, one of a single column, one empty, overlapping columns
    groups = [
        rng.choice(40, 12, replace=False),
        np.array([5, 7]),
        np.array([3]),
        np.array([], dtype=np.int64),
        rng.choice(40, 25, replace=False),
    ]
    index, real = padded_columns(groups)
    assert index.shape == (5, 25)
    maxes, means = grouped_max_and_topk(sims, index, real, k)
    for g, cols in enumerate(groups):
        if len(cols) == 0:
            assert np.isnan(maxes[:, g]).all() and np.isnan(means[:, g]).all()
            continue
        np.testing.assert_allclose(means[:, g], topk_mean(sims[:, cols], k), rtol=0, atol=1e-12)
        np.testing.assert_array_equal(maxes[:, g], sims[:, cols].max(axis=1))


def test_padding_never_counts_even_when_every_value_is_below_it() -> None:
    """Padding points at column 0; a group whose own values are all lower than column 0's
    must still get its own mean, not column 0's."""
    sims = np.array([[0.9, -0.5, -0.7, -0.6]])
    index, real = padded_columns([np.array([1, 2]), np.array([0, 1, 2, 3])])
    maxes, means = grouped_max_and_topk(sims, index, real, 3)
    assert maxes[0, 0] == -0.5
    assert means[0, 0] == pytest.approx(-0.6)
    assert means[0, 1] == pytest.approx((0.9 - 0.5 - 0.6) / 3)
