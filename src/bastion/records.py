"""Reading item files line by line: every line becomes an Item or a named error, none is dropped.

This is the public file contract of `bastion moderate --input`: each input line is a JSON object
with `id` and `text`, and optionally `images` (a list), `video` and `audio`: file paths relative
to the input file, or base64 data URIs; `text` may then be left out. Other fields ride along as
metadata. Each output line carries the same `id` (and the input `line` number) with the
Verdict's fields and `error`, null when the line was scored; a line with an `error` has
`flagged` null and `action` "review", never "allow".
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import IO, Any

from bastion.errors import BastionError, InputError
from bastion.items import Item
from bastion.media.sources import MediaSource
from bastion.policy import UNSCORED_ACTION


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
            yield parse_line(raw, name, number, base=Path(path).parent)
    finally:
        if handle is None:
            stream.close()


MEDIA_FIELDS = ("images", "video", "audio")


def parse_line(raw: bytes, name: str, number: int, base: Path | None = None) -> Record:
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
    has_media = any(obj.get(f) not in (None, []) for f in MEDIA_FIELDS)
    if "text" not in obj and not has_media:
        return Record(
            number, None, item_id, f"{where}: missing the 'text' field (or images, video, audio)"
        )
    obj.setdefault("text", "")
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
    metadata = {k: v for k, v in obj.items() if k not in ("id", "text", *MEDIA_FIELDS)}
    try:
        media = _media_fields(obj, base)
        item = Item(text=obj["text"], id=item_id, metadata=metadata, **media)
    except BastionError as exc:
        return Record(number, None, item_id, f"{where}: {exc}")
    return Record(number, item, item_id)


def _media_fields(obj: dict[str, Any], base: Path | None) -> dict[str, Any]:
    """`images` (a list), `video`, `audio` as MediaSources; paths relative to the input file."""
    out: dict[str, Any] = {}
    images = obj.get("images")
    if images is not None:
        if not isinstance(images, list) or not all(isinstance(v, str) for v in images):
            raise InputError("'images' must be a list of paths or data URIs (strings)")
        out["images"] = [MediaSource.of(v, "image", base=base) for v in images]
    for kind in ("video", "audio"):
        value = obj.get(kind)
        if value is None:
            continue
        if not isinstance(value, str):
            raise InputError(f"'{kind}' must be a path or a data URI (a string)")
        out[kind] = MediaSource.of(value, kind, base=base)  # type: ignore[arg-type]
    return out


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
    """The stable output object for one input line.

    A line that was not scored fails closed as its Verdict does: `flagged` null (unknown) and
    `action` "review", with the `error` that says why.
    """
    out: dict[str, Any] = {"id": record.id, "line": record.line}
    if verdict is None or record.error:
        out.update(
            flagged=None,
            categories=None,
            category_scores=None,
            action=UNSCORED_ACTION.value,
            error=record.error,
        )
        return out
    out.update(
        flagged=verdict.flagged,
        categories=verdict.categories or None,
        category_scores=verdict.category_scores or None,
        action=verdict.action.value,
        truncated=verdict.truncated,
        category_applied_input_types=verdict.category_applied_input_types or None,
        policy_version=verdict.policy_version,
        model_version=verdict.model_version,
        error=(f"line {record.line}: {verdict.error}" if verdict.error else None),
    )
    if verdict.hashes:
        out["hashes"] = [h.model_dump() for h in verdict.hashes]
    if verdict.rationale:
        out["rationale"] = verdict.rationale
    if evidence:
        out["evidence"] = [e.model_dump() for e in verdict.evidence]
    return out


def stop_error(record: Record) -> InputError:
    return InputError(
        f"{record.error} (stopping because --on-error stop; earlier lines were written)"
    )
