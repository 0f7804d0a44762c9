"""Decision-path answers as auxiliary training targets: one target per (category, decision step).

An annotation records *why* an item violates or not, as its answers to the category's decision
steps ("does it target a group?" yes, "is it abusive?" no). Training can predict those answers
next to the labels: each step is one more output of the head, over the step's allowed answers
(a softmax; with two answers it is a binary choice). A step the annotator never reached (the path
ended before it) has no answer and is masked out of the loss, as a missing label is.

Answers are matched to the policy's as the annotation validator matches them: trimmed and without
regard to case. An answer or step the policy does not have is an error, never a silent mask: it
means the file was annotated under another version of the policy.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from pydantic import TypeAdapter, ValidationError

from bastion.errors import BastionError
from bastion.policy import LoadedPolicy

UNKNOWN = -1  # no answer: the step was not reached, or the item's path was not recorded

DecisionPath = dict[str, dict[str, str]]  # {category id: {step id: answer}}, as exports write it
_PATH = TypeAdapter(DecisionPath)


class StepTargetError(BastionError):
    """A decision path that does not fit the policy: an unknown step or answer, or a bad shape."""


@dataclass(frozen=True)
class StepColumn:
    """One auxiliary target: a category's decision step and its allowed answers, in order."""

    category: str
    step: str
    answers: tuple[str, ...]

    @property
    def name(self) -> str:
        return f"{self.category}:{self.step}"


def step_columns(policy: LoadedPolicy) -> list[StepColumn]:
    """Every decision step of every category of the policy, in policy order."""
    return [
        StepColumn(cat.id, step.id, tuple(a.answer for a in step.answers))
        for cat in policy.policy.categories
        for step in cat.decision_steps
    ]


def parse_path(value: object, where: str) -> DecisionPath:
    """A decision path read from a file (a JSON object, or JSON text in a CSV cell), checked;
    None or "" is no path."""
    import json

    if value is None or value == "":
        return {}
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise StepTargetError(f"{where}: 'path' is not valid JSON: {exc.msg}") from None
    try:
        return _PATH.validate_python(value)
    except ValidationError:
        raise StepTargetError(
            f"{where}: 'path' must map category ids to {{step id: answer}} objects, "
            f'e.g. {{"hate": {{"target": "yes"}}}}; got {str(value)[:80]!r}'
        ) from None


def step_targets(
    columns: Sequence[StepColumn],
    paths: Sequence[Mapping[str, Mapping[str, str]]],
    where: Sequence[str] | None = None,
) -> np.ndarray:
    """Answer indices (n, len(columns)), `UNKNOWN` where a row's path does not reach a step.

    Categories a path names that are not among the columns' are ignored (another policy's, or
    one without decision steps); `where` names each row in error messages."""
    index = {(c.category, c.step): j for j, c in enumerate(columns)}
    answers = [{a.strip().lower(): k for k, a in enumerate(c.answers)} for c in columns]
    steps_of: dict[str, list[str]] = {}
    for c in columns:
        steps_of.setdefault(c.category, []).append(c.step)
    out = np.full((len(paths), len(columns)), UNKNOWN, dtype=np.int64)
    for i, path in enumerate(paths):
        for category, steps in path.items():
            if category not in steps_of:
                continue
            for step, answer in steps.items():
                j = index.get((category, step))
                row = where[i] if where is not None else f"row {i + 1}"
                if j is None:
                    raise StepTargetError(
                        f"{row}: category {category!r} has no decision step {step!r} (its steps: "
                        f"{', '.join(steps_of[category])}); was it annotated under another "
                        "version of the policy?"
                    )
                k = answers[j].get(answer.strip().lower())
                if k is None:
                    raise StepTargetError(
                        f"{row}: {category}:{step} answered {answer!r}; the policy allows "
                        f"{', '.join(map(repr, columns[j].answers))}"
                    )
                out[i, j] = k
    return out


def answer_accuracy(predicted: Sequence[np.ndarray], steps: np.ndarray) -> list[float | None]:
    """Per step, the share of its known answers that the most probable predicted answer matches
    (`predicted`: one (n, answers) array per step, as `MultiLabelHead.predict_steps` gives);
    None for a step with no known answer."""
    out: list[float | None] = []
    for probs, answers in zip(predicted, np.asarray(steps).T, strict=True):
        known = answers != UNKNOWN
        out.append(
            float((probs[known].argmax(axis=1) == answers[known]).mean()) if known.any() else None
        )
    return out
