"""Policy renderers: one category of a policy as the judging prompt that an LLM reads.

The layout follows what works for reasoning classifiers (policy-as-prompt models such as
gpt-oss-safeguard, and Llama Guard's taxonomy prompts): instructions first, then the definition,
what violates (each clause with the rule id the answer must cite), what does not, the decision
steps as the outline the reasoning must follow, a few examples, and the answer format last. One
category per prompt keeps it at 400-600 tokens for a category written in the style of the
built-in packs, and its text fixed for every item, so a server's prefix cache (vLLM, llama.cpp)
pays for it once. The per-item parts (examples chosen for the item, the content) come after it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

from bastion.policy.schema import Category, DecisionStep, Policy

DEFAULT_EXAMPLES = 2
"""Examples of each kind rendered into the fixed prompt when none are chosen per item."""

ANSWER_FIELDS = (
    '{"violation": bool, "categories": [id], "severity": 0-4, "rule_ids": [id], '
    '"confidence": 0-1, "decision_path": [{"step": id, "answer": str, "evidence": quote or ""}], '
    '"rationale": str}'
)


@dataclass(frozen=True)
class Example:
    """A labelled text shown to the judge: `violating` for this category or not."""

    text: str
    violating: bool


def render_category(policy: Policy, category: Category, *, examples: int = 0) -> str:
    """The fixed judging prompt (system message) for one category of a policy.

    `examples` > 0 renders that many of the policy's own positive and negative examples into it;
    leave it at 0 when examples are chosen per item (`render_examples`) so the prompt stays the
    same for every item.
    """
    lines = [
        f"# Content policy: {category.name} ({category.id})",
        f"From the policy \u201c{policy.name}\u201d, version {policy.version}.",
        "",
        "## Instructions",
        "Decide whether the content violates this category only (other harms are judged "
        "elsewhere): what it says and does, not the topic it mentions. Answer the decision steps "
        "in order, quoting the words that support each answer. Content that does not clearly "
        "meet a rule does not violate.",
        "",
        "## Definition",
        " ".join(category.definition.split()),
    ]
    if category.violates:
        lines += ["", "## What violates (cite the rule id)"]
        lines += [f"- [{rule.id}] {rule.text}" for rule in category.violates]
    if category.does_not_violate:
        lines += ["", "## What does not violate"]
        lines += [f"- {text}" for text in category.does_not_violate]
    if category.decision_steps:
        lines += ["", "## Decision steps (start at the first; follow the answer)"]
        lines += [_step_line(k, step) for k, step in enumerate(category.decision_steps, 1)]
    lines += ["", "## Severity", f"Content that violates is severity {category.severity} of 4."]
    if examples > 0:
        chosen = [Example(t, True) for t in category.examples.positive[:examples]]
        chosen += [Example(t, False) for t in category.examples.negative[:examples]]
        if chosen:
            lines += ["", render_examples(chosen)]
    lines += [
        "",
        "## Answer format",
        f'Only this JSON; categories ["{category.id}"] if violating, else [] and severity 0:',
        ANSWER_FIELDS,
    ]
    return "\n".join(lines)


def _step_line(number: int, step: DecisionStep) -> str:
    outcomes = []
    for answer in step.answers:
        if answer.next is not None:
            outcomes.append(f'"{answer.answer}" \u2192 go to [{answer.next}]')
        else:
            verdict = "violating" if answer.verdict == "violating" else "not violating"
            rule = f" (rule {answer.rule})" if answer.rule else ""
            outcomes.append(f'"{answer.answer}" \u2192 {verdict}{rule}')
    return f"{number}. [{step.id}] {step.question} " + "; ".join(outcomes) + "."


def render_examples(examples: Sequence[Example]) -> str:
    """Labelled examples as a prompt section (positives and negatives interleaved as given)."""
    lines = ["## Examples"]
    for example in examples:
        verdict = "violates" if example.violating else "does not violate"
        lines.append(f"Content: {json.dumps(' '.join(example.text.split()))} \u2192 {verdict}")
    return "\n".join(lines)


def render_content(text: str, *, examples: Sequence[Example] = ()) -> str:
    """The user message for one item: examples chosen for it (if any), then its content."""
    parts = [render_examples(examples)] if examples else []
    body = text if text.strip() else "(no text; judge the attached image)"
    parts.append(f"## Content to judge\n<content>\n{body}\n</content>")
    return "\n\n".join(parts)


def render_policy(policy: Policy, *, examples: int = DEFAULT_EXAMPLES) -> dict[str, str]:
    """Every category's judging prompt, by category id (for review and for `bastion policy`)."""
    return {c.id: render_category(policy, c, examples=examples) for c in policy.categories}
