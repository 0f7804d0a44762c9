"""What every kind of bank does alike: answer from one checked version, and build each change on
the current version under the bank's lock, with the same checks on entry ids."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, ClassVar, Self

from pydantic import BaseModel, ConfigDict, ValidationError

from bastion.banks.entries import Entry
from bastion.banks.files import (
    CURRENT,
    ENTRIES,
    BankError,
    BankKind,
    BankManifest,
    BankVersion,
    current_version,
    first_manifest,
    locked,
    new_version,
    read_jsonl,
)


class VersionedBank:
    """Base of `HashBank`, `TextBank` and `EmbeddingBank`: one version of a bank at `path`.

    A subclass sets `path`, `_version` and `_entries` and implements `_reload`, which opens
    another version of the same bank (carrying whatever the subclass holds across versions,
    such as an embedding bank's encoder).
    """

    path: Path
    _version: BankVersion
    _entries: Sequence[Entry]

    @property
    def manifest(self) -> BankManifest:
        return self._version.manifest

    @property
    def entries(self) -> Sequence[Entry]:
        return self._entries

    @property
    def name(self) -> str:
        return self._version.manifest.name

    @property
    def version(self) -> int:
        return self._version.manifest.version

    def _reload(self, version: BankVersion) -> Self:
        raise NotImplementedError

    def _latest(self) -> Self:
        """This bank if it is still the current version, else the current version (call under
        the lock: a change must build on what is current, not on what this object saw)."""
        current = current_version(self.path)
        if current.manifest.version == self.version and current.path == self._version.path:
            return self
        return self._reload(current)

    def _check_new_ids(self, new: Iterable[Entry]) -> None:
        """BankError unless every id in `new` is new to this version."""
        clash = {e.id for e in self._entries} & {e.id for e in new}
        if clash:
            raise BankError(f"bank {self.name!r} already has entries {format_ids(sorted(clash))}")

    def _check_known_ids(self, ids: set[str]) -> None:
        """BankError unless this version has every id in `ids` (a removal removes all or none)."""
        missing = ids - {e.id for e in self._entries}
        if missing:
            raise BankError(f"bank {self.name!r} has no entries {format_ids(sorted(missing))}")


def format_ids(ids: Sequence[str]) -> str:
    """The first five ids, quoted, and how many more."""
    shown = ", ".join(repr(i) for i in ids[:5])
    return shown + (f" and {len(ids) - 5} more" if len(ids) > 5 else "")


class BankSettings(BaseModel):
    """Base of each bank kind's settings (kept in the manifest): unknown fields are refused and
    a bad value is a BankError naming the bank and the setting."""

    model_config = ConfigDict(extra="forbid")
    kind_name: ClassVar[str] = "a"

    @classmethod
    def parse(cls, raw: dict[str, Any], bank: str) -> Self:
        try:
            return cls.model_validate(raw)
        except ValidationError as exc:
            problem = exc.errors()[0]
            where = ".".join(str(p) for p in problem["loc"])
            message = str(problem["msg"]).removeprefix("Value error, ")
            what = f"setting {where}" if where else "settings"
            raise BankError(f"{cls.kind_name} bank {bank!r}: {what}: {message}") from None


def create_first_version(
    path: Path,
    name: str,
    kind: BankKind,
    settings: BankSettings,
    description: str,
    write: Callable[[Path], None],
) -> None:
    """Commit version 1 of a new bank at `path`: `write` puts the empty bank's files in the
    staging directory. An existing bank there is an error (nothing is touched)."""
    with locked(path):
        if (path / CURRENT).exists():
            raise BankError(f"a bank already exists at {path}")
        manifest = first_manifest(name, kind, settings.model_dump(), description)
        with new_version(path, manifest) as (staging, _):
            write(staging)


def read_entries(version: BankVersion) -> list[Entry]:
    """A version's entries, in order, read one line at a time."""
    return [Entry.from_json(row) for row in read_jsonl(version.file(ENTRIES))]
