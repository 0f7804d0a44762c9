"""A full annotation round, as a safety team runs it: mining picks a batch -> tasks with
pre-annotations -> two annotators in the browser -> agreement report -> adjudication ->
export -> `bastion train` on the export produces a model that moderates."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from browser import STARTER, LiveServer, answer_steps, log_in
from typer.testing import CliRunner

from bastion.annotation.workflow import TaskState
from bastion.cli import app
from bastion.moderator import Moderator

pytestmark = pytest.mark.slow
runner = CliRunner()

PLACES = ["gym", "bus stop", "parking lot", "school gate", "corner shop"]
THREATS = [
    "I know you wait at the {p} every morning. Next time you won't walk away from it.",
    "Be at the {p} tonight and I'll break both your legs, I promise.",
]
CHATTER = [
    "Anyone else waiting at the {p}? It's freezing today.",
    "Lost my umbrella near the {p}, please message me if you see it.",
]


def bastion(*args: str, stdin: str | None = None) -> str:
    result = runner.invoke(app, list(args), input=stdin)
    assert result.exit_code == 0, result.output + repr(result.exception)
    return result.output


def _pool(path: Path) -> set[str]:
    rows, threats = [], set()
    for i, (template, place) in enumerate((t, p) for t in THREATS for p in PLACES):
        rows.append({"id": f"threat-{i}", "text": template.format(p=place)})
        threats.add(f"threat-{i}")
    for i, (template, place) in enumerate((t, p) for t in CHATTER for p in PLACES):
        rows.append({"id": f"chat-{i}", "text": template.format(p=place)})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), "utf-8")
    return threats


def _work_through(browser: Any, server: LiveServer, name: str, answer: Any) -> int:
    """Log in as `name` and do every task the queue hands out; the number done."""
    page = log_in(browser, server, name)
    done = 0
    while True:
        page.get_by_role("button", name="Next task").click()
        page.wait_for_load_state()
        if "/ui/tasks/" not in page.url:
            assert "Nothing left" in page.content()
            break
        text = page.locator("#item-text").inner_text()
        answer_steps(page, *answer(text))
        page.get_by_role("button", name="Submit").click()
        page.wait_for_url("**/ui?done=*")
        done += 1
    page.close()
    return done


def test_mine_annotate_adjudicate_export_train(
    browser: Any, live_server: LiveServer, tmp_path: Path
) -> None:
    home = str(live_server.home)
    threats = _pool(tmp_path / "pool.jsonl")
    batch = tmp_path / "batch.jsonl"
    bastion("mine", "next", "--pool", str(tmp_path / "pool.jsonl"), "--budget", "8",
            "-o", str(batch), "--policy", str(STARTER), "--home", home)  # fmt: skip
    picked = [json.loads(line) for line in batch.read_text().splitlines()]
    assert len(picked) == 8
    bastion("annotate", "project", "create", "round", "--policy", str(STARTER),
            "--overlap", "2", "--borderline-overlap", "2", "--blind-share", "0.5",
            "--member", "ann", "--member", "ben", "--member", "rita", "--home", home)  # fmt: skip
    out = bastion("annotate", "tasks", "add", "round", "--input", str(batch),
                  "--pre", "classifier", "--model", "zero-shot", "--home", home)  # fmt: skip
    assert "added 8 tasks" in out
    tasks = [live_server.workflow.task(n) for n in range(1, 9)]
    assert all(t.suggestions["harassment/threatening"].source == "classifier" for t in tasks)
    # The miner's bookkeeping travels with each task; its uncertain picks are borderline.
    assert all(t.borderline == (t.metadata["strategy"] == "uncertainty") for t in tasks)

    gold = tmp_path / "gold.jsonl"
    gold.write_text(json.dumps({
        "id": "gold-1", "text": "Meet me at the docks tonight or your sister gets hurt.",
        "gold": {"harassment/threatening": {"violation": True}},
    }) + "\n")  # fmt: skip
    bastion("annotate", "tasks", "add", "round", "--input", str(gold), "--pre", "none",
            "--home", home)  # fmt: skip

    ids = {t["text"]: t["id"] for t in picked} | {"Meet me at the docks": "gold-1"}
    disputed = next(t["id"] for t in picked if t["id"] in threats)

    def item_of(text: str) -> str:
        return next(i for t, i in ids.items() if text.startswith(t))

    def ann(text: str) -> tuple[str, ...]:
        item = item_of(text)
        return ("yes", "yes", "yes") if item in threats or item == "gold-1" else ("no",)

    def ben(text: str) -> tuple[str, ...]:
        item = item_of(text)
        if item == disputed:
            return ("yes", "yes", "no")  # reads it as hyperbole: a disagreement
        return ann(text)

    assert _work_through(browser, live_server, "ann", ann) == 9
    assert _work_through(browser, live_server, "ben", ben) == 9
    counts = live_server.workflow.counts("round")
    assert counts == {"open": 0, "adjudication": 1, "done": 8}

    report = json.loads(bastion("annotate", "report", "round", "--json", "--home", home))
    assert report["pairwise_kappa"]["ann / ben"]["n"] == 9
    assert report["gold_accuracy"]["ann"] == {"accuracy": 1.0, "n": 1}
    assert report["label_alpha"]["harassment/threatening"] < 1.0  # one disagreement
    shown, blind = report["acceptance"]["shown"], report["acceptance"]["blind"]
    assert shown["n"] + blind["n"] == 16  # every annotation of a pre-annotated task

    page = log_in(browser, live_server, "rita")
    page.locator("#adjudication-queue a").first.click()
    page.wait_for_url("**/ui/adjudication/*")
    answer_steps(page, "yes", "yes", "yes")
    page.get_by_role("button", name="Save final answer").click()
    page.wait_for_url("**/ui?done=*")
    assert live_server.workflow.counts("round")["done"] == 9
    assert all(
        t.state == TaskState.done for t in [live_server.workflow.task(n) for n in range(1, 10)]
    )

    export = tmp_path / "export"
    bastion("annotate", "export", "round", "--out", str(export), "--home", home)
    rows = [json.loads(line) for line in (export / "classification.jsonl").read_text().splitlines()]
    assert len(rows) == 9
    by_id = {r["id"]: r for r in rows}
    assert by_id[disputed]["harassment/threatening"] == 1  # the adjudicated answer
    assert by_id[disputed]["path"]["harassment/threatening"]["serious"] == "yes"
    assert sum(r["label"] for r in rows) == len({p["id"] for p in picked} & threats) + 1
    sft = (export / "sft.jsonl").read_text().splitlines()
    assert len(sft) == 9 and "README.md" in {p.name for p in export.iterdir()}

    model = tmp_path / "model"
    bastion("train", "--recipe", str(export / "recipe.yaml"), "--out", str(model))
    assert (model / "manifest.json").is_file()
    moderator = Moderator(export / "policy.yaml", model=model)
    [threat, chatter] = moderator.moderate(
        ["I'll be at the bus stop tonight and you will get hurt.", "Nice weather at the gym."]
    )
    assert (
        threat.category_scores["harassment/threatening"]
        > chatter.category_scores["harassment/threatening"]
    )
