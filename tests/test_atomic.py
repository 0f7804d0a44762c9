"""Whole-or-nothing writes: the new file replaces the old one whole, and a failure leaves the
old one and no temporary file behind."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from bastion.atomic import open_atomic_text, write_atomic, write_synced


def test_write_atomic_replaces_the_file_whole(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    path.write_bytes(b"old")
    write_atomic(path, [b"new ", b"bytes"])
    assert path.read_bytes() == b"new bytes"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json"]


def test_a_failing_writer_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    path.write_bytes(b"old")

    def chunks() -> Iterator[bytes]:
        yield b"half"
        raise RuntimeError("the writer broke")

    with pytest.raises(RuntimeError, match="the writer broke"):
        write_atomic(path, chunks())
    with pytest.raises(ValueError, match="no"), open_atomic_text(path) as stream:
        stream.write("half")
        raise ValueError("no")
    assert path.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json"]


def test_a_text_stream_writes_utf8_with_open_s_newlines(tmp_path: Path) -> None:
    path = tmp_path / "rows.csv"
    with open_atomic_text(path, newline="") as stream:
        stream.write(json.dumps({"t": "naïve"}, ensure_ascii=False) + "\r\n")
    assert path.read_bytes() == '{"t": "naïve"}\r\n'.encode()


def test_write_synced_writes_in_place(tmp_path: Path) -> None:
    path = tmp_path / "marker"
    write_synced(path, [b"a", b"b"])
    assert path.read_bytes() == b"ab"
