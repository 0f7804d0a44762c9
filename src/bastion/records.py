"""Reading item files line by line: every line becomes an Item or a named error, none is dropped.

This is the public file contract of `bastion moderate --input`: each input line is a JSON object
with `id` and `text` (other fields ride along as metadata); each output line carries the same `id`
(and the input `line` number) with the Verdict's fields and `error`, null when the line was scored.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import IO, Any

from bastion.errors import InputError
from bastion.items import Item


class OnError(StrEnum):
    """What to do with a line that cannot be read: record it and go on, or stop the run."""

    skip = "skip"
    stop = "stop"


@dataclass
class Record:
    """One input line: an Item to score, or the reason it could not become one."""

    line: int
    item: Item | None
    id: str | None
    error: str | None = None


def read_records(path: Path | str, handle: IO[bytes] | None = None) -> Iterator[Record]:
    """Yield one Record per line of a JSONL file (blank lines are skipped and not counted as items)."""
    name = str(path)
    stream = handle if handle is not None else open(path, "rb")  # noqa: SIM115
    try:
        for number, raw in enumerate(stream, start=1):
            if not raw.strip():
                continue
            yield parse_line(raw, name, number)
    finally:
        if handle is None:
            stream.close()


def parse_line(raw: bytes, name: str, number: int) -> Record:
    where = f"{name}:{number}"
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return Record(
            number,
            None,
            _salvage_id(raw),
            f"{where}: invalid UTF-8 at byte {exc.start} of the line; re-encode the file as UTF-8",
        )
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        return Record(
            number, None, None, f"{where}: malformed JSON ({exc.msg} at column {exc.colno})"
        )
    if not isinstance(obj, dict):
        return Record(
            number, None, None, f"{where}: expected a JSON object, got {type(obj).__name__}"
        )
    raw_id = obj.get("id")
    item_id = None if raw_id is None else str(raw_id)
    if "text" not in obj:
        return Record(number, None, item_id, f"{where}: missing the 'text' field")
    if not isinstance(obj["text"], str):
        kind = type(obj["text"]).__name__
        return Record(number, None, item_id, f"{where}: 'text' must be a string, got {kind}")
    try:
        obj["text"].encode("utf-8")
    except UnicodeEncodeError as exc:
        return Record(
            number,
            None,
            item_id,
            f"{where}: 'text' has an unpaired surrogate escape at character {exc.start} "
            "(a \\ud800-\\udfff escape without its partner); fix the producer's JSON encoding",
        )
    metadata = {k: v for k, v in obj.items() if k not in ("id", "text")}
    return Record(number, Item(text=obj["text"], id=item_id, metadata=metadata), item_id)


def _salvage_id(raw: bytes) -> str | None:
    """Recover the id of a line with bad bytes elsewhere, so its error line can still be joined."""
    try:
        obj = json.loads(raw.decode("utf-8", errors="replace"))
    except json.JSONDecodeError:
        return None
    value = obj.get("id") if isinstance(obj, dict) else None
    return None if value is None else str(value)


def count_lines(path: Path | str) -> int:
    with open(path, "rb") as fh:
        return sum(1 for raw in fh if raw.strip())


def output_line(record: Record, verdict: Any | None, *, evidence: bool = False) -> dict[str, Any]:
    """The stable output object for one input line."""
    out: dict[str, Any] = {"id": record.id, "line": record.line}
    if verdict is None or record.error:
        out.update(
            flagged=None,
            categories=None,
            category_scores=None,
            action=None,
            error=record.error,
        )
        return out
    out.update(
        flagged=verdict.flagged if not verdict.error else None,
        categories=verdict.categories or None,
        category_scores=verdict.category_scores or None,
        action=verdict.action.value if not verdict.error else None,
        truncated=verdict.truncated,
        policy_version=verdict.policy_version,
        model_version=verdict.model_version,
        error=(f"line {record.line}: {verdict.error}" if verdict.error else None),
    )
    if evidence:
        out["evidence"] = [e.model_dump() for e in verdict.evidence]
    return out


def stop_error(record: Record) -> InputError:
    return InputError(
        f"{record.error} (stopping because --on-error stop; earlier lines were written)"
    )
