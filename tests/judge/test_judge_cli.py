"""`bastion judge` and `bastion moderate --llm`, on the local 270M model and on an OpenAI-compatible server."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fake_llm import THREAT, FakeLLM, completion, judgement_reply, threat_judgement
from typer.testing import CliRunner

from bastion.cli import app
from bastion.judge import Judgement, check_judgement
from bastion.policy import LoadedPolicy

runner = CliRunner()
CATEGORY = "harassment/threatening"


def _starter() -> str:
    import bastion.policy

    return str(Path(bastion.policy.__file__).parent / "starter.yaml")


def _judgements(output: str) -> list[dict[str, object]]:
    start = output.index("[")
    return json.loads(output[start:])  # type: ignore[no-any-return]


@pytest.mark.slow
def test_judge_with_the_local_model_prints_a_schema_valid_judgement(starter: LoadedPolicy) -> None:
    result = runner.invoke(
        app, ["judge", THREAT, "--policy", _starter(), "--backend", "local", "--json"]
    )
    assert result.exit_code == 0, result.output
    [row] = _judgements(result.stdout)
    assert row["category"] == CATEGORY and row["mode"] == "score" and row["error"] is None
    judgement = Judgement.model_validate(row["judgement"])
    assert check_judgement(judgement, starter.policy.category(CATEGORY), THREAT) == []
    assert judgement.decision_path and judgement.decision_path[0].step == "target"
    assert row["usage"]["calls"] == 1  # type: ignore[index]


def test_judge_against_a_server_prints_its_judgement_and_the_path(fake_llm: FakeLLM) -> None:
    fake_llm.script(judgement_reply(threat_judgement()))
    args = ["judge", THREAT, "--policy", _starter(), "--backend", fake_llm.url]
    result = runner.invoke(app, [*args, "--llm-model", "test-model"])
    assert result.exit_code == 0, result.output
    assert "violates" in result.stdout and "direct-threat" in result.stdout
    assert "target: yes" in result.stdout and "where you live" in result.stdout
    sent = fake_llm.requests[0]
    assert sent["model"] == "test-model"
    assert sent["response_format"]["type"] == "json_schema"
    assert "## Decision steps" in sent["messages"][0]["content"]


def test_judge_exits_1_and_reports_a_failed_judgement(fake_llm: FakeLLM) -> None:
    fake_llm.script(completion("not json"), completion("still {not json"))
    args = ["judge", THREAT, "--policy", _starter(), "--backend", fake_llm.url, "--json"]
    result = runner.invoke(app, [*args, "--llm-model", "m"])
    assert result.exit_code == 1
    [row] = _judgements(result.stdout)
    assert row["judgement"] is None and row["probability"] is None
    assert "after one repair" in str(row["error"])


def test_judge_a_file_keeps_every_line_and_names_bad_ones(
    fake_llm: FakeLLM, tmp_path: Path
) -> None:
    source = tmp_path / "posts.jsonl"
    source.write_text(
        json.dumps({"id": "a", "text": THREAT})
        + "\n{broken json\n"
        + json.dumps({"id": "c", "text": "   "})
        + "\n",
        encoding="utf-8",
    )
    fake_llm.script(judgement_reply(threat_judgement()))
    out = tmp_path / "judged.jsonl"
    args = ["judge", "--input", str(source), "-o", str(out), "--policy", _starter()]
    result = runner.invoke(app, [*args, "--backend", fake_llm.url, "--llm-model", "m"])
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [r["line"] for r in rows] == [1, 2, 3]
    assert rows[0]["judgements"][0]["judgement"]["violation"] is True
    assert rows[1]["judgements"] is None and "posts.jsonl:2: malformed JSON" in rows[1]["error"]
    assert rows[2]["judgements"][0]["error"] == "nothing to judge"
    assert result.exit_code == 1  # the blank text could not be judged
    assert len(fake_llm.requests) == 1


def test_moderate_with_llm_puts_the_rationale_in_the_verdict(fake_llm: FakeLLM) -> None:
    fake_llm.script(judgement_reply(threat_judgement()))
    args = ["moderate", THREAT, "--policy", _starter(), "--model", "zero-shot", "--json"]
    llm = ["--llm", fake_llm.url, "--llm-model", "m", "--llm-band", "0,1"]
    result = runner.invoke(app, [*args, *llm])
    assert result.exit_code == 0, result.output
    verdict = json.loads(result.stdout)
    assert verdict["rationale"] == f"{CATEGORY}: A direct threat against the reader."
    [evidence] = [e for e in verdict["evidence"] if e["detector"] == "llm-judge"]
    assert evidence["score"] == pytest.approx(0.9) and evidence["ref"] == "direct-threat"
    assert "+llm-judge:openai:m" in verdict["model_version"]


def test_moderate_rejects_a_malformed_band() -> None:
    result = runner.invoke(
        app,
        [
            "moderate",
            "hi",
            "--llm",
            "http://127.0.0.1:9/v1",
            "--llm-model",
            "m",
            "--llm-band",
            "high",
        ],
    )
    assert result.exit_code != 0
    assert "--llm-band 'high' is not LOW,HIGH" in str(result.exception or result.output)


def test_moderate_takes_a_band_per_category(fake_llm: FakeLLM) -> None:
    fake_llm.script(judgement_reply(threat_judgement()))
    args = ["moderate", THREAT, "--policy", _starter(), "--model", "zero-shot", "--json"]
    bands = ["--llm-band", "0,0", "--llm-band", f"{CATEGORY}=0,1"]
    result = runner.invoke(app, [*args, "--llm", fake_llm.url, "--llm-model", "m", *bands])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["rationale"].startswith(CATEGORY)
    assert len(fake_llm.requests) == 1


def test_moderate_names_an_unknown_category_in_a_band(fake_llm: FakeLLM) -> None:
    args = ["moderate", THREAT, "--policy", _starter(), "--llm", fake_llm.url]
    result = runner.invoke(app, [*args, "--llm-model", "m", "--llm-band", "hate=0.1,0.9"])
    assert result.exit_code != 0
    assert "LLM band for unknown category hate" in str(result.exception)


def test_a_category_the_judge_flags_says_which_input_it_read(fake_llm: FakeLLM) -> None:
    quiet = "The cake recipe needs two eggs."
    path = [{**step, "evidence": ""} for step in threat_judgement()["decision_path"]]
    fake_llm.script(judgement_reply(threat_judgement(decision_path=path, confidence=0.99)))
    args = ["moderate", quiet, "--policy", _starter(), "--model", "zero-shot", "--json"]
    llm = ["--llm", fake_llm.url, "--llm-model", "m", "--llm-band", "0,1", "--llm-weight", "8"]
    result = runner.invoke(app, [*args, *llm])
    assert result.exit_code == 0, result.output
    verdict = json.loads(result.stdout)
    # The zero-shot detector scores it far below the threshold (it leaves no evidence under
    # 0.5); the judge's answer, weighted 8, flags it.
    assert [e["detector"] for e in verdict["evidence"]] == ["llm-judge"]
    assert verdict["categories"][CATEGORY] is True
    assert verdict["category_applied_input_types"][CATEGORY] == ["text"]
