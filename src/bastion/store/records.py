"""The decision log's record: one scored (or failed) item of one request, as the server logs it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class DecisionRecord:
    """One item's decision, enough to answer later "what did we decide about this, and why".

    `content_hash` identifies the content without keeping it; `content` itself is only set when
    the deployment chooses to retain content. `created_at` is left unset by the caller: the
    store stamps it (UTC) when the batch is logged, so the log's clock is the database host's.
    """

    request_id: str
    item_index: int
    item_id: str | None
    content_hash: str
    policy_version: str
    model_version: str
    flagged: bool | None
    action: str | None
    scores: dict[str, float]
    categories: list[str]
    error: str | None
    key_id: str | None
    project: str | None
    route: str
    latency_ms: float | None = None
    content: str | None = None
    created_at: datetime | None = None
