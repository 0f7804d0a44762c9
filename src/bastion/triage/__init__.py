"""Triage: find likely-violating items, rank them by expected harm, and put them in front of reviewers.

The review queue (`bastion.triage.queue`) is where ranked items wait for people and where their
decisions come back from, for banks and for the ranker's training.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from bastion.triage.labels import DEFAULT_QUEUE, ItemState, ReviewLabel

if TYPE_CHECKING:
    from bastion.triage.queue import (
        DEFAULT_CLAIM_TTL_S,
        ClaimError,
        ConfirmedViolation,
        EnqueueResult,
        QueueCounts,
        QueueError,
        QueueItem,
        ReviewDecision,
        ReviewItem,
        ReviewQueue,
        TrainingExample,
        UnknownItemError,
        queue_names,
    )

__all__ = [
    "DEFAULT_CLAIM_TTL_S",
    "DEFAULT_QUEUE",
    "ClaimError",
    "ConfirmedViolation",
    "EnqueueResult",
    "ItemState",
    "QueueCounts",
    "QueueError",
    "QueueItem",
    "ReviewDecision",
    "ReviewItem",
    "ReviewLabel",
    "ReviewQueue",
    "TrainingExample",
    "UnknownItemError",
    "queue_names",
]


def __getattr__(name: str) -> Any:
    """The queue itself is loaded on first use: it imports SQLAlchemy, which the command line
    does not need to list its options."""
    if name in __all__:
        from bastion.triage import queue

        return getattr(queue, name)
    raise AttributeError(f"module 'bastion.triage' has no attribute {name!r}")
