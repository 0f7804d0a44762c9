"""`bastion policy validate|show|new` through the real Typer app."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bastion.cli import app, main
from bastion.errors import BastionError
from bastion.policy import load_policy, starter_policy_text

GOOD = """\
id: p
version: "1"
name: P
categories:
  - id: my-cat
    name: C
    definition: d
    severity: 2
"""

runner = CliRunner()


def _invoke(*args: str):  # type: ignore[no-untyped-def]
    # A wide terminal so rich does not wrap long problem lines.
    return runner.invoke(app, list(args), env={"COLUMNS": "300", "NO_COLOR": "1"})


def _flat(text: str) -> str:
    return " ".join(text.split())


@pytest.fixture
def good(tmp_path: Path) -> Path:
    path = tmp_path / "good.yaml"
    path.write_text(GOOD, encoding="utf-8")
    return path


@pytest.fixture
def bad(tmp_path: Path) -> Path:
    path = tmp_path / "bad.yaml"
    path.write_text(GOOD.replace("severity: 2", "severity: 7"), encoding="utf-8")
    return path


def test_validate_good_file_exits_zero_and_prints_version(good: Path) -> None:
    result = _invoke("policy", "validate", str(good))
    assert result.exit_code == 0, result.output
    assert load_policy(good).version in result.output
    assert "1 categories" in result.output


def test_validate_bad_file_exits_non_zero_with_problem_text(bad: Path) -> None:
    result = _invoke("policy", "validate", str(bad))
    assert result.exit_code != 0
    out = _flat(result.output)
    assert "line 8" in out
    assert "categories[0](my-cat).severity" in out
    assert "less than or equal to 4" in out


def test_validate_reports_each_of_several_files(good: Path, bad: Path, tmp_path: Path) -> None:
    missing = tmp_path / "missing.yaml"
    result = _invoke("policy", "validate", str(bad), str(good), str(missing))
    assert result.exit_code == 1
    out = _flat(result.output)
    # Every file is reported, the good one after the bad one as well.
    assert out.count("✗") == 2
    assert out.count("✓") == 1
    assert str(good) in out
    assert str(bad) in out
    assert str(missing) in out
    assert "severity" in out
    assert "not a built-in pack" in out


def test_validate_only_good_files_exits_zero(good: Path, tmp_path: Path) -> None:
    other = tmp_path / "other.yaml"
    other.write_text(GOOD.replace("id: p", "id: q"), encoding="utf-8")
    result = _invoke("policy", "validate", str(good), str(other))
    assert result.exit_code == 0, result.output
    assert result.output.count("✓") == 2


def test_validate_prints_problems_containing_square_brackets(tmp_path: Path) -> None:
    # A user's value is echoed in the problem text; it must not be read as rich markup.
    path = tmp_path / "bad.yaml"
    path.write_text(GOOD.replace("severity: 2", 'severity: "[/oops]"'), encoding="utf-8")
    result = _invoke("policy", "validate", str(path))
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert result.exit_code == 1
    assert "[/oops]" in result.output


def test_show_openai_lists_all_13_ids() -> None:
    result = _invoke("policy", "show", "openai")
    assert result.exit_code == 0, result.output
    ids = load_policy("openai").policy.category_ids
    assert len(ids) == 13
    rows = [line.split("│")[1].strip() for line in result.output.splitlines() if "│" in line]
    assert [r for r in rows if r in ids] == ids
    assert load_policy("openai").version in result.output


def test_show_file_prints_thresholds(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(GOOD + "    flag_threshold: 0.37\n", encoding="utf-8")
    result = _invoke("policy", "show", str(path))
    assert result.exit_code == 0, result.output
    assert "my-cat" in result.output
    assert "0.37" in result.output
    assert "0.50/0.85" in result.output


def test_new_writes_a_file_that_validates(tmp_path: Path) -> None:
    path = tmp_path / "mine.yaml"
    result = _invoke("policy", "new", str(path))
    assert result.exit_code == 0, result.output
    assert path.read_text(encoding="utf-8") == starter_policy_text()
    check = _invoke("policy", "validate", str(path))
    assert check.exit_code == 0, check.output
    assert "my-platform@" in check.output


def test_new_refuses_to_overwrite_without_force(tmp_path: Path) -> None:
    path = tmp_path / "mine.yaml"
    path.write_text("keep me", encoding="utf-8")
    result = _invoke("policy", "new", str(path))
    assert result.exit_code != 0
    assert isinstance(result.exception, BastionError)
    assert "--force" in str(result.exception)
    assert path.read_text(encoding="utf-8") == "keep me"

    forced = _invoke("policy", "new", str(path), "--force")
    assert forced.exit_code == 0, forced.output
    assert path.read_text(encoding="utf-8") == starter_policy_text()


def test_main_prints_bastion_errors_without_traceback_and_exits_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "mine.yaml"
    path.write_text("keep me", encoding="utf-8")
    monkeypatch.setattr(sys, "argv", ["bastion", "policy", "new", str(path)])
    monkeypatch.setenv("COLUMNS", "300")
    with pytest.raises(SystemExit) as info:
        main()
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "error:" in err
    assert "--force" in err
    assert "Traceback" not in err


@pytest.mark.parametrize("command", ["validate", "show", "new"])
def test_each_command_help_has_an_example(command: str) -> None:
    result = _invoke("policy", command, "--help")
    assert result.exit_code == 0
    assert "Example" in result.output
    assert f"bastion policy {command}" in _flat(result.output)
