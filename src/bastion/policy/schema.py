"""The policy file format: pydantic models that validate a content policy written in YAML.

A policy is the one place a safety team writes down what is not allowed. Everything else in
Bastion (zero-shot prototypes, LLM prompts, annotation forms, thresholds) is derived from it, so
the schema is strict: unknown fields are errors (a typo must not silently drop a rule), category
ids are unique, and decision steps must form a tree that always ends in a verdict.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

CATEGORY_ID = r"^[a-z0-9][a-z0-9_\-]*(/[a-z0-9][a-z0-9_\-]*)*$"
STEP_ID = r"^[a-z0-9][a-z0-9_\-]*$"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Action(StrEnum):
    """What the platform does with content; ordered from least to most severe."""

    allow = "allow"
    review = "review"
    block = "block"

    @property
    def rank(self) -> int:
        return ("allow", "review", "block").index(self.value)


UNSCORED_ACTION = Action.review
"""The action for content that could not be scored (unreadable media, a refused path, empty text).

Fail closed: nothing is known about such content, so a person looks at it. `allow` would publish
it unseen; `block` would let anyone hide a post by attaching a broken image to it.
"""


class Bands(Strict):
    """Score bands: a score at or above `block` blocks, at or above `review` goes to review, else allow."""

    review: float = Field(0.5, ge=0.0, le=1.0)
    block: float = Field(0.85, ge=0.0, le=1.0)

    @model_validator(mode="after")
    def _ordered(self) -> Bands:
        if self.block < self.review:
            raise ValueError(f"block ({self.block}) must be at least review ({self.review})")
        return self

    def action(self, score: float) -> Action:
        if score >= self.block:
            return Action.block
        if score >= self.review:
            return Action.review
        return Action.allow


class Rule(Strict):
    """One clause of 'what violates' with an id that annotations and LLM judgements can cite."""

    id: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.\-]+$")]
    text: Annotated[str, Field(min_length=1)]


class Answer(Strict):
    """One answer to a decision step: it leads either to another step or to a verdict."""

    answer: Annotated[str, Field(min_length=1)]
    next: str | None = None
    verdict: Literal["violating", "not_violating"] | None = None
    rule: str | None = Field(None, description="rule id cited when this answer ends in 'violating'")

    @model_validator(mode="after")
    def _one_target(self) -> Answer:
        if (self.next is None) == (self.verdict is None):
            raise ValueError("an answer needs exactly one of 'next' (a step id) or 'verdict'")
        return self


class DecisionStep(Strict):
    """An ordered question on the path from content to verdict (the reasoning outline)."""

    id: Annotated[str, Field(pattern=STEP_ID)]
    question: Annotated[str, Field(min_length=1)]
    answers: Annotated[list[Answer], Field(min_length=2)]


class Examples(Strict):
    positive: list[str] = Field(
        default_factory=list, description="texts that violate this category"
    )
    negative: list[str] = Field(
        default_factory=list, description="texts that do not, hard cases first"
    )

    @field_validator("positive", "negative")
    @classmethod
    def _no_blank(cls, texts: list[str]) -> list[str]:
        for i, t in enumerate(texts):
            if not t.strip():
                raise ValueError(f"example {i} is empty")
        return texts


NUDITY_LABELS = (
    "FEMALE_GENITALIA_COVERED", "FACE_FEMALE", "BUTTOCKS_EXPOSED", "FEMALE_BREAST_EXPOSED",
    "FEMALE_GENITALIA_EXPOSED", "MALE_BREAST_EXPOSED", "ANUS_EXPOSED", "FEET_EXPOSED",
    "BELLY_COVERED", "FEET_COVERED", "ARMPITS_COVERED", "ARMPITS_EXPOSED", "FACE_MALE",
    "BELLY_EXPOSED", "MALE_GENITALIA_EXPOSED", "ANUS_COVERED", "FEMALE_BREAST_COVERED",
    "BUTTOCKS_COVERED",
)  # fmt: skip
"""The region labels of the NudeNet detector, which a category's `media.nudity` may name."""


class MediaSignals(Strict):
    """Which media detectors' findings count towards a category, beyond its text.

    Text in images and speech are scored against every category by the text detectors; a
    visual detector's labels only mean something for the categories the policy names here
    (NudeNet finding an exposed breast is evidence for "sexual", not for "sexual/minors").
    """

    nudity: list[str] = Field(
        default_factory=list, description="NudeNet region labels whose score counts here"
    )

    @field_validator("nudity")
    @classmethod
    def _known_labels(cls, labels: list[str]) -> list[str]:
        unknown = [label for label in labels if label not in NUDITY_LABELS]
        if unknown:
            raise ValueError(
                f"unknown nudity label(s) {', '.join(unknown)}; known: {', '.join(NUDITY_LABELS)}"
            )
        return labels


class Category(Strict):
    id: Annotated[str, Field(pattern=CATEGORY_ID)]
    name: Annotated[str, Field(min_length=1)]
    definition: Annotated[str, Field(min_length=1)]
    severity: Annotated[int, Field(ge=1, le=4)]
    violates: list[Rule] = Field(default_factory=list)
    does_not_violate: list[str] = Field(default_factory=list)
    decision_steps: list[DecisionStep] = Field(default_factory=list)
    examples: Examples = Field(default_factory=Examples)
    bands: Bands | None = None
    flag_threshold: float | None = Field(None, ge=0.0, le=1.0)
    media: MediaSignals = Field(default_factory=MediaSignals)

    @field_validator("violates", mode="before")
    @classmethod
    def _number_plain_rules(cls, rules: object) -> object:
        """Plain strings are accepted and numbered R1, R2, ... so short policies stay short."""
        if not isinstance(rules, list):
            return rules
        return [
            {"id": f"R{i + 1}", "text": r} if isinstance(r, str) else r for i, r in enumerate(rules)
        ]

    @model_validator(mode="after")
    def _steps_form_a_tree(self) -> Category:
        rule_ids = [r.id for r in self.violates]
        if len(set(rule_ids)) != len(rule_ids):
            raise ValueError(f"duplicate rule ids in 'violates': {_dupes(rule_ids)}")
        step_ids = [s.id for s in self.decision_steps]
        if len(set(step_ids)) != len(step_ids):
            raise ValueError(f"duplicate decision step ids: {_dupes(step_ids)}")
        known = set(step_ids)
        for step in self.decision_steps:
            for ans in step.answers:
                if ans.next is not None and ans.next not in known:
                    raise ValueError(
                        f"step '{step.id}' answer '{ans.answer}' leads to unknown step '{ans.next}'"
                    )
                if ans.rule is not None and ans.rule not in rule_ids:
                    raise ValueError(
                        f"step '{step.id}' answer '{ans.answer}' cites unknown rule '{ans.rule}'"
                        f" (known: {', '.join(rule_ids) or 'none'})"
                    )
        if self.decision_steps:
            _check_acyclic(self.decision_steps)
        return self

    def bands_or(self, default: Bands) -> Bands:
        return self.bands or default

    def threshold_or(self, default: Bands) -> float:
        if self.flag_threshold is not None:
            return self.flag_threshold
        return self.bands_or(default).review


class Policy(Strict):
    id: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_\-]*$")]
    version: Annotated[str, Field(min_length=1)]
    name: Annotated[str, Field(min_length=1)]
    description: str = ""
    bands: Bands = Field(default_factory=Bands)
    categories: Annotated[list[Category], Field(min_length=1)]

    @model_validator(mode="after")
    def _unique_categories(self) -> Policy:
        ids = [c.id for c in self.categories]
        if len(set(ids)) != len(ids):
            raise ValueError(f"duplicate category ids: {_dupes(ids)}")
        return self

    @property
    def category_ids(self) -> list[str]:
        return [c.id for c in self.categories]

    def category(self, category_id: str) -> Category:
        for c in self.categories:
            if c.id == category_id:
                return c
        raise KeyError(category_id)


def _dupes(ids: list[str]) -> str:
    seen: set[str] = set()
    dupes = [i for i in ids if i in seen or seen.add(i)]  # type: ignore[func-returns-value]
    return ", ".join(sorted(set(dupes)))


def _check_acyclic(steps: list[DecisionStep]) -> None:
    graph = {s.id: [a.next for a in s.answers if a.next] for s in steps}
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> None:
        if state.get(node) == 2:
            return
        if state.get(node) == 1:
            raise ValueError(f"decision steps loop: {' -> '.join([*path, node])}")
        state[node] = 1
        for nxt in graph[node]:
            visit(nxt, [*path, node])
        state[node] = 2

    for s in steps:
        visit(s.id, [])
