"""`bastion mine` end to end with the real encoder: next -> the test labels -> learn -> next,
through a file and through the review queue, with the bad inputs the issue names."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bastion.cli import app
from bastion.mining.project import STATE, MiningProject
from bastion.store import Store
from bastion.triage import ReviewQueue

pytestmark = pytest.mark.slow
runner = CliRunner()

COINS = ["bitcoin", "ethereum", "USDT", "solana", "dogecoin"]
PITCHES = [
    "Send {c} to the wallet in my bio and get double back within the hour",
    "Official {c} giveaway: transfer any amount and we return twice as much",
    "Guaranteed 40% daily returns, deposit your {c} with my trading bot today",
    "Your {c} account is locked, log in at this link with your seed phrase to restore it",
]
TOPICS = ["bakery", "football match", "hiking trail", "book club", "garden", "jazz concert",
          "bike repair", "museum visit", "rainy weekend", "chess tournament"]  # fmt: skip
CHATTER = [
    "Had a lovely time at the {t} today, thanks everyone",
    "Does anyone have tips for the {t} next month?",
    "Photos from the {t} are up on the community page",
    "The {t} was cancelled, hope we can reschedule soon",
]


def _pool(tmp_path: Path) -> tuple[Path, set[str]]:
    rows, violating = [], set()
    for i, (p, c) in enumerate((p, c) for p in PITCHES for c in COINS):
        rows.append({"id": f"scam-{i}", "text": p.format(c=c)})
        violating.add(f"scam-{i}")
    for i, (p, t) in enumerate((p, t) for p in CHATTER for t in TOPICS):
        rows.append({"id": f"chat-{i}", "text": p.format(t=t)})
    rows.append({"id": "media-only", "images": ["holiday.jpg"]})
    path = tmp_path / "pool.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), "utf-8")
    return path, violating


def bastion(*args: str, ok: bool = True) -> str:
    result = runner.invoke(app, list(args))
    if ok:
        assert result.exit_code == 0, result.output
        return result.output
    assert result.exit_code != 0, result.output
    return result.output + str(result.exception)  # a BastionError, as the CLI would print it


def _batch(path: Path) -> list[dict]:  # type: ignore[type-arg]
    return [json.loads(line) for line in path.read_text("utf-8").splitlines()]


def test_next_label_learn_next(tmp_path: Path) -> None:
    home = str(tmp_path / "home")
    pool, violating = _pool(tmp_path)
    out = bastion("mine", "next", "--pool", str(pool), "--budget", "12", "-o",
                  str(tmp_path / "b1.jsonl"), "--category", "illicit", "--home", home)  # fmt: skip
    assert "media-only" in out and "no text" in out  # the line without text, named
    first = _batch(tmp_path / "b1.jsonl")
    assert len(first) == 12 == len({r["id"] for r in first})
    assert all(0 < r["propensity"] <= 1 for r in first)
    assert sum(r["id"] in violating for r in first) >= 3  # not a random draw from a 30 % pool

    labels = [{"id": r["id"], "label": int(r["id"] in violating)} for r in first]
    labels.append({"id": "not-in-pool", "label": 1})
    # Labelled outside mining (a seed set): they train the model but pay no strategy.
    seeds = [f"chat-{i}" for i in range(30, 40) if f"chat-{i}" not in {r["id"] for r in first}][:3]
    labels += [{"id": i, "label": "not_violating"} for i in seeds]
    flip = first[0]["id"]
    labels += [
        {"id": flip, "label": 1 - labels[0]["label"]},
        {"id": flip, "label": labels[0]["label"]},
    ]
    (tmp_path / "l1.jsonl").write_text("".join(json.dumps(x) + "\n" for x in labels), "utf-8")
    out = bastion("mine", "learn", "--labels", str(tmp_path / "l1.jsonl"), "--home", home)
    assert "not-in-pool" in out and "refused" in out
    assert "conflicting labels" in out and flip in out and "majority used" in out

    project = MiningProject.open(Path(home) / "mining" / "default")
    assert project.state.bandit is not None
    found = sum(x["label"] for x in labels[:12])
    assert sum(project.state.bandit["pulls"]) == pytest.approx(12)  # each pick paid once
    assert project.model().fitted

    bastion("mine", "next", "--pool", str(pool), "--budget", "12", "-o",
            str(tmp_path / "b2.jsonl"), "--home", home)  # fmt: skip
    second = _batch(tmp_path / "b2.jsonl")
    assert not {r["id"] for r in first} & {r["id"] for r in second}
    assert [r["round"] for r in second] == [2] * 12
    assert MiningProject.open(Path(home) / "mining" / "default").state.rounds == 2

    report = json.loads(bastion("mine", "report", "--json", "--home", home))
    assert report["positives"] == found and report["rounds"] == 2
    p = report["prevalence"]
    assert p["low"] <= len(violating) / 60 <= p["high"]


def test_the_review_queue_carries_the_batch_and_brings_the_decisions_back(tmp_path: Path) -> None:
    home = str(tmp_path / "home")
    pool, violating = _pool(tmp_path)
    bastion("mine", "next", "--pool", str(pool), "--budget", "6", "-q", "mining", "--home", home)
    with Store.open(Path(home)) as store:
        queue = ReviewQueue(store, "mining")
        claimed = queue.claim("ana", n=10)
        assert len(claimed) == 6
        assert all(item.metadata["strategy"] for item in claimed)
        for item in claimed:
            label = "violating" if item.item_id in violating else "not_violating"
            queue.decide(item.item_id, "ana", label)
    out = bastion("mine", "learn", "-q", "mining", "--home", home)
    assert "accepted 6 labels" in out
    project = MiningProject.open(Path(home) / "mining" / "default")
    assert project.pending() == []
    assert len(project.labels()) == 6


def test_a_budget_of_zero_and_a_budget_beyond_the_pool(tmp_path: Path) -> None:
    home = str(tmp_path / "home")
    pool, _ = _pool(tmp_path)
    out = bastion("mine", "next", "--pool", str(pool), "--budget", "0", "-o",
                  str(tmp_path / "b.jsonl"), "--home", home, ok=False)  # fmt: skip
    assert "budget is 0" in out
    out = bastion("mine", "next", "--pool", str(pool), "--budget", "500", "-o",
                  str(tmp_path / "b.jsonl"), "--home", home)  # fmt: skip
    assert "only 60 items" in out
    assert len(_batch(tmp_path / "b.jsonl")) == 60
    out = bastion("mine", "next", "--pool", str(pool), "--budget", "5", "-o",
                  str(tmp_path / "c.jsonl"), "--home", home, ok=False)  # fmt: skip
    assert "already out for labelling" in out


def test_a_crash_while_saving_leaves_the_project_as_it_was(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = str(tmp_path / "home")
    pool, violating = _pool(tmp_path)
    bastion("mine", "next", "--pool", str(pool), "--budget", "5", "-o",
            str(tmp_path / "b.jsonl"), "--home", home)  # fmt: skip
    root = Path(home) / "mining" / "default"
    before = (root / STATE).read_bytes()
    labels = [
        {"id": r["id"], "label": int(r["id"] in violating)} for r in _batch(tmp_path / "b.jsonl")
    ]
    (tmp_path / "l.jsonl").write_text("".join(json.dumps(x) + "\n" for x in labels), "utf-8")

    real_replace = os.replace

    def crash_on_state(src: str | Path, dst: str | Path) -> None:
        if Path(dst).name == STATE:
            raise OSError("disk full")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", crash_on_state)
    bastion("mine", "learn", "--labels", str(tmp_path / "l.jsonl"), "--home", home, ok=False)
    monkeypatch.undo()
    assert (root / STATE).read_bytes() == before
    assert MiningProject.open(root).state.bandit is None  # still readable, nothing paid

    # The labels were recorded before the crash; learning again pays for them exactly once.
    bastion("mine", "learn", "--labels", str(tmp_path / "l.jsonl"), "--home", home)
    bandit = MiningProject.open(root).state.bandit
    assert bandit is not None
    assert sum(bandit["pulls"]) == pytest.approx(len(labels))  # paid once, not twice


def test_simulate_writes_curves_and_a_table(tmp_path: Path) -> None:
    pool, violating = _pool(tmp_path)
    gold = tmp_path / "gold.jsonl"
    rows = [json.loads(line) for line in pool.read_text("utf-8").splitlines()]
    gold.write_text(
        "".join(
            json.dumps({"text": r.get("text"), "label": int(r["id"] in violating)}) + "\n"
            for r in rows
        ),
        "utf-8",
    )
    args = ["mine", "simulate", "--pool", str(gold), "-o", str(tmp_path / "sim"), "--seeds", "1",
            "--batch", "10", "--seed-positives", "2", "--seed-random", "5"]  # fmt: skip
    out = bastion(*args, "--budget", "20", "--only", "bandit", "--only", "random")
    assert "no text" in out  # the media-only line, named and skipped
    assert "bandit" in out and "random" in out
    saved = json.loads((tmp_path / "sim" / "simulation.json").read_text("utf-8"))
    assert [r["policy"] for r in saved[0]["summary"]] == ["bandit", "random"]
    assert saved[0]["curves"][0]["labels"] == [0, 10, 20]
    assert (tmp_path / "sim" / "index.html").exists()
    out = bastion(*args, "--budget", "500", ok=False)
    assert "fewer than the budget of 500" in out


def test_an_unreadable_project_state_is_an_error_not_a_fresh_start(tmp_path: Path) -> None:
    home = tmp_path / "home"
    pool, _ = _pool(tmp_path)
    state = home / "mining" / "default" / STATE
    state.parent.mkdir(parents=True)
    state.write_text('{"version": 1, "rounds": 3', "utf-8")  # cut off mid-write by hand
    out = bastion("mine", "next", "--pool", str(pool), "--budget", "5", "-o",
                  str(tmp_path / "b.jsonl"), "--home", str(home), ok=False)  # fmt: skip
    assert "unreadable" in out
    assert state.read_text("utf-8") == '{"version": 1, "rounds": 3'
