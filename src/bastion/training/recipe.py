"""A training recipe: its sources, head, fine-tuning, calibration and threshold settings."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from bastion.errors import BastionError
from bastion.models.artifact import (
    ThresholdTarget,
)
from bastion.models.classifier_tuning import ClassifierTuning
from bastion.models.finetune import FineTuneConfig
from bastion.policy import BUILTIN_PACKS, LoadedPolicy, load_policy

if TYPE_CHECKING:
    pass


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SourceSpec(_Strict):
    """One training source: a shared dataset by adapter name, the policy's own examples,
    Bastion's corpus of everyday content (safe for every category), or a user's file."""

    dataset: str | None = None
    policy_examples: bool = False
    background: bool = False
    safe_texts: str | None = Field(
        None, description="a text file, one safe text per line (path relative to the recipe)"
    )
    file: str | None = Field(
        None,
        description="a JSONL or CSV file (path relative to the recipe) in the format `bastion "
        "eval --data` reads: `text`, optional `label`, and a 0/1 column per category id of the "
        "policy (blank or absent: unknown); an optional `path` column holds decision paths, "
        "{category: {step: answer}}, as annotation exports write them",
    )
    licence: str | None = None
    use: Literal["ship-ok", "dev-only"] | None = None
    unnamed_violations: Literal["drop", "at_least_one"] = Field(
        "drop",
        description="violating rows that name no category: drop them, or keep them as 'at least "
        "one category applies' (a noisy-OR loss over all categories; see heads.py)",
    )
    max_rows: int | None = Field(None, ge=1)
    weight: float = Field(
        1.0,
        gt=0.0,
        description="emphasis on this source: multiplies its share of the rows drawn while "
        "fine-tuning, and its total weight in a frozen-encoder head",
    )
    role: Literal["train", "calibration"] = Field(
        "train",
        description="calibration: never trained on; all rows go to calibration and threshold "
        "choice, so `max_safe_flagged` is measured on text the head has not seen the like of",
    )
    label_map: dict[str, list[str]] | None = None
    check_share: float | None = Field(
        None,
        gt=0.0,
        lt=1.0,
        description="a shared set only: this share of its rows (fixed by a hash of each row's "
        "id, see LabelledSet.check_part) is left out of training and calibration, so it stays "
        "unseen text for checks such as the hard-safe flag rate",
    )


class HeadSpec(_Strict):
    hidden: int = 0
    epochs: int = 300
    lr: float = 3e-3
    weight_decay: float = 1e-4
    patience: int = 15
    dropout: float = 0.1
    step_targets: bool = Field(
        False,
        description="also predict each decision step's answer where a source's rows carry "
        "their decision paths (auxiliary outputs on the shared hidden layer; needs `hidden`)",
    )
    step_weight: float = Field(
        0.5, ge=0.0, description="weight of the decision-step loss next to the category loss"
    )

    @model_validator(mode="after")
    def _steps_need_a_hidden_layer(self) -> HeadSpec:
        if self.step_targets and self.hidden <= 0:
            raise ValueError(
                "step_targets needs a hidden layer (e.g. hidden: 128): over frozen embeddings a "
                "linear head shares no weights with the step outputs, so they could not help"
            )
        return self


class Recipe(_Strict):
    """What `bastion train --recipe FILE` reads."""

    name: str
    policy: str = Field(
        "openai", description="a built-in pack, or a policy file (path relative to the recipe)"
    )
    encoder: str | None = None
    ship: bool = Field(False, description="refuse every source not marked ship-ok")
    sources: list[SourceSpec]
    head: HeadSpec = Field(default_factory=HeadSpec)
    encoder_finetune: FineTuneConfig | None = Field(
        None,
        description="fine-tune the encoder's top layers first (SetFit-style pairs from the "
        "training split); the model directory then carries them, a few MB",
    )
    classifier_finetune: ClassifierTuning | None = Field(
        None,
        description="fine-tune every encoder layer together with the category head (see "
        "classifier_tuning.py); the head is then the one trained with it. The model directory "
        "carries the trained layers and their int8 ONNX export",
    )
    calibration: Literal["platt", "isotonic"] = "platt"
    threshold: ThresholdTarget = Field(
        default_factory=lambda: ThresholdTarget(kind="precision", value=0.8)
    )
    min_positives: int = Field(10, description="fewer training positives: zero-shot fallback")
    zero_shot_weight: float = Field(
        0.5,
        ge=0.0,
        le=1.0,
        description="share of the zero-shot score in each category's score, blended in logit "
        "space before calibration (0 = head only); fallback categories are all zero-shot",
    )
    split: tuple[float, float] = (0.15, 0.15)
    seed: int = 0
    check_sets: list[str] = Field(
        default_factory=list,
        description="files of held-out safe texts (JSONL with `text`, or one per line; paths "
        "relative to the recipe); with the held-out parts of `check_share` sources they give the "
        "manifest's hard_safe_flagged: the share flagged in any category at the chosen thresholds",
    )
    base_dir: str = Field(".", exclude=True, description="folder that relative paths start from")

    @model_validator(mode="after")
    def _one_way_to_tune_the_encoder(self) -> Recipe:
        if self.encoder_finetune is not None and self.classifier_finetune is not None:
            raise ValueError(
                "give either encoder_finetune (contrastive pairs, top layers, then a head on "
                "frozen embeddings) or classifier_finetune (every layer with the head), not both"
            )
        return self

    @property
    def tunes_encoder(self) -> bool:
        return self.encoder_finetune is not None or self.classifier_finetune is not None

    @classmethod
    def from_file(cls, path: Path | str) -> Recipe:
        path = Path(path)
        try:
            raw = yaml.safe_load(path.read_text("utf-8"))
            if isinstance(raw, dict):
                raw.setdefault("base_dir", str(path.parent))
            return cls.model_validate(raw)
        except (OSError, yaml.YAMLError) as exc:
            raise BastionError(f"{path}: cannot read recipe: {exc}") from None
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
            )
            raise BastionError(f"{path}: invalid recipe: {problems}") from None


def recipe_policy(recipe: Recipe) -> LoadedPolicy:
    """The recipe's policy: a built-in pack, or a policy file relative to the recipe (else to the
    working directory)."""
    if recipe.policy not in BUILTIN_PACKS:
        beside = Path(recipe.base_dir) / recipe.policy
        if beside.is_file():
            return load_policy(beside)
    return load_policy(recipe.policy)
