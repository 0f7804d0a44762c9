"""The in-process backend with the packaged Gemma 3 270M, the judge on it, and the Moderator's cascade."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from bastion.judge import LLMJudge, check_judgement
from bastion.judge.backend import ChoiceRequest, choice_prompt
from bastion.judge.cascade import LLMCascade, fuse_judge
from bastion.judge.local_backend import LocalBackend
from bastion.moderator import Moderator
from bastion.policy import LoadedPolicy, load_policy

pytestmark = pytest.mark.slow

STARTER = Path(__file__).resolve().parents[2] / "src" / "bastion" / "policy" / "starter.yaml"
CATEGORY = "harassment/threatening"
THREAT = "I know which bus you take home. Tomorrow you won't get off it in one piece."


@pytest.fixture(scope="module")
def backend() -> LocalBackend:
    return LocalBackend()


@pytest.fixture(scope="module")
def policy() -> LoadedPolicy:
    return load_policy(STARTER)


def test_choice_scores_with_cached_prefixes_equal_one_full_forward_pass(
    backend: LocalBackend, policy: LoadedPolicy
) -> None:
    judge = LLMJudge(policy, backend)
    system = judge.system_prompt(CATEGORY)
    step = policy.policy.category(CATEGORY).decision_steps[0]
    answers = tuple(a.answer for a in step.answers)
    user = "<content>\nsee you tomorrow\n</content>"
    reply = backend.choose([ChoiceRequest(system, user, ((step.question, answers),))])[0]
    assert reply.error is None and len(reply.logprobs) == 1
    probs = np.exp(reply.logprobs[0])
    assert probs.sum() == pytest.approx(1.0)

    # The same prompt as one sequence, without any cache, through the plain model.
    ids = torch.cat(
        [
            backend._ids(system + "\n\n", bos=True),
            backend._ids(user + "\n\n", bos=False),
            backend._ids(choice_prompt(step.question, answers), bos=False),
        ],
        dim=1,
    )
    with torch.inference_mode():
        last = torch.log_softmax(backend.model(input_ids=ids).logits[0, -1], -1)
    first_tokens = [backend._ids(" " + a, bos=False)[0, 0] for a in answers]
    full = np.array([float(last[t]) for t in first_tokens])
    expected = np.exp(full - np.logaddexp.reduce(full))
    np.testing.assert_allclose(probs, expected, atol=1e-3)
    assert reply.usage.prompt_tokens == ids.shape[1]


def test_the_local_judge_returns_a_schema_valid_judgement_with_a_decision_path(
    backend: LocalBackend, policy: LoadedPolicy
) -> None:
    judge = LLMJudge(policy, backend)
    assert judge.mode == "score"
    result = judge.judge([THREAT], [CATEGORY])[0][0]
    assert result.error is None and result.judgement is not None
    j = result.judgement
    category = policy.policy.category(CATEGORY)
    assert check_judgement(j, category, THREAT) == []
    assert j.decision_path[0].step == "target"
    assert 0.0 <= result.probability <= 1.0
    assert (result.probability >= 0.5) == j.violation
    assert result.usage.calls == 1 and result.usage.completion_tokens == 3

    again = judge.judge([THREAT], [CATEGORY])[0][0]
    assert again.cached and again.usage.calls == 0
    assert again.judgement == j


def test_free_generation_from_a_base_model_is_repaired_once_then_fails_never_safe(
    backend: LocalBackend, policy: LoadedPolicy
) -> None:
    judge = LLMJudge(policy, backend, mode="generate", max_tokens=24)
    result = judge.judge([THREAT], [CATEGORY])[0][0]
    assert result.repaired or result.judgement is not None
    if result.judgement is None:  # what a 270M base model does
        assert result.error and "after one repair" in result.error
        assert math.isnan(result.probability)
        assert result.usage.calls == 2
    else:
        assert check_judgement(result.judgement, policy.policy.category(CATEGORY), THREAT) == []


def test_the_cascade_judges_only_the_uncertain_band_and_puts_the_rationale_in_the_verdict(
    backend: LocalBackend, policy: LoadedPolicy
) -> None:
    texts = [THREAT, "Lovely weather for a picnic today.", "I could kill for a coffee right now"]
    cheap = Moderator(policy, model="zero-shot").moderate(texts)
    scores = np.array([v.category_scores[CATEGORY] for v in cheap])
    target = int(np.argsort(scores)[1])  # the middle one: a band around it catches it alone
    band = (scores[target] - 1e-6, scores[target] + 1e-6)
    assert sum(band[0] <= s <= band[1] for s in scores) == 1

    judge = LLMJudge(policy, backend)
    cascade = LLMCascade(judge, band=band, weight=1.0)
    moderated = Moderator(policy, model="zero-shot", cascade=cascade).moderate(texts)
    assert "llm-judge:local:" in moderated[0].model_version
    for i, verdict in enumerate(moderated):
        llm = [e for e in verdict.evidence if e.detector == "llm-judge"]
        if i != target:
            assert not llm and verdict.rationale is None
            assert verdict.category_scores[CATEGORY] == pytest.approx(scores[i], abs=1e-6)
            continue
        assert len(llm) == 1 and llm[0].category == CATEGORY
        assert verdict.rationale is not None and verdict.rationale.startswith(CATEGORY)
        assert "P(violating)" in verdict.rationale
        expected = fuse_judge(np.array([scores[i]]), np.array([llm[0].score]), 1.0)[0]
        assert verdict.category_scores[CATEGORY] == pytest.approx(expected, abs=1e-5)
    assert len(judge.cache) == 1


def test_fuse_judge_moves_the_cheap_score_toward_the_judge_by_its_weight() -> None:
    cheap = np.array([0.5, 0.3, 0.3, 0.7])
    judge = np.array([0.9, 0.9, math.nan, 0.1])
    none = fuse_judge(cheap, judge, 0.0)
    np.testing.assert_allclose(none, cheap, atol=1e-9)
    equal = fuse_judge(cheap, judge, 1.0)
    assert 0.5 < equal[0] < 0.9 and 0.3 < equal[1] < 0.9 and 0.1 < equal[3] < 0.7
    assert equal[2] == 0.3  # a failed judgement keeps the cheap score
    heavy = fuse_judge(cheap, judge, 8.0)
    assert heavy[1] > equal[1] and heavy[3] < equal[3]


def test_fit_weight_trusts_a_judge_that_is_right_and_ignores_one_that_is_noise(
    policy: LoadedPolicy,
) -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 400).astype(float)
    cheap = np.clip(0.5 + 0.1 * (labels - 0.5) + rng.normal(0, 0.1, 400), 0.01, 0.99)
    good = np.where(labels == 1, 0.95, 0.05)
    noise = rng.uniform(0.01, 0.99, 400)
    judge = LLMJudge.__new__(LLMJudge)
    judge.policy = policy
    assert LLMCascade(judge).fit_weight(cheap, good, labels).weight >= 2.0
    assert LLMCascade(judge).fit_weight(cheap, noise, labels).weight == 0.0


def test_routing_respects_per_category_bands_categories_and_untrained(
    policy: LoadedPolicy,
) -> None:
    judge = LLMJudge.__new__(LLMJudge)
    judge.policy = policy
    scores = np.array([[0.1], [0.5], [0.95], [np.nan]])
    cells = LLMCascade(judge, band=(0.2, 0.8)).route(scores)
    assert cells[:, 0].tolist() == [False, True, False, False]
    wide = LLMCascade(judge, bands={CATEGORY: (0.0, 1.0)}).route(scores)
    assert wide[:, 0].tolist() == [True, True, True, False]
    untrained = LLMCascade(judge, untrained=True).route(scores, np.array([True]))
    assert untrained[:, 0].tolist() == [True, True, True, False]
    with pytest.raises(ValueError, match="unknown categories"):
        LLMCascade(judge, categories=["nope"])
    with pytest.raises(ValueError, match="low <= high"):
        LLMCascade(judge, band=(0.9, 0.1))
