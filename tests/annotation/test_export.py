"""Exports: classification rows the training reader takes, SFT chats, preference pairs, the card."""

from __future__ import annotations

import json
from pathlib import Path

from bastion.annotation import Annotation, PathStep, Span, check_annotation
from bastion.annotation.export import (
    Finished,
    classification_rows,
    dataset_card,
    preference_rows,
    sft_rows,
)
from bastion.eval.datasets import load_file
from bastion.judge import check_judgement, parse_judgement
from bastion.policy import LoadedPolicy

CATEGORY = "harassment/threatening"
THREAT = "I know which bus you take home. Tomorrow you won't get off it in one piece."
JOKE = "I swear I'll kill my brother if he eats my leftovers again lol"


def _threat(policy: LoadedPolicy) -> Annotation:
    start = THREAT.index("you take home")
    return Annotation(
        category=CATEGORY,
        path=[
            PathStep(step="target", answer="yes", spans=[Span(start=start, end=start + 13, text="you take home")]),
            PathStep(step="harm", answer="yes"),
            PathStep(step="serious", answer="yes"),
        ],
        violation=True,
        severity=4,
        rule_ids=["direct-threat"],
        rationale="A specific threat.",
        policy_version=policy.version,
    )  # fmt: skip


def _joke(policy: LoadedPolicy, *, serious: str) -> Annotation:
    violation = serious == "yes"
    return Annotation(
        category=CATEGORY,
        path=[
            PathStep(step="target", answer="yes"),
            PathStep(step="harm", answer="yes"),
            PathStep(step="serious", answer=serious),
        ],
        violation=violation,
        severity=4 if violation else 0,
        rule_ids=["direct-threat"] if violation else [],
        rationale="Hyperbole between siblings." if not violation else "A threat.",
        policy_version=policy.version,
        source="human" if not violation else "llm",
    )


def _finished(policy: LoadedPolicy) -> list[Finished]:
    return [
        Finished("a", THREAT, _threat(policy), suggestion=_threat(policy)),
        Finished("b", JOKE, _joke(policy, serious="no"), suggestion=_joke(policy, serious="yes")),
    ]


def test_classification_rows_round_trip_through_the_training_reader(
    policy: LoadedPolicy, tmp_path: Path
) -> None:
    path = tmp_path / "train.jsonl"
    rows = classification_rows(_finished(policy), policy)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    data, matrix, columns = load_file(path, category_cols=[CATEGORY])
    assert data.texts == [THREAT, JOKE]
    assert data.binary.tolist() == [1.0, 0.0]
    assert matrix is not None and matrix[:, 0].tolist() == [1.0, 0.0]
    assert data.ids == ["a", "b"] and columns == [CATEGORY]
    assert rows[1]["path"] == {
        CATEGORY: {s.step: s.answer for s in _joke(policy, serious="no").path}
    }
    assert rows[1]["path"][CATEGORY]["serious"] == "no"


def test_sft_chat_has_the_policy_the_reasoning_and_a_valid_verdict(policy: LoadedPolicy) -> None:
    [first, _] = sft_rows(_finished(policy), policy)
    system, user, assistant = first["messages"]
    assert [m["role"] for m in first["messages"]] == ["system", "user", "assistant"]
    assert "## Decision steps" in system["content"] and "[direct-threat]" in system["content"]
    assert THREAT in user["content"]
    reasoning, answer = assistant["content"].rsplit("\n\n", 1)
    assert reasoning.splitlines()[0].startswith("1. [target] Does the content refer")
    assert 'Evidence: "you take home".' in reasoning
    judgement, problems = parse_judgement(answer)
    assert problems == [] and judgement is not None
    assert check_judgement(judgement, policy.policy.category(CATEGORY), THREAT) == []


def test_preference_pairs_only_where_a_person_changed_the_suggestion(policy: LoadedPolicy) -> None:
    [pair] = preference_rows(_finished(policy), policy)  # item a's suggestion was accepted
    assert JOKE in pair["prompt"][1]["content"]
    assert '"violation": false' in pair["chosen"][0]["content"]
    assert '"violation": true' in pair["rejected"][0]["content"]
    for annotation in (_joke(policy, serious="no"), _joke(policy, serious="yes")):
        assert check_annotation(annotation, policy, JOKE) == []


def test_the_dataset_card_counts_and_names_versions_and_agreement(policy: LoadedPolicy) -> None:
    card = dataset_card(
        _finished(policy), policy, {"label": 0.8125, "step serious": 0.4}, {"sft.jsonl": 2}
    )
    assert "- Items: 2; annotations exported: 2" in card
    assert f"{policy.version} (2)" in card
    assert f"| {CATEGORY} | 1 | 1 |" in card
    assert "- label: 0.812" in card and "- step serious: 0.400" in card
    assert "`sft.jsonl`: 2 rows" in card
