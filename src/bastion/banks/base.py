"""What every kind of bank does alike: the `Bank` protocol that each kind implements, answering
from one checked version and building each change on the current version under the bank's lock,
with the same checks on entry ids.

Why a protocol: the CLI, the API, recall and the exchange formats hold a bank without knowing
its kind. Everything they ask of it is declared here, so a new kind is one module under
`banks/` and one line in `registry.KINDS`, and nothing outside `banks/` branches on a kind.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, Self, runtime_checkable

import numpy as np
from pydantic import BaseModel, ConfigDict, ValidationError

from bastion.banks.entries import Entry, Match
from bastion.banks.files import (
    CURRENT,
    ENTRIES,
    BankError,
    BankExistsError,
    BankKind,
    BankManifest,
    BankVersion,
    current_version,
    first_manifest,
    locked,
    new_version,
    read_jsonl,
)

if TYPE_CHECKING:
    from bastion.media.hashing import MediaHash


class RecallBatch:
    """One batch of pool items as recall shows them to banks: each item's text, and on first
    use its media hashes and its files' MD5s (only hash banks need those, and reading every
    file for its digest costs), and the texts' vectors per encoder (embedded once however
    many banks share the encoder)."""

    def __init__(
        self,
        texts: Sequence[str],
        media_hashes: Callable[[], Sequence[Sequence[MediaHash]]],
        md5s: Callable[[], Sequence[Sequence[str]]],
    ) -> None:
        self.texts = texts
        self._media_hashes = media_hashes
        self._md5s = md5s
        self._vectors: dict[str, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.texts)

    @cached_property
    def media_hashes(self) -> Sequence[Sequence[MediaHash]]:
        return self._media_hashes()

    @cached_property
    def md5s(self) -> Sequence[Sequence[str]]:
        return self._md5s()

    @cached_property
    def has_text(self) -> np.ndarray:
        """Per item, whether its text is not blank (the items an encoder embeds)."""
        return np.array([bool(t.strip()) for t in self.texts], dtype=bool)

    def vectors(self, encoder: str, embed: Callable[[Sequence[str]], np.ndarray]) -> np.ndarray:
        """The non-blank texts embedded by `embed`, remembered under the encoder's name."""
        if encoder not in self._vectors:
            kept = [t for t, ok in zip(self.texts, self.has_text.tolist(), strict=True) if ok]
            self._vectors[encoder] = embed(kept)
        return self._vectors[encoder]


@dataclass(frozen=True)
class RecallScores:
    """What one bank says about each item of a `RecallBatch`: a score (higher: more like the
    bank's content; NaN: nothing to say) and the distance to its nearest entry (NaN: none)."""

    scores: np.ndarray
    distances: np.ndarray


def match_scores(found: Sequence[Sequence[Match]], scale: float) -> RecallScores:
    """Per item, its nearest match that is not an allow-list entry, scored 1 - distance/scale."""
    scores = np.full(len(found), np.nan)
    distances = np.full(len(found), np.nan)
    for i, matches in enumerate(found):
        live = [m.distance for m in matches if not m.negative]
        if live:
            distances[i] = min(live)
            scores[i] = 1.0 - distances[i] / scale
    return RecallScores(scores, distances)


@runtime_checkable
class Bank(Protocol):
    """What every kind of bank offers. A bank object is one version: `add` and `remove` commit
    a new version on disk and return the bank opened at it; the object they were called on
    keeps answering from its own version.

    `kind` names the kind in manifests and the recall channel the bank feeds. The class-level
    members answer questions asked before a bank exists: the signal a bare value is taken for,
    which setting a command line's `--threshold` sets, and which settings a request to the
    service may not choose.
    """

    kind: ClassVar[str]
    path: Path

    @property
    def manifest(self) -> BankManifest: ...

    @property
    def entries(self) -> Sequence[Entry]: ...

    @property
    def name(self) -> str: ...

    @property
    def version(self) -> int: ...

    @classmethod
    def create(
        cls, path: Path, name: str, settings: dict[str, Any], description: str = ""
    ) -> Bank: ...

    @classmethod
    def open(cls, path: Path) -> Bank: ...

    @classmethod
    def default_signal(cls, value: str) -> str:
        """The signal of an entry given as a bare value (told from the value where the kind
        holds several)."""
        ...

    @classmethod
    def threshold_setting(cls, value: float) -> tuple[str, float]:
        """(setting, value) for a match threshold given as a number, or a BankError."""
        ...

    @classmethod
    def check_service_settings(cls, settings: Mapping[str, Any]) -> None:
        """A BankError for a setting that a request to the service must not choose."""
        ...

    def validate_entry(self, entry: Entry) -> Entry:
        """`entry` as the bank would store it, or a BankError saying why it cannot."""
        ...

    def add(self, entries: Iterable[Entry]) -> Bank: ...

    def remove(self, ids: Iterable[str]) -> Bank: ...

    def match_values(
        self, values: Sequence[str], *, include_negative: bool = False
    ) -> list[list[Match]]:
        """Per value (a hash, a text), the entries it matches, nearest first."""
        ...

    def recall_scores(self, batch: RecallBatch) -> RecallScores:
        """Per item of a recall batch, how near it is to the bank's content."""
        ...


@runtime_checkable
class MediaBank(Bank, Protocol):
    """A bank of media hashes: it also matches items by the hashes `bastion.media` computed for
    them. Banks that are not media banks hold texts."""

    def match_media_hashes(
        self,
        items: Sequence[Sequence[MediaHash | tuple[str, MediaHash]]],
        md5s: Sequence[Sequence[str]] | None = None,
        *,
        include_negative: bool = False,
    ) -> list[list[Match]]: ...


class VersionedBank:
    """Base of `HashBank`, `TextBank` and `EmbeddingBank`: one version of a bank at `path`.

    A subclass sets `path`, `_version` and `_entries` and implements `_reload`, which opens
    another version of the same bank (carrying whatever the subclass holds across versions,
    such as an embedding bank's encoder).
    """

    path: Path
    _version: BankVersion
    _entries: Sequence[Entry]
    #: The signal of the kind's entries, for kinds that hold one (others: `default_signal`).
    signal: ClassVar[str]
    #: The setting a bare match threshold sets (`threshold_setting`).
    threshold_key: ClassVar[str]

    @classmethod
    def default_signal(cls, value: str) -> str:
        return cls.signal

    @classmethod
    def threshold_setting(cls, value: float) -> tuple[str, float]:
        return cls.threshold_key, value

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

    @classmethod
    def check_service_settings(cls, settings: Mapping[str, Any]) -> None:
        """Nothing to refuse: the kind's settings name no file the service would load."""

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
            raise BankExistsError(f"a bank already exists at {path}")
        manifest = first_manifest(name, kind, settings.model_dump(), description)
        with new_version(path, manifest) as (staging, _):
            write(staging)


def read_entries(version: BankVersion) -> list[Entry]:
    """A version's entries, in order, read one line at a time."""
    return [Entry.from_json(row) for row in read_jsonl(version.file(ENTRIES))]
