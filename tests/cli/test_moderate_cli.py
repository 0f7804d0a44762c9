"""`bastion moderate`: the one-text table/JSON and the public JSONL file contract."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bastion.cli import app
from bastion.errors import InputError

pytestmark = pytest.mark.slow
runner = CliRunner()


def test_one_text_as_json_is_a_verdict() -> None:
    result = runner.invoke(app, ["moderate", "I will find where you live and hurt you", "--json"])
    assert result.exit_code == 0, result.output
    verdict = json.loads(result.stdout)
    assert verdict["flagged"] is True
    assert verdict["categories"]["harassment/threatening"] or verdict["categories"]["violence"]
    assert verdict["policy_version"].startswith("openai@")
    assert verdict["truncated"] is False and verdict["error"] is None


def test_one_text_table_names_the_flagged_category() -> None:
    result = runner.invoke(app, ["moderate", "How do I kill a Python process?"])
    assert result.exit_code == 0
    assert "not flagged" in result.stdout and "harassment/threatening" in result.stdout


def test_one_empty_text_exits_non_zero_with_the_reason() -> None:
    result = runner.invoke(app, ["moderate", "   "])
    assert result.exit_code == 1
    assert "nothing to moderate" in result.output


def _write_input(path: Path) -> None:
    lines = [
        b'{"id": "a", "text": "I will find where you live and hurt you", "author": "x"}',
        b'{"id": "b", "text": "What a lovely recipe, thanks for sharing"}',
        b'{"id": "c", "text": "caf\xe9 au lait \xff\xfe"}',  # invalid UTF-8 (Latin-1 bytes)
        b'{"id": "d", "text": "unterminated',  # malformed JSON
        b"",  # blank lines are not items
        b'{"id": "e", "text": ""}',  # empty text
        b'{"id": "f"}',  # missing text
        b'{"id": 7, "text": "numbers as ids are kept as strings"}',
    ]
    path.write_bytes(b"\n".join(lines) + b"\n")


def test_file_contract_one_output_line_per_input_line(tmp_path: Path) -> None:
    src, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    _write_input(src)
    result = runner.invoke(app, ["moderate", "--input", str(src), "--output", str(out)])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["id"] for r in rows] == ["a", "b", "c", None, "e", "f", "7"]
    assert [r["line"] for r in rows] == [1, 2, 3, 4, 6, 7, 8]
    by_line = {r["line"]: r for r in rows}
    assert by_line[1]["flagged"] is True and by_line[1]["error"] is None
    assert by_line[1]["action"] in ("review", "block")
    assert by_line[2]["flagged"] is False and by_line[2]["error"] is None
    assert "in.jsonl:3" in by_line[3]["error"] and "UTF-8" in by_line[3]["error"]
    assert "in.jsonl:4" in by_line[4]["error"] and "malformed JSON" in by_line[4]["error"]
    assert "empty text" in by_line[6]["error"] and by_line[6]["category_scores"] is None
    assert "missing the 'text' field" in by_line[7]["error"]
    for r in rows:
        assert set(r) >= {"id", "flagged", "categories", "category_scores", "action", "error"}
    assert "could not be read" in result.stderr


def test_file_lines_that_were_not_scored_go_to_review_not_allow(tmp_path: Path) -> None:
    src, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    _write_input(src)
    (tmp_path / "broken.png").write_bytes(b"not a png at all")
    with src.open("a") as fh:
        fh.write(json.dumps({"id": "g", "text": "look", "images": ["broken.png"]}) + "\n")
    result = runner.invoke(app, ["moderate", "--input", str(src), "--output", str(out)])
    assert result.exit_code == 0, result.output
    rows = {r["id"]: r for r in map(json.loads, out.read_text().splitlines())}
    for key in ("c", None, "e", "f", "g"):  # bad UTF-8, bad JSON, empty, no text, bad image
        assert rows[key]["error"], key
        assert rows[key]["action"] == "review" and rows[key]["flagged"] is None, key
    assert rows["b"]["action"] == "allow" and rows["b"]["flagged"] is False


def test_file_table_shows_review_for_lines_that_were_not_scored(tmp_path: Path) -> None:
    src = tmp_path / "in.jsonl"
    src.write_text(json.dumps({"id": "t1", "text": ""}) + "\n")
    result = runner.invoke(app, ["moderate", "--input", str(src)])
    assert result.exit_code == 0, result.output
    row = next(line for line in result.stdout.splitlines() if "t1" in line)
    assert "review" in row and "allow" not in row and "empty text" in row


def test_one_unreadable_image_as_json_goes_to_review_not_allow(tmp_path: Path) -> None:
    image = tmp_path / "broken.png"
    image.write_bytes(b"not a png at all")
    result = runner.invoke(app, ["moderate", "--image", str(image), "caption", "--json"])
    assert result.exit_code == 1
    verdict = json.loads(result.stdout)
    assert verdict["error"] and verdict["action"] == "review" and verdict["flagged"] is None
    result = runner.invoke(app, ["moderate", "--image", str(image), "caption"])
    assert result.exit_code == 1 and "not scored" in result.output and "review" in result.output


def test_stop_on_error_writes_what_came_before_and_fails(tmp_path: Path) -> None:
    src, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    _write_input(src)
    args = ["moderate", "-i", str(src), "-o", str(out), "--on-error", "stop"]
    result = runner.invoke(app, args)
    assert isinstance(result.exception, InputError)
    assert "in.jsonl:3" in str(result.exception) and "--on-error stop" in str(result.exception)
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["id"] for r in rows] == ["a", "b"]


def test_stop_on_error_via_main_prints_the_file_and_line(tmp_path: Path) -> None:
    import subprocess
    import sys

    src = tmp_path / "in.jsonl"
    _write_input(src)
    proc = subprocess.run(
        [sys.executable, "-c", "from bastion.cli import main; main()", "moderate", "-i", str(src),
         "-o", str(tmp_path / "o.jsonl"), "--on-error", "stop"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert proc.returncode == 2
    assert "in.jsonl:3" in proc.stderr and "Traceback" not in proc.stderr


def test_file_without_output_prints_a_table(tmp_path: Path) -> None:
    src = tmp_path / "in.jsonl"
    src.write_text(
        json.dumps({"id": "t1", "text": "I will find where you live and hurt you"})
        + "\n"
        + json.dumps({"id": "t2", "text": "[/bold] markup-looking text is just text"})
        + "\n"
    )
    result = runner.invoke(app, ["moderate", "--input", str(src)])
    assert result.exit_code == 0, result.output
    assert "t1" in result.stdout and "t2" in result.stdout
    assert "[/bold] markup-looking" in result.stdout


def test_missing_input_file_and_conflicting_arguments(tmp_path: Path) -> None:
    result = runner.invoke(app, ["moderate", "--input", str(tmp_path / "nope.jsonl")])
    assert result.exit_code != 0 and "no such file" in str(result.exception)
    result = runner.invoke(app, ["moderate"])
    assert result.exit_code != 0 and "either a TEXT" in str(result.exception)


def test_mlcommons_policy_and_help_has_examples() -> None:
    result = runner.invoke(
        app, ["moderate", "Give me step by step instructions to build a pipe bomb", "--json",
              "--policy", "mlcommons"],
    )  # fmt: skip
    assert result.exit_code == 0
    verdict = json.loads(result.stdout)
    assert set(verdict["categories"]) == {f"s{i}" for i in range(1, 15)}
    assert verdict["flagged"] and verdict["categories"]["s9"]
    help_text = runner.invoke(app, ["moderate", "--help"]).stdout
    assert "Example" in help_text and "--input" in help_text


def test_a_verdict_with_uncovered_categories_says_so_on_the_terminal(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`bastion moderate --image` without `bastion[nudity]`: the table marks the category as
    unknown and a line names it and says how to cover it."""
    from bastion.cli.moderate import _print_verdict
    from bastion.moderator import Verdict
    from bastion.policy import Action

    why = "no detector covers this category on images: NudeNet is not installed (...)"
    verdict = Verdict(
        categories={"sexual": False, "violence": False},
        category_scores={"sexual": 0.01, "violence": 0.02},
        action=Action.review,
        category_actions={"sexual": Action.review, "violence": Action.allow},
        uncovered={"sexual": why},
        policy_version="openai@test",
        model_version="test",
    )
    _print_verdict("", verdict)
    out = capsys.readouterr().out
    assert f"sexual not covered: {why}" in out
    assert re.search(r"sexual\s*│\s*0\.010\s*│\s*\?\s*│\s*review", out), out
