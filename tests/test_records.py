"""Reading JSONL item files: every non-blank line becomes exactly one Record, in order."""

from __future__ import annotations

import io
import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from bastion.errors import InputError
from bastion.items import Item
from bastion.moderator import Verdict
from bastion.records import (
    OnError,
    Record,
    count_lines,
    output_line,
    parse_line,
    read_records,
    stop_error,
)

LINES: list[bytes] = [
    b'{"id": "a", "text": "hello", "lang": "en", "score": 3}',  # 1 good, with metadata
    b"",  # 2 blank: skipped
    b'{"id": "b", "text": "caf\xe9 au lait"}',  # 3 invalid UTF-8 (Latin-1 e-acute)
    b'{"id": "c", "text": ',  # 4 malformed JSON
    b'["id", "text"]',  # 5 a JSON array
    b'{"id": "e", "body": "no text"}',  # 6 missing text
    b'{"id": 7, "text": 42}',  # 7 numeric text, numeric id
    b"   \t",  # 8 whitespace only: skipped
    b'{"text": "no id here"}',  # 9 good, no id
]


@pytest.fixture
def jsonl(tmp_path: Path) -> Path:
    path = tmp_path / "items.jsonl"
    path.write_bytes(b"\n".join(LINES) + b"\n")
    return path


@pytest.fixture
def records(jsonl: Path) -> list[Record]:
    return list(read_records(jsonl))


def test_every_non_blank_line_yields_one_record_in_order(records: list[Record]) -> None:
    assert [r.line for r in records] == [1, 3, 4, 5, 6, 7, 9]
    assert [r.error is None for r in records] == [True, False, False, False, False, False, True]


def test_count_lines_matches_records(jsonl: Path, records: list[Record]) -> None:
    assert count_lines(jsonl) == len(records) == 7


def test_good_line_becomes_an_item_with_metadata(records: list[Record]) -> None:
    first = records[0]
    assert first.id == "a"
    assert isinstance(first.item, Item)
    assert first.item.text == "hello"
    assert first.item.id == "a"
    assert first.item.metadata == {"lang": "en", "score": 3}


def test_line_without_id_has_none_id(records: list[Record]) -> None:
    last = records[-1]
    assert last.id is None
    assert last.item is not None
    assert last.item.text == "no id here"
    assert last.item.metadata == {}


def test_invalid_utf8_names_file_and_line_and_salvages_the_id(
    jsonl: Path, records: list[Record]
) -> None:
    rec = records[1]
    assert rec.item is None
    assert rec.error is not None
    assert rec.error.startswith(f"{jsonl}:3: ")
    assert "invalid UTF-8" in rec.error
    bad_at = LINES[2].index(b"\xe9")
    assert f"byte {bad_at} of the line" in rec.error
    assert rec.id == "b"


def test_invalid_utf8_without_recoverable_json_has_no_id() -> None:
    rec = parse_line(b'{"id": "z", \xff', "f.jsonl", 2)
    assert rec.id is None
    assert rec.error is not None
    assert "f.jsonl:2" in rec.error
    assert "invalid UTF-8" in rec.error


def test_malformed_json_line(jsonl: Path, records: list[Record]) -> None:
    rec = records[2]
    assert rec.item is None
    assert rec.id is None
    assert rec.error is not None
    assert rec.error.startswith(f"{jsonl}:4: malformed JSON")


def test_json_array_line(jsonl: Path, records: list[Record]) -> None:
    rec = records[3]
    assert rec.item is None
    assert rec.error == f"{jsonl}:5: expected a JSON object, got list"


def test_missing_text_keeps_the_id(jsonl: Path, records: list[Record]) -> None:
    rec = records[4]
    assert rec.item is None
    assert rec.id == "e"
    assert rec.error == f"{jsonl}:6: missing the 'text' field (or images, video, audio)"


def test_numeric_text_is_an_error_and_numeric_id_becomes_a_string(
    jsonl: Path, records: list[Record]
) -> None:
    rec = records[5]
    assert rec.item is None
    assert rec.id == "7"
    assert rec.error == f"{jsonl}:7: 'text' must be a string, got int"


@pytest.mark.parametrize(
    ("text", "kind"), [("null", "NoneType"), ('["a"]', "list"), ("1.5", "float")]
)
def test_non_string_text_names_its_type(text: str, kind: str) -> None:
    rec = parse_line(f'{{"id": "x", "text": {text}}}'.encode(), "f", 1)
    assert rec.item is None
    assert rec.error == f"f:1: 'text' must be a string, got {kind}"


def test_read_records_from_a_handle_uses_the_given_name() -> None:
    handle = io.BytesIO(b'{"id": 1, "text": "x"}\n\n{"id": 2, "text": "y"}\r\n')
    recs = list(read_records("<stdin>", handle=handle))
    assert [(r.line, r.id) for r in recs] == [(1, "1"), (3, "2")]
    assert recs[1].item is not None
    assert recs[1].item.text == "y"
    assert not handle.closed  # a caller's handle is left open


def test_lone_surrogate_escape_is_an_error_record_not_a_crash() -> None:
    # Valid JSON, but "\ud800" decodes to a lone surrogate that cannot be encoded as UTF-8.
    rec = parse_line(b'{"id": "s", "text": "a\\ud800b"}', "f", 1)
    if rec.item is not None:
        assert isinstance(rec.item.scoring_text, str)
    else:
        assert rec.error is not None
        assert rec.id == "s"


def test_output_line_for_an_error_record(records: list[Record]) -> None:
    rec = records[4]
    out = output_line(rec, None)
    assert out == {
        "id": "e",
        "line": 6,
        "flagged": None,
        "categories": None,
        "category_scores": None,
        "action": "review",
        "error": rec.error,
    }
    json.dumps(out)  # the output line is JSON-serialisable


def test_output_line_for_an_error_record_ignores_any_verdict(records: list[Record]) -> None:
    verdict = SimpleNamespace(flagged=True, action=SimpleNamespace(value="block"), error=None)
    out = output_line(records[2], verdict)
    assert out["flagged"] is None
    assert out["action"] == "review"
    assert out["error"] == records[2].error


def test_output_line_for_a_scored_record() -> None:
    rec = parse_line(b'{"id": "ok", "text": "t"}', "f", 4)
    verdict = SimpleNamespace(
        flagged=True,
        categories={"hate": True},
        category_scores={"hate": 0.9},
        action=SimpleNamespace(value="block"),
        truncated=False,
        category_applied_input_types={"hate": ["text"]},
        hashes=[],
        policy_version="p@1+abc",
        model_version="m",
        error=None,
        evidence=[SimpleNamespace(model_dump=lambda: {"rule": "R1"})],
        rationale="hate: a slur aimed at a group",
    )
    out = output_line(rec, verdict, evidence=True)
    assert out["rationale"] == "hate: a slur aimed at a group"
    assert out["id"] == "ok"
    assert out["line"] == 4
    assert out["flagged"] is True
    assert out["action"] == "block"
    assert out["error"] is None
    assert out["evidence"] == [{"rule": "R1"}]
    assert out["category_applied_input_types"] == {"hate": ["text"]}
    assert "evidence" not in output_line(rec, verdict)


def test_output_line_for_a_verdict_with_an_error() -> None:
    rec = parse_line(b'{"id": "ok", "text": "t"}', "f", 4)
    verdict = Verdict(policy_version="p", model_version="m", error="detector failed")
    out = output_line(rec, verdict)
    assert out["flagged"] is None
    assert out["action"] == "review"
    assert out["categories"] is None
    assert out["error"] == "line 4: detector failed"
    assert "rationale" not in out


def test_on_error_values() -> None:
    assert [e.value for e in OnError] == ["skip", "stop"]
    assert OnError("stop") is OnError.stop
    with pytest.raises(ValueError):
        OnError("ignore")


def test_stop_error_is_an_input_error_with_the_record_error(records: list[Record]) -> None:
    err = stop_error(records[3])
    assert isinstance(err, InputError)
    assert str(err).startswith(str(records[3].error))
    assert "--on-error stop" in str(err)


def test_media_fields_resolve_relative_to_the_input_file(tmp_path: Path) -> None:
    jsonl = tmp_path / "in" / "posts.jsonl"
    jsonl.parent.mkdir()
    jsonl.write_text(
        '{"id": "a", "images": ["pics/x.png", "/abs/y.png"], "video": "v.mp4"}\n'
        '{"id": "b", "text": "hi", "audio": "s.wav"}\n'
        '{"id": "c", "images": "x.png"}\n'
        '{"id": "d", "video": 3}\n'
        '{"id": "e", "images": ["https://example.com/x.png"]}\n',
        encoding="utf-8",
    )
    a, b, c, d, e = read_records(jsonl)
    assert a.item is not None and a.item.text == ""
    assert [s.path for s in a.item.images] == [jsonl.parent / "pics/x.png", Path("/abs/y.png")]
    assert a.item.video is not None and a.item.video.path == jsonl.parent / "v.mp4"
    assert b.item is not None and b.item.audio is not None and b.item.text == "hi"
    assert "images" not in a.item.metadata
    assert c.item is None and c.error is not None and "'images' must be a list" in c.error
    assert d.item is None and d.error is not None and "'video' must be a path" in d.error
    assert e.item is None and e.error is not None and "remote URLs are not fetched" in e.error
    assert [r.id for r in (c, d, e)] == ["c", "d", "e"]
