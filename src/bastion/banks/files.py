"""How a bank is kept on disk: versioned, checksummed, and changed only by an atomic switch.

A bank is a directory `BASTION_HOME/banks/NAME/`:

    CURRENT             the version in use, e.g. "v000007" (replaced atomically)
    v000007/
        manifest.json   what the bank is (kind, settings), its version and the sha256 and size
                        of every other file of the version
        entries.jsonl   one entry a line: id, signal, value, label, negative (allow-list) flag
        ...             the kind's own files (vectors, FAISS indexes, MinHash signatures)
    v000006/            the version before, kept so a reader that opened it can finish

Why versions and not files rewritten in place: a change (`bank add`, `bank remove`, an import)
builds the whole new version in a staging directory, fsyncs it, renames it to its version name
and only then points CURRENT at it with `os.replace`, which is atomic. A crash at any point
leaves CURRENT on the old version, complete; leftover staging directories are ignored and
swept by the next change. Readers never see half a change.

Changes to one bank are serialised by an exclusive `flock` on `NAME/.lock` (`locked`): a
change reads the current version, stages the next and switches, all under the lock, so two
`bank add` processes cannot both build on version 7 and lose one's entries.

Why checksums: bank files travel between installations and sit on disks for years. Loading
checks every file's size and sha256 against the manifest and names the file that does not
match, instead of matching against a truncated index.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from bastion.atomic import fsync, write_atomic, write_synced
from bastion.errors import BastionError, ConflictError, ErrorCode, NotFoundError

FORMAT = 1
CURRENT = "CURRENT"
MANIFEST = "manifest.json"
ENTRIES = "entries.jsonl"
KEEP_VERSIONS = 2
BankKind = Literal["hash", "text", "embedding"]
_NAME = re.compile(r"^[a-z0-9][a-z0-9_\-.]{0,63}$")
_VERSION = re.compile(r"^v(\d{6})$")


class BankError(BastionError):
    """A bank is missing, corrupt, or was asked for something it cannot do."""


class UnknownBankError(BankError, NotFoundError):
    """No bank by that name (`Banks.open` says so of a name no bank can have, too)."""

    code = ErrorCode.bank_not_found


class BankExistsError(BankError, ConflictError):
    """A bank by that name exists already."""

    code = ErrorCode.bank_exists


class UnreadableBankError(BankError):
    """A bank that exists could not be opened: its files are missing, corrupt or unreadable.
    The service's fault, not the request's (HTTP 500)."""

    status = 500
    code = ErrorCode.bank_error


class WrongBankKindError(BankError):
    """The bank holds another kind of content than the call takes (texts, not hashes)."""

    code = ErrorCode.wrong_bank_kind


class FileSum(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sha256: str
    bytes: int


class BankManifest(BaseModel):
    """What `manifest.json` holds. `settings` are the kind's own (match threshold, encoder, index
    choice); `files` every other file of the version with its checksum."""

    model_config = ConfigDict(extra="forbid")

    format: int = FORMAT
    name: str
    kind: BankKind
    version: int = Field(ge=1)
    created_at: datetime
    updated_at: datetime
    description: str = ""
    settings: dict[str, Any] = Field(default_factory=dict)
    entries: int = Field(0, ge=0)
    files: dict[str, FileSum] = Field(default_factory=dict)


def check_name(name: str, error: type[BankError] = BankError) -> str:
    """`name` if it can name a bank (lowercase letters, digits, -, _, .; at most 64), else
    `error` (a BankError, or a subclass that says what a bad name means to the caller)."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise error(
            f"bad bank name {name!r}: use 1-64 lowercase letters, digits, '-', '_' or '.', "
            "starting with a letter or digit"
        )
    return name


def banks_dir(home: Path) -> Path:
    return home / "banks"


def file_sum(path: Path) -> FileSum:
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
            size += len(block)
    return FileSum(sha256=digest.hexdigest(), bytes=size)


@dataclass(frozen=True)
class BankVersion:
    """One checked version of a bank: its manifest and the directory its files are in."""

    manifest: BankManifest
    path: Path

    def file(self, name: str) -> Path:
        if name not in self.manifest.files:
            raise BankError(f"bank {self.manifest.name!r} has no file {name!r}")
        return self.path / name


def current_version(bank_dir: Path) -> BankVersion:
    """The version CURRENT points at, with every file checked against the manifest."""
    name = bank_dir.name
    pointer = bank_dir / CURRENT
    if not pointer.is_file():
        if bank_dir.is_dir():
            raise BankError(f"bank {name!r} at {bank_dir} has no {CURRENT} file: not a bank")
        raise UnknownBankError(f"no bank named {name!r} (looked in {bank_dir.parent})")
    label = pointer.read_text("utf-8").strip()
    if not _VERSION.fullmatch(label):
        raise BankError(f"bank {name!r}: {pointer} holds {label[:40]!r}, not a version name")
    path = bank_dir / label
    try:
        manifest = BankManifest.model_validate_json((path / MANIFEST).read_bytes())
    except FileNotFoundError:
        raise BankError(f"bank {name!r}: version {label} has no {MANIFEST}") from None
    except ValidationError as exc:
        problem = exc.errors()[0]
        where = ".".join(str(p) for p in problem["loc"]) or "manifest"
        raise BankError(
            f"bank {name!r}: {path / MANIFEST} is corrupt ({where}: {problem['msg']})"
        ) from None
    if manifest.format != FORMAT:
        raise BankError(
            f"bank {name!r} is in format {manifest.format}; this Bastion reads format {FORMAT}"
        )
    for file, expected in manifest.files.items():
        target = path / file
        if not target.is_file():
            raise BankError(f"bank {name!r}: {target} is missing")
        found = file_sum(target)
        if found.bytes != expected.bytes:
            raise BankError(
                f"bank {name!r}: {target} is truncated or padded ({found.bytes} bytes, the "
                f"manifest says {expected.bytes}); restore the bank or import it again"
            )
        if found.sha256 != expected.sha256:
            raise BankError(
                f"bank {name!r}: {target} is corrupt (sha256 differs from the manifest's); "
                "restore the bank or import it again"
            )
    return BankVersion(manifest, path)


@contextlib.contextmanager
def locked(bank_dir: Path) -> Iterator[None]:
    """Hold the bank's change lock (blocking until another change has finished)."""
    import fcntl

    bank_dir.mkdir(parents=True, exist_ok=True)
    with (bank_dir / ".lock").open("a") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


@contextlib.contextmanager
def new_version(
    bank_dir: Path, manifest: BankManifest
) -> Iterator[tuple[Path, Callable[[], BankManifest]]]:
    """Stage the next version of a bank: yields (staging directory, finish).

    The caller writes the version's files into the staging directory (entries.jsonl and the
    kind's own) and may call `finish()` to get the manifest that will be committed. On leaving
    the block without an error every file gets its checksum, the manifest is written, the
    directory is fsynced and renamed to its version name, and CURRENT is switched to it
    atomically; older versions but the previous one are then removed. On an error (or a crash)
    nothing the readers see has changed. Call it inside `locked(bank_dir)`.
    """
    bank_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=bank_dir))
    try:

        def finish() -> BankManifest:
            files = {
                p.name: file_sum(p)
                for p in sorted(staging.iterdir())
                if p.is_file() and p.name != MANIFEST
            }
            return manifest.model_copy(update={"files": files})

        yield staging, finish
        final = finish()
        write_synced(staging / MANIFEST, [final.model_dump_json(indent=2).encode("utf-8")])
        for p in staging.iterdir():
            fsync(p)
        fsync(staging)
        label = f"v{final.version:06d}"
        target = bank_dir / label
        if target.exists():
            raise BankError(
                f"bank {final.name!r}: version {label} already exists; another change won"
            )
        staging.rename(target)
        write_atomic(bank_dir / CURRENT, [f"{label}\n".encode("ascii")])
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    _sweep(bank_dir, keep=label)


def first_manifest(
    name: str, kind: BankKind, settings: dict[str, Any], description: str = ""
) -> BankManifest:
    now = datetime.now(UTC)
    return BankManifest(
        name=check_name(name),
        kind=kind,
        version=1,
        created_at=now,
        updated_at=now,
        description=description,
        settings=settings,
    )


def next_manifest(previous: BankManifest, entries: int) -> BankManifest:
    return previous.model_copy(
        update={
            "version": previous.version + 1,
            "updated_at": datetime.now(UTC),
            "entries": entries,
            "files": {},
        }
    )


def write_jsonl(path: Path, rows: Iterator[dict[str, Any]] | list[dict[str, Any]]) -> int:
    n = 0
    with path.open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False, sort_keys=True))
            f.write("\n")
            n += 1
    return n


def read_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    """The file's objects one at a time (a bank of a million entries is never a million dicts
    at once)."""
    with path.open(encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if line.strip():
                try:
                    yield json.loads(line)
                except json.JSONDecodeError as exc:
                    raise BankError(f"{path}:{n}: not JSON ({exc.msg})") from None


def _sweep(bank_dir: Path, keep: str) -> None:
    """Remove staging leftovers and versions older than the previous one."""
    versions = sorted(p for p in bank_dir.iterdir() if _VERSION.fullmatch(p.name) and p.is_dir())
    old = [p for p in versions if p.name != keep][: max(0, len(versions) - KEEP_VERSIONS)]
    for p in old:
        shutil.rmtree(p, ignore_errors=True)
    for p in bank_dir.glob(".staging-*"):
        shutil.rmtree(p, ignore_errors=True)
