"""The Moderator: fusion, thresholds, actions and bad input, with fake detectors and the real one."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest

from bastion import moderate
from bastion.detectors.base import DetectorOutput, Evidence
from bastion.errors import InputError
from bastion.items import MAX_TEXT_BYTES, Item
from bastion.models.scoring import fuse
from bastion.moderator import Moderator, Verdict
from bastion.policy import Action, parse_policy

POLICY = parse_policy(
    """
id: t
version: "1"
name: test
bands: {review: 0.5, block: 0.9}
categories:
  - {id: a, name: A, severity: 2, definition: a}
  - {id: b, name: B, severity: 3, definition: b, flag_threshold: 0.3, bands: {review: 0.2, block: 0.6}}
"""
)


class FixedDetector:
    """Returns scores looked up by the item's text."""

    def __init__(self, table: dict[str, list[float]], name: str = "fixed") -> None:
        self.name = name
        self.category_ids = ["a", "b"]
        self.table = table

    def score(self, items: Sequence[Item]) -> DetectorOutput:
        scores = np.array([self.table[i.text] for i in items], dtype=float)
        ev = [[Evidence(self.name, "a", float(s[0]), "looked up")] for s in scores]
        return DetectorOutput(scores, ev)


def test_thresholds_and_bands_per_category() -> None:
    det = FixedDetector({"x": [0.49, 0.31], "y": [0.95, 0.0], "z": [0.1, 0.65], "w": [0.5, 0.1]})
    x, y, z, w = Moderator(POLICY, detectors=[det], default_detectors=()).moderate(
        ["x", "y", "z", "w"]
    )
    assert x.categories == {"a": False, "b": True} and x.flagged
    assert x.category_actions["b"].value == "review" and x.action.value == "review"
    assert y.action.value == "block" and y.categories["a"]
    assert z.action.value == "block"  # b's own bands block at 0.6
    assert w.categories["a"] and w.action.value == "review"  # exactly at the threshold
    assert x.evidence[0].detector == "fixed"
    assert x.policy_version == POLICY.version and x.model_version == "fixed"


def test_fusion_ignores_detectors_without_an_opinion() -> None:
    a = FixedDetector({"x": [0.8, np.nan]}, "a")
    b = FixedDetector({"x": [0.2, np.nan]}, "b")
    c = FixedDetector({"x": [np.nan, np.nan]}, "c")
    v = Moderator(
        POLICY, detectors=[a, b, c], default_detectors=(), weights=[3, 1, 1]
    ).moderate_one("x")
    assert v.category_scores["a"] == pytest.approx(0.65)
    assert v.category_scores["b"] == 0.0 and not v.categories["b"]
    assert v.model_version == "a+b+c"


def test_fuse_is_a_nan_aware_weighted_mean() -> None:
    s1 = np.array([[0.2, np.nan, np.nan]])
    s2 = np.array([[0.6, 0.4, np.nan]])
    out = fuse([s1, s2], [1.0, 3.0])
    assert out[0, 0] == pytest.approx(0.5) and out[0, 1] == pytest.approx(0.4)
    assert np.isnan(out[0, 2])


def test_detector_for_another_policy_is_refused() -> None:
    det = FixedDetector({})
    det.category_ids = ["a", "c"]
    with pytest.raises(InputError, match="do not match policy"):
        Moderator(POLICY, detectors=[det], default_detectors=())


def test_blank_items_get_an_error_and_the_rest_are_scored() -> None:
    det = FixedDetector({"ok": [0.9, 0.9]})
    out = Moderator(POLICY, detectors=[_SkipBlank(det)], default_detectors=()).moderate(
        ["", "ok", " \u200b\n "]
    )
    assert out[0].error == "empty text: nothing to moderate"
    assert out[2].error is not None and "no visible characters" in out[2].error
    assert out[0].category_scores == {}
    assert out[1].error is None and out[1].flagged


def test_an_item_that_was_not_scored_is_never_allowed() -> None:
    det = FixedDetector({"ok": [0.0, 0.0]})
    out = Moderator(POLICY, detectors=[det], default_detectors=()).moderate(["", "ok"])
    assert out[0].error is not None
    assert out[0].flagged is None and out[0].action is Action.review  # unknown, to a person
    assert out[1].flagged is False and out[1].action is Action.allow  # scored and fine
    # However a verdict with an error is built, it cannot say "safe".
    forged = Verdict(
        policy_version="p", model_version="m", error="x", flagged=False, action=Action.allow
    )
    assert forged.flagged is None and forged.action is Action.review


def test_without_a_text_detector_there_is_nothing_to_judge_text_with() -> None:
    with pytest.raises(ValueError, match="at least one text detector"):
        Moderator(POLICY, default_detectors=())


class _SkipBlank:
    def __init__(self, inner: FixedDetector) -> None:
        self.inner, self.name, self.category_ids = inner, inner.name, inner.category_ids

    def score(self, items: Sequence[Item]) -> DetectorOutput:
        rows = [self.inner.table.get(i.text, [np.nan, np.nan]) for i in items]
        return DetectorOutput(np.array(rows, dtype=float))


@pytest.mark.slow
def test_one_call_api(openai_moderator: Moderator) -> None:
    v = moderate("I will find where you live and hurt you")
    assert v.flagged and set(v.category_scores) == set(openai_moderator.policy.category_ids)
    with pytest.raises(InputError, match="empty text"):
        moderate("")


@pytest.mark.slow
def test_text_over_one_megabyte_is_truncated_not_crashed(openai_moderator: Moderator) -> None:
    text = "I will find where you live and hurt you. " + "é" * (MAX_TEXT_BYTES // 2 + 10)
    v = openai_moderator.moderate_one(text)
    assert v.error is None and v.truncated
    assert v.categories["harassment/threatening"] or v.categories["violence"]
    assert not openai_moderator.moderate_one("short and fine").truncated


@pytest.mark.slow
def test_detectors_named_are_added_to_the_default_model(default_moderator: Moderator) -> None:
    both = Moderator("openai", detectors=["zero-shot"])
    assert [d.name for d in both.detectors] == ["trained", "nudity", "ocr", "speech", "zero_shot"]
    assert both.model_version.startswith(default_moderator.model_version + "+zero_shot/")
    alone = Moderator("openai", detectors=["zero-shot"], default_detectors=())
    assert [d.name for d in alone.detectors] == ["zero_shot"]
    assert both.model_version.endswith("+" + alone.model_version)
