"""Reading a backlog for batch scoring: JSONL or Parquet, planned into chunks, read in batches, never whole.

A backlog may not fit in memory, so nothing here loads a file: `plan` cuts the input into
contiguous chunks (Parquet from its metadata, JSONL in one pass that notes where each chunk's
bytes start), and `read` yields one chunk's rows a batch at a time. A chunk is small and plain,
so a worker on another machine can read its slice from the chunk alone.

Every input row becomes an `InputRow`: its position, and a `Record` holding an Item or the reason
there is none. JSONL lines are parsed by `bastion.records.parse_line`, the `bastion moderate`
file contract, so both commands accept and refuse the same lines. A Parquet row's text comes from
one column (`--text-column`, default `text`) and its id from another (`--id-column`, default
`id`, optional unless named); a null text is reported on its row, while a text column of a type
that cannot hold text (numbers, lists) is refused before anything is scored, since every row of
it would fail the same way.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import pyarrow as pa
import pyarrow.parquet as pq

from bastion.errors import InputError
from bastion.items import Item
from bastion.records import Record, count_lines, parse_line

JSONL_SUFFIXES = (".jsonl", ".ndjson")
PARQUET_SUFFIXES = (".parquet", ".pq")
DEFAULT_TEXT_COLUMN = "text"
DEFAULT_ID_COLUMN = "id"

# Rows decoded from Parquet at a time while skipping to a chunk's start (decoding text is cheap).
_PARQUET_READ_ROWS = 4096


@dataclass(frozen=True)
class Chunk:
    """A contiguous slice of the input that one task reads: rows `start_row` .. `start_row + rows`.

    A JSONL chunk also carries its byte range and the line number it starts at, so a worker seeks
    straight to it; a Parquet chunk needs only its rows (the file's metadata says where they are).
    """

    start_row: int
    rows: int
    first_line: int = 1
    byte_start: int = 0
    byte_end: int = 0


@dataclass(frozen=True)
class InputRow:
    """One input row: its 0-based position among the input's rows, and what it was read as."""

    row: int
    record: Record


class BatchInput(Protocol):
    """A backlog file that can be counted, planned into chunks and read one chunk at a time.

    Implementations hold only plain values (paths, column names, row counts), so they pickle
    cheaply to Ray workers.
    """

    path: Path
    name: str

    def count(self) -> int:
        """How many rows the input has (JSONL: one pass counting non-blank lines)."""
        ...

    def plan(self, rows_per_chunk: int) -> list[Chunk]:
        """Contiguous chunks of at most `rows_per_chunk` rows that together cover the input, in order."""
        ...

    def read(self, chunk: Chunk, batch_size: int) -> Iterator[list[InputRow]]:
        """The chunk's rows in order, in lists of at most `batch_size`."""
        ...


def open_input(
    path: Path | str,
    *,
    text_column: str | None = None,
    id_column: str | None = None,
    metadata_columns: Sequence[str] = (),
) -> BatchInput:
    """The input reader for a file, chosen by its suffix; refuses what cannot be read before any scoring.

    `text_column` and `id_column` choose Parquet columns; a JSONL line always has `text` and `id`
    (the `bastion moderate` file contract), so naming columns for JSONL is refused.
    `metadata_columns` are Parquet columns read into each Item's metadata (author, reach,
    reports... for triage); JSONL lines carry every other field as metadata already. A named
    column the file lacks is refused up front.
    """
    name = str(path)
    path = Path(path)
    if not path.exists():
        raise InputError(f"{name}: no such file")
    if not path.is_file():
        raise InputError(f"{name}: not a file")
    suffix = path.suffix.lower()
    if suffix in JSONL_SUFFIXES:
        if text_column is not None or id_column is not None:
            raise InputError(
                f"{name}: --text-column and --id-column are for Parquet input; a JSONL line "
                "has 'text' and 'id' fields"
            )
        return JsonlInput(path.resolve(), name)
    if suffix in PARQUET_SUFFIXES:
        return ParquetInput(path.resolve(), name, text_column, id_column, metadata_columns)
    known = ", ".join((*JSONL_SUFFIXES, *PARQUET_SUFFIXES))
    raise InputError(
        f"{name}: unknown input format '{path.suffix or '(no suffix)'}'; name the file with one "
        f"of {known}"
    )


class JsonlInput:
    """A JSONL file: one item per non-blank line, parsed as `bastion moderate --input` parses it."""

    def __init__(self, path: Path, name: str) -> None:
        self.path = path
        self.name = name

    def count(self) -> int:
        return count_lines(self.path)

    def plan(self, rows_per_chunk: int) -> list[Chunk]:
        if rows_per_chunk < 1:
            raise ValueError("rows_per_chunk must be at least 1")
        chunks: list[Chunk] = []
        start_row = rows = byte_start = position = 0
        first_line = 1
        with open(self.path, "rb") as fh:
            for number, raw in enumerate(fh, start=1):
                if raw.strip():
                    if rows == rows_per_chunk:
                        chunks.append(Chunk(start_row, rows, first_line, byte_start, position))
                        start_row += rows
                        rows, first_line, byte_start = 0, number, position
                    rows += 1
                position += len(raw)
        if rows:
            chunks.append(Chunk(start_row, rows, first_line, byte_start, position))
        return chunks

    def read(self, chunk: Chunk, batch_size: int) -> Iterator[list[InputRow]]:
        row, number = chunk.start_row, chunk.first_line - 1
        batch: list[InputRow] = []
        with open(self.path, "rb") as fh:
            fh.seek(chunk.byte_start)
            left = chunk.byte_end - chunk.byte_start
            while left > 0:
                raw = fh.readline()
                if not raw:
                    break
                left -= len(raw)
                number += 1
                if not raw.strip():
                    continue
                record = parse_line(raw, self.name, number, base=self.path.parent)
                batch.append(InputRow(row, record))
                row += 1
                if len(batch) >= batch_size:
                    yield batch
                    batch = []
        if batch:
            yield batch
        _check_complete(self.name, chunk, row)


class ParquetInput:
    """A Parquet file: text and id from named columns, read a row group's batches at a time."""

    def __init__(
        self,
        path: Path,
        name: str,
        text_column: str | None,
        id_column: str | None,
        metadata_columns: Sequence[str] = (),
    ) -> None:
        self.path = path
        self.name = name
        try:
            parquet = pq.ParquetFile(path)
        except (pa.ArrowException, OSError) as exc:
            raise InputError(f"{name}: not a readable Parquet file ({exc})") from None
        schema = parquet.schema_arrow
        columns = ", ".join(schema.names) or "none"
        self.text_column = text_column or DEFAULT_TEXT_COLUMN
        if self.text_column not in schema.names:
            raise InputError(
                f"{name} has no column '{self.text_column}' (its columns: {columns}); "
                "name the text column with --text-column"
            )
        kind = schema.field(self.text_column).type
        if not _holds_text(kind):
            raise InputError(
                f"{name}: column '{self.text_column}' holds {kind}, not text; name the text "
                "column with --text-column"
            )
        self.id_column: str | None = id_column or DEFAULT_ID_COLUMN
        if self.id_column not in schema.names:
            if id_column is not None:
                raise InputError(
                    f"{name} has no column '{id_column}' (its columns: {columns}); "
                    "name the id column with --id-column"
                )
            self.id_column = None  # no ids: rows are known by position
        missing = [c for c in metadata_columns if c not in schema.names]
        if missing:
            raise InputError(f"{name} has no column '{missing[0]}' (its columns: {columns})")
        self.metadata_columns = [
            c
            for c in dict.fromkeys(metadata_columns)
            if c not in (self.text_column, self.id_column)
        ]
        metadata = parquet.metadata
        self.group_rows = [metadata.row_group(g).num_rows for g in range(metadata.num_row_groups)]

    def count(self) -> int:
        return sum(self.group_rows)

    def plan(self, rows_per_chunk: int) -> list[Chunk]:
        if rows_per_chunk < 1:
            raise ValueError("rows_per_chunk must be at least 1")
        total = self.count()
        return [
            Chunk(start, min(rows_per_chunk, total - start))
            for start in range(0, total, rows_per_chunk)
        ]

    def read(self, chunk: Chunk, batch_size: int) -> Iterator[list[InputRow]]:
        parquet = pq.ParquetFile(self.path)
        columns = (
            [self.text_column]
            + ([self.id_column] if self.id_column else [])
            + self.metadata_columns
        )
        row, end = chunk.start_row, chunk.start_row + chunk.rows
        batch: list[InputRow] = []
        group_start = 0
        for group, size in enumerate(self.group_rows):
            group_end = group_start + size
            if group_end <= row or size == 0:
                group_start = group_end
                continue
            if group_start >= end:
                break
            position = group_start
            read_rows = max(batch_size, _PARQUET_READ_ROWS)
            for part in parquet.iter_batches(
                batch_size=read_rows, row_groups=[group], columns=columns
            ):
                lo, hi = max(row - position, 0), min(end - position, part.num_rows)
                if lo < hi:
                    texts = part.column(self.text_column).slice(lo, hi - lo).to_pylist()
                    ids = (
                        part.column(self.id_column).slice(lo, hi - lo).to_pylist()
                        if self.id_column
                        else [None] * (hi - lo)
                    )
                    extra = {
                        c: part.column(c).slice(lo, hi - lo).to_pylist()
                        for c in self.metadata_columns
                    }
                    for k, (text, raw_id) in enumerate(zip(texts, ids, strict=True)):
                        meta = {c: values[k] for c, values in extra.items()}
                        batch.append(InputRow(row, self._record(row, text, raw_id, meta)))
                        row += 1
                        if len(batch) >= batch_size:
                            yield batch
                            batch = []
                position += part.num_rows
                if position >= end:
                    break
            group_start = group_end
        if batch:
            yield batch
        _check_complete(self.name, chunk, row)

    def _record(
        self, row: int, text: Any, raw_id: Any, metadata: dict[str, Any] | None = None
    ) -> Record:
        """A row as a Record; `line` is the row's number counted from 1, as in error messages."""
        line = row + 1
        where = f"{self.name}:{line}"
        item_id = _id_text(raw_id)
        if isinstance(text, bytes):
            try:
                text = text.decode("utf-8")
            except UnicodeDecodeError as exc:
                return Record(
                    line,
                    None,
                    item_id,
                    f"{where}: '{self.text_column}' is not UTF-8 (invalid byte at {exc.start})",
                )
        if text is None:
            return Record(line, None, item_id, f"{where}: '{self.text_column}' is null")
        return Record(line, Item(text=text, id=item_id, metadata=metadata or {}), item_id)


def _holds_text(kind: Any) -> bool:
    """String or binary columns (dictionary-encoded too), or a column that is all null."""
    if pa.types.is_dictionary(kind):
        kind = kind.value_type
    checks = (
        pa.types.is_string,
        pa.types.is_large_string,
        pa.types.is_string_view,
        pa.types.is_binary,
        pa.types.is_large_binary,
        pa.types.is_binary_view,
        pa.types.is_null,
    )
    return any(check(kind) for check in checks)


def _id_text(value: Any) -> str | None:
    """An id as text, the way `parse_line` turns a JSON id into one."""
    if value is None:
        return None
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)


def _check_complete(name: str, chunk: Chunk, row: int) -> None:
    """A chunk that ends short means the file changed after it was planned."""
    if row != chunk.start_row + chunk.rows:
        raise InputError(
            f"{name}: rows {chunk.start_row}..{chunk.start_row + chunk.rows - 1} were planned but "
            f"{row - chunk.start_row} were read; the file changed while it was being scored"
        )
