"""Training a moderation model from a recipe: data in through the adapters, a model artifact out.

Steps: assemble labelled rows from the recipe's sources (shared datasets through their adapters
and label maps, the policy's own examples, the user's files), split each source into train /
early-stopping / calibration parts, fit a multi-label head on frozen encoder embeddings with
missing labels masked, calibrate each category on the held-out part, pick thresholds for the
recipe's target there, and save everything with a manifest that names every source and licence.

A user's file (an annotation export, say) may carry each item's decision path; with
`head.step_targets` the head also learns to answer every decision step (see heads.py), which
shapes its hidden layer and is then dropped: the saved model is the same kind as any other.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from bastion.errors import BastionError, ModelError
from bastion.eval.labels import LabelMap, binary_from_categories, category_labels
from bastion.eval.metrics import binary_metrics
from bastion.models.artifact import (
    HEAD_ONNX,
    ONNX_ENCODER_DIR,
    Manifest,
    ModelArtifact,
    RuntimeCheck,
    ThresholdTarget,
    TrainingSource,
    calibration_params,
    write_manifest,
)
from bastion.models.calibration import (
    CategoryCalibrator,
    raise_for_flag_rate,
    shift_for_binary_fbeta,
    threshold_for_f1,
    threshold_for_fpr,
    threshold_for_precision,
)
from bastion.models.classifier_tuning import ClassifierTuning
from bastion.models.finetune import FineTuneConfig
from bastion.models.heads import MultiLabelHead
from bastion.models.scoring import any_category, blend_with_zero_shot
from bastion.models.steps import (
    UNKNOWN,
    DecisionPath,
    StepColumn,
    answer_accuracy,
    parse_path,
    step_columns,
    step_targets,
)
from bastion.policy import BUILTIN_PACKS, LoadedPolicy, load_policy

if TYPE_CHECKING:
    from bastion.models.classifier_tuning import TuningHistory
    from bastion.models.encoder import Encoder, TextEncoder


_WORDS = re.compile(r"\w+")
FINETUNED_ENCODER = "encoder"  # sub-directory of a model with a fine-tuned encoder
CHECKPOINT_DIR = "checkpoint"  # sub-directory of a model being trained: fine-tuning checkpoints
STEP_METRIC = "val_step_accuracy/"  # + "category:step", in a manifest's metrics


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


@dataclass
class TrainingData:
    texts: list[str]
    labels: np.ndarray  # (n, n_categories) in {0, 1, NaN}
    source: np.ndarray  # index into `sources`
    sources: list[TrainingSource] = field(default_factory=list)
    # Rows that violate some category without naming it (labels all NaN); see heads.py.
    at_least_one: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))
    # Decision-step answers (n, len(step_columns)), UNKNOWN where not given; see steps.py.
    steps: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), dtype=np.int64))
    step_columns: list[StepColumn] = field(default_factory=list)

    def __post_init__(self) -> None:
        if len(self.at_least_one) == 0:
            self.at_least_one = np.zeros(len(self.texts), dtype=bool)
        if len(self.steps) == 0:
            self.steps = np.full((len(self.texts), len(self.step_columns)), UNKNOWN, np.int64)

    def binary(self) -> np.ndarray:
        """Violating in any category (1), safe in every category (0), or unknown (NaN)."""
        return np.where(self.at_least_one, 1.0, binary_from_categories(self.labels))

    def subset(self, rows: np.ndarray) -> TrainingData:
        kept = np.unique(self.source[rows])
        remap = {int(s): i for i, s in enumerate(kept)}
        return TrainingData(
            [self.texts[i] for i in rows],
            self.labels[rows],
            np.array([remap[int(s)] for s in self.source[rows]], dtype=np.int64),
            [self.sources[int(s)] for s in kept],
            self.at_least_one[rows],
            self.steps[rows],
            self.step_columns,
        )


def recipe_policy(recipe: Recipe) -> LoadedPolicy:
    """The recipe's policy: a built-in pack, or a policy file relative to the recipe (else to the
    working directory)."""
    if recipe.policy not in BUILTIN_PACKS:
        beside = Path(recipe.base_dir) / recipe.policy
        if beside.is_file():
            return load_policy(beside)
    return load_policy(recipe.policy)


def assemble(
    recipe: Recipe, policy: LoadedPolicy, data_root: Path | str | None = None
) -> TrainingData:
    """Rows from every source, labelled in the policy's categories (NaN where unknown), with
    their decision-step answers when the recipe's head learns them."""
    from bastion.eval import datasets as ds

    ids = policy.category_ids
    columns = _step_columns(recipe, policy)
    texts: list[str] = []
    blocks: list[np.ndarray] = []
    step_blocks: list[np.ndarray] = []
    source_idx: list[np.ndarray] = []
    sources: list[TrainingSource] = []
    unnamed_blocks: list[np.ndarray] = []
    for spec in recipe.sources:
        binary: np.ndarray | None = None  # the source's own violating / safe label, if any
        paths: list[DecisionPath] | None = None
        where: list[str] | None = None
        if spec.policy_examples:
            t, y = _policy_rows(policy)
            name, licence, use = f"policy:{policy.policy.id}", "written for Bastion", "ship-ok"
        elif spec.background:
            from bastion.detectors.zero_shot import background_texts

            t = list(background_texts())
            y = np.zeros((len(t), len(ids)))
            name, licence, use = "bastion:background", "written for Bastion", "ship-ok"
        elif spec.safe_texts:
            name, licence, use = _user_source(recipe, spec, spec.safe_texts)
            path = Path(recipe.base_dir) / spec.safe_texts
            try:
                lines = path.read_text("utf-8").splitlines()
            except (OSError, UnicodeDecodeError) as exc:
                raise BastionError(f"recipe source {path}: cannot read: {exc}") from None
            t = [line.strip() for line in lines if line.strip()]
            y = np.zeros((len(t), len(ids)))
        elif spec.file:
            name, licence, use = _user_source(recipe, spec, spec.file)
            t, y, binary, paths, where = _file_rows(recipe, spec, policy, spec.file)
        elif spec.dataset:
            adapter = ds.ADAPTERS.get(spec.dataset)
            if adapter is None:
                raise BastionError(f"recipe source '{spec.dataset}' is not a known dataset")
            if recipe.ship and adapter.use != "ship-ok":
                raise BastionError(
                    f"recipe '{recipe.name}' ships its model, but source '{spec.dataset}' is "
                    f"{adapter.use} ({adapter.licence}); only ship-ok sets may train shipped models"
                )
            data = ds.load_dataset(
                spec.dataset, root=data_root, limit=spec.max_rows, seed=recipe.seed
            )
            if spec.check_share is not None:
                data = data.subset(np.flatnonzero(~data.check_part(spec.check_share)))
            lmap = (
                LabelMap(spec.label_map)
                if spec.label_map is not None
                else ds.label_map_for(spec.dataset, policy.policy.id)
            )
            t, y, binary = data.texts, category_labels(data, policy, lmap), data.binary
            name, licence, use = spec.dataset, adapter.licence, adapter.use
        else:
            raise BastionError(
                "a recipe source needs `dataset: NAME`, `policy_examples: true`, `background: true`"
                ", `safe_texts: FILE` or `file: FILE`"
            )
        unnamed = np.zeros(len(t), dtype=bool)
        if binary is not None and spec.unnamed_violations == "at_least_one":
            unnamed = (binary == 1) & ~np.isfinite(y).any(axis=1)
        steps = np.full((len(t), len(columns)), UNKNOWN, dtype=np.int64)
        if columns and paths is not None:
            steps = step_targets(columns, paths, where)
        # A row that says nothing about any category is useless, unless it is kept as unnamed.
        keep = np.isfinite(y).any(axis=1) | unnamed
        t = [x for x, k in zip(t, keep, strict=True) if k]
        y, unnamed, steps = y[keep], unnamed[keep], steps[keep]
        sources.append(
            TrainingSource(
                name=name,
                licence=licence,
                use=use,
                rows=len(t),
                positives=int(((y == 1).any(axis=1) | unnamed).sum()),
                role=spec.role,
                weight=spec.weight,
            )
        )
        unnamed_blocks.append(unnamed)
        texts.extend(t)
        blocks.append(y)
        step_blocks.append(steps)
        source_idx.append(np.full(len(t), len(sources) - 1))
    if not texts:
        raise BastionError(f"recipe '{recipe.name}' produced no labelled rows")
    first = _first_occurrences(texts)
    source_of = np.concatenate(source_idx)
    violating = (np.vstack(blocks) == 1).any(axis=1) | np.concatenate(unnamed_blocks)
    for k, src in enumerate(sources):
        mine = source_of == k
        src.duplicates = int((~first & mine).sum())
        src.rows -= src.duplicates
        src.positives = int((violating & first & mine).sum())
    all_steps = np.vstack(step_blocks)
    if columns and not (all_steps != UNKNOWN).any():
        raise BastionError(
            f"recipe '{recipe.name}' sets head.step_targets, but no source gives a decision-step "
            "answer: only `file:` sources with a `path` column (annotation exports) carry them"
        )
    assembled = TrainingData(
        texts,
        np.vstack(blocks),
        source_of,
        sources,
        np.concatenate(unnamed_blocks),
        all_steps,
        columns,
    )
    if first.all():
        return assembled
    rows = np.flatnonzero(first)  # every source stays listed, a wholly repeated one with 0 rows
    return TrainingData(
        [texts[i] for i in rows],
        assembled.labels[rows],
        source_of[rows],
        sources,
        assembled.at_least_one[rows],
        all_steps[rows],
        columns,
    )


def _first_occurrences(texts: list[str]) -> np.ndarray:
    """True for the first row of each text, compared without case, punctuation or spacing (a text
    with no letters or digits, such as emoji, only with itself): the
    same post recurs across sets (Gab and Twitter posts in several hate sets, AdvBench in three
    prompt sets), and a copy would be trained on in one split and calibrated on in another."""
    seen: set[str] = set()
    keep = np.zeros(len(texts), dtype=bool)
    for i, text in enumerate(texts):
        key = " ".join(_WORDS.findall(text.lower())) or text.strip()  # emoji-only: as is
        if key not in seen:
            seen.add(key)
            keep[i] = True
    return keep


def _step_columns(recipe: Recipe, policy: LoadedPolicy) -> list[StepColumn]:
    if not recipe.head.step_targets:
        return []
    columns = step_columns(policy)
    if not columns:
        raise BastionError(
            f"recipe '{recipe.name}' sets head.step_targets, but policy '{policy.policy.id}' has "
            "no decision steps to learn; add `decision_steps` to its categories or drop the option"
        )
    return columns


def _user_source(recipe: Recipe, spec: SourceSpec, file: str) -> tuple[str, str, str]:
    """Name, licence and use of a source read from the user's file, which must state the
    latter two; a shipped model refuses a file that is not ship-ok."""
    if spec.licence is None or spec.use is None:
        raise BastionError(f"recipe source {file}: give its `licence` and `use`")
    if recipe.ship and spec.use != "ship-ok":
        raise BastionError(f"recipe '{recipe.name}' ships its model, but {file} is {spec.use}")
    return file, spec.licence, spec.use


def _file_rows(
    recipe: Recipe, spec: SourceSpec, policy: LoadedPolicy, file: str
) -> tuple[list[str], np.ndarray, np.ndarray, list[DecisionPath], list[str]]:
    """Texts, category labels (the policy's categories that are columns of the file; NaN
    elsewhere), binary labels, decision paths and row names of a user's file."""
    from bastion.eval import datasets as ds

    path = Path(recipe.base_dir) / file
    ids = policy.category_ids
    columns = ds.file_columns(path)
    present = [c for c in ids if c in columns]
    if not present:
        raise BastionError(
            f"recipe source {file}: no column is a category of policy '{policy.policy.id}' "
            f"({', '.join(ids)}); its columns are: {', '.join(columns) or '(none)'}"
        )
    data, matrix, _ = ds.load_file(path, category_cols=present)
    assert matrix is not None
    y = np.full((len(data), len(ids)), np.nan)
    y[:, [ids.index(c) for c in present]] = matrix
    if "path" in columns:
        cells = ds.file_column(path, "path")
        paths, where = [parse_path(v, w) for w, v in cells], [w for w, _ in cells]
    else:
        paths, where = [{} for _ in data.texts], [f"{path}, row {i + 1}" for i in range(len(data))]
    rows = np.arange(len(data))
    if spec.max_rows is not None:
        # A stratified sample, as for shared sets; its ids are the rows kept.
        data.ids = [str(i) for i in rows]
        rows = np.sort([int(i) for i in data.sample(spec.max_rows, recipe.seed).ids])
    return (
        [data.texts[i] for i in rows],
        y[rows],
        data.binary[rows],
        [paths[i] for i in rows],
        [where[i] for i in rows],
    )


def _policy_rows(policy: LoadedPolicy) -> tuple[list[str], np.ndarray]:
    ids = policy.category_ids
    texts: list[str] = []
    rows: list[np.ndarray] = []
    for j, cat in enumerate(policy.policy.categories):
        for value, examples in ((1.0, cat.examples.positive), (0.0, cat.examples.negative)):
            for ex in examples:
                row = np.full(len(ids), np.nan)
                row[j] = value
                texts.append(ex)
                rows.append(row)
    return texts, np.array(rows).reshape(-1, len(ids))


def split(data: TrainingData, fractions: tuple[float, float], seed: int) -> tuple[np.ndarray, ...]:
    """Per-source random split into (train, early-stopping, calibration) row indices; a source
    whose role is "calibration" goes to the calibration part whole."""
    rng = np.random.default_rng(seed)
    parts: list[list[np.ndarray]] = [[], [], []]
    for s in np.unique(data.source):
        rows = rng.permutation(np.flatnonzero(data.source == s))
        if int(s) < len(data.sources) and data.sources[int(s)].role == "calibration":
            parts[2].append(rows)
            continue
        n_stop, n_cal = (round(len(rows) * f) for f in fractions)
        parts[1].append(rows[:n_stop])
        parts[2].append(rows[n_stop : n_stop + n_cal])
        parts[0].append(rows[n_stop + n_cal :])
    return tuple(np.sort(np.concatenate(p)) for p in parts)


def training_split(
    recipe: Recipe, policy: LoadedPolicy, data: TrainingData
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row indices to train the head on, to stop early on, and to calibrate and check on."""
    tr, stop, cal = split(data, recipe.split, recipe.seed)
    # The policy's own examples are the zero-shot detector's prototypes: it has seen them, so
    # they would flatter it in calibration. They train the head only.
    own = np.array([s.name == f"policy:{policy.policy.id}" for s in data.sources])
    cal = cal[~own[data.source[cal]]] if len(own) else cal
    return tr, stop, cal


def source_weights(source: np.ndarray, emphasis: np.ndarray | None = None) -> np.ndarray:
    """Each source carries the same total weight (times its `emphasis`, per source index), so
    one large set cannot drown the others."""
    counts = np.bincount(source)
    w = 1.0 / counts[source]
    if emphasis is not None:
        w = w * np.asarray(emphasis, dtype=np.float64)[source]
    return np.asarray(w * len(source) / w.sum(), dtype=np.float32)


def _counting(
    progress: Callable[[str, int, int], None] | None, stage: str, total: int
) -> Callable[[int], None]:
    """A callback that adds up the rows an encoder reports and shows `stage` done of `total`."""
    done = [0]

    def count(n: int) -> None:
        done[0] += n
        if progress is not None:
            progress(stage, done[0], total)

    return count


def train(
    recipe: Recipe,
    out_dir: Path | str,
    data_root: Path | str | None = None,
    cache_path: Path | str | None = None,
    progress: Callable[[str, int, int], None] | None = None,
) -> ModelArtifact:
    """Run a recipe end to end and save the model; returns the artifact."""
    from bastion.models.embedding_cache import EmbeddingCache
    from bastion.models.encoder import load_encoder

    policy = recipe_policy(recipe)
    data = assemble(recipe, policy, data_root)
    encoder = load_encoder(recipe.encoder)
    # A head trained with its encoder needs only the calibration rows embedded again.
    total = (
        len(training_split(recipe, policy, data)[2])
        if recipe.classifier_finetune is not None
        else len(data.texts)
    )
    step = _counting(progress, "encoding", total)

    def cached(texts: list[str], count: Callable[[int], None]) -> np.ndarray:
        cache = EmbeddingCache(cache_path or _default_cache(), encoder)
        try:
            return cache.encode(texts, progress=count)
        finally:
            cache.close()

    if recipe.classifier_finetune is not None:
        base_embeddings = None
        if recipe.classifier_finetune.head_init == "linear_probe":
            base_embeddings = cached(
                data.texts,
                _counting(
                    progress, "encoding (frozen encoder, for the head's start)", len(data.texts)
                ),
            )
        encoder, head, history = tune_classifier(
            recipe, policy, data, encoder.name, Path(out_dir) / CHECKPOINT_DIR, progress,
            base_embeddings,
        )  # fmt: skip
        save_tuned_encoder(encoder, Path(out_dir), history)
        artifact, X, zero_shot = fit_tuned(recipe, policy, data, encoder, head, progress=step)
    else:
        if recipe.encoder_finetune is not None:
            encoder = _fine_tuned_encoder(recipe, data, encoder.name, Path(out_dir), progress)
            X = encoder.encode(data.texts, progress=step)  # new weights: nothing cached applies
        else:
            # A fine-tuned encoder left from an earlier run in this directory would be loaded
            # with a head that was not trained on it.
            shutil.rmtree(Path(out_dir) / FINETUNED_ENCODER, ignore_errors=True)
            X = cached(data.texts, step)
        zero_shot = zero_shot_probs(policy, encoder, X)
        artifact = fit_model(recipe, policy, data, X, zero_shot, encoder.name, encoder.dim)
    if progress is not None:
        progress("training", 1, 1)
    artifact.save(out_dir)
    onnx_dir = _onnx_encoder(recipe, encoder, Path(out_dir), progress)
    if onnx_dir is not None:
        if progress is not None:
            progress("checking the int8 ONNX path", 0, 1)
        _, _, cal = training_split(recipe, policy, data)
        artifact.manifest.runtime_check = runtime_check(
            artifact, policy, data, cal, artifact.predict_proba(X[cal], zero_shot[cal]), onnx_dir,
            Path(out_dir) / HEAD_ONNX,
        )  # fmt: skip
        write_manifest(artifact.manifest, out_dir)
    hard = hard_safe_texts(recipe, data_root)
    if hard:
        artifact.manifest.metrics.update(hard_safe_metrics(artifact, policy, encoder, hard))
        write_manifest(artifact.manifest, out_dir)
    shutil.rmtree(Path(out_dir) / CHECKPOINT_DIR, ignore_errors=True)  # the model is whole now
    return artifact


def hard_safe_texts(recipe: Recipe, data_root: Path | str | None = None) -> list[str]:
    """The recipe's held-out safe texts: its `check_sets` files and the parts of its
    `check_share` sources that training leaves out."""
    from bastion.eval import datasets as ds

    texts: list[str] = []
    for name in recipe.check_sets:
        path = Path(recipe.base_dir) / name
        try:
            lines = path.read_text("utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise BastionError(f"recipe check set {path}: cannot read: {exc}") from None
        for n, line in enumerate(lines, 1):
            if not line.strip():
                continue
            if path.suffix == ".jsonl":
                try:
                    texts.append(str(json.loads(line)["text"]))
                except (ValueError, KeyError, TypeError):
                    raise BastionError(
                        f"{path}, line {n}: expected a JSON object with text"
                    ) from None
            else:
                texts.append(line.strip())
    for spec in recipe.sources:
        if spec.dataset and spec.check_share:
            held = ds.load_dataset(spec.dataset, root=data_root)
            part = held.check_part(spec.check_share) & (held.binary == 0)
            texts += [held.texts[i] for i in np.flatnonzero(part)]
    return texts


def hard_safe_metrics(
    artifact: ModelArtifact, policy: LoadedPolicy, encoder: Encoder, texts: list[str]
) -> dict[str, float | None]:
    """Share of held-out safe texts flagged in any category at the model's thresholds."""
    X = encoder.encode(texts)
    zero_shot = zero_shot_probs(policy, encoder, X) if artifact.zero_shot_share.any() else None
    scores = artifact.predict_proba(X, zero_shot)
    m = artifact.manifest
    thresholds = np.array([m.thresholds[c] for c in m.categories])
    flagged = (scores >= thresholds).any(axis=1)
    return {"hard_safe_flagged": float(flagged.mean()), "hard_safe_rows": float(len(texts))}


def _onnx_encoder(
    recipe: Recipe,
    encoder: TextEncoder,
    out_dir: Path,
    progress: Callable[[str, int, int], None] | None,
) -> Path | None:
    """The int8 ONNX export of the encoder the model was trained on: the shipped one for the
    default encoder, a fresh export into the model directory for a fine-tuned one; None for a
    custom encoder that cannot be exported (it is then served with PyTorch)."""
    from bastion.models.encoder import DEFAULT_ENCODER, SHIPPED_ONNX_ENCODER
    from bastion.models.onnx_export import export_encoder

    target = out_dir / ONNX_ENCODER_DIR
    if not recipe.tunes_encoder:
        shutil.rmtree(target, ignore_errors=True)
        if recipe.encoder in (None, DEFAULT_ENCODER) and SHIPPED_ONNX_ENCODER.is_dir():
            return SHIPPED_ONNX_ENCODER
        return None
    if progress is not None:
        progress("exporting the encoder to ONNX", 0, 1)
    try:
        # A shipped model's graph is stored xz-compressed (unpacked into the cache on first use).
        export_encoder(encoder, target, compress=recipe.ship)
    except ModelError:
        return None
    return target


def runtime_check(
    artifact: ModelArtifact,
    policy: LoadedPolicy,
    data: TrainingData,
    rows: np.ndarray,
    torch_scores: np.ndarray,
    onnx_dir: Path,
    head_onnx: Path,
) -> RuntimeCheck:
    """Score `rows` again through the int8 ONNX encoder and the ONNX head; compare with the
    PyTorch path's calibrated scores on the same rows."""
    from bastion.models.onnx_runtime import OnnxHead, OnnxTextEncoder

    onnx_encoder = OnnxTextEncoder(onnx_dir)
    texts = [data.texts[i] for i in rows]
    X = onnx_encoder.encode(texts)
    zero_shot = zero_shot_probs(policy, onnx_encoder, X) if artifact.zero_shot_share.any() else None
    onnx_scores = ModelArtifact(
        artifact.manifest, OnnxHead(head_onnx), artifact.calibrator
    ).predict_proba(X, zero_shot)
    binary = data.binary()[rows]
    thresholds = np.array([artifact.manifest.thresholds[c] for c in artifact.manifest.categories])
    flags_torch = (torch_scores >= thresholds).any(axis=1)
    flags_onnx = (onnx_scores >= thresholds).any(axis=1)
    return RuntimeCheck(
        encoder_sha256=onnx_encoder.export.sha256,
        rows=len(rows),
        max_abs_diff=float(np.abs(torch_scores - onnx_scores).max()) if len(rows) else 0.0,
        flag_agreement=float(np.mean(flags_torch == flags_onnx)) if len(rows) else 1.0,
        binary_auprc_torch=binary_metrics(binary, any_category(torch_scores), 0.5).auprc,
        binary_auprc_onnx=binary_metrics(binary, any_category(onnx_scores), 0.5).auprc,
    )


def _fine_tuned_encoder(
    recipe: Recipe,
    data: TrainingData,
    base_name: str,
    out_dir: Path,
    progress: Callable[[str, int, int], None] | None,
) -> TextEncoder:
    """Fine-tune on the training split only (calibration rows stay unseen) and save the layers."""
    from bastion.models.encoder import TextEncoder
    from bastion.models.finetune import fine_tune, save_top_layers

    config = recipe.encoder_finetune
    assert config is not None
    tr, _, _ = split(data, recipe.split, recipe.seed)
    model = fine_tune(
        [data.texts[i] for i in tr],
        data.labels[tr],
        config=config,
        sample_weight=source_weights(data.source)[tr],
        base=recipe.encoder,
        progress=None if progress is None else (lambda d, t: progress("fine-tuning", d, t)),
    )
    save_top_layers(model, out_dir / FINETUNED_ENCODER, config.layers)
    return TextEncoder.from_model(model, f"{base_name}+finetuned:{recipe.name}")


def tune_classifier(
    recipe: Recipe,
    policy: LoadedPolicy,
    data: TrainingData,
    base_name: str,
    checkpoint_dir: Path | None = None,
    progress: Callable[[str, int, int], None] | None = None,
    base_embeddings: np.ndarray | None = None,
) -> tuple[TextEncoder, MultiLabelHead, TuningHistory]:
    """Fine-tune every layer with the head on the training split (checkpointed in
    `checkpoint_dir`, so an interrupted run resumes); the held-out curve is measured on part of
    the early-stopping split. Returns the encoder, the head and the learning curve.

    With `head_init: linear_probe` the head starts as the recipe's head fitted on the frozen
    encoder's embeddings of the rows (`base_embeddings`, or embedded here)."""
    from bastion.models.classifier_tuning import fine_tune_classifier
    from bastion.models.encoder import TextEncoder, load_encoder

    config = recipe.classifier_finetune
    assert config is not None
    init_head = None
    if config.head_init == "linear_probe":
        if base_embeddings is None:
            base_embeddings = load_encoder(recipe.encoder).encode(data.texts)
        init_head = fit_head(recipe, policy, data, base_embeddings)
    tr, stop, _ = training_split(recipe, policy, data)
    held = np.random.default_rng(recipe.seed).permutation(stop)[: config.eval_rows]
    model, head, history = fine_tune_classifier(
        [data.texts[i] for i in tr],
        data.labels[tr],
        data.source[tr],
        config=config,
        at_least_one=data.at_least_one[tr],
        source_weights=np.array([s.weight for s in data.sources]),
        validation=([data.texts[i] for i in held], data.labels[held], data.at_least_one[held]),
        base=recipe.encoder,
        checkpoint_dir=checkpoint_dir,
        progress=None if progress is None else (lambda d, t: progress("fine-tuning", d, t)),
        init_head=init_head,
    )
    encoder = TextEncoder.from_model(model, f"{base_name}+finetuned:{recipe.name}")
    return encoder, head, history


def save_tuned_encoder(encoder: TextEncoder, out_dir: Path, history: TuningHistory) -> None:
    """Every transformer layer of a tuned encoder (float16) and its learning curve, under
    `out_dir/encoder`."""
    from bastion.models.finetune import _encoder_layers, save_top_layers

    model = encoder._model
    save_top_layers(model, out_dir / FINETUNED_ENCODER, len(_encoder_layers(model)), delta=True)
    (out_dir / FINETUNED_ENCODER / "history.json").write_text(
        json.dumps(history.__dict__, indent=1) + "\n", "utf-8"
    )


def fit_tuned(
    recipe: Recipe,
    policy: LoadedPolicy,
    data: TrainingData,
    encoder: Encoder,
    head: MultiLabelHead,
    progress: Callable[[int], None] | None = None,
) -> tuple[ModelArtifact, np.ndarray, np.ndarray]:
    """Calibration and thresholds for a head trained with its encoder: only the calibration
    rows are embedded with the new weights. Returns the artifact and the embeddings and
    zero-shot probabilities (filled on the calibration rows only)."""
    _, _, cal = training_split(recipe, policy, data)
    X = np.zeros((len(data.texts), encoder.dim), dtype=np.float32)
    X[cal] = encoder.encode([data.texts[i] for i in cal], progress=progress)
    zero_shot = np.zeros((len(data.texts), len(policy.category_ids)))
    zero_shot[cal] = zero_shot_probs(policy, encoder, X[cal])
    artifact = fit_model(recipe, policy, data, X, zero_shot, encoder.name, encoder.dim, head=head)
    return artifact, X, zero_shot


def zero_shot_probs(policy: LoadedPolicy, encoder: Encoder, X: np.ndarray) -> np.ndarray:
    """The zero-shot detector's probabilities for embedded rows (what the model blends with)."""
    from bastion.detectors.zero_shot import ZeroShotDetector

    probs, _ = ZeroShotDetector(encoder).fit(policy).window_probs(X)
    return probs


def fit_head(
    recipe: Recipe, policy: LoadedPolicy, data: TrainingData, X: np.ndarray
) -> MultiLabelHead:
    """The recipe's head over embedded rows `X`, trained on the training split (sources weighted
    equally, times their `weight`) and stopped early on the early-stopping split."""
    tr, stop, _ = training_split(recipe, policy, data)
    Y = data.labels
    w = source_weights(data.source, np.array([s.weight for s in data.sources]))
    h = recipe.head
    learn_steps = h.step_targets and bool(data.step_columns)
    return MultiLabelHead(
        hidden=h.hidden, epochs=h.epochs, lr=h.lr, weight_decay=h.weight_decay,
        patience=h.patience, dropout=h.dropout, step_weight=h.step_weight, seed=recipe.seed,
    ).fit(
        X[tr], Y[tr], sample_weight=w[tr], at_least_one=data.at_least_one[tr],
        validation=(X[stop], Y[stop], data.at_least_one[stop]),
        steps=data.steps[tr] if learn_steps else None,
        step_sizes=[len(c.answers) for c in data.step_columns] if learn_steps else None,
    )  # fmt: skip


def fit_model(
    recipe: Recipe,
    policy: LoadedPolicy,
    data: TrainingData,
    X: np.ndarray,
    zero_shot: np.ndarray,
    encoder_name: str,
    encoder_dim: int,
    head: MultiLabelHead | None = None,
) -> ModelArtifact:
    """Head, calibration and thresholds from labelled rows, their embeddings and their zero-shot
    probabilities (`zero_shot_probs`); the artifact is not saved. A `head` already trained (with
    the encoder) is used as it is: then only the calibration rows of `X` and `zero_shot` are read."""
    tr, _, cal = training_split(recipe, policy, data)
    Y = data.labels
    learn_steps = recipe.head.step_targets and bool(data.step_columns) and head is None
    head = head or fit_head(recipe, policy, data, X)
    ids = policy.category_ids
    positives = np.nansum(Y[tr], axis=0)
    fallback = [c for c, n in zip(ids, positives, strict=True) if n < recipe.min_positives]
    blend = np.array([1.0 if c in fallback else recipe.zero_shot_weight for c in ids])
    raw_cal = blend_with_zero_shot(head.predict_proba(X[cal]), zero_shot[cal], blend)
    calibrator = CategoryCalibrator(recipe.calibration).fit(raw_cal, Y[cal])
    scores = calibrator.transform(raw_cal)
    thresholds, shifts = _choose_thresholds(recipe, policy, data, cal, calibrator, scores)
    manifest = Manifest(
        name=recipe.name,
        policy_id=policy.policy.id,
        policy_version=policy.version,
        encoder=encoder_name,
        encoder_dim=encoder_dim,
        categories=ids,
        hidden=head.hidden,
        calibration=calibration_params(calibrator),
        thresholds=thresholds,
        threshold_target=recipe.threshold,
        zero_shot_fallback=fallback,
        zero_shot_weight=recipe.zero_shot_weight,
        sources=data.sources,
        metrics={
            **_validation_metrics(Y[cal], data.binary()[cal], scores, ids, thresholds),
            **shifts,
            **(
                _step_metrics(head, X[cal], data.steps[cal], data.step_columns)
                if learn_steps
                else {}
            ),
        },
        recipe=recipe.model_dump(mode="json"),
    )
    return ModelArtifact(manifest, head, calibrator)


def _choose_thresholds(
    recipe: Recipe,
    policy: LoadedPolicy,
    data: TrainingData,
    cal: np.ndarray,
    calibrator: CategoryCalibrator,
    scores: np.ndarray,
) -> tuple[dict[str, float], dict[str, float]]:
    """Thresholds per category from the calibrated scores of the calibration rows, as the
    recipe's `threshold` says; and the logit shifts applied after the per-category choice."""
    ids = policy.category_ids
    Y = data.labels[cal]
    target = recipe.threshold
    pick = {
        "precision": threshold_for_precision,
        "fpr": threshold_for_fpr,
        "f1": threshold_for_f1,
    }[target.kind]
    chosen = [
        pick(Y[:, j], scores[:, j], target.value) if calibrator.fitted_[j] else None
        for j in range(len(ids))
    ]
    default = policy.policy.bands
    th = np.array(
        [
            c if c is not None else policy.policy.category(cid).threshold_or(default)
            for cid, c in zip(ids, chosen, strict=True)
        ],
        dtype=float,
    )
    shifts: dict[str, float] = {}
    if target.binary_beta is not None:
        # Only thresholds chosen on calibration move; the policy's defaults stay.
        tuned = np.array([c is not None for c in chosen])
        binary = data.binary()[cal]
        th, shifts["threshold_binary_shift"] = shift_for_binary_fbeta(
            scores, th, binary, target.binary_beta, adjustable=tuned
        )
    if target.max_safe_flagged is not None:
        binary = data.binary()[cal]
        groups = [
            np.flatnonzero(data.source[cal] == s)
            for s in np.unique(data.source[cal])
            if np.all(binary[data.source[cal] == s] == 0)
        ]
        th, shifts["threshold_logit_shift"] = raise_for_flag_rate(
            scores, th, groups, target.max_safe_flagged
        )
    return {c: float(t) for c, t in zip(ids, th, strict=True)}, shifts


def _validation_metrics(
    Y: np.ndarray,
    binary: np.ndarray,
    scores: np.ndarray,
    ids: list[str],
    thresholds: dict[str, float],
) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    m = binary_metrics(binary, any_category(scores), 0.5)
    out["val_binary_auprc"] = m.auprc
    out["val_rows"] = float(len(Y))
    for j, cid in enumerate(ids):
        if np.nansum(Y[:, j]) > 0:
            out[f"val_auprc/{cid}"] = binary_metrics(Y[:, j], scores[:, j], thresholds[cid]).auprc
    return out


def _step_metrics(
    head: MultiLabelHead, X: np.ndarray, steps: np.ndarray, columns: list[StepColumn]
) -> dict[str, float | None]:
    """How often the auxiliary outputs pick the recorded answer on held-out rows (the decision
    steps are not part of the saved model; this says whether they were learned at all)."""
    accuracy = answer_accuracy(head.predict_steps(X), steps)
    return {
        STEP_METRIC + c.name: a for c, a in zip(columns, accuracy, strict=True) if a is not None
    }


def _default_cache() -> Path:
    import os

    home = Path(os.environ.get("BASTION_HOME", "bastion-data"))
    return home / "cache" / "embeddings.sqlite"
