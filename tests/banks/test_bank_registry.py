"""The bank registry: names to the right kind of bank, a listing that survives a broken bank,
and whole banks created and removed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bastion.banks.entries import Entry, Label, bank_path
from bastion.banks.files import CURRENT, MANIFEST, BankError, current_version
from bastion.banks.hashes import HashBank
from bastion.banks.registry import Banks, bank_class
from bastion.banks.text import TextBank


def test_each_kind_is_created_and_opened_as_its_class(tmp_path: Path) -> None:
    from bastion.banks.embeddings import EmbeddingBank

    banks = Banks(tmp_path)
    made = {
        "pics": banks.create("pics", "hash", {"pdq_threshold": 20}, "known images"),
        "scams": banks.create("scams", "text", {"threshold": 0.8}),
        "grooming": banks.create("grooming", "embedding"),
    }
    expected = {"pics": HashBank, "scams": TextBank, "grooming": EmbeddingBank}
    for name, bank in made.items():
        assert type(bank) is expected[name]
        opened = banks.open(name)
        assert type(opened) is expected[name]
        # the contract every kind follows: version 1, no entries, where the registry says
        assert opened.manifest.version == 1 and list(opened.entries) == []
        assert opened.manifest.name == name and opened.manifest.kind == bank.kind
        assert bank_path(tmp_path, name) == tmp_path / "banks" / name
        assert (tmp_path / "banks" / name / CURRENT).is_file()
    assert banks.open("pics").manifest.settings["pdq_threshold"] == 20
    assert banks.open("pics").manifest.description == "known images"


def test_list_summarises_every_bank_and_names_a_broken_one(tmp_path: Path) -> None:
    banks = Banks(tmp_path)
    assert banks.list() == []
    pics = banks.create("pics", "hash")
    assert isinstance(pics, HashBank)
    pics.add([Entry("a", "md5", "0" * 32, Label("spam"))])
    banks.create("scams", "text", description="scripts")
    broken = banks.create("zz", "text")
    (current_version(broken.path).path / MANIFEST).write_text("{not json")
    (tmp_path / "banks" / "not-a-bank").mkdir()  # no CURRENT: not listed
    summaries = {s.name: s for s in banks.list()}
    assert list(summaries) == ["pics", "scams", "zz"]
    assert (summaries["pics"].kind, summaries["pics"].version, summaries["pics"].entries) == (
        "hash",
        2,
        1,
    )
    assert summaries["scams"].description == "scripts" and summaries["scams"].problem is None
    assert summaries["zz"].problem is not None and "unreadable manifest" in summaries["zz"].problem
    with pytest.raises(BankError, match=r"manifest.json is corrupt"):
        banks.open("zz")


def test_remove_deletes_a_whole_bank(tmp_path: Path) -> None:
    banks = Banks(tmp_path)
    banks.create("pics", "hash")
    banks.remove("pics")
    assert banks.names() == [] and not (tmp_path / "banks" / "pics").exists()
    assert not [p for p in (tmp_path / "banks").iterdir() if p.name.startswith(".removed")]
    with pytest.raises(BankError, match="no bank named 'pics'"):
        banks.open("pics")
    with pytest.raises(BankError, match="no bank named 'pics'"):
        banks.remove("pics")
    banks.create("pics", "text")  # the name is free again
    assert isinstance(banks.open("pics"), TextBank)


def test_bad_names_kinds_and_repeats_are_refused(tmp_path: Path) -> None:
    banks = Banks(tmp_path)
    with pytest.raises(BankError, match=r"bad bank name '\.\./etc'"):
        banks.create("../etc", "hash")
    with pytest.raises(BankError, match="unknown bank kind 'sound'"):
        banks.create("noise", "sound")
    with pytest.raises(BankError, match="unknown bank kind 'sound'"):
        bank_class("sound")
    banks.create("pics", "hash")
    with pytest.raises(BankError, match="bank 'pics' already exists"):
        banks.create("pics", "text")
    with pytest.raises(BankError, match="no bank named 'nope'"):
        banks.open("nope")
    with pytest.raises(BankError, match="setting threshold"):
        banks.create("strict", "text", {"threshold": 2})
    assert banks.names() == ["pics"]


def test_a_manifest_of_another_kind_is_refused_by_the_class(tmp_path: Path) -> None:
    banks = Banks(tmp_path)
    banks.create("pics", "hash")
    with pytest.raises(BankError, match="is a hash bank, not a text bank"):
        TextBank.open(banks.path("pics"))
    manifest = current_version(banks.path("pics")).path / MANIFEST
    raw = json.loads(manifest.read_text())
    manifest.write_text(json.dumps({**raw, "kind": "sound"}))
    with pytest.raises(BankError, match=r"manifest.json is corrupt \(kind"):
        banks.open("pics")


def test_home_defaults_to_bastion_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BASTION_HOME", str(tmp_path / "home"))
    banks = Banks()
    assert banks.root == tmp_path / "home" / "banks"
    banks.create("pics", "hash")
    assert Banks(tmp_path / "home").names() == ["pics"]
