"""When each recall channel counts an item as found: `RecallSettings`.

Kept apart from `bastion.triage.recall`, which imports the moderator, so the command line can
show the defaults in `--help` without loading a model's libraries.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RecallSettings:
    """When each channel counts an item as found.

    `classifier_threshold` 0.2: deliberately low (recall, not a verdict; the queue sorts out the
    rest). `embedding_min_similarity` 0.4: the nearest positive exemplar is at least that close.
    With all-MiniLM-L6-v2 a close paraphrase is 0.7-0.8, a loose one ("transfer your eth to my
    address and receive 2x" against "send bitcoin, get double back") 0.44, unrelated posts
    under 0.2. The source
    channel: an author with at least `source_min_items` items whose aggregate (top-k mean of the
    per-item score, `source_k`) reaches `source_threshold` has every item scoring at least
    `source_item_floor` recalled. The metadata keys name where author, reach, reports and
    creation time are read from.
    """

    classifier_threshold: float = 0.2
    embedding_min_similarity: float = 0.4
    source_threshold: float = 0.35
    source_min_items: int = 3
    source_k: int = 5
    source_item_floor: float = 0.15
    author_key: str = "author"
    reach_key: str = "reach"
    reports_key: str = "reports"
    created_key: str = "created_at"
    batch_size: int = 512
