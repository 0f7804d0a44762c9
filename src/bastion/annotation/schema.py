"""Chain-of-thought annotations: the form a policy category generates, and the validator.

An annotation records the path a person (or a pre-annotator) took through a category's decision
steps: each step's answer, the words of the text (character spans) or the image regions that
support it, and the rule the path ends in; then the verdict, severity, a rationale and how sure
they are. The validator refuses an annotation whose verdict does not follow from its path,
whose spans are not in the item, or whose rule ids are not in the policy version it was made
under, and says which, so the annotator can fix it.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from bastion.judge.schema import StepAnswer, check_path, path_rule
from bastion.policy import Category, LoadedPolicy

Source = Literal["human", "llm", "classifier"]


class Span(BaseModel):
    """Characters [start, end) of the item's text, with the text they cover (as a check)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    start: Annotated[int, Field(ge=0)]
    end: Annotated[int, Field(ge=0)]
    text: str


class Region(BaseModel):
    """A box (x, y, width, height) in pixels of image number `image` of the item."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    image: Annotated[int, Field(ge=0)]
    box: tuple[int, int, int, int]


class PathStep(BaseModel):
    model_config = ConfigDict(extra="forbid")

    step: str
    answer: str
    spans: list[Span] = Field(default_factory=list)
    regions: list[Region] = Field(default_factory=list)


class Annotation(BaseModel):
    """One annotator's judgement of one item for one category, with the reasoning path."""

    model_config = ConfigDict(extra="forbid")

    category: str
    path: list[PathStep] = Field(default_factory=list)
    violation: bool
    severity: Annotated[int, Field(ge=0, le=4)] = 0
    rule_ids: list[str] = Field(default_factory=list)
    rationale: str = ""
    confidence: Annotated[float, Field(ge=0.0, le=1.0)] = 1.0
    policy_version: str
    annotator: str = ""
    source: Source = "human"


def decision_key(annotation: Annotation) -> tuple[object, ...]:
    """What two annotations must share to say the same thing: the verdict and the path's
    answers (evidence, rationale and confidence may differ)."""
    return (
        annotation.violation,
        tuple((s.step, s.answer.strip().lower()) for s in annotation.path),
    )


class FormAnswer(BaseModel):
    answer: str
    next: str | None
    verdict: str | None
    rule: str | None


class FormStep(BaseModel):
    id: str
    question: str
    answers: list[FormAnswer]


class TaskForm(BaseModel):
    """What an annotator is asked for one category: its decision steps, in order, with where
    each answer leads (the web form shows the next step from the previous answer)."""

    policy_version: str
    category: str
    name: str
    definition: str
    severity: int
    rules: dict[str, str]
    steps: list[FormStep]


def task_form(policy: LoadedPolicy, category_id: str) -> TaskForm:
    category = policy.policy.category(category_id)
    return TaskForm(
        policy_version=policy.version,
        category=category.id,
        name=category.name,
        definition=" ".join(category.definition.split()),
        severity=category.severity,
        rules={r.id: r.text for r in category.violates},
        steps=[
            FormStep(
                id=s.id,
                question=s.question,
                answers=[
                    FormAnswer(answer=a.answer, next=a.next, verdict=a.verdict, rule=a.rule)
                    for a in s.answers
                ],
            )
            for s in category.decision_steps
        ],
    )


def check_annotation(
    annotation: Annotation,
    policy: LoadedPolicy,
    text: str,
    image_sizes: list[tuple[int, int]] | None = None,
) -> list[str]:
    """Why an annotation cannot be accepted for this item (empty when it can).

    `image_sizes` are the (width, height) of the item's images, for checking regions.
    """
    if annotation.policy_version != policy.version:
        return [
            f"made under policy {annotation.policy_version}, but the task is for {policy.version}"
        ]
    if annotation.category not in policy.category_ids:
        return [f"unknown category '{annotation.category}' in policy {policy.version}"]
    category = policy.policy.category(annotation.category)
    path = [StepAnswer(step=s.step, answer=s.answer) for s in annotation.path]
    problems = check_path(annotation.violation, path, category)
    problems += _rule_problems(annotation, path, category)
    if annotation.violation and annotation.severity == 0:
        problems.append("severity must be 1-4 when the item violates")
    if not annotation.violation and annotation.severity != 0:
        problems.append("severity must be 0 when the item does not violate")
    for k, step in enumerate(annotation.path):
        problems += [f"step {k + 1} ('{step.step}'): {p}" for p in _span_problems(step, text)]
        problems += [
            f"step {k + 1} ('{step.step}'): {p}" for p in _region_problems(step, image_sizes or [])
        ]
    return problems


def _rule_problems(annotation: Annotation, path: list[StepAnswer], category: Category) -> list[str]:
    known = {r.id for r in category.violates}
    problems = [
        f"rule '{r}' is not a rule of {category.id} (known: {', '.join(sorted(known)) or 'none'})"
        for r in annotation.rule_ids
        if r not in known
    ]
    if not annotation.violation and annotation.rule_ids:
        problems.append("an item that does not violate cites no rule")
    cited = path_rule(path, category)
    if annotation.violation and cited is not None and cited not in annotation.rule_ids:
        problems.append(f"the path ends in rule '{cited}'; cite it")
    return problems


def _span_problems(step: PathStep, text: str) -> list[str]:
    problems = []
    for span in step.spans:
        if not span.start < span.end <= len(text):
            problems.append(
                f"span [{span.start}, {span.end}) is outside the text ({len(text)} characters)"
            )
        elif text[span.start : span.end] != span.text:
            problems.append(
                f"span [{span.start}, {span.end}) covers {text[span.start : span.end]!r}, "
                f"not {span.text!r}"
            )
    return problems


def _region_problems(step: PathStep, sizes: list[tuple[int, int]]) -> list[str]:
    problems = []
    for region in step.regions:
        if region.image >= len(sizes):
            problems.append(f"region on image {region.image}, but the item has {len(sizes)}")
            continue
        width, height = sizes[region.image]
        x, y, w, h = region.box
        if w <= 0 or h <= 0 or x < 0 or y < 0 or x + w > width or y + h > height:
            problems.append(
                f"region {region.box} is not inside image {region.image} ({width}x{height})"
            )
    return problems
