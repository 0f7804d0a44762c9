"""Moving banks between installations: CSV and JSONL export and import, and HMA's signal files.

Bastion's own formats carry every field of an entry, so an export imported elsewhere gives the
same entries (ids, values, labels, allow-list flags, timestamps):

- CSV: a header row naming the columns `id, signal, value, category, severity, source, notes,
  negative, added_at` (in any order; only `value` is required), then one entry a row. `negative`
  is true/false (also yes/no, 1/0), `added_at` ISO 8601. Values are written as they are: a
  spreadsheet may read a text starting with "=" as a formula, so open such files as text.
- JSONL: one JSON object a line with the same keys.

Imports are forgiving where that is safe and strict where it is not. A missing `id` is made
from the signal and value (`entry_id`: the same value always gets the same id, so importing a
file twice reports the repeats instead of doubling them); a missing `signal` is the bank's
(a hash bank tells PDQ, MD5 and vPDQ apart by the value's shape); a missing category, severity,
source, notes or negative takes the defaults the caller gives (`EntryDefaults`). An unknown
column is refused for the whole file, since a misspelt `negative` column would silently turn
allow-list entries into banned ones. Each bad row (not UTF-8, malformed, a PDQ hash of the wrong
length, an id already taken, ...) is reported with its line number in an `ImportResult` while
the good rows are added, in one new version of the bank (`add_batch`).

HMA. Meta's Hasher-Matcher-Actioner (facebook/ThreatExchange, `hasher-matcher-actioner/`) keeps
banks in its own database; content gets into a bank through its curation API, one signal per
request (`POST /c/bank/<bank>/signal` with a JSON object `{"<signal type>": "<signal>"}`,
`OpenMediaMatch/blueprints/curation.py`), or through an exchange that fetches signals. The
exchange that reads a file is python-threatexchange's `LocalFileSignalExchangeAPI`
(`threatexchange/exchanges/impl/file_api.py`, also what the `threatexchange` CLI uses): one
signal a line, written `<signal type> <signal>` (or just `<signal>` when the collaboration's
config names the type), with ThreatExchange's signal type names (`SignalType.get_name()`:
"pdq", "vpdq", "video_md5"). That is the "hma" format here: the export writes `pdq <hex>` and
`vpdq <signal>` lines for the bank's positive entries, which that exchange (or a script posting
each line to the curation API) loads into an HMA bank. Left out, and counted in the result:
allow-list entries (HMA's banks have no negative entries, so exporting them would make HMA act
on exactly what was allowed) and MD5 entries (ThreatExchange's only MD5 type is for videos, and
a Bastion MD5 may be of any file). Importing an "hma" file reads the same lines (also
`video_md5`), with the labels taken from `EntryDefaults`, since the file carries none.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TextIO, cast

from bastion.atomic import open_atomic_text
from bastion.banks.entries import SIGNALS, Entry, Label
from bastion.banks.files import BankError
from bastion.banks.hashes import infer_signal
from bastion.banks.registry import default_signal

if TYPE_CHECKING:
    from bastion.banks.base import Bank

ExchangeFormat = Literal["csv", "jsonl", "hma"]
FORMATS: tuple[str, ...] = ("csv", "jsonl", "hma")
FIELDS: tuple[str, ...] = (
    "id",
    "signal",
    "value",
    "category",
    "severity",
    "source",
    "notes",
    "negative",
    "added_at",
)
#: Bastion signal -> ThreatExchange signal type name, for the signals an HMA export carries.
HMA_EXPORT_TYPES = {"pdq": "pdq", "vpdq": "vpdq"}
#: ThreatExchange signal type name -> Bastion signal, for reading HMA signal files.
HMA_IMPORT_TYPES = {"pdq": "pdq", "vpdq": "vpdq", "video_md5": "md5", "md5": "md5"}
_SUFFIXES = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".txt": "hma", ".hma": "hma"}
_TRUE = {"true", "yes", "1", "y", "t"}
_FALSE = {"false", "no", "0", "n", "f", ""}


@dataclass(frozen=True)
class EntryDefaults:
    """Label fields for rows that do not give them (and for HMA files, which never do)."""

    category: str | None = None
    severity: int = 2
    source: str = ""
    notes: str = ""
    negative: bool = False


@dataclass(frozen=True)
class RowError:
    """One row that was not imported: where it is (a line of the file, or the n-th value given
    on the command line) and why."""

    position: int
    message: str
    where: str = "line"

    def __str__(self) -> str:
        return f"{self.where} {self.position}: {self.message}"


@dataclass(frozen=True)
class ImportResult:
    """What an import did: rows read (not counting blank lines), entries added, the rows that
    were not (in file order), and the bank's version afterwards."""

    rows: int
    added: int
    errors: tuple[RowError, ...]
    version: int

    @property
    def ok(self) -> bool:
        return not self.errors


@dataclass(frozen=True)
class ExportResult:
    """What an export wrote: entries written, and per reason the entries left out."""

    written: int
    skipped: dict[str, int] = field(default_factory=dict)


def entry_id(signal: str, value: str) -> str:
    """A stable id for an entry that came without one: the signal and a digest of the value."""
    digest = hashlib.sha256(f"{signal}\n{value}".encode()).hexdigest()[:16]
    return f"{signal}-{digest}"


def format_of(path: Path, format: str | None = None) -> ExchangeFormat:
    """The exchange format named, or told from the file's extension."""
    if format is not None:
        if format not in FORMATS:
            raise BankError(f"unknown format {format!r}: use one of {', '.join(FORMATS)}")
        return cast(ExchangeFormat, format)
    found = _SUFFIXES.get(Path(path).suffix.lower())
    if found is None:
        raise BankError(
            f"cannot tell the format of {path} from its extension; name it ({', '.join(FORMATS)})"
        )
    return cast(ExchangeFormat, found)


# -- export ----------------------------------------------------------------------------------


def export_bank(bank: Bank, out: Path | TextIO, format: str) -> ExportResult:
    """Write the bank's entries to `out` (a path, replaced atomically, or an open text stream)
    in `format`: "csv", "jsonl" or "hma" (hash banks only; see the module's docstring)."""
    fmt = format_of(Path("-"), format)
    if fmt == "hma" and bank.manifest.kind != "hash":
        raise BankError(
            f"bank {bank.manifest.name!r} is a {bank.manifest.kind} bank; the HMA format holds "
            "PDQ and vPDQ hashes (export it as csv or jsonl)"
        )
    if isinstance(out, Path):
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
            with open_atomic_text(out, newline="") as stream:
                return _export(bank.entries, stream, fmt)
        except OSError as exc:
            raise BankError(f"cannot write {out}: {exc.strerror or exc}") from None
    return _export(bank.entries, out, fmt)


def _export(entries: Sequence[Entry], stream: TextIO, fmt: ExchangeFormat) -> ExportResult:
    if fmt == "csv":
        # RFC 4180's CRLF line ends: the csv module then also quotes a lone CR in a field
        writer = csv.writer(stream)
        writer.writerow(FIELDS)
        for e in entries:
            row = e.to_json()
            row["negative"] = "true" if e.negative else "false"
            writer.writerow([row[k] for k in FIELDS])
        return ExportResult(len(entries))
    if fmt == "jsonl":
        for e in entries:
            row = e.to_json()
            stream.write(json.dumps({k: row[k] for k in FIELDS}, ensure_ascii=False))
            stream.write("\n")
        return ExportResult(len(entries))
    skipped: dict[str, int] = {}
    written = 0
    seen: set[tuple[str, str]] = set()
    for e in entries:
        reason = None
        if e.negative:
            reason = "allow-list entries (HMA banks have none)"
        elif e.signal not in HMA_EXPORT_TYPES:
            reason = f"{e.signal} entries (no ThreatExchange signal type for them)"
        if reason is not None:
            skipped[reason] = skipped.get(reason, 0) + 1
            continue
        key = (HMA_EXPORT_TYPES[e.signal], e.value)
        if key in seen:
            skipped["repeated values"] = skipped.get("repeated values", 0) + 1
            continue
        seen.add(key)
        stream.write(f"{key[0]} {key[1]}\n")
        written += 1
    return ExportResult(written, skipped)


# -- reading ---------------------------------------------------------------------------------


def read_entries(
    path: Path,
    kind: str,
    format: str | None = None,
    defaults: EntryDefaults | None = None,
) -> tuple[list[tuple[int, Entry]], list[RowError]]:
    """The entries of an exchange file for a bank of `kind`, each with its line number, and
    the rows that could not be read. Problems with the file as a whole (unreadable, an unknown
    column, no category for an HMA file, no rows at all) are a BankError."""
    path = Path(path)
    fmt = format_of(path, format)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise BankError(f"cannot read {path}: {exc.strerror or exc}") from None
    defaults = defaults or EntryDefaults()
    if fmt == "csv":
        rows, errors = _read_csv(data, kind, defaults, path)
    elif fmt == "jsonl":
        rows, errors = _read_jsonl(data, kind, defaults)
    else:
        rows, errors = _read_hma(data, kind, defaults, path)
    if not rows and not errors:
        raise BankError(f"{path} has no entries (an empty file, or only a header)")
    return rows, errors


def _read_csv(
    data: bytes, kind: str, defaults: EntryDefaults, path: Path
) -> tuple[list[tuple[int, Entry]], list[RowError]]:
    text = data.decode("utf-8", errors="surrogateescape").removeprefix("\ufeff")
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader)
    except StopIteration:
        return [], []
    except csv.Error as exc:
        raise BankError(f"{path}: line 1: not a CSV header ({exc})") from None
    columns = [c.strip().lower() for c in header]
    unknown = [c for c in columns if c not in FIELDS]
    if unknown:
        raise BankError(
            f"{path}: unknown column {unknown[0]!r} in the header (columns: {', '.join(FIELDS)})"
        )
    if "value" not in columns:
        raise BankError(f"{path}: the header has no 'value' column (columns: {', '.join(FIELDS)})")
    twice = sorted({c for c in columns if columns.count(c) > 1})
    if twice:
        raise BankError(f"{path}: column {twice[0]!r} appears twice in the header")
    rows: list[tuple[int, Entry]] = []
    errors: list[RowError] = []
    last = reader.line_num
    while True:
        start = last + 1
        try:
            record = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            errors.append(RowError(start, f"malformed CSV ({exc})"))
            last = reader.line_num
            continue
        last = reader.line_num
        if not record or all(not cell.strip() for cell in record):
            continue
        if len(record) != len(columns):
            errors.append(
                RowError(start, f"has {len(record)} fields; the header has {len(columns)}")
            )
            continue
        try:
            fields_ = dict(zip(columns, record, strict=True))
            rows.append((start, _entry(fields_, kind, defaults)))
        except BankError as exc:
            errors.append(RowError(start, str(exc)))
    return rows, errors


def _read_jsonl(
    data: bytes, kind: str, defaults: EntryDefaults
) -> tuple[list[tuple[int, Entry]], list[RowError]]:
    rows: list[tuple[int, Entry]] = []
    errors: list[RowError] = []
    for n, raw in enumerate(data.split(b"\n"), 1):
        if not raw.strip():
            continue
        try:
            line = raw.decode("utf-8").removeprefix("\ufeff")
        except UnicodeDecodeError as exc:
            errors.append(RowError(n, f"not valid UTF-8 (byte {exc.start + 1})"))
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            errors.append(RowError(n, f"malformed JSON ({exc.msg} at column {exc.colno})"))
            continue
        if not isinstance(obj, dict):
            errors.append(RowError(n, f"expected a JSON object, got {type(obj).__name__}"))
            continue
        unknown = sorted(k for k in obj if k not in FIELDS)
        if unknown:
            errors.append(
                RowError(n, f"unknown field {unknown[0]!r} (fields: {', '.join(FIELDS)})")
            )
            continue
        try:
            rows.append((n, _entry(obj, kind, defaults)))
        except BankError as exc:
            errors.append(RowError(n, str(exc)))
    return rows, errors


def _read_hma(
    data: bytes, kind: str, defaults: EntryDefaults, path: Path
) -> tuple[list[tuple[int, Entry]], list[RowError]]:
    if kind != "hash":
        raise BankError(f"{path}: an HMA signal file holds hashes; import it into a hash bank")
    if not defaults.category:
        raise BankError(
            f"{path}: an HMA signal file carries no labels; give the category its entries "
            "are in (--category)"
        )
    rows: list[tuple[int, Entry]] = []
    errors: list[RowError] = []
    for n, raw in enumerate(data.split(b"\n"), 1):
        try:
            line = raw.decode("utf-8").strip()
        except UnicodeDecodeError as exc:
            errors.append(RowError(n, f"not valid UTF-8 (byte {exc.start + 1})"))
            continue
        if not line or line.startswith("#"):
            continue
        if line.startswith("[") or " " not in line:
            signal, value = infer_signal(line), line
        else:
            name, _, value = line.partition(" ")
            if name not in HMA_IMPORT_TYPES:
                errors.append(
                    RowError(
                        n,
                        f"signal type {name!r} is not one a hash bank holds "
                        f"({', '.join(sorted(HMA_IMPORT_TYPES))})",
                    )
                )
                continue
            signal = HMA_IMPORT_TYPES[name]
        try:
            rows.append((n, _entry({"signal": signal, "value": value.strip()}, kind, defaults)))
        except BankError as exc:
            errors.append(RowError(n, str(exc)))
    return rows, errors


def _entry(row: dict[str, Any], kind: str, defaults: EntryDefaults) -> Entry:
    """An Entry from one row's fields (strings from CSV, JSON values from JSONL)."""
    for key, value in row.items():
        if isinstance(value, str) and any("\udc80" <= ch <= "\udcff" for ch in value):
            raise BankError(f"field {key!r} is not valid UTF-8")
    value = row.get("value")
    if not isinstance(value, str):
        raise BankError(
            "has no value" if value is None else f"value must be a string, not {_type(value)}"
        )
    if not value.strip():
        raise BankError("has no value")
    signal = _text(row, "signal").strip().lower()
    if not signal:
        signal = default_signal(kind, value)
    elif signal not in SIGNALS:
        raise BankError(f"unknown signal {signal!r} (known: {', '.join(SIGNALS)})")
    category = _text(row, "category").strip() or (defaults.category or "")
    if not category:
        raise BankError("has no category (give one in the file, or a default category)")
    return Entry(
        id=_text(row, "id") if _text(row, "id").strip() else "",
        signal=signal,
        value=value,
        label=Label(
            category=category,
            severity=_severity(row.get("severity"), defaults.severity),
            source=_text(row, "source") if "source" in row else defaults.source,
            notes=_text(row, "notes") if "notes" in row else defaults.notes,
        ),
        negative=_negative(row.get("negative"), defaults.negative),
        added_at=_added_at(row.get("added_at")),
    )


def _text(row: dict[str, Any], key: str) -> str:
    value = row.get(key)
    if value is None:
        return ""
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise BankError(f"{key} must be a string, not {_type(value)}")
    return str(value)


def _severity(value: Any, default: int) -> int:
    if value is None or (isinstance(value, str) and not value.strip()):
        return default
    if isinstance(value, bool):
        raise BankError(f"severity must be an integer 0-4, not {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lstrip("+-").isdigit():
        return int(value.strip())
    raise BankError(f"severity must be an integer 0-4, not {value!r:.40}")


def _negative(value: Any, default: bool) -> bool:
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        word = value.strip().lower()
        if not word:
            return default
        if word in _TRUE:
            return True
        if word in _FALSE:
            return False
    raise BankError(f"negative must be true or false, not {value!r:.40}")


def _added_at(value: Any) -> datetime:
    if value is None or (isinstance(value, str) and not value.strip()):
        return datetime.now(UTC)
    if not isinstance(value, str):
        raise BankError(f"added_at must be an ISO 8601 timestamp, not {_type(value)}")
    try:
        stamp = datetime.fromisoformat(value.strip())
    except ValueError:
        raise BankError(f"added_at {value.strip()!r:.60} is not an ISO 8601 timestamp") from None
    return stamp if stamp.tzinfo is not None else stamp.replace(tzinfo=UTC)


def _type(value: Any) -> str:
    return "null" if value is None else type(value).__name__


# -- adding a batch --------------------------------------------------------------------------


def add_batch(
    bank: Bank,
    rows: Sequence[tuple[int, Entry]],
    errors: Iterable[RowError] = (),
    where: str = "line",
) -> tuple[Bank, ImportResult]:
    """Add the good rows of a batch in one new version, reporting the bad ones.

    Each row is checked as the bank's `add` would check it (`validate_entry`: a PDQ hash of the
    wrong length or alphabet, a text too short to shingle, ...), given an id if it has none
    (`entry_id`), and refused if its id is already in the bank or earlier in the batch. The
    rows that pass are added together; the result lists every refused row (with `errors`
    from reading the file) in order. Returns the bank at its new version (the same bank when
    nothing was added) and the result."""
    existing = {e.id for e in bank.entries}
    read_errors = list(errors)
    problems = list(read_errors)
    seen: dict[str, int] = {}
    good: list[Entry] = []
    for position, entry in rows:
        try:
            entry = bank.validate_entry(entry)
        except BankError as exc:
            problems.append(RowError(position, str(exc), where))
            continue
        made = not entry.id
        if made:
            entry = replace(entry, id=entry_id(entry.signal, entry.value))
        if entry.id in existing:
            problems.append(
                RowError(
                    position,
                    f"already in the bank (entry {entry.id!r})"
                    if made
                    else f"the bank already has an entry with id {entry.id!r}",
                    where,
                )
            )
        elif entry.id in seen:
            what = "the same value as" if made else f"id {entry.id!r} is already used by"
            problems.append(RowError(position, f"{what} {where} {seen[entry.id]}", where))
        else:
            seen[entry.id] = position
            good.append(entry)
    if good:
        bank = bank.add(good)
    problems.sort(key=lambda e: e.position)
    result = ImportResult(
        rows=len(rows) + len(read_errors),
        added=len(good),
        errors=tuple(problems),
        version=bank.manifest.version,
    )
    return bank, result


def import_file(
    bank: Bank,
    path: Path,
    format: str | None = None,
    defaults: EntryDefaults | None = None,
) -> tuple[Bank, ImportResult]:
    """Read an exchange file (`read_entries`) and add its good rows to the bank (`add_batch`)."""
    rows, errors = read_entries(path, bank.manifest.kind, format, defaults)
    return add_batch(bank, rows, errors)
