"""`bastion annotate` on the command line: people, projects, and the bad input rows it names."""

from __future__ import annotations

import json
from pathlib import Path

from browser import STARTER
from typer.testing import CliRunner

from bastion.annotation.workflow import Workflow
from bastion.cli import app
from bastion.store import Store

runner = CliRunner()


def test_tasks_add_names_each_bad_row_and_adds_the_rest(tmp_path: Path) -> None:
    home = str(tmp_path / "home")
    (tmp_path / "cat.png").write_bytes(b"not really a png, but a file")
    rows = [
        {"id": "ok-1", "text": "A perfectly ordinary comment.", "strategy": "uncertainty"},
        {"id": "ok-2", "text": "", "media": ["cat.png"], "round": 3},
        {"text": "no id here"},
        {"id": "bad-media", "text": "x", "media": ["missing.png"]},
        {"id": "bad-gold", "text": "x", "gold": {"harassment/threatening": "yes"}},
        {"id": "bad-text", "text": 42},
        {"id": "bad-gold-category", "text": "x", "gold": {"hate": {"violation": True}}},
        {"id": "ok-1", "text": "the same id again"},
    ]
    path = tmp_path / "batch.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows) + "{not json\n", "utf-8")
    made = runner.invoke(
        app, ["annotate", "project", "create", "p", "--policy", str(STARTER), "--home", home]
    )
    assert made.exit_code == 0, made.output
    result = runner.invoke(
        app,
        ["annotate", "tasks", "add", "p", "--input", str(path), "--pre", "none", "--home", home],
    )
    assert result.exit_code == 1  # some rows were skipped: the exit status says so
    out = " ".join(result.output.split())
    assert "added 2 tasks to p; 1 were already there; 6 skipped" in out
    assert "batch.jsonl line 3: no 'id'" in out
    assert "media file" in out and "missing.png not found" in out
    assert "gold answer of 'harassment/threatening' needs 'violation'" in out
    assert "line 6: 'text' is not a string" in out
    assert "a gold answer must give every category of the project" in out
    assert "line 9: not JSON" in out
    with Store.open(Path(home)) as store:
        w = Workflow(store)
        first, second = w.task(1), w.task(2)
    assert first.item_id == "ok-1" and first.borderline and first.required == 3
    assert second.media == [str(tmp_path / "cat.png")] and second.metadata == {"round": 3}


def test_people_get_a_shown_once_password_or_read_it_from_stdin(tmp_path: Path) -> None:
    home = str(tmp_path / "home")
    made = runner.invoke(app, ["annotate", "person", "add", "ann", "--home", home])
    assert made.exit_code == 0, made.output
    password = made.output.split("password (shown once): ")[1].strip()
    given = runner.invoke(
        app,
        ["annotate", "person", "add", "rita", "--role", "reviewer", "--password-stdin",
         "--home", home],
        input="a long enough password\n",
    )  # fmt: skip
    assert given.exit_code == 0 and "password" not in given.output.replace("--password", "")
    short = runner.invoke(
        app,
        ["annotate", "person", "add", "bob", "--password-stdin", "--home", home],
        input="short\n",
    )
    assert short.exit_code != 0 and "at least 10 characters" in str(short.exception)
    with Store.open(Path(home)) as store:
        w = Workflow(store)
        assert w.log_in("ann", password) is not None
        assert w.log_in("rita", "a long enough password") is not None
        assert [p.name for p in w.people()] == ["ann", "rita"]


def test_export_of_a_project_with_nothing_finished_is_a_clear_error(tmp_path: Path) -> None:
    home = str(tmp_path / "home")
    runner.invoke(
        app, ["annotate", "project", "create", "p", "--policy", str(STARTER), "--home", home]
    )
    result = runner.invoke(
        app, ["annotate", "export", "p", "--out", str(tmp_path / "out"), "--home", home]
    )
    assert result.exit_code != 0
    assert "has no finished tasks to export yet" in str(result.exception)
    unknown = runner.invoke(app, ["annotate", "report", "nope", "--home", home])
    assert unknown.exit_code != 0 and "no annotation project 'nope'" in str(unknown.exception)
