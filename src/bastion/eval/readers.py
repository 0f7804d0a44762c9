"""Reading helpers for dataset adapters: CSV, JSON and JSONL readers whose every failure names the
file and the line or record, a row accumulator that skips empty texts, and the `Adapter` record
that says how one shared set is read and what its labels mean."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from bastion.errors import DatasetError
from bastion.eval.labels import LabelledSet

Use = Literal["ship-ok", "dev-only"]
Kind = Literal["posts", "prompts", "conversations"]
Loader = Callable[[Path], LabelledSet]
NAN = float("nan")


@dataclass(frozen=True)
class Adapter:
    """How one shared dataset is read and what its labels mean."""

    name: str
    path: str  # relative to the datasets folder: a file, or a folder for multi-file sets
    licence: str
    use: Use
    kind: Kind
    description: str  # documents the label mapping: what is 1, what is 0, what `native` holds
    loader: Loader
    label_maps: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    exclusive: bool = False  # one native label per row: a mapped row is negative elsewhere


# --------------------------------------------------------------------------------------------
# Reading helpers: every failure names the file and the line or record.


def decode_text(path: Path) -> str:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DatasetError(f"{path}: cannot read file: {exc.strerror or exc}") from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise DatasetError(
            f"{path}, line {line}: not valid UTF-8 (byte {raw[exc.start]:#04x}); "
            "save the file as UTF-8"
        ) from None


def columns_error(path: Path, what: str, missing: Sequence[str], columns: Sequence[str]) -> str:
    names = ", ".join(map(repr, missing))
    return f"{path}: no {what} {names}; columns are: {', '.join(map(repr, columns)) or '(none)'}"


CsvRows = Callable[[Sequence[str]], Iterator[tuple[int, dict[str, str]]]]


RecordRows = Callable[[int], Iterator[tuple[int, list[str]]]]


def delimited_table(source: str, text: str, delimiter: str = ",") -> tuple[list[str], RecordRows]:
    """The header of delimited text and a function yielding (line where a record starts, fields)
    for each record that has at least the given number of fields (a shorter one is an error
    naming the line). Fields are positional: ConvAbuse repeats some column names."""
    kind = "TSV" if delimiter == "\t" else "CSV"
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        header = next(reader)
    except StopIteration:
        raise DatasetError(f"{source}: empty file, expected a {kind} header") from None
    except csv.Error as exc:
        raise DatasetError(f"{source}, line 1: not valid {kind}: {exc}") from None

    def records(min_fields: int) -> Iterator[tuple[int, list[str]]]:
        start = reader.line_num + 1
        while True:
            try:
                values = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                raise DatasetError(f"{source}, line {start}: not valid {kind}: {exc}") from None
            if values:  # a blank line is skipped
                if len(values) < min_fields:
                    raise DatasetError(
                        f"{source}, line {start}: row has {len(values)} fields, expected "
                        f"{min_fields} (header has {len(header)})"
                    )
                yield start, values
            start = reader.line_num + 1

    return header, records


def csv_table(path: Path) -> tuple[list[str], CsvRows]:
    """The header of a CSV file and a function yielding (line where a record starts, row).

    The row function takes the columns every row must have a value for (a short row that lacks
    one is an error naming the line); other missing cells read as "".
    """
    header, records = delimited_table(str(path), decode_text(path))
    index = {name: i for i, name in reversed(list(enumerate(header)))}

    def rows(required: Sequence[str]) -> Iterator[tuple[int, dict[str, str]]]:
        for start, values in records(0):
            short = [c for c in required if index[c] >= len(values)]
            if short:
                raise DatasetError(
                    f"{path}, line {start}: row has {len(values)} fields, header has "
                    f"{len(header)}; no value for column(s) {', '.join(map(repr, short))}"
                )
            yield start, {k: values[i] if i < len(values) else "" for k, i in index.items()}

    return header, rows


def csv_rows(path: Path, required: Sequence[str]) -> Iterator[tuple[int, dict[str, str]]]:
    """(line, row) for each record of a CSV file that must have the `required` columns."""
    header, rows = csv_table(path)
    missing = [c for c in required if c not in header]
    if missing:
        raise DatasetError(columns_error(path, "column(s)", missing, header))
    return rows(required)


def json_document(path: Path) -> Any:
    text = decode_text(path)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{path}, line {exc.lineno}: not valid JSON: {exc.msg}") from None


def record_list(path: Path, doc: Any, key: str | None) -> list[Any]:
    records = doc.get(key) if key is not None and isinstance(doc, dict) else doc
    if not isinstance(records, list):
        where = f"a top-level object with a list under {key!r}" if key else "a top-level list"
        raise DatasetError(f"{path}: expected {where}")
    return records


def field_at(path: Path, where: str, obj: Any, *keys: str) -> Any:
    """obj[k1][k2]..., or a DatasetError naming the file, record and the missing key."""
    cur = obj
    for depth, key in enumerate(keys):
        if not isinstance(cur, dict) or key not in cur:
            dotted = ".".join(keys[: depth + 1])
            raise DatasetError(f"{path}, {where}: missing field {dotted!r}")
        cur = cur[key]
    return cur


def text_value(path: Path, where: str, value: Any, column: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise DatasetError(
            f"{path}, {where}: {column!r} must be a string, got {type(value).__name__}"
        )
    return value


def skipped_note(n: int) -> str:
    return f"skipped {n:,} empty rows." if n else ""


class Rows:
    """Accumulates rows of one set; skips and counts empty texts."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.texts: list[str] = []
        self.binary: list[float] = []
        self.native: list[str | None] = []
        self.ids: list[str] = []
        self.empty = 0

    def add(self, text: str, label: float, native: str | None, row_id: str) -> None:
        if not text.strip():
            self.empty += 1
            return
        self.texts.append(text)
        self.binary.append(label)
        self.native.append(native)
        self.ids.append(row_id)

    def build(self, note: str = "") -> LabelledSet:
        description = " ".join(s for s in (note, skipped_note(self.empty)) if s)
        return LabelledSet(
            self.name,
            self.texts,
            np.asarray(self.binary, dtype=np.float64),
            self.native,
            description=description,
            ids=self.ids,
        )


def json_lines(path: Path, hint: str = "") -> Iterator[tuple[int, dict[str, Any]]]:
    """(line, object) for each non-blank line of a JSON-lines file; a line that is not a JSON
    object is an error naming the file and line (`hint` is added to its message)."""
    for line, raw in enumerate(decode_text(path).split("\n"), 1):
        if not raw.strip():
            continue
        try:
            rec = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise DatasetError(f"{path}, line {line}: not valid JSON: {exc.msg}{hint}") from None
        if not isinstance(rec, dict):
            kind = type(rec).__name__
            raise DatasetError(f"{path}, line {line}: expected a JSON object, got {kind}{hint}")
        yield line, rec
