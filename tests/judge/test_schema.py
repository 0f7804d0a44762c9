"""The judgement schema: parsing a model's raw reply, and checking a judgement against the policy."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fake_llm import BENIGN, THREAT, benign_judgement, threat_judgement
from hypothesis import given
from hypothesis import strategies as st

from bastion.judge import Judgement, check_judgement, parse_judgement
from bastion.policy import Category


def parsed(raw: str) -> Judgement:
    judgement, problems = parse_judgement(raw)
    assert problems == []
    assert judgement is not None
    return judgement


def problems_of(raw: str) -> list[str]:
    judgement, problems = parse_judgement(raw)
    assert judgement is None
    assert problems
    return problems


# -- parse_judgement ------------------------------------------------------------------------


def test_a_valid_reply_parses_into_a_judgement() -> None:
    judgement = parsed(json.dumps(threat_judgement()))
    assert judgement.violation is True
    assert judgement.rule_ids == ["direct-threat"]
    assert [a.step for a in judgement.decision_path] == ["target", "harm", "serious"]
    assert judgement.decision_path[0].evidence == "where you live"
    assert judgement.probability == pytest.approx(0.9)


def test_probability_is_one_minus_confidence_for_a_safe_verdict() -> None:
    assert parsed(json.dumps(benign_judgement(confidence=0.8))).probability == pytest.approx(0.2)


@pytest.mark.parametrize(
    "wrap",
    [
        "```json\n{}\n```",
        "```\n{}\n```",
        "Here is my judgement:\n{}\nI hope this helps.",
        "Sure. ```json {} ``` Anything else? {{not json}}",
    ],
    ids=["json-fence", "bare-fence", "prose-around", "fence-then-braces"],
)
def test_json_wrapped_in_prose_or_a_fence_is_found(wrap: str) -> None:
    answer = threat_judgement()
    assert parsed(wrap.format(json.dumps(answer))) == Judgement.model_validate(answer)


def test_a_reply_without_json_says_so() -> None:
    assert problems_of("I cannot judge this content.") == ["the reply contains no JSON object"]


def test_malformed_json_names_the_problem_and_where() -> None:
    [problem] = problems_of('{"violation": true, "confidence": 0.9,}')
    assert "malformed" in problem
    assert "character" in problem


def test_a_degenerate_deeply_nested_reply_is_a_problem_not_a_crash() -> None:
    [problem] = problems_of('{"rationale": ' + "[" * 5000 + "]" * 5000 + "}")
    assert "nested too deeply" in problem


def test_a_missing_field_is_named() -> None:
    answer = threat_judgement()
    del answer["confidence"]
    [problem] = problems_of(json.dumps(answer))
    assert problem.startswith("confidence:")
    assert "required" in problem.lower()


@pytest.mark.parametrize("confidence", [-0.1, 1.5])
def test_confidence_outside_zero_to_one_is_a_problem(confidence: float) -> None:
    [problem] = problems_of(json.dumps(threat_judgement(confidence=confidence)))
    assert problem.startswith("confidence:")


def test_a_field_the_schema_does_not_have_is_a_problem() -> None:
    [problem] = problems_of(json.dumps(threat_judgement(verdict="violating")))
    assert problem.startswith("verdict:")


def test_every_problem_is_listed_not_just_the_first() -> None:
    problems = problems_of(json.dumps({"violation": "perhaps", "severity": 9}))
    fields = {p.split(":")[0] for p in problems}
    assert {"violation", "severity", "confidence"} <= fields


@pytest.mark.parametrize("wrap", ["Verdict: {} (end) {{}}", "```json\n{}\n```"])
def test_quotes_and_braces_inside_strings_do_not_end_the_object(wrap: str) -> None:
    rationale = 'It wrote "I will find you}" then {"x": 1} and a \\ at the end.'
    answer = threat_judgement(rationale=rationale)
    assert parsed(wrap.format(json.dumps(answer))).rationale == rationale


def test_a_code_fence_quoted_inside_a_fenced_reply() -> None:
    rationale = "It ends a code block: {x}```"
    answer = threat_judgement(rationale=rationale)
    assert parsed(f"```json\n{json.dumps(answer)}\n```").rationale == rationale


@given(st.text())
def test_parse_never_raises_and_always_gives_a_judgement_or_a_problem(raw: str) -> None:
    judgement, problems = parse_judgement(raw)
    assert (judgement is None) == bool(problems)


# Any text, or text made of the characters that matter to JSON.
texts = st.text(st.characters(codec="utf-8"), max_size=30) | st.text('{}"\\\n é`', max_size=30)
judgements = st.builds(
    Judgement,
    violation=st.booleans(),
    categories=st.lists(texts, max_size=2),
    severity=st.integers(0, 4),
    rule_ids=st.lists(texts, max_size=2),
    confidence=st.floats(0.0, 1.0),
    decision_path=st.lists(
        st.fixed_dictionaries({"step": texts, "answer": texts, "evidence": texts}), max_size=3
    ),
    rationale=texts,
)


@given(judgements, st.sampled_from(["{}", "Answer: {} Done.", "```json\n{}\n```"]))
def test_any_judgement_round_trips_through_its_json(judgement: Judgement, wrap: str) -> None:
    assert parsed(wrap.format(judgement.model_dump_json())) == judgement


# -- check_judgement ------------------------------------------------------------------------


def check(category: Category, content: str = THREAT, **answer: Any) -> list[str]:
    start = threat_judgement() if answer.pop("violation", True) else benign_judgement()
    return check_judgement(Judgement.model_validate(start | answer), category, content)


def path(*steps: tuple[str, str]) -> list[dict[str, str]]:
    return [{"step": step, "answer": answer} for step, answer in steps]


def test_a_judgement_that_follows_the_policy_has_no_problems(threats: Category) -> None:
    assert check(threats) == []
    assert check(threats, BENIGN, violation=False) == []


def test_answers_match_the_policy_whatever_their_case(threats: Category) -> None:
    steps = path(("target", "Yes"), ("harm", " YES "), ("serious", "yes"))
    assert check(threats, decision_path=steps) == []


def test_the_path_must_start_at_the_first_step(threats: Category) -> None:
    [problem] = check(threats, decision_path=path(("harm", "yes"), ("serious", "yes")))
    assert "decision_path[0] is step 'harm', expected 'target'" in problem


def test_the_path_must_follow_the_answer_given(threats: Category) -> None:
    # "target: yes" leads to "harm", not "serious"
    [problem] = check(threats, decision_path=path(("target", "yes"), ("serious", "yes")))
    assert "decision_path[1] is step 'serious', expected 'harm'" in problem


def test_an_answer_the_step_does_not_allow_is_a_problem(threats: Category) -> None:
    [problem] = check(threats, decision_path=path(("target", "maybe")))
    assert "'maybe' is not one of 'yes', 'no'" in problem


def test_the_path_must_end_in_the_stated_verdict(threats: Category) -> None:
    # violation true, but "target: no" ends in not_violating
    [problem] = check(threats, decision_path=path(("target", "no")))
    assert "ends in 'not_violating' but violation is true" in problem


def test_a_path_that_stops_before_a_verdict_is_a_problem(threats: Category) -> None:
    [problem] = check(threats, decision_path=path(("target", "yes"), ("harm", "yes")))
    assert "stops before a verdict; the next step is 'serious'" in problem


def test_a_path_that_goes_on_after_the_verdict_is_a_problem(threats: Category) -> None:
    steps = path(("target", "no"), ("harm", "no"))
    [problem] = check(threats, BENIGN, violation=False, decision_path=steps)
    assert "continues after step 'target' reached a verdict" in problem


def test_an_empty_path_is_a_problem(threats: Category) -> None:
    [problem] = check(threats, decision_path=[])
    assert "decision_path is empty" in problem


def test_an_unknown_rule_id_is_named_with_the_known_ones(threats: Category) -> None:
    [problem] = check(threats, rule_ids=["direct-threat", "R9"])
    assert "unknown rule id(s) R9" in problem
    assert "known: R3, direct-threat, incitement" in problem


@pytest.mark.parametrize(
    ("violation", "categories"),
    [(True, []), (True, ["hate"]), (False, ["harassment/threatening"])],
)
def test_categories_must_match_the_verdict(
    threats: Category, violation: bool, categories: list[str]
) -> None:
    content = THREAT if violation else BENIGN
    [problem] = check(threats, content, violation=violation, categories=categories)
    assert problem.startswith("categories must be")


def test_a_safe_verdict_has_severity_zero(threats: Category) -> None:
    [problem] = check(threats, BENIGN, violation=False, severity=2)
    assert "severity must be 0" in problem


def test_evidence_must_occur_in_the_content(threats: Category) -> None:
    steps = threat_judgement()["decision_path"]
    steps[1] = steps[1] | {"evidence": "I will kill you"}
    [problem] = check(threats, decision_path=steps)
    assert "step 'harm': evidence 'I will kill you' does not occur in the content" in problem


def test_evidence_is_matched_ignoring_case_and_spacing(threats: Category) -> None:
    steps = threat_judgement()["decision_path"]
    steps[0] = steps[0] | {"evidence": "  WHERE\n you   LIVE. tomorrow "}
    assert check(threats, decision_path=steps) == []
