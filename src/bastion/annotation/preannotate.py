"""Pre-annotation: suggestions in the annotation schema, from the LLM judge or the classifier.

A suggestion saves the annotator typing but can also anchor them. Each one says where it came
from (`source`, the model in `annotator`) and under which policy version, and a configurable
share of tasks is shown without any suggestion (the blind slice): comparing how often people
end up agreeing with the suggestion in the shown and the blind slices measures how much they
simply accept it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import TYPE_CHECKING

from bastion.annotation.schema import Annotation, PathStep, Span
from bastion.judge.judge import JudgeResult
from bastion.policy import LoadedPolicy

if TYPE_CHECKING:
    from bastion.judge.judge import LLMJudge
    from bastion.moderator import Moderator


def from_judgement(
    result: JudgeResult, policy: LoadedPolicy, text: str, model: str
) -> Annotation | None:
    """The judge's judgement as a suggested annotation (None when the judgement failed).

    Evidence quotes become character spans where they occur in the text (ignoring case);
    a quote that does not occur is dropped rather than pointed somewhere wrong.
    """
    judgement = result.judgement
    if judgement is None:
        return None
    return Annotation(
        category=result.category,
        path=[
            PathStep(step=s.step, answer=s.answer, spans=locate(s.evidence, text))
            for s in judgement.decision_path
        ],
        violation=judgement.violation,
        severity=judgement.severity,
        rule_ids=list(judgement.rule_ids),
        rationale=judgement.rationale,
        confidence=judgement.confidence,
        policy_version=policy.version,
        annotator=model,
        source="llm",
    )


def from_scores(
    category: str,
    probability: float,
    threshold: float,
    policy: LoadedPolicy,
    model: str,
    evidence: str = "",
) -> Annotation:
    """A classifier's score as a suggestion: the verdict and its evidence, but no path (a
    classifier does not reason through the steps; the annotator does)."""
    violation = probability >= threshold
    severity = policy.policy.category(category).severity if violation else 0
    return Annotation(
        category=category,
        path=[],
        violation=violation,
        severity=severity,
        rationale=evidence or f"classifier score {probability:.2f} (threshold {threshold:.2f})",
        confidence=probability if violation else 1.0 - probability,
        policy_version=policy.version,
        annotator=model,
        source="classifier",
    )


def locate(quote: str, text: str) -> list[Span]:
    """The first occurrence of `quote` in `text` (case-insensitive) as a span, or none."""
    quote = quote.strip()
    if not quote:
        return []
    start = text.lower().find(quote.lower())
    if start < 0:
        return []
    return [Span(start=start, end=start + len(quote), text=text[start : start + len(quote)])]


def in_blind_slice(task_id: str, share: float, salt: str = "") -> bool:
    """Whether a task is shown without its suggestion: a stable hash of its id, so the same
    task is always in the same slice, and about `share` of all tasks are."""
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"blind share must be between 0 and 1, got {share}")
    digest = hashlib.sha256(f"{salt}|{task_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < share


def suggest(
    texts: Sequence[str],
    policy: LoadedPolicy,
    categories: Sequence[str],
    *,
    moderator: Moderator | None = None,
    judge: LLMJudge | None = None,
) -> list[dict[str, Annotation]]:
    """Suggestions for each text and category: the LLM judge's (path and all) where it gave a
    valid judgement, else the classifier's verdict and evidence, else none."""
    out: list[dict[str, Annotation]] = [{} for _ in texts]
    if moderator is not None:
        verdicts = moderator.moderate(list(texts))
        index = {c: n for n, c in enumerate(moderator.policy.category_ids)}
        for suggestions, verdict in zip(out, verdicts, strict=True):
            if verdict.error is not None:
                continue
            for category in categories:
                if category not in verdict.category_scores:
                    continue
                evidence = "; ".join(
                    e.detail for e in verdict.evidence if e.category == category and e.detail
                )
                suggestions[category] = from_scores(
                    category,
                    verdict.category_scores[category],
                    float(moderator.thresholds[index[category]]),
                    policy,
                    verdict.model_version,
                    evidence,
                )
    if judge is not None:
        results = judge.judge(list(texts), list(categories))
        for suggestions, text, per_category in zip(out, texts, results, strict=True):
            for result in per_category:
                suggestion = from_judgement(result, policy, text, judge.backend.name)
                if suggestion is not None:
                    suggestions[result.category] = suggestion
    return out
