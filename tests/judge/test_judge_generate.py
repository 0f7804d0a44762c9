"""The LLM judge end to end on a fake server: generated judgements with one repair, scored choices,
and the judgement cache."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from fake_llm import (
    BENIGN,
    PROMPT_TOKENS,
    THREAT,
    FakeLLM,
    MakeJudge,
    Reply,
    benign_judgement,
    choice,
    completion,
    judge_one,
    judgement_reply,
    threat_judgement,
)
from hypothesis import given
from hypothesis import strategies as st

from bastion.errors import InputError
from bastion.judge import JudgementCache, JudgeResult, check_judgement
from bastion.judge.backend import choice_prompt
from bastion.judge.judge import judgement_from_choices
from bastion.judge.openai_backend import TOP_LOGPROBS
from bastion.judge.schema import answer_schema
from bastion.policy import Category, LoadedPolicy, load_policy

MALFORMED = '```json\n{"violation": true, "confidence": 0.9,\n```'
CONTRADICTS = threat_judgement(decision_path=[{"step": "target", "answer": "no"}])
"""Schema-valid, but "target: no" ends in not_violating while the judgement says violating."""


def assert_failed(result: JudgeResult) -> None:
    """A failure is never a safe verdict: no judgement, no probability."""
    assert result.judgement is None
    assert result.error
    assert math.isnan(result.probability)
    assert result.as_dict()["probability"] is None


# -- generate ---------------------------------------------------------------------------------


def test_a_valid_answer_is_a_judgement_with_its_decision_path(
    fake_llm: FakeLLM, make_judge: MakeJudge
) -> None:
    fake_llm.script(judgement_reply(threat_judgement()))
    judge = make_judge(mode="auto")  # a backend that constrains decoding generates
    result = judge_one(judge)

    assert (result.mode, result.error, result.repaired, result.cached) == (
        "generate",
        None,
        False,
        False,
    )
    assert result.category == "harassment/threatening"
    assert result.judgement is not None
    assert [(a.step, a.answer) for a in result.judgement.decision_path] == [
        ("target", "yes"),
        ("harm", "yes"),
        ("serious", "yes"),
    ]
    assert result.probability == pytest.approx(0.9)


@pytest.mark.parametrize(
    ("first", "problem"),
    [
        (completion(MALFORMED), "the JSON is malformed"),
        (judgement_reply(CONTRADICTS), "ends in 'not_violating' but violation is true"),
        (judgement_reply(threat_judgement(rule_ids=["R7"])), "unknown rule id(s) R7"),
    ],
    ids=["malformed", "path-contradicts-policy", "unknown-rule"],
)
def test_a_bad_answer_is_sent_back_once_with_its_problems(
    fake_llm: FakeLLM, make_judge: MakeJudge, first: Reply, problem: str
) -> None:
    fake_llm.script(first, judgement_reply(threat_judgement()))
    result = judge_one(make_judge())

    assert result.error is None
    assert result.repaired is True
    assert result.judgement is not None and result.judgement.violation
    asked, repair = fake_llm.requests
    bad_answer, problems = repair["messages"][len(asked["messages"]) :]
    assert repair["messages"][: len(asked["messages"])] == asked["messages"]
    assert bad_answer == {"role": "assistant", "content": first.content}
    assert problems["role"] == "user"
    assert problem in problems["content"]
    assert repair["response_format"]["json_schema"]["schema"] == answer_schema()
    assert (result.usage.calls, result.usage.prompt_tokens) == (2, 2 * PROMPT_TOKENS)


def test_two_bad_answers_are_a_failure_that_is_not_cached(
    fake_llm: FakeLLM, make_judge: MakeJudge
) -> None:
    fake_llm.script(completion(MALFORMED), judgement_reply(CONTRADICTS))
    judge = make_judge()
    result = judge_one(judge)

    assert_failed(result)
    assert result.repaired is True
    assert result.error is not None
    assert result.error.startswith("the answer was unusable after one repair")
    assert "ends in 'not_violating'" in result.error
    assert len(fake_llm.requests) == 2  # one repair, no more

    fake_llm.script(judgement_reply(threat_judgement()))
    again = judge_one(judge)
    assert again.cached is False
    assert again.judgement is not None
    assert len(fake_llm.requests) == 3


def test_a_failed_call_is_not_repaired(fake_llm: FakeLLM, make_judge: MakeJudge) -> None:
    fake_llm.script(Reply(status=400))
    result = judge_one(make_judge())
    assert_failed(result)
    assert result.repaired is False
    assert result.error is not None and result.error.startswith("the LLM call failed: ")
    assert len(fake_llm.requests) == 1


def test_a_failed_repair_call_reports_the_first_answers_problems(
    fake_llm: FakeLLM, make_judge: MakeJudge
) -> None:
    fake_llm.script(completion(MALFORMED), Reply(status=400))
    result = judge_one(make_judge())
    assert_failed(result)
    assert result.error is not None
    assert result.error.startswith("the repair call failed: HTTP 400")
    assert "(first answer: the JSON is malformed" in result.error


def test_one_bad_answer_among_many_repairs_only_that_one(
    fake_llm: FakeLLM, make_judge: MakeJudge
) -> None:
    fake_llm.script(
        judgement_reply(threat_judgement()),
        completion("I think it is fine."),
        judgement_reply(benign_judgement()),
    )
    results = make_judge(concurrency=1).judge([THREAT, BENIGN])
    assert [r.repaired for [r] in results] == [False, True]
    assert [r.judgement.violation if r.judgement else None for [r] in results] == [True, False]
    assert len(fake_llm.requests) == 3


def test_nothing_to_judge_and_unknown_categories(fake_llm: FakeLLM, make_judge: MakeJudge) -> None:
    judge = make_judge()
    assert_failed(judge_one(judge, "   "))
    with pytest.raises(InputError, match="unknown category hate"):
        judge.judge([THREAT], ["hate"])
    assert fake_llm.requests == []


# -- score ------------------------------------------------------------------------------------


def test_scored_choices_ask_each_step_for_one_token_with_logprobs(
    fake_llm: FakeLLM, make_judge: MakeJudge, threats: Category
) -> None:
    fake_llm.script(*[choice({"yes": 0.5, "no": 0.5})] * 3)
    judge_one(make_judge(mode="score"))

    assert len(fake_llm.requests) == len(threats.decision_steps)
    for sent, step in zip(fake_llm.requests, threats.decision_steps, strict=True):
        assert (sent["max_tokens"], sent["logprobs"], sent["top_logprobs"]) == (
            1,
            True,
            TOP_LOGPROBS,
        )
        assert "response_format" not in sent
        asked = choice_prompt(step.question, [a.answer for a in step.answers])
        assert sent["messages"][1]["content"].endswith(asked)


def test_p_sums_every_route_and_the_path_is_the_likeliest_route_to_the_verdict(
    fake_llm: FakeLLM, make_judge: MakeJudge
) -> None:
    fake_llm.script(
        choice({" Yes": 0.6, "No": 0.2, "The": 0.1}),  # target: yes 0.75, no 0.25
        choice({"yes": 0.3, "no": 0.5}),  # harm: yes 0.375, no 0.625
        choice({"yes": 0.8, "no": 0.1}),  # serious: yes 8/9, no 1/9
    )
    result = judge_one(make_judge(mode="score"))

    assert result.mode == "score"
    assert result.judgement is not None
    # the only violating route is yes, yes, yes
    p_violating = 0.75 * 0.375 * 8 / 9
    assert result.probability == pytest.approx(p_violating)
    assert result.judgement.violation is False
    assert result.judgement.confidence == pytest.approx(1 - p_violating)
    # routes to "not violating": no (0.25), yes-no (0.47), yes-yes-no (0.03)
    assert [(a.step, a.answer) for a in result.judgement.decision_path] == [
        ("target", "yes"),
        ("harm", "no"),
    ]


def test_the_verdict_is_the_likelier_outcome_not_the_likeliest_answers(
    fake_llm: FakeLLM, make_judge: MakeJudge
) -> None:
    """Every step leans "yes" (0.6), yet the steps end in "violating" only 0.6^3 = 22 % of the time."""
    fake_llm.script(*[choice({"yes": 0.6, "no": 0.4})] * 3)
    result = judge_one(make_judge(mode="score"))

    assert result.judgement is not None
    assert result.judgement.violation is False
    assert result.probability == pytest.approx(0.6**3)
    # routes to "not violating": no (0.4), yes-no (0.24), yes-yes-no (0.144)
    assert [(a.step, a.answer) for a in result.judgement.decision_path] == [("target", "no")]


@given(st.lists(st.floats(0.01, 0.99), min_size=3, max_size=3))
def test_a_scored_judgement_always_passes_the_policy_check(
    threats: Category, p_yes: list[float]
) -> None:
    judgement = judgement_from_choices(threats, [np.array([p, 1 - p]) for p in p_yes])
    assert check_judgement(judgement, threats, THREAT) == []
    assert judgement.probability == pytest.approx(p_yes[0] * p_yes[1] * p_yes[2])
    assert judgement.violation == (judgement.probability >= 0.5)


def test_a_violating_route_cites_the_rule_of_its_verdict(
    fake_llm: FakeLLM, make_judge: MakeJudge
) -> None:
    fake_llm.script(
        choice({"yes": 0.9, "no": 0.1}),
        choice({"Y": 0.8, "n": 0.2}),  # first tokens of the answers count for them
        choice({"yes": 0.7}),  # "no" missing from the top tokens: effectively zero
    )
    result = judge_one(make_judge(mode="score"))

    assert result.judgement is not None
    assert result.judgement.violation is True
    assert result.judgement.categories == ["harassment/threatening"]
    assert result.judgement.rule_ids == ["direct-threat"]
    assert result.judgement.severity == 4
    assert result.probability == pytest.approx(0.9 * 0.8 * 1.0)
    assert result.usage.calls == 3


def test_a_choice_reply_without_logprobs_is_a_failure(
    fake_llm: FakeLLM, make_judge: MakeJudge
) -> None:
    fake_llm.script(completion("yes"))
    result = judge_one(make_judge(mode="score"))
    assert_failed(result)
    assert result.error is not None and "not a chat completion" in result.error


# -- the cache --------------------------------------------------------------------------------


def other_version(policy: LoadedPolicy, tmp_path: Path) -> LoadedPolicy:
    """The same policy with another declared version."""
    text = Path(policy.source).read_text(encoding="utf-8")
    path = tmp_path / "policy.yaml"
    path.write_text(text.replace("version: 0.1.0", "version: 0.2.0"), encoding="utf-8")
    return load_policy(path)


def test_the_same_item_is_judged_once(fake_llm: FakeLLM, make_judge: MakeJudge) -> None:
    fake_llm.answer_with(lambda body: judgement_reply(threat_judgement()))
    judge = make_judge()
    first = judge_one(judge)
    second = judge_one(judge)

    assert len(fake_llm.requests) == 1
    assert (first.cached, second.cached) == (False, True)
    assert second.judgement == first.judgement
    assert second.usage.calls == 0


def test_a_shared_cache_misses_on_other_text_or_another_policy_version(
    fake_llm: FakeLLM, make_judge: MakeJudge, starter: LoadedPolicy, tmp_path: Path
) -> None:
    fake_llm.answer_with(lambda body: judgement_reply(benign_judgement()))
    path = tmp_path / "judgements.sqlite"
    judge_one(make_judge(cache=JudgementCache(path)), BENIGN)

    cache = JudgementCache(path)  # reopened: the file keeps what was judged
    assert judge_one(make_judge(cache=cache), BENIGN).cached is True
    assert judge_one(make_judge(cache=cache), BENIGN + " Again.").cached is False
    newer = other_version(starter, tmp_path)
    assert newer.version != starter.version
    assert judge_one(make_judge(cache=cache, policy=newer), BENIGN).cached is False
    assert len(fake_llm.requests) == 3
    assert len(cache) == 3
