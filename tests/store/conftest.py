"""Fixtures for the store tests: a migrated store on each backend (see tests/databases.py) and a
decision-record factory."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from bastion.store import DecisionRecord
from databases import backend, database_url, home, store  # noqa: F401  (fixtures)

MakeRecord = Callable[..., DecisionRecord]


@pytest.fixture
def make_record() -> MakeRecord:
    """Build a DecisionRecord with awkward-to-round-trip values; keyword arguments override fields."""

    def build(index: int = 0, **overrides: Any) -> DecisionRecord:
        fields: dict[str, Any] = {
            "request_id": "req-1",
            "item_index": index,
            "item_id": f"item-{index}",
            "content_hash": f"sha256:{index:064x}",
            "policy_version": "openai@1.2.0",
            "model_version": "default-2025-01",
            "flagged": index % 2 == 0,
            "action": "block" if index % 2 == 0 else None,
            "scores": {"hate": 1 / 3, "violence": 0.1 + 0.2, "self-harm": 5e-324, "sexual": 1.0},
            "categories": ["hate", "violence"] if index % 2 == 0 else [],
            "error": None,
            "key_id": "key_0123456789ab",
            "project": "default",
            "route": "/v1/moderate",
            "latency_ms": 12.345678901234567,
            "content": "héllo ✓ wörld",
        }
        fields.update(overrides)
        return DecisionRecord(**fields)

    return build
