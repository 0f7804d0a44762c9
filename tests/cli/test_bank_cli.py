"""`bastion bank`: create, add (values, files, media), list, match, export, import, remove, and
errors that name the problem without a traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage import data
from typer.testing import CliRunner

from bastion.banks.files import BankError
from bastion.banks.registry import Banks
from bastion.cli import app

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "media"))
import media_factory as mf

runner = CliRunner()
RNG = np.random.default_rng(8)


def pdq() -> str:
    return bytes(RNG.integers(0, 256, 32, dtype=np.uint8)).hex()


def bank(home: Path, *args: str) -> object:
    return runner.invoke(app, ["bank", *args, "--home", str(home)])


def test_a_hash_bank_from_creation_to_export_and_back(tmp_path: Path) -> None:
    home = tmp_path / "home"
    known, other = pdq(), pdq()
    result = bank(
        home, "create", "pics", "--kind", "hash", "--threshold", "31", "--description", "known"
    )
    assert result.exit_code == 0, result.output
    assert "created hash bank 'pics'" in result.stdout
    result = bank(
        home, "add", "pics", known, known[:40], "d41d8cd98f00b204e9800998ecf8427e", other,
        "--category", "csam", "--severity", "4", "--source", "ncmec",
    )  # fmt: skip
    assert result.exit_code == 1  # a bad value: reported, the rest added
    assert "added 3 entries to bank 'pics' (version 2, 3 entries)" in result.stdout
    assert "value 2: a PDQ hash is 64 hex characters" in result.stderr and "has 40" in result.stderr
    assert [e.signal for e in Banks(home).open("pics").entries] == ["pdq", "md5", "pdq"]

    listing = bank(home, "list")
    assert listing.exit_code == 0
    row = next(line for line in listing.stdout.splitlines() if "pics" in line)
    assert all(word in row for word in ("hash", "2", "3", "known"))

    near = list(known)
    near[0] = "0" if known[0] != "0" else "1"  # 1-4 bits away
    result = bank(home, "match", "pics", "".join(near), pdq(), "--json")
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [len(r["matches"]) for r in rows] == [1, 0]
    hit = rows[0]["matches"][0]
    assert hit["signal"] == "pdq" and hit["category"] == "csam" and hit["severity"] == 4
    assert 1 <= hit["distance"] <= 4 and hit["source"] == "ncmec"

    table = bank(home, "match", "pics", "D41D8CD98F00B204E9800998ECF8427E")
    assert table.exit_code == 0 and "md5" in table.stdout and "csam" in table.stdout

    out = tmp_path / "pics.csv"
    assert bank(home, "export", "pics", "--out", str(out)).exit_code == 0
    assert bank(home, "create", "copy", "--kind", "hash").exit_code == 0
    result = bank(home, "import", "copy", str(out))
    assert result.exit_code == 0, result.output
    assert "imported 3 of 3 rows into bank 'copy'" in result.stdout
    assert Banks(home).open("copy").entries == Banks(home).open("pics").entries

    hma = tmp_path / "pics.txt"
    result = bank(home, "export", "pics", "--out", str(hma), "--format", "hma")
    assert result.exit_code == 0
    assert hma.read_text().splitlines() == [f"pdq {known}", f"pdq {other}"]
    assert "left out 1 md5 entries" in result.stderr

    first = Banks(home).open("pics").entries[0].id
    result = bank(home, "remove", "pics", first)
    assert result.exit_code == 0 and "removed 1 entries" in result.stdout
    assert bank(home, "match", "pics", known, "--json").stdout.count('"matches": []') == 1


def test_a_text_bank_from_a_file_with_bad_lines(tmp_path: Path) -> None:
    home = tmp_path / "home"
    assert bank(home, "create", "scams", "--kind", "text", "--threshold", "0.6").exit_code == 0
    values = tmp_path / "scams.txt"
    values.write_text(
        "Send me 50 dollars in gift cards or I will post your photos everywhere\n"
        "\n"
        "ok\n"
        "Your account is locked, verify your password at this link now\n"
    )
    result = bank(home, "add", "scams", "--file", str(values), "--category", "scam")
    assert result.exit_code == 1
    assert "added 2 entries" in result.stdout
    assert "line 3: text 'ok' is too short to shingle" in result.stderr
    assert Banks(home).open("scams").manifest.settings["threshold"] == 0.6
    result = bank(
        home, "match", "scams", "your ACCOUNT is locked!! verify your password at this link now"
    )
    assert result.exit_code == 0 and "scam" in result.stdout and "no match" not in result.stdout


def test_errors_name_the_problem(tmp_path: Path) -> None:
    home = tmp_path / "home"
    result = bank(home, "match", "nope", "x")
    assert isinstance(result.exception, BankError) and "no bank named 'nope'" in str(
        result.exception
    )
    assert bank(home, "create", "pics", "--kind", "hash").exit_code == 0
    result = bank(home, "match", "pics", pdq())
    assert isinstance(result.exception, BankError)
    assert "bank 'pics' has no entries: nothing to match against" in str(result.exception)
    result = bank(home, "add", "pics", pdq())
    assert "give the entries' category" in str(result.exception)
    result = bank(home, "create", "bad", "--kind", "hash", "--threshold", "31.5")
    assert "whole PDQ bits" in str(result.exception)
    result = bank(
        home,
        "create",
        "bad",
        "--kind",
        "hash",
        "--set",
        "index=multihash",
        "--set",
        "pdq_threshold=60",
    )
    assert "multi-hash index is exact only" in str(result.exception)
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    result = bank(home, "import", "pics", str(empty))
    assert "has no entries" in str(result.exception)
    result = bank(home, "delete", "pics")
    assert "add --yes" in str(result.exception)
    assert bank(home, "delete", "pics", "--yes").exit_code == 0
    assert Banks(home).names() == []


def test_the_command_prints_errors_without_a_traceback(tmp_path: Path) -> None:
    env = {**os.environ, "BASTION_HOME": str(tmp_path)}
    corrupt = tmp_path / "banks" / "pics"
    Banks(tmp_path).create("pics", "hash")
    entries = next(corrupt.glob("v*")) / "entries.jsonl"
    entries.write_text('{"id": "x"}\n')
    done = subprocess.run(
        [sys.executable, "-m", "bastion.cli", "bank", "match", "pics", pdq()],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert done.returncode == 2
    assert (
        "error: bank 'pics':" in done.stderr
        and "entries.jsonl is truncated or padded" in done.stderr
    )
    assert "Traceback" not in done.stderr


def test_images_and_videos_are_hashed_with_bastion_media(tmp_path: Path) -> None:
    home = tmp_path / "home"
    photo = tmp_path / "astronaut.png"
    Image.fromarray(data.astronaut()).save(photo)
    recompressed = tmp_path / "astronaut.jpg"
    Image.fromarray(data.astronaut()).resize((400, 400)).save(recompressed, quality=70)
    frames = [data.astronaut(), data.coffee(), data.chelsea()]
    video = mf.make_video(tmp_path / "clip.mp4", frames, fps=10, seconds_per_frame=1.0)
    again = mf.make_video(tmp_path / "clip.webm", frames, fps=10, seconds_per_frame=1.0)
    assert bank(home, "create", "media", "--kind", "hash").exit_code == 0
    result = bank(home, "add", "media", str(photo), str(video), "--category", "terror")
    assert result.exit_code == 0, result.output
    entries = Banks(home).open("media").entries
    assert [e.signal for e in entries] == ["pdq", "md5", "vpdq", "md5"]
    assert entries[0].label.notes == "astronaut.png"  # files are noted by name
    assert len(json.loads(entries[2].value)) >= 3
    result = bank(home, "match", "media", str(recompressed), str(again), str(photo), "--json")
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [sorted(m["signal"] for m in r["matches"]) for r in rows] == [
        ["pdq"],  # re-encoded and resized: same picture, other bytes
        ["vpdq"],
        ["md5", "pdq"],
    ]
    assert rows[1]["matches"][0]["query_match_percent"] >= 80
    not_media = tmp_path / "notes.docx"
    not_media.write_bytes(b"PK")
    result = bank(home, "add", "media", str(not_media), "--category", "x")
    assert result.exit_code == 1 and "not an image or video file" in result.stderr


@pytest.fixture(autouse=True)
def _no_home_leak(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("BASTION_HOME", str(tmp_path / "unused-home"))
