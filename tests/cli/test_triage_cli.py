"""The triage commands end to end, as a safety team runs them: `bastion bank` builds a bank,
`bastion recall` finds candidates in a pool, `bastion rank` orders and queues them, `bastion
queue` claims and decides, and the confirmed violations land in the bank."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bastion.banks.registry import Banks
from bastion.cli import app
from scam_texts import BENIGN, LOOKALIKES, PARAPHRASES, SCAM

pytestmark = pytest.mark.slow
runner = CliRunner()


def bastion(*args: str) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def test_bank_recall_rank_claim_decide_and_the_decision_is_in_the_bank(tmp_path: Path) -> None:
    home = str(tmp_path / "home")
    (tmp_path / "scam.txt").write_text("\n".join(SCAM), "utf-8")
    (tmp_path / "fine.txt").write_text("\n".join(LOOKALIKES), "utf-8")
    bastion("bank", "create", "scam", "--kind", "embedding", "--home", home)
    bastion("bank", "add", "scam", "-f", str(tmp_path / "scam.txt"), "--category", "illicit",
            "--severity", "3", "--home", home)  # fmt: skip
    bastion("bank", "add", "scam", "-f", str(tmp_path / "fine.txt"), "--category", "illicit",
            "--negative", "--home", home)  # fmt: skip

    rows = [{"id": f"para-{i}", "text": t, "reach": 500} for i, t in enumerate(PARAPHRASES)]
    rows += [{"id": f"benign-{i}", "text": t, "reach": 5} for i, t in enumerate(BENIGN)]
    pool = tmp_path / "pool.jsonl"
    pool.write_text("\n".join(json.dumps(r) for r in rows) + "\n{not json\n", "utf-8")

    out = bastion("recall", "--pool", str(pool), "--bank", "scam", "-o",
                  str(tmp_path / "cands.jsonl"), "--home", home)  # fmt: skip
    assert "skipped" in out and "malformed JSON" in out  # the bad line, named
    candidates = [json.loads(x) for x in (tmp_path / "cands.jsonl").read_text().splitlines()]
    found = {c["id"] for c in candidates}
    assert {f"para-{i}" for i in range(len(PARAPHRASES))} <= found

    bastion("rank", "-c", str(tmp_path / "cands.jsonl"), "-o", str(tmp_path / "queue.jsonl"),
            "--enqueue", "default", "--home", home)  # fmt: skip
    ordered = [json.loads(x) for x in (tmp_path / "queue.jsonl").read_text().splitlines()]
    assert [r["position"] for r in ordered] == list(range(len(candidates)))
    harms = [r["expected_harm"] for r in ordered]
    assert harms == sorted(harms, reverse=True)

    claimed = [
        json.loads(x)
        for x in bastion("queue", "claim", "-r", "ana", "-n", "100", "--home", home).splitlines()
        if x.startswith("{")
    ]
    assert [c["id"] for c in claimed] == [r["id"] for r in ordered]
    for item in claimed:
        if item["id"].startswith("para"):
            bastion("queue", "decide", item["id"], "-r", "ana", "-l", "violating", "-c",
                    "illicit", "--note", "doubling scam", "--home", home)  # fmt: skip
        else:
            bastion("queue", "decide", item["id"], "-r", "ana", "-l", "not_violating",
                    "--home", home)  # fmt: skip
    assert "0 pending, 0 claimed" in bastion("queue", "list", "--home", home)

    bastion("queue", "feed-bank", "-b", "scam", "--home", home)
    bank = Banks(Path(home)).open("scam")
    added = {e.id: e for e in bank.entries if e.id.startswith("review:")}
    assert set(added) == {f"review:default:para-{i}" for i in range(len(PARAPHRASES))}
    entry = added["review:default:para-0"]
    assert entry.value == PARAPHRASES[0] and entry.label.category == "illicit"
    assert entry.label.severity == 2 and entry.label.notes == "doubling scam"  # the policy's
    # A copy of a confirmed item now matches the entry it became.
    match = bastion("bank", "match", "scam", PARAPHRASES[1], "--home", home)
    assert "review:default:para-1" in match
