"""Suggestions from the judge and the classifier, and the blind slice."""

from __future__ import annotations

import pytest

from bastion.annotation import check_annotation
from bastion.annotation.preannotate import from_judgement, from_scores, in_blind_slice, locate
from bastion.judge import Judgement, JudgeResult, StepAnswer
from bastion.policy import LoadedPolicy

CATEGORY = "harassment/threatening"
TEXT = "I know which bus you take home. Tomorrow you won't get off it in one piece."


def test_a_judgement_becomes_a_valid_suggestion_with_spans(policy: LoadedPolicy) -> None:
    judgement = Judgement(
        violation=True,
        categories=[CATEGORY],
        severity=4,
        rule_ids=["direct-threat"],
        confidence=0.8,
        decision_path=[
            StepAnswer(step="target", answer="yes", evidence="YOU TAKE HOME"),
            StepAnswer(step="harm", answer="yes", evidence="not in the text"),
            StepAnswer(step="serious", answer="yes"),
        ],
        rationale="A threat.",
    )
    result = JudgeResult(CATEGORY, judgement, "generate")
    suggestion = from_judgement(result, policy, TEXT, "openai:guard")
    assert suggestion is not None
    assert (suggestion.source, suggestion.annotator) == ("llm", "openai:guard")
    assert suggestion.policy_version == policy.version
    [span] = suggestion.path[0].spans
    assert TEXT[span.start : span.end] == span.text == "you take home"
    assert suggestion.path[1].spans == []  # a quote that is not there is dropped
    assert check_annotation(suggestion, policy, TEXT) == []


def test_a_failed_judgement_suggests_nothing(policy: LoadedPolicy) -> None:
    failed = JudgeResult(CATEGORY, None, "generate", error="timed out")
    assert from_judgement(failed, policy, TEXT, "m") is None


def test_a_classifier_suggests_a_verdict_but_no_path(policy: LoadedPolicy) -> None:
    high = from_scores(CATEGORY, 0.9, 0.5, policy, "trained:default")
    assert high.violation and high.severity == 4 and high.path == []
    assert high.source == "classifier" and high.confidence == pytest.approx(0.9)
    low = from_scores(CATEGORY, 0.2, 0.5, policy, "trained:default", evidence="near 'bus'")
    assert not low.violation and low.severity == 0 and low.rationale == "near 'bus'"
    assert low.confidence == pytest.approx(0.8)


def test_locate_finds_the_first_occurrence_ignoring_case() -> None:
    assert locate("", TEXT) == []
    [span] = locate("tomorrow", TEXT)
    assert (span.start, span.text) == (32, "Tomorrow")


def test_the_blind_slice_is_stable_and_about_the_share_asked() -> None:
    ids = [f"task-{i}" for i in range(4000)]
    blind = [in_blind_slice(t, 0.2) for t in ids]
    assert 0.17 < sum(blind) / len(ids) < 0.23
    assert blind == [in_blind_slice(t, 0.2) for t in ids]
    assert not any(in_blind_slice(t, 0.0) for t in ids[:100])
    assert all(in_blind_slice(t, 1.0) for t in ids[:100])
    with pytest.raises(ValueError, match="between 0 and 1"):
        in_blind_slice("t", 1.5)


@pytest.mark.slow
def test_the_local_llm_judge_suggests_a_full_path_that_the_validator_accepts(
    policy: LoadedPolicy,
) -> None:
    from bastion.annotation.preannotate import suggest
    from bastion.judge import LLMJudge
    from bastion.judge.local_backend import LocalBackend

    judge = LLMJudge(policy, LocalBackend(), mode="score")
    texts = [TEXT, "Lovely weather for the picnic today."]
    [first, second] = suggest(texts, policy, [CATEGORY], judge=judge)
    for text, suggestions in zip(texts, (first, second), strict=True):
        s = suggestions[CATEGORY]
        assert s.source == "llm" and s.annotator == judge.backend.name
        assert s.policy_version == policy.version
        assert s.path and s.path[0].step == "target"  # the decision path, from the first step
        assert check_annotation(s, policy, text) == []
