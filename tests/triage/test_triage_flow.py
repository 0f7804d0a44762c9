"""The triage loop end to end: a bank, recall from a pool, rank, queue, claim, decide, and the
decision back in the bank, where the next recall uses it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bastion.banks.embeddings import EmbeddingBank
from bastion.banks.entries import Entry, Label
from bastion.batch.inputs import open_input
from bastion.moderator import Moderator
from bastion.triage import QueueItem, ReviewLabel, ReviewQueue
from bastion.triage.feedback import add_confirmed_to_bank
from bastion.triage.rank import rank
from bastion.triage.recall import recall
from scam_texts import BENIGN, LOOKALIKES, PARAPHRASES, SCAM

SEVERITY = {"fraud": 3}


@pytest.mark.parametrize("backend", ["sqlite"])
def test_recall_rank_review_and_the_decision_lands_in_the_bank(
    tmp_path: Path, queue: ReviewQueue
) -> None:
    moderator = Moderator("openai")
    bank = EmbeddingBank.create(tmp_path / "banks" / "scam", "scam", {})
    bank = bank.add(
        [Entry(f"scam-{i}", "embedding", t, Label("fraud", 3)) for i, t in enumerate(SCAM[:3])]
        + [
            Entry(f"fine-{i}", "embedding", t, Label("fraud", 0), negative=True)
            for i, t in enumerate(LOOKALIKES)
        ]
    )
    rows = [{"id": f"para-{i}", "text": t, "reach": 100} for i, t in enumerate(PARAPHRASES)]
    rows += [{"id": f"benign-{i}", "text": t, "reach": 10} for i, t in enumerate(BENIGN)]
    rows += [{"id": "media-only", "images": ["missing.jpg"]}]  # refused media: an error row
    pool = tmp_path / "pool.jsonl"
    pool.write_text("\n".join(json.dumps(r) for r in rows), "utf-8")

    found = recall(open_input(pool), moderator, banks=[bank])
    ranked = rank(found.candidates)
    assert ranked and {r.candidate.item_id for r in ranked} >= {"para-0", "para-2"}
    result = queue.enqueue(
        QueueItem(
            r.candidate.item_id,
            priority=float(len(ranked) - r.position),
            expected_harm=r.expected_harm,
            text=r.candidate.text,
            channels=list(r.candidate.channels),
            features=r.features,
        )
        for r in ranked
    )
    assert len(result.added) == len(ranked)

    claimed = queue.claim("ana", n=len(ranked))
    assert [c.item_id for c in claimed] == [r.candidate.item_id for r in ranked]
    for item in claimed:
        violating = item.item_id.startswith("para")
        queue.decide(
            item.item_id,
            "ana",
            ReviewLabel.violating if violating else ReviewLabel.not_violating,
            categories=["fraud"] if violating else [],
            note="crypto doubling scam" if violating else "",
        )

    fed = add_confirmed_to_bank(queue, bank, SEVERITY)
    confirmed = [r.candidate.item_id for r in ranked if r.candidate.item_id.startswith("para")]
    assert sorted(fed.added) == sorted(f"review:default:{i}" for i in confirmed)
    entry = next(e for e in fed.bank.entries if e.id == f"review:default:{confirmed[0]}")
    assert entry.label.category == "fraud" and entry.label.severity == 3
    assert entry.label.source == "review:ana" and entry.label.notes == "crypto doubling scam"
    assert (
        entry.value
        == dict(zip((f"para-{i}" for i in range(3)), PARAPHRASES, strict=True))[confirmed[0]]
    )
    # The bank on disk has them too, and a second call adds nothing.
    reopened = EmbeddingBank.open(tmp_path / "banks" / "scam")
    assert {e.id for e in reopened.entries} >= set(fed.added)
    assert add_confirmed_to_bank(queue, reopened, SEVERITY).added == []
