"""Reviewer decisions back into banks: confirmed violations become known content in one call.

The loop a safety team runs: recall finds candidates with the banks it has, reviewers confirm
some, and the confirmed ones join a bank so the next recall finds their copies and paraphrases
directly. Only items a reviewer labelled violating are added, each at most once (the entry id is
`review:<queue>:<item id>`, so a second call adds only what was decided since), labelled with
the reviewer's first category, that category's severity in the policy, the reviewer as source
and the reviewer's note.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from bastion.banks.base import Bank, MediaBank
from bastion.banks.entries import Entry, Label
from bastion.triage.queue import ConfirmedViolation, ReviewQueue


@dataclass(frozen=True)
class FeedbackResult:
    """What `add_confirmed_to_bank` did: the bank after the change, the entry ids added, and
    the confirmed items it could not use (with why)."""

    bank: Bank
    added: list[str]
    skipped: list[str] = field(default_factory=list)


def entry_id(violation: ConfirmedViolation) -> str:
    return f"review:{violation.queue}:{violation.item_id}"


def add_confirmed_to_bank(
    queue: ReviewQueue,
    bank: Bank,
    severity: Mapping[str, int],
    *,
    since: datetime | None = None,
    to_entries: Callable[[ConfirmedViolation, Label, str], Sequence[Entry]] | None = None,
) -> FeedbackResult:
    """Add the queue's confirmed violations (decided at or after `since`) to `bank`.

    A bank of texts (text, embedding) takes the item's text. A media bank (hash) needs the
    media hashed; pass `to_entries` (violation, label, entry id) → entries to say how (the hash
    bank's own helper does it from the media paths). An item without what the bank needs is
    reported in `skipped`, never silently dropped.
    """
    have = {e.id for e in bank.entries}
    entries: list[Entry] = []
    added: list[str] = []
    skipped: list[str] = []
    holds_text = not isinstance(bank, MediaBank)
    for violation in queue.confirmed_violations(since=since):
        key = entry_id(violation)
        if key in have:
            continue
        category = violation.categories[0] if violation.categories else "unspecified"
        label = Label(
            category=category,
            severity=int(severity.get(category, 2)),
            source=f"review:{violation.reviewer}",
            notes=violation.note,
        )
        if to_entries is not None:
            made = list(to_entries(violation, label, key))
        elif holds_text and violation.text:
            signal = bank.default_signal(violation.text)
            made = [Entry(key, signal, violation.text, label)]
        else:
            made = []
        if not made:
            need = "text" if holds_text else "media to hash"
            skipped.append(f"{violation.item_id}: has no {need} for a {bank.manifest.kind} bank")
            continue
        entries.extend(made)
        added.extend(e.id for e in made)
        have.add(key)
    updated = bank.add(entries) if entries else bank
    return FeedbackResult(updated, added, skipped)
