"""The bank registry: the named banks of one Bastion home, created, opened, listed and removed.

Banks live in `HOME/banks/NAME/` (`files.banks_dir`, `entries.bank_path`), one directory each,
and each says what kind it is in its manifest. `KINDS` is the one place that maps a kind to its
class: "hash" -> `HashBank`, "text" -> `TextBank`, "embedding" -> `EmbeddingBank`. Every class
implements `base.Bank` (its default signal, `create`, `open`, `add`, `remove`, `match_values`,
`recall_scores`, ...), so the registry, the CLI, the API, recall and the exchange formats treat
them alike and never ask which kind a bank is. A class is imported only when a bank of its kind
is made or opened: the embedding bank brings in the encoder's machinery, which hash and text
banks do not need.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from dataclasses import dataclass
from datetime import datetime
from importlib import import_module
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from bastion.banks.base import Bank
from bastion.banks.entries import bank_path
from bastion.banks.files import (
    CURRENT,
    MANIFEST,
    BankError,
    BankExistsError,
    BankManifest,
    UnknownBankError,
    banks_dir,
    check_name,
    locked,
)

#: Bank kind -> "module:class" of its `Bank` implementation (`files.BankKind` lists the same).
KINDS: dict[str, str] = {
    "hash": "bastion.banks.hashes:HashBank",
    "text": "bastion.banks.text:TextBank",
    "embedding": "bastion.banks.embeddings:EmbeddingBank",
}

if TYPE_CHECKING:  # mypy checks here that every kind's class implements the protocol
    from bastion.banks.embeddings import EmbeddingBank
    from bastion.banks.hashes import HashBank
    from bastion.banks.text import TextBank

    _IMPLEMENTATIONS: tuple[type[Bank], ...] = (HashBank, TextBank, EmbeddingBank)


@dataclass(frozen=True)
class BankSummary:
    """One line of `Banks.list()`: what the bank's current manifest says, read without checking
    its files (that is `open`'s job, and too slow for a listing of big banks). A bank whose
    pointer or manifest cannot be read is listed with `problem` set and the rest unknown."""

    name: str
    kind: str | None = None
    version: int | None = None
    entries: int | None = None
    updated_at: datetime | None = None
    description: str = ""
    problem: str | None = None


def bank_class(kind: str) -> type[Bank]:
    """The class for a bank kind, imported on first use."""
    where = KINDS.get(kind)
    if where is None:
        raise BankError(f"unknown bank kind {kind!r}: use one of {', '.join(KINDS)}")
    module, _, name = where.partition(":")
    cls: type[Bank] = getattr(import_module(module), name)
    return cls


def default_signal(kind: str, value: str) -> str:
    """The signal of a bare `value` added to a bank of `kind` (see `Bank.default_signal`)."""
    return bank_class(kind).default_signal(value)


class Banks:
    """The banks under `home` (default: `bastion_home()`, i.e. $BASTION_HOME)."""

    def __init__(self, home: Path | None = None) -> None:
        if home is None:
            from bastion.store.paths import bastion_home

            home = bastion_home()
        self.home = Path(home)

    @property
    def root(self) -> Path:
        return banks_dir(self.home)

    def path(self, name: str) -> Path:
        return bank_path(self.home, name)

    def create(
        self,
        name: str,
        kind: str,
        settings: dict[str, Any] | None = None,
        description: str = "",
    ) -> Bank:
        """A new, empty bank of `kind` (version 1); an existing name is an error."""
        cls = bank_class(kind)
        path = self.path(name)
        if (path / CURRENT).exists():
            raise BankExistsError(f"bank {name!r} already exists (in {self.root})")
        return cls.create(path, name, dict(settings or {}), description)

    def open(self, name: str) -> Bank:
        """The bank's current version, checked, as the class its manifest's kind says;
        UnknownBankError when there is none by that name, or the name is none a bank can have."""
        from bastion.banks.files import current_version

        path = banks_dir(self.home) / check_name(name, UnknownBankError)
        return bank_class(current_version(path).manifest.kind).open(path)

    def names(self) -> list[str]:
        """Names of the banks here (directories with a CURRENT pointer), sorted."""
        if not self.root.is_dir():
            return []
        return sorted(
            p.name
            for p in self.root.iterdir()
            if p.is_dir() and not p.name.startswith(".") and (p / CURRENT).is_file()
        )

    def list(self) -> list[BankSummary]:
        """A summary of every bank, by name (see `BankSummary`)."""
        return [_summary(self.root / name) for name in self.names()]

    def remove(self, name: str) -> None:
        """Delete a whole bank. It is first renamed out of the way under its change lock (so a
        reader sees the bank or nothing, never half of it), then deleted."""
        path = self.path(check_name(name))
        if not (path / CURRENT).is_file():
            raise UnknownBankError(f"no bank named {name!r} (looked in {self.root})")
        with locked(path):
            grave = Path(tempfile.mkdtemp(prefix=f".removed-{name}-", dir=self.root))
            path.rename(grave / name)
        shutil.rmtree(grave, ignore_errors=True)


def _summary(path: Path) -> BankSummary:
    name = path.name
    try:
        label = (path / CURRENT).read_text("utf-8").strip()
        if not re.fullmatch(r"v\d{6}", label):
            return BankSummary(name=name, problem=f"{CURRENT} holds {label[:40]!r}")
        manifest = BankManifest.model_validate_json((path / label / MANIFEST).read_bytes())
    except (OSError, ValueError, ValidationError) as exc:
        problem = exc.errors()[0]["msg"] if isinstance(exc, ValidationError) else str(exc)
        return BankSummary(name=name, problem=f"unreadable manifest ({problem})")
    return BankSummary(
        name=name,
        kind=manifest.kind,
        version=manifest.version,
        entries=manifest.entries,
        updated_at=manifest.updated_at,
        description=manifest.description,
    )
