"""What a bank holds and returns: entries with their labels, and matches against them.

Every kind of bank (hash, text, embedding) stores `Entry` rows in its `entries.jsonl` and answers
with `Match` objects, so recall, ranking and the review queue treat a PDQ hit, a near-duplicate
text and an embedding neighbour alike. An entry marked `negative` is an allow-list entry: known
*not* to violate (a news photo that is often re-uploaded, a quoted slur in a policy document);
a match on it suppresses the bank's other matches for that item, and embedding banks use
negatives as the "what it is not" side of their contrastive score.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

from bastion.banks.files import BankError

#: Signal types, as ThreatExchange names them where it has a name.
SIGNALS = ("pdq", "vpdq", "md5", "text", "embedding")


@dataclass(frozen=True, slots=True)
class Label:
    """Why an entry is in the bank: the policy category, its severity (0 = none .. 4 = most
    severe, as policies rate categories), where it came from, and free notes."""

    category: str
    severity: int = 2
    source: str = ""
    notes: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.category, str) or not self.category.strip():
            raise BankError("an entry's label needs a category")
        if isinstance(self.severity, bool) or not isinstance(self.severity, int):
            raise BankError(f"severity must be an integer 0-4, got {self.severity!r}")
        if not 0 <= self.severity <= 4:
            raise BankError(f"severity must be 0-4, got {self.severity}")


@dataclass(frozen=True, slots=True)
class Entry:
    """One known item: `signal` says what `value` is (a PDQ or MD5 hex string, a vPDQ frame
    hash, a text, or for embedding banks the exemplar text that was embedded)."""

    id: str
    signal: str
    value: str
    label: Label
    negative: bool = False
    added_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "signal": self.signal,
            "value": self.value,
            "category": self.label.category,
            "severity": self.label.severity,
            "source": self.label.source,
            "notes": self.label.notes,
            "negative": self.negative,
            "added_at": self.added_at.isoformat(),
        }

    @classmethod
    def from_json(cls, row: dict[str, Any]) -> Entry:
        try:
            signal = str(row["signal"])
            if signal not in SIGNALS:
                raise BankError(f"unknown signal type {signal!r} (known: {', '.join(SIGNALS)})")
            return cls(
                id=str(row["id"]),
                signal=signal,
                value=str(row["value"]),
                label=_label(
                    str(row["category"]),
                    int(row.get("severity", 2)),
                    str(row.get("source", "")),
                    str(row.get("notes", "")),
                ),
                negative=bool(row.get("negative", False)),
                added_at=datetime.fromisoformat(str(row["added_at"]))
                if row.get("added_at")
                else datetime.now(UTC),
            )
        except KeyError as exc:
            raise BankError(f"a bank entry is missing {exc.args[0]!r}") from None
        except (TypeError, ValueError) as exc:
            raise BankError(f"a bank entry is malformed: {exc}") from None


@dataclass(frozen=True)
class Match:
    """An item matched an entry. `distance` is in the signal's own unit: Hamming bits for PDQ
    and vPDQ, 0 for MD5, 1 - Jaccard for text, 1 - cosine for embeddings (smaller is closer)."""

    bank: str
    bank_version: int
    entry_id: str
    signal: str
    distance: float
    label: Label
    negative: bool = False


def bank_path(home: Path, name: str) -> Path:
    from bastion.banks.files import banks_dir, check_name

    return banks_dir(home) / check_name(name)


@lru_cache(maxsize=4096)
def _label(category: str, severity: int, source: str, notes: str) -> Label:
    """One shared Label per distinct label read back: a bank of a million hashes usually holds
    a handful of labels, and a Label each would cost tens of megabytes."""
    return Label(category, severity, source, notes)
