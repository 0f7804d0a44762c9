"""`bastion bank`: create banks of known content, fill them, match against them, move them.

Every command takes `--home` (default $BASTION_HOME or ./bastion-data); banks live in
HOME/banks/NAME. A batch (`add` with several values or `--file`, `import`) adds its good rows in
one new version and lists the bad ones on stderr with their position; the command then exits 1,
so a script notices, while the good rows stay added. Errors about the command as a whole (no
such bank, a corrupt bank file, an unknown format) are a BastionError: `bastion` prints the
message without a traceback and exits 2.
"""

from __future__ import annotations

import hashlib
import json
import mimetypes
import sys
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeGuard

import typer
from rich.markup import escape
from rich.table import Table

from bastion.banks.entries import Entry, Label, Match
from bastion.banks.files import BankError
from bastion.cli.output import console, err_console

if TYPE_CHECKING:
    from bastion.banks.base import Bank, MediaBank
    from bastion.banks.exchange import ImportResult, RowError
    from bastion.banks.registry import Banks
    from bastion.media.hashing import MediaHash
    from bastion.media.sandbox import DecoderPool

bank_app = typer.Typer(
    help="Banks of known content (hashes, texts, embeddings): create, add, match, export, import.",
    no_args_is_help=True,
)

HomeOption = Annotated[
    Path | None,
    typer.Option("--home", help="Data directory (default $BASTION_HOME or ./bastion-data)."),
]
NameArg = Annotated[str, typer.Argument(help="The bank's name (lowercase letters, digits, -_.).")]


def _banks(home: Path | None) -> Banks:
    from bastion.banks.registry import Banks

    return Banks(home)


@bank_app.command("create")
def create_bank(
    name: NameArg,
    kind: Annotated[str, typer.Option("--kind", help="hash, text or embedding.")],
    threshold: Annotated[
        float | None,
        typer.Option(
            help="Match threshold: PDQ bits for hash banks (default 31), Jaccard for text banks "
            "(default 0.7), cosine for embedding banks (default 0.8)."
        ),
    ] = None,
    description: Annotated[str, typer.Option(help="What the bank holds, for people.")] = "",
    setting: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            help="Any other setting of the bank's kind as KEY=VALUE (repeatable), e.g. "
            "--set index=multihash, --set shingle_size=4.",
        ),
    ] = None,
    home: HomeOption = None,
) -> None:
    """Create an empty bank."""
    from bastion.banks.registry import bank_class

    cls = bank_class(kind)
    settings = _parse_settings(setting or [])
    if threshold is not None:
        key, value = cls.threshold_setting(threshold)
        settings[key] = value
    bank = _banks(home).create(name, kind, settings, description)
    typer.echo(f"created {kind} bank '{name}' (version {bank.manifest.version}) in {bank.path}")


@bank_app.command("add")
def add_entries(
    name: NameArg,
    values: Annotated[
        list[str] | None,
        typer.Argument(
            help="Values to add: hashes (PDQ hex, MD5, a vPDQ signal) or image/video files for "
            "hash banks, texts for text and embedding banks."
        ),
    ] = None,
    file: Annotated[
        Path | None,
        typer.Option("--file", "-f", help="Read the values from this file, one a line."),
    ] = None,
    category: Annotated[str, typer.Option(help="The policy category the entries are in.")] = "",
    severity: Annotated[int, typer.Option(min=0, max=4, help="0 (none) to 4 (most severe).")] = 2,
    source: Annotated[str, typer.Option(help="Where the entries came from.")] = "",
    notes: Annotated[
        str | None, typer.Option(help="Free notes (default for files: the file's name).")
    ] = None,
    negative: Annotated[
        bool, typer.Option("--negative", help="Allow-list entries: known not to violate.")
    ] = False,
    signal: Annotated[
        str | None,
        typer.Option(help="pdq, vpdq or md5 (hash banks; default: told from each value)."),
    ] = None,
    home: HomeOption = None,
) -> None:
    """Add entries to a bank, in one new version; bad values are listed and the rest added.

    Image files are added by PDQ and MD5, videos by vPDQ and MD5 (decoded in a sandboxed
    process, within the usual media limits).
    """
    from bastion.banks.exchange import RowError, add_batch

    if not category.strip():
        raise BankError("give the entries' category (--category), e.g. --category violence")
    bank = _banks(home).open(name)
    label = Label(category.strip(), severity, source, notes or "")
    if values and file is not None:
        raise BankError("give values or --file, not both")
    numbered, where = _numbered_values(values, file)
    if not numbered:
        raise BankError("nothing to add: give values, or --file with one value a line")
    rows: list[tuple[int, Entry]] = []
    errors: list[RowError] = []
    pool: DecoderPool | None = None
    try:
        for position, value in numbered:
            try:
                if _takes_files(bank) and _is_file(value):
                    if pool is None:
                        from bastion.media.sandbox import DecoderPool

                        pool = DecoderPool(workers=1)
                    media_label = label if notes is not None else _with_notes(label, value)
                    for entry in _media_entries(pool, Path(value), media_label, negative):
                        rows.append((position, entry))
                else:
                    chosen = signal or bank.default_signal(value)
                    rows.append((position, Entry("", chosen, value, label, negative)))
            except BankError as exc:
                errors.append(RowError(position, str(exc), where))
    finally:
        if pool is not None:
            pool.close()
    bank, result = add_batch(bank, rows, errors, where)
    _report(f"added {result.added} entries to bank '{name}'", bank, result)


@bank_app.command("remove")
def remove_entries(
    name: NameArg,
    ids: Annotated[list[str], typer.Argument(help="Ids of the entries to remove.")],
    home: HomeOption = None,
) -> None:
    """Remove entries by id (an unknown id removes nothing and is an error)."""
    bank = _banks(home).open(name)
    before = len(bank.entries)
    bank = bank.remove(ids)
    typer.echo(
        f"removed {before - len(bank.entries)} entries from bank '{name}' "
        f"(version {bank.manifest.version}, {len(bank.entries)} entries)"
    )


@bank_app.command("list")
def list_banks(home: HomeOption = None) -> None:
    """List the banks: name, kind, version, entries, last change."""
    summaries = _banks(home).list()
    if not summaries:
        typer.echo("no banks yet (create one with `bastion bank create NAME --kind hash`)")
        return
    table = Table("name", "kind", "version", "entries", "updated", "description")
    for s in summaries:
        if s.problem is not None:
            table.add_row(escape(s.name), "[red]?[/]", "", "", "", escape(f"error: {s.problem}"))
            continue
        table.add_row(
            escape(s.name),
            s.kind or "",
            str(s.version),
            str(s.entries),
            s.updated_at.strftime("%Y-%m-%d %H:%M") if s.updated_at else "",
            escape(s.description),
        )
    console.print(table)


@bank_app.command("delete")
def delete_bank(
    name: NameArg,
    yes: Annotated[bool, typer.Option("--yes", help="Really delete it.")] = False,
    home: HomeOption = None,
) -> None:
    """Delete a whole bank, all its entries and versions."""
    if not yes:
        raise BankError(f"deleting bank '{name}' cannot be undone: add --yes to confirm")
    _banks(home).remove(name)
    typer.echo(f"deleted bank '{name}'")


@bank_app.command("export")
def export_entries(
    name: NameArg,
    out: Annotated[Path, typer.Option("--out", "-o", help="File to write ('-': stdout).")],
    format: Annotated[
        str | None,
        typer.Option(
            help="csv, jsonl (every field), or hma (PDQ/vPDQ signal lines for Meta's "
            "Hasher-Matcher-Actioner). Default: from --out's extension."
        ),
    ] = None,
    home: HomeOption = None,
) -> None:
    """Export a bank's entries, to import elsewhere."""
    from bastion.banks.exchange import export_bank, format_of

    bank = _banks(home).open(name)
    to_stdout = str(out) == "-"
    fmt = format_of(out, format) if not to_stdout else format_of(Path("x.jsonl"), format)
    result = export_bank(bank, sys.stdout if to_stdout else out, fmt)
    where = "stdout" if to_stdout else str(out)
    empty = " (the bank is empty)" if not bank.entries else ""
    err_console.print(
        f"exported {result.written} entries of bank '{escape(name)}' to {escape(where)} "
        f"as {fmt}{empty}",
        highlight=False,
    )
    for reason, count in sorted(result.skipped.items()):
        err_console.print(f"  left out {count} {escape(reason)}", highlight=False)


@bank_app.command("import")
def import_entries(
    name: NameArg,
    file: Annotated[Path, typer.Argument(help="A csv, jsonl or hma file.")],
    format: Annotated[
        str | None, typer.Option(help="csv, jsonl or hma (default: from the extension).")
    ] = None,
    category: Annotated[
        str | None, typer.Option(help="Category for rows without one (required for hma).")
    ] = None,
    severity: Annotated[int, typer.Option(min=0, max=4, help="Severity for rows without.")] = 2,
    source: Annotated[str, typer.Option(help="Source for rows without one.")] = "",
    notes: Annotated[str, typer.Option(help="Notes for rows without.")] = "",
    negative: Annotated[
        bool, typer.Option("--negative", help="Rows without a negative flag are allow-list.")
    ] = False,
    home: HomeOption = None,
) -> None:
    """Import entries from a file; bad rows are listed with their line and the rest added."""
    from bastion.banks.exchange import EntryDefaults, import_file

    bank = _banks(home).open(name)
    defaults = EntryDefaults(category, severity, source, notes, negative)
    bank, result = import_file(bank, file, format, defaults)
    _report(f"imported {result.added} of {result.rows} rows into bank '{name}'", bank, result)


@bank_app.command("match")
def match_values(
    name: NameArg,
    values: Annotated[
        list[str] | None,
        typer.Argument(
            help="What to look up: hashes or image/video files (hash banks), texts (text and "
            "embedding banks)."
        ),
    ] = None,
    file: Annotated[
        Path | None, typer.Option("--file", "-f", help="Read the values from this file.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object a value.")] = False,
    include_negative: Annotated[
        bool,
        typer.Option(
            "--include-negative",
            help="Show the allow-list entries that suppressed an item's matches.",
        ),
    ] = False,
    home: HomeOption = None,
) -> None:
    """Look values up in a bank and show the entries they match."""
    bank = _banks(home).open(name)
    if not bank.entries:
        raise BankError(
            f"bank '{name}' has no entries: nothing to match against "
            f"(add some with `bastion bank add {name} ...`)"
        )
    if values and file is not None:
        raise BankError("give values or --file, not both")
    numbered, _ = _numbered_values(values, file)
    if not numbered:
        raise BankError("nothing to match: give values, or --file with one value a line")
    shown = [v for _, v in numbered]
    matches = _match(bank, shown, include_negative)
    if as_json:
        for value, found in zip(shown, matches, strict=True):
            typer.echo(
                json.dumps(
                    {"value": value, "matches": [_match_json(m) for m in found]},
                    ensure_ascii=False,
                )
            )
        return
    table = Table("#", "value", "entry", "signal", "distance", "category", "severity", "allow")
    for n, (value, found) in enumerate(zip(shown, matches, strict=True), 1):
        brief = escape(value if len(value) <= 40 else value[:39] + "…")
        if not found:
            table.add_row(str(n), brief, "[dim]no match[/]", "", "", "", "", "")
        for m in found:
            table.add_row(
                str(n),
                brief,
                escape(m.entry_id),
                m.signal,
                f"{m.distance:.3g}",
                escape(m.label.category),
                str(m.label.severity),
                "yes" if m.negative else "",
            )
    console.print(table)


# -- helpers ---------------------------------------------------------------------------------


def _parse_settings(pairs: Sequence[str]) -> dict[str, Any]:
    settings: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            raise BankError(f"--set takes KEY=VALUE, got {pair!r}")
        try:
            settings[key.strip()] = json.loads(raw)
        except json.JSONDecodeError:
            settings[key.strip()] = raw
    return settings


def _numbered_values(
    values: Sequence[str] | None, file: Path | None
) -> tuple[list[tuple[int, str]], str]:
    """(position, value) pairs and what a position is called ("value" or "line")."""
    if file is None:
        return [(n, v) for n, v in enumerate(values or [], 1)], "value"
    try:
        data = file.read_bytes()
    except OSError as exc:
        raise BankError(f"cannot read {file}: {exc.strerror or exc}") from None
    try:
        text = data.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise BankError(f"{file}: line {line} is not valid UTF-8") from None
    lines = [(n, line.strip()) for n, line in enumerate(text.splitlines(), 1)]
    return [(n, v) for n, v in lines if v], "line"


def _is_file(value: str) -> bool:
    try:
        return Path(value).is_file()
    except (OSError, ValueError):
        return False


def _with_notes(label: Label, path: str) -> Label:
    return Label(label.category, label.severity, label.source, Path(path).name)


_IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".gif", ".webp", ".bmp", ".tif", ".tiff", ".avif"}
_VIDEO_SUFFIXES = {".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".3gp"}


def _media_kind(path: Path) -> str:
    """ "image" or "video" by the file's extension (the system's MIME map, then a short list of
    common ones, since minimal systems have no /etc/mime.types)."""
    suffix = path.suffix.lower()
    if suffix in _IMAGE_SUFFIXES:
        return "image"
    if suffix in _VIDEO_SUFFIXES:
        return "video"
    guessed, _ = mimetypes.guess_type(path.name)
    kind = (guessed or "").split("/")[0]
    if kind not in ("image", "video"):
        raise BankError(
            f"{path}: not an image or video file by its extension ({guessed or 'unknown type'})"
        )
    return kind


def _md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _hash_media(pool: DecoderPool, path: Path) -> tuple[str, list[MediaHash]]:
    """("image", [its PDQ]) or ("video", its vPDQ frames), hashed as moderation hashes them:
    decoded in the sandbox within the media limits, PDQ from the decoded first frame."""
    from bastion.errors import MediaError
    from bastion.media.hashing import pdq_hash
    from bastion.media.sources import MediaSource

    kind = _media_kind(path)
    try:
        decoded: Any = pool.decode(MediaSource.of(path, "image" if kind == "image" else "video"))
    except MediaError as exc:
        raise BankError(str(exc)) from None
    if kind == "image":
        return kind, [pdq_hash(decoded.frames[0])]
    return kind, list(decoded.hashes)


def _media_entries(pool: DecoderPool, path: Path, label: Label, negative: bool) -> list[Entry]:
    """The entries for one image (PDQ, unless its quality is too low to match on, and MD5) or
    video (vPDQ and MD5)."""
    from bastion.banks.hashes import PDQ_QUALITY_THRESHOLD, vpdq_value

    kind, hashes = _hash_media(pool, path)
    entries = [Entry("", "md5", _md5(path), label, negative)]
    if kind == "image":
        pdq = hashes[0]
        if pdq.quality >= PDQ_QUALITY_THRESHOLD:
            entries.insert(0, Entry("", "pdq", pdq.hash, label, negative))
        else:
            err_console.print(
                f"[yellow]warning:[/] {escape(str(path))}: PDQ quality {pdq.quality} is under "
                f"{PDQ_QUALITY_THRESHOLD} (a flat or blurred picture); added by MD5 only",
                highlight=False,
            )
    elif hashes:
        entries.insert(0, Entry("", "vpdq", vpdq_value(hashes), label, negative))
    return entries


def _takes_files(bank: Bank) -> TypeGuard[MediaBank]:
    """A bank of media hashes: a value may name a file to hash."""
    from bastion.banks.base import MediaBank  # numpy: not on `bastion --help`'s path

    return isinstance(bank, MediaBank)


def _match(bank: Bank, values: list[str], include_negative: bool) -> list[list[Match]]:
    """Per value, its matches: `match_values`, except that a media bank given a file's path
    matches the file's hashes."""
    if not _takes_files(bank):
        return bank.match_values(values, include_negative=include_negative)
    from bastion.banks.hashes import check_value

    problems = []
    for n, value in enumerate(values, 1):
        if not _is_file(value):
            try:
                check_value(value)
            except BankError as exc:
                problems.append(f"value {n}: {exc}")
    if problems:
        raise BankError("; ".join(problems))
    out: list[list[Match]] = [[] for _ in values]
    hashes_at = [n for n, v in enumerate(values) if not _is_file(v)]
    found = bank.match_values([values[n] for n in hashes_at], include_negative=include_negative)
    for n, matches in zip(hashes_at, found, strict=True):
        out[n] = matches
    pool: DecoderPool | None = None
    try:
        for n, value in enumerate(values):
            if n in hashes_at:
                continue
            if pool is None:
                from bastion.media.sandbox import DecoderPool

                pool = DecoderPool(workers=1)
            _, hashes = _hash_media(pool, Path(value))
            out[n] = bank.match_media_hashes(
                [hashes], [[_md5(Path(value))]], include_negative=include_negative
            )[0]
    finally:
        if pool is not None:
            pool.close()
    return out


def _match_json(m: Match) -> dict[str, Any]:
    row = asdict(m)
    row.update(row.pop("label"))
    return row


def _report(headline: str, bank: Bank, result: ImportResult) -> None:
    typer.echo(f"{headline} (version {result.version}, {len(bank.entries)} entries)")
    _print_errors(result.errors)
    if result.errors:
        raise typer.Exit(1)


def _print_errors(errors: Sequence[RowError]) -> None:
    if not errors:
        return
    err_console.print(f"[bold red]{len(errors)} not added:[/]", highlight=False)
    for e in errors:
        err_console.print(f"  {escape(str(e))}", highlight=False)
