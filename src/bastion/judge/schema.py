"""The structured answer an LLM judge must give, and the checks that tie it to the policy.

Pydantic checks the shape (types, ranges); `check_judgement` checks the meaning against the
category that was judged: the decision path must walk the category's decision steps from the
first step along the answers given and end in the verdict stated, rule ids must exist, and every
evidence quote must occur in the content. A judgement that fails either check is never used as a
score: the judge retries once with the problems listed, then reports a failure.
"""

from __future__ import annotations

import json
import re
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from bastion.policy.schema import Category


class StepAnswer(BaseModel):
    """One decision step as the judge answered it, with the words of the content that support it."""

    model_config = ConfigDict(extra="forbid")

    step: str
    answer: str
    evidence: str = ""


class Judgement(BaseModel):
    """An LLM's verdict on one item for one policy category."""

    model_config = ConfigDict(extra="forbid")

    violation: bool
    categories: list[str] = Field(default_factory=list)
    severity: Annotated[int, Field(ge=0, le=4)] = 0
    rule_ids: list[str] = Field(default_factory=list)
    confidence: Annotated[float, Field(ge=0.0, le=1.0)]
    decision_path: list[StepAnswer] = Field(default_factory=list)
    rationale: str = ""

    @property
    def probability(self) -> float:
        """P(violating) as the judge stated it: its confidence in the verdict it gave."""
        return self.confidence if self.violation else 1.0 - self.confidence


def answer_schema() -> dict[str, Any]:
    """The JSON schema sent for constrained decoding (OpenAI `response_format`, vLLM, llama.cpp)."""
    return Judgement.model_json_schema()


def parse_judgement(raw: str) -> tuple[Judgement | None, list[str]]:
    """A judgement from a model's raw reply, or the problems that make it unusable.

    Models often wrap JSON in a code fence or add a sentence before it; the first balanced
    {...} object in the reply is taken. Anything else wrong is a problem to report, not to guess.
    """
    text = _json_object(raw)
    if text is None:
        return None, ["the reply contains no JSON object"]
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        return None, [f"the JSON is malformed: {exc.msg} at character {exc.pos}"]
    except RecursionError:  # a degenerate reply ("[[[[..."): a problem, not a crash
        return None, ["the JSON is nested too deeply to read"]
    try:
        return Judgement.model_validate(data), []
    except ValidationError as exc:
        return None, [_pydantic_problem(err) for err in exc.errors()]


def _json_object(raw: str, tries: int = 8) -> str | None:
    """The first balanced {...} that parses as JSON, trying each of the first `tries` opening
    braces in turn (prose or a code fence before the object may hold a brace of its own); if
    none parses, the first candidate, so that its error is the one reported."""
    starts = [m.start() for m in re.finditer(r"\{", raw)][:tries]
    candidates = [_balanced(raw, start) for start in starts]
    for candidate in candidates:
        try:
            json.loads(candidate)
        except (json.JSONDecodeError, RecursionError):
            continue
        return candidate
    return candidates[0] if candidates else None


def _balanced(raw: str, start: int) -> str:
    """From the brace at `start` to the brace that closes it (or the end), strings respected."""
    depth, in_string, escaped = 0, False, False
    for k in range(start, len(raw)):
        ch = raw[k]
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
            continue
        if ch == '"':
            in_string = True
        elif ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                return raw[start : k + 1]
    return raw[start:]


def _pydantic_problem(err: Any) -> str:
    where = ".".join(str(p) for p in err["loc"]) or "the object"
    return f"{where}: {err['msg']}"


def check_judgement(judgement: Judgement, category: Category, content: str) -> list[str]:
    """What makes a well-formed judgement wrong for this category and content (empty if none)."""
    problems: list[str] = []
    expected = [category.id] if judgement.violation else []
    if sorted(judgement.categories) != expected:
        problems.append(f"categories must be {json.dumps(expected)}, got {judgement.categories}")
    if not judgement.violation and judgement.severity != 0:
        problems.append("severity must be 0 when the content does not violate")
    if judgement.violation and judgement.severity == 0:
        problems.append("severity must be 1-4 when the content violates")
    if not judgement.violation and judgement.rule_ids:
        problems.append("rule_ids must be empty when the content does not violate")
    rules = {r.id for r in category.violates}
    unknown = [r for r in judgement.rule_ids if r not in rules]
    if unknown:
        problems.append(
            f"unknown rule id(s) {', '.join(unknown)}; known: {', '.join(sorted(rules)) or 'none'}"
        )
    problems += check_path(judgement.violation, judgement.decision_path, category)
    cited = path_rule(judgement.decision_path, category)
    if judgement.violation and cited is not None and cited not in judgement.rule_ids:
        problems.append(f"the decision path ends in rule '{cited}', which rule_ids must cite")
    flat = _flat(content)
    for answer in judgement.decision_path:
        if answer.evidence and _flat(answer.evidence) not in flat:
            problems.append(
                f"step '{answer.step}': evidence {answer.evidence[:60]!r} does not occur in the content"
            )
    return problems


def check_path(violation: bool, path: list[StepAnswer], category: Category) -> list[str]:
    """The path must start at the first step, follow each answer's `next`, and end in the verdict."""
    steps = {s.id: s for s in category.decision_steps}
    if not steps:
        return []
    if not path:
        return ["decision_path is empty; answer the decision steps in order"]
    expected = category.decision_steps[0].id
    for k, answer in enumerate(path):
        if answer.step != expected:
            return [f"decision_path[{k}] is step '{answer.step}', expected '{expected}'"]
        options = {a.answer.lower(): a for a in steps[expected].answers}
        chosen = options.get(answer.answer.strip().lower())
        if chosen is None:
            return [
                f"decision_path[{k}] ('{expected}') answer '{answer.answer}' is not one of "
                + ", ".join(f"'{a}'" for a in options)
            ]
        if chosen.verdict is not None:
            if k != len(path) - 1:
                return [f"decision_path continues after step '{expected}' reached a verdict"]
            if (chosen.verdict == "violating") != violation:
                return [
                    f"the decision path ends in '{chosen.verdict}' but violation is "
                    f"{str(violation).lower()}"
                ]
            return []
        assert chosen.next is not None
        expected = chosen.next
    return [f"decision_path stops before a verdict; the next step is '{expected}'"]


def path_rule(path: list[StepAnswer], category: Category) -> str | None:
    """The rule named by the answer at the end of the path, if the path ends in one."""
    if not path:
        return None
    steps = {s.id: s for s in category.decision_steps}
    step = steps.get(path[-1].step)
    if step is None:
        return None
    chosen = [a for a in step.answers if a.answer.lower() == path[-1].answer.strip().lower()]
    return chosen[0].rule if chosen and chosen[0].verdict == "violating" else None


def _flat(text: str) -> str:
    return " ".join(text.lower().split())
