"""Writing batch-scoring results: one row per input row, JSONL or Parquet by suffix, all or nothing.

Each output row has the same fields in both formats (Parquet keeps `categories` and
`category_scores` as structs with one field per category, in policy order):

- `row`: the input row's position, from 0; `line`: the JSONL line (or Parquet row) number, from 1,
  as error messages cite it;
- `id`, `flagged`, `categories`, `category_scores`, `action`, `truncated`: as `bastion moderate`
  writes them (the row is built by `bastion.records.output_line`), null when not scored, except
  `action`, which is then "review": a row that could not be scored is never "allow";
- `policy_version`, `model_version`: on every row, scored or not, so a file says what made it;
- `error`: why the row was not scored (missing, empty or non-string text, bad JSON), else null.

Rows go to a hidden temporary file beside the output, which replaces the output only when every
row has been written; a run that fails or is interrupted leaves any earlier output untouched.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import IO, Any

import pyarrow as pa
import pyarrow.parquet as pq

from bastion.atomic import fsync
from bastion.batch.inputs import InputRow
from bastion.errors import InputError
from bastion.moderator import Moderator, Verdict
from bastion.records import output_line

# Parquet rows buffered per row group: big enough for readers, small next to a backlog.
_ROW_GROUP_ROWS = 16_384


class OutputFormat(StrEnum):
    jsonl = "jsonl"
    parquet = "parquet"


_SUFFIXES = {
    ".jsonl": OutputFormat.jsonl,
    ".ndjson": OutputFormat.jsonl,
    ".parquet": OutputFormat.parquet,
    ".pq": OutputFormat.parquet,
}


def check_output(path: Path | str, input_path: Path | str | None = None) -> OutputFormat:
    """The output's format from its suffix; refuses a path that cannot be written before any scoring."""
    path = Path(path)
    fmt = _SUFFIXES.get(path.suffix.lower())
    if fmt is None:
        known = ", ".join(_SUFFIXES)
        raise InputError(
            f"{path}: unknown output format '{path.suffix or '(no suffix)'}'; name the output "
            f"with one of {known}"
        )
    if not path.parent.is_dir():
        raise InputError(f"{path}: the directory {path.parent} does not exist")
    if path.is_dir():
        raise InputError(f"{path}: is a directory; give a file name")
    if input_path is not None and path.resolve() == Path(input_path).resolve():
        raise InputError(f"{path}: the output would overwrite the input")
    return fmt


def output_schema(category_ids: Sequence[str]) -> pa.Schema:
    """The Arrow schema of an output row for a policy with these categories."""
    return pa.schema(
        [
            ("row", pa.int64()),
            ("line", pa.int64()),
            ("id", pa.string()),
            ("flagged", pa.bool_()),
            ("categories", pa.struct([(c, pa.bool_()) for c in category_ids])),
            ("category_scores", pa.struct([(c, pa.float64()) for c in category_ids])),
            ("action", pa.string()),
            ("truncated", pa.bool_()),
            ("policy_version", pa.string()),
            ("model_version", pa.string()),
            ("error", pa.string()),
        ]
    )


def score_rows(moderator: Moderator, rows: Sequence[InputRow]) -> list[dict[str, Any]]:
    """Score the rows that have an Item in one call; every row, scored or not, gets an output row."""
    items = [r.record.item for r in rows if r.record.item is not None]
    verdicts = iter(moderator.moderate(items))
    out = []
    for r in rows:
        verdict = next(verdicts) if r.record.item is not None else None
        out.append(output_row(r, verdict, moderator.policy.version, moderator.model_version))
    return out


def output_row(
    row: InputRow, verdict: Verdict | None, policy_version: str, model_version: str
) -> dict[str, Any]:
    """One output row: `bastion moderate`'s output line, with the row and the versions always set."""
    line = output_line(row.record, verdict)
    return {
        "row": row.row,
        "line": line["line"],
        "id": line["id"],
        "flagged": line["flagged"],
        "categories": line["categories"],
        "category_scores": line["category_scores"],
        "action": line["action"],
        "truncated": line.get("truncated"),
        "policy_version": policy_version,
        "model_version": model_version,
        "error": line["error"],
    }


@dataclass
class ScoreSummary:
    """What a run wrote: rows, how many were flagged or could not be scored, and how long it took."""

    output: Path
    rows: int = 0
    flagged: int = 0
    errors: int = 0
    seconds: float = 0.0

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else 0.0


class OutputWriter:
    """Appends output rows to a temporary file; `commit` moves it onto the output, `abort` removes it."""

    def __init__(self, path: Path, schema: pa.Schema) -> None:
        self.path = path
        self.format = check_output(path)
        self.schema = schema
        self.temp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.partial")
        self.summary = ScoreSummary(path)
        self._text: IO[str] | None = None
        self._parquet: Any = None
        self._pending: list[dict[str, Any]] = []
        if self.format is OutputFormat.jsonl:
            self._text = open(self.temp, "w", encoding="utf-8")  # noqa: SIM115 - closed in commit/abort
        else:
            self._parquet = pq.ParquetWriter(str(self.temp), schema)

    def write(self, rows: Sequence[dict[str, Any]]) -> None:
        for r in rows:
            self.summary.rows += 1
            self.summary.flagged += bool(r["flagged"])
            self.summary.errors += r["error"] is not None
        if self._text is not None:
            self._text.writelines(json.dumps(r) + "\n" for r in rows)
            return
        self._pending.extend(rows)
        if len(self._pending) >= _ROW_GROUP_ROWS:
            self._flush_parquet()

    def commit(self) -> ScoreSummary:
        if self._text is not None:
            self._text.flush()
            os.fsync(self._text.fileno())
            self._text.close()
        else:
            self._flush_parquet()
            self._parquet.close()
            fsync(self.temp)
        os.replace(self.temp, self.path)
        fsync(self.path.parent)
        return self.summary

    def abort(self) -> None:
        try:
            if self._text is not None:
                self._text.close()
            elif self._parquet is not None:
                self._parquet.close()
        finally:
            self.temp.unlink(missing_ok=True)

    def _flush_parquet(self) -> None:
        if self._pending:
            self._parquet.write_table(pa.Table.from_pylist(self._pending, schema=self.schema))
            self._pending = []


@contextmanager
def open_output(path: Path | str, schema: pa.Schema) -> Iterator[OutputWriter]:
    """An OutputWriter whose file appears at `path` only if the block finishes without an error."""
    writer = OutputWriter(Path(path), schema)
    try:
        yield writer
        writer.commit()
    except BaseException:
        writer.abort()
        raise
