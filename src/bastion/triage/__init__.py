"""Triage: find likely-violating items, rank them by expected harm, and put them in front of reviewers.

The review queue (`bastion.triage.queue`) is where ranked items wait for people and where their
decisions come back from, for banks and for the ranker's training.
"""

from __future__ import annotations

from bastion.triage.queue import (
    DEFAULT_CLAIM_TTL_S,
    DEFAULT_QUEUE,
    ClaimError,
    ConfirmedViolation,
    EnqueueResult,
    ItemState,
    QueueCounts,
    QueueError,
    QueueItem,
    ReviewDecision,
    ReviewItem,
    ReviewLabel,
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
