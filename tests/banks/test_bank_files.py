"""Bank files: versions switch atomically, a crash mid-change leaves the old version, and a
corrupt or truncated file is named on load."""

from __future__ import annotations

import json
import multiprocessing
import os
from pathlib import Path

import pytest

from bastion.banks.files import (
    CURRENT,
    ENTRIES,
    MANIFEST,
    BankError,
    check_name,
    current_version,
    first_manifest,
    locked,
    new_version,
    next_manifest,
    read_jsonl,
    write_jsonl,
)


def _write(bank: Path, rows: list[dict[str, object]]) -> None:
    with locked(bank):
        try:
            before = current_version(bank).manifest
            manifest = next_manifest(before, len(rows))
        except BankError:
            manifest = first_manifest(bank.name, "text", {"threshold": 0.7})
        with new_version(bank, manifest) as (staging, _):
            write_jsonl(staging / ENTRIES, rows)


def test_each_change_is_a_new_checked_version(tmp_path: Path) -> None:
    bank = tmp_path / "spam"
    _write(bank, [{"id": "a"}])
    _write(bank, [{"id": "a"}, {"id": "b"}])
    version = current_version(bank)
    assert version.manifest.version == 2 and version.manifest.settings == {"threshold": 0.7}
    assert (bank / CURRENT).read_text().strip() == "v000002"
    assert [r["id"] for r in read_jsonl(version.file(ENTRIES))] == ["a", "b"]
    assert version.manifest.files[ENTRIES].bytes == (version.path / ENTRIES).stat().st_size
    _write(bank, [{"id": "c"}])
    # The previous version stays for readers that opened it; older ones are swept.
    assert sorted(p.name for p in bank.glob("v*")) == ["v000002", "v000003"]


def _crash_mid_change(bank: Path) -> None:
    with locked(bank):
        manifest = next_manifest(current_version(bank).manifest, 3)
        with new_version(bank, manifest) as (staging, _):
            write_jsonl(staging / ENTRIES, [{"id": "x"}, {"id": "y"}, {"id": "z"}])
            os._exit(9)  # killed before the switch


def test_a_crash_in_the_middle_of_a_change_leaves_the_bank_as_it_was(tmp_path: Path) -> None:
    bank = tmp_path / "spam"
    _write(bank, [{"id": "a"}])
    child = multiprocessing.get_context("fork").Process(target=_crash_mid_change, args=(bank,))
    child.start()
    child.join()
    assert child.exitcode == 9
    version = current_version(bank)
    assert version.manifest.version == 1
    assert [r["id"] for r in read_jsonl(version.file(ENTRIES))] == ["a"]
    _write(bank, [{"id": "a"}, {"id": "b"}])  # the next change sweeps the leftover staging
    assert not list(bank.glob(".staging-*")) and current_version(bank).manifest.version == 2


def test_truncated_corrupt_or_missing_files_are_named(tmp_path: Path) -> None:
    bank = tmp_path / "spam"
    _write(bank, [{"id": "a", "value": "some text"}])
    entries = current_version(bank).path / ENTRIES
    good = entries.read_bytes()
    entries.write_bytes(good[:-5])
    with pytest.raises(BankError, match=r"entries.jsonl is truncated or padded"):
        current_version(bank)
    entries.write_bytes(good.replace(b"some", b"SOME"))
    with pytest.raises(BankError, match=r"entries.jsonl is corrupt \(sha256"):
        current_version(bank)
    entries.unlink()
    with pytest.raises(BankError, match=r"entries.jsonl is missing"):
        current_version(bank)


def test_a_broken_manifest_or_pointer_is_named(tmp_path: Path) -> None:
    bank = tmp_path / "spam"
    _write(bank, [{"id": "a"}])
    manifest = current_version(bank).path / MANIFEST
    raw = json.loads(manifest.read_text())
    manifest.write_text(json.dumps({**raw, "kind": "sound"}))
    with pytest.raises(BankError, match=r"manifest.json is corrupt \(kind"):
        current_version(bank)
    (bank / CURRENT).write_text("../../etc")
    with pytest.raises(BankError, match="not a version name"):
        current_version(bank)
    with pytest.raises(BankError, match="no bank named 'other'"):
        current_version(tmp_path / "other")


@pytest.mark.parametrize("name", ["", "Spam", "../x", "a b", "-x", "x" * 65])
def test_bad_bank_names_are_refused(name: str) -> None:
    with pytest.raises(BankError, match="bad bank name"):
        check_name(name)
