"""Training rows from a recipe's sources: assembled, de-duplicated, split and weighted."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from bastion.errors import BastionError
from bastion.eval.labels import LabelMap, binary_from_categories, category_labels
from bastion.models.artifact import (
    TrainingSource,
)
from bastion.models.steps import (
    UNKNOWN,
    DecisionPath,
    StepColumn,
    parse_path,
    step_columns,
    step_targets,
)
from bastion.policy import LoadedPolicy
from bastion.training.recipe import Recipe, SourceSpec

if TYPE_CHECKING:
    pass


_WORDS = re.compile(r"\w+")


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
