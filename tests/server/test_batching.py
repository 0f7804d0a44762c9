"""Micro-batching: concurrent requests share a model call, get their own verdicts back, and one
request's failure stays its own."""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np
import pytest
from serving import at_once

from bastion.detectors.base import DetectorOutput
from bastion.items import Item
from bastion.moderator import Moderator, Verdict
from bastion.policy import parse_policy
from bastion.server.batching import MicroBatcher

POLICY = parse_policy(
    """
id: t
version: "1"
name: test
categories:
  - {id: a, name: A, severity: 2, definition: a}
"""
)


class LengthDetector:
    """Scores a text by its length; refuses texts containing 'boom'; records each call's size."""

    name = "length"

    def __init__(self) -> None:
        self.category_ids = ["a"]
        self.calls: list[int] = []

    def score(self, items: Sequence[Item]) -> DetectorOutput:
        if any("boom" in (i.text or "") for i in items):
            raise RuntimeError("boom in the batch")
        self.calls.append(len(items))
        scores = np.array([[min(1.0, len(i.text or "") / 100)] for i in items])
        return DetectorOutput(scores, [[] for _ in items])


def _burst(batcher: MicroBatcher, requests: list[list[str]]) -> list[list[Verdict] | Exception]:
    def send(i: int) -> list[Verdict]:
        return batcher.moderate([Item(t, id=f"{i}-{n}") for n, t in enumerate(requests[i])])

    return at_once([functools.partial(send, i) for i in range(len(requests))])


def test_concurrent_requests_share_a_call_and_get_their_own_verdicts() -> None:
    detector = LengthDetector()
    sizes: list[int] = []
    batcher = MicroBatcher(
        Moderator(POLICY, detectors=[detector], default_detectors=()),
        max_wait_ms=200,
        on_batch=sizes.append,
    )
    requests = [["x" * (10 * i + 1), "y" * (i + 1)] for i in range(8)]
    results = _burst(batcher, requests)
    batcher.close()
    assert max(sizes) > 2 and sum(sizes) == 16 and detector.calls == sizes
    for i, verdicts in enumerate(results):
        assert isinstance(verdicts, list)
        assert [v.id for v in verdicts] == [f"{i}-0", f"{i}-1"]
        assert verdicts[0].category_scores["a"] == pytest.approx(min(1.0, (10 * i + 1) / 100))


def test_a_failing_request_does_not_fail_its_batch_mates() -> None:
    batcher = MicroBatcher(
        Moderator(POLICY, detectors=[LengthDetector()], default_detectors=()), max_wait_ms=200
    )
    results = _burst(batcher, [["fine"], ["boom"], ["also fine", "ok"]])
    batcher.close()
    assert isinstance(results[1], RuntimeError)
    assert isinstance(results[0], list) and [v.id for v in results[0]] == ["0-0"]
    assert isinstance(results[2], list) and len(results[2]) == 2


def test_a_lone_request_waits_at_most_max_wait_and_close_drains() -> None:
    detector = LengthDetector()
    batcher = MicroBatcher(
        Moderator(POLICY, detectors=[detector], default_detectors=()), max_wait_ms=0, max_items=4
    )
    assert [v.id for v in batcher.moderate([Item("solo", id="s")])] == ["s"]
    assert batcher.moderate([]) == []
    results = _burst(batcher, [["a", "b", "c"], ["d", "e", "f"]])
    batcher.close()
    assert all(isinstance(r, list) and len(r) == 3 for r in results)
    assert max(detector.calls) <= 6  # max_items is a soft cap: whole requests are never split
    with pytest.raises(RuntimeError, match="closed"):
        batcher.moderate([Item("late")])
