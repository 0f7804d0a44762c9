"""The review queue's words: an item's states, the labels a reviewer gives, the default queue.

Kept apart from `bastion.triage.queue`, which imports SQLAlchemy, so the command line can offer
them as choices (and show them in `--help`) without loading the database layer.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final

DEFAULT_QUEUE: Final = "default"
"""The queue a `ReviewQueue` works on when no name is given."""


class ItemState(StrEnum):
    """Where an item is in review. A claim past its expiry reads as `pending`."""

    pending = "pending"
    claimed = "claimed"
    decided = "decided"


class ReviewLabel(StrEnum):
    """What the reviewer concluded about the item."""

    violating = "violating"
    not_violating = "not_violating"
    unsure = "unsure"
