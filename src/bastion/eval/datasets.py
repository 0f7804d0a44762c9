"""Dataset adapters: load the shared public moderation sets, or a user's own file, as LabelledSets.

Each public set has an `Adapter` in `ADAPTERS` that says where the file lies (relative to the
datasets folder), its licence and whether it may train shipped artifacts (`use`), what kind of
text it holds, how its labels become the binary label (`description`) and how its native labels
map onto the built-in policy packs (`label_maps`). Nothing is downloaded: the folder is
`../shared/datasets` unless the caller or `BASTION_DATASETS` says otherwise.

Every loader fails with a `DatasetError` that names the file and the 1-based line or record of
the first row it cannot read. Rows with empty text are skipped and counted in the description.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bastion.errors import DatasetError
from bastion.eval import prompt_sets, social_sets, written_sets
from bastion.eval.labels import LabelledSet, LabelMap
from bastion.eval.readers import (
    NAN,
    Adapter,
    Loader,
    Rows,
    columns_error,
    csv_rows,
    csv_table,
    decode_text,
    field_at,
    json_document,
    json_lines,
    record_list,
    skipped_note,
    text_value,
)

DEFAULT_ROOT = Path("../shared/datasets")
ENV_VAR = "BASTION_DATASETS"

# --------------------------------------------------------------------------------------------
# Loaders for the shared sets.

_DAVIDSON = {"0": (1.0, "hate"), "1": (1.0, "offensive"), "2": (0.0, None)}


def _load_davidson(path: Path) -> LabelledSet:
    rows = Rows("davidson")
    for line, row in csv_rows(path, ["tweet", "class"]):
        cls = row["class"].strip()
        if cls not in _DAVIDSON:
            raise DatasetError(f"{path}, line {line}: class must be 0, 1 or 2, got {cls!r}")
        label, native = _DAVIDSON[cls]
        rows.add(row["tweet"], label, native, row.get("", "").strip() or str(line))
    return rows.build()


def _load_toxigen(folder: Path) -> LabelledSet:
    files = sorted(folder.glob("*.txt"))
    if not files:
        raise DatasetError(f"{folder}: no ToxiGen prompt files (*.txt) in this folder")
    rows = Rows("toxigen")
    seen: set[str] = set()
    duplicates = 0
    for file in files:
        cls, _, group = file.stem.removesuffix("_1k").partition("_")
        if cls not in ("hate", "neutral") or not group:
            raise DatasetError(
                f"{file}: ToxiGen file names start with 'hate_' or 'neutral_' and a group"
            )
        label, native = (1.0, "hate") if cls == "hate" else (0.0, None)
        for line, raw in enumerate(decode_text(file).splitlines(), 1):
            parts = raw.split("\\n")
            if parts and parts[-1].strip() in ("", "-"):
                parts = parts[:-1]  # every line ends with "\n-": the next statement's prefix
            for k, part in enumerate(parts, 1):
                statement = part.strip()
                if statement.startswith("-"):
                    statement = statement[1:].strip()
                if statement in seen:
                    duplicates += 1
                    continue
                if statement:
                    seen.add(statement)
                rows.add(statement, label, native, f"{cls}_{group}:{line}.{k}")
    return rows.build(f"{duplicates:,} repeated statements dropped (first occurrence kept).")


def _load_ailuminate(name: str) -> Loader:
    def load(path: Path) -> LabelledSet:
        rows = Rows(name)
        for line, row in csv_rows(path, ["prompt_text", "hazard"]):
            hazard = row["hazard"].strip()
            if not hazard:
                raise DatasetError(f"{path}, line {line}: empty hazard code")
            rows.add(row["prompt_text"], 1.0, hazard, row.get("release_prompt_id") or str(line))
        return rows.build()

    return load


def _load_harmbench(path: Path) -> LabelledSet:
    rows = Rows("harmbench")
    for line, row in csv_rows(path, ["Behavior", "SemanticCategory"]):
        text = row["Behavior"]
        context = row.get("ContextString", "").strip()
        if text.strip() and context:
            text = f"{text}\n\n{context}"
        category = row["SemanticCategory"].strip() or None
        rows.add(text, 1.0, category, row.get("BehaviorID") or str(line))
    return rows.build()


def _load_advbench(path: Path) -> LabelledSet:
    rows = Rows("advbench")
    for line, row in csv_rows(path, ["Behavior"]):
        rows.add(row["Behavior"], 1.0, None, row.get("BehaviorID") or str(line))
    return rows.build()


def _load_strongreject(path: Path) -> LabelledSet:
    rows = Rows("strongreject")
    for line, row in csv_rows(path, ["forbidden_prompt", "category"]):
        rows.add(row["forbidden_prompt"], 1.0, row["category"].strip() or None, str(line))
    return rows.build()


def _load_simple_safety_tests(path: Path) -> LabelledSet:
    rows = Rows("simple_safety_tests")
    for line, row in csv_rows(path, ["prompts_final", "harm_area"]):
        native = row["harm_area"].strip() or None
        rows.add(row["prompts_final"], 1.0, native, row.get("id") or str(line))
    return rows.build()


_DICES = {"Yes": 1.0, "No": 0.0}


def _load_dices(name: str) -> Loader:
    def load(path: Path) -> LabelledSet:
        rows = Rows(name)
        for n, rec in enumerate(record_list(path, json_document(path), "instances"), 1):
            where = f"record {n}"
            prompt = text_value(
                path, where, field_at(path, where, rec, "instance", "user_prompt"), ""
            )
            response = text_value(
                path, where, field_at(path, where, rec, "instance", "response"), ""
            )
            verdict = field_at(path, where, rec, "annotations", "safety").get("majority_human")
            # DICES' Q_overall / safety_gold: "Yes" = the response is unsafe.
            label = _DICES.get(verdict, NAN) if isinstance(verdict, str) else NAN
            text = "" if not response.strip() else f"{prompt}\nMODEL: {response}"
            rows.add(text.replace("\\n", "\n"), label, None, str(rec.get("id", n)))
        return rows.build()

    return load


_WILDGUARD = {"harmful": 1.0, "safe": 0.0}


def _load_wildguard(path: Path) -> LabelledSet:
    rows = Rows("wildguard")
    for n, rec in enumerate(record_list(path, json_document(path), None), 1):
        where = f"record {n}"
        text = text_value(path, where, field_at(path, where, rec, "text"), "text")
        label = field_at(path, where, rec, "label")
        if label not in _WILDGUARD:
            raise DatasetError(f"{path}, {where}: label must be 'harmful' or 'safe', got {label!r}")
        source = str(rec.get("source") or "").removeprefix("wildguardmix_")
        native = source if label == "harmful" and source and source != "benign" else None
        rows.add(text, _WILDGUARD[label], native, str(n))
    return rows.build()


_TOXICCHAT = {"1": 1.0, "0": 0.0}


def _load_toxicchat(path: Path) -> LabelledSet:
    rows = Rows("toxicchat")
    for n, rec in enumerate(record_list(path, json_document(path), "instances"), 1):
        where = f"record {n}"
        text = text_value(path, where, field_at(path, where, rec, "instance"), "instance")
        verdict = field_at(path, where, rec, "annotations", "toxicity", "majority_human")
        label = _TOXICCHAT.get(str(verdict))
        if label is None:
            raise DatasetError(f"{path}, {where}: toxicity must be '0' or '1', got {verdict!r}")
        rows.add(text, label, None, str(rec.get("id", n)))
    return rows.build()


# --------------------------------------------------------------------------------------------
# Label maps onto the built-in packs.

_HATE = {"openai": {"hate": ["hate"]}, "mlcommons": {"hate": ["s10"]}}

_AILUMINATE_MLC = {
    "vcr": ["s1"],
    "ncr": ["s2"],
    "src": ["s3"],
    "cse": ["s4"],
    "dfm": ["s5"],
    "spc_fin": ["s6"],
    "spc_hlt": ["s6"],
    "spc_lgl": ["s6"],
    "prv": ["s7"],
    "ipv": ["s8"],
    "iwp": ["s9"],
    "hte": ["s10"],
    "ssh": ["s11"],
    "sxc_prn": ["s12"],
    "spc_ele": ["s13"],
}
_AILUMINATE_OPENAI = {  # dfm, spc_*, prv and ipv have no OpenAI category
    "vcr": ["violence", "illicit/violent"],
    "ncr": ["illicit"],
    "src": ["sexual", "illicit"],
    "cse": ["sexual/minors"],
    "iwp": ["illicit/violent"],
    "hte": ["hate"],
    "ssh": ["self-harm"],
    "sxc_prn": ["sexual"],
}
_AILUMINATE_MAPS = {"openai": _AILUMINATE_OPENAI, "mlcommons": _AILUMINATE_MLC}

_HARMBENCH_MAPS = {
    "openai": {
        "chemical_biological": ["illicit/violent"],
        "illegal": ["illicit"],
        "harassment_bullying": ["harassment"],
        "cybercrime_intrusion": ["illicit"],
    },
    "mlcommons": {
        "chemical_biological": ["s9"],
        "illegal": ["s2"],
        "cybercrime_intrusion": ["s2"],
        "copyright": ["s8"],
    },
}

_STRONGREJECT_MAPS = {
    "openai": {
        "Violence": ["violence"],
        "Hate, harassment and discrimination": ["hate"],
        "Sexual content": ["sexual"],
        "Illegal goods and services": ["illicit"],
        "Non-violent crimes": ["illicit"],
    },
    "mlcommons": {
        "Violence": ["s1"],
        "Hate, harassment and discrimination": ["s10"],
        "Sexual content": ["s12"],
        "Illegal goods and services": ["s2"],
        "Non-violent crimes": ["s2"],
    },
}

_SST_MAPS = {
    "openai": {
        "Suicide, Self-Harm, and Eating Disorders": ["self-harm"],
        "Physical harm and Violence": ["violence"],
        "Illegal and Highly Regulated items": ["illicit"],
        "Scams and fraud": ["illicit"],
        "Child safety": ["sexual/minors"],
    },
    "mlcommons": {
        "Suicide, Self-Harm, and Eating Disorders": ["s11"],
        "Physical harm and Violence": ["s1"],
        "Illegal and Highly Regulated items": ["s2"],
        "Scams and fraud": ["s2"],
        "Child safety": ["s4"],
    },
}

_WILDGUARD_MAPS = {
    "openai": {
        "toxic_language_hate_speech": ["hate"],
        "violence_and_physical_harm": ["violence"],
        "fraud_assisting_illegal_activities": ["illicit"],
        "cyberattack": ["illicit"],
    },
    "mlcommons": {
        "toxic_language_hate_speech": ["s10"],
        "violence_and_physical_harm": ["s1"],
        "private_information_individual": ["s7"],
        "copyright_violations": ["s8"],
        "fraud_assisting_illegal_activities": ["s2"],
        "cyberattack": ["s2"],
    },
}

_DICES_DESCRIPTION = (
    "A conversation and a model's final response (text: the conversation, a newline, 'MODEL: ' "
    "and the response, which is what was judged); 1 when the majority human verdict is 'Yes' "
    "(DICES asks whether the response is unsafe), 0 when 'No', NaN for 'Unsure' or missing. "
    "No native labels."
)

ADAPTERS: dict[str, Adapter] = {
    a.name: a
    for a in [
        Adapter(
            "davidson",
            "davidson/labeled_data.csv",
            "MIT",
            "ship-ok",
            "posts",
            "Tweets; 1 for class 0 (native 'hate') or class 1 (native 'offensive', mostly "
            "profanity), 0 for class 2 (neither). Only 'hate' is mapped to categories, so "
            "offensive rows are unknown per category.",
            _load_davidson,
            _HATE,
            exclusive=True,
        ),
        Adapter(
            "toxigen",
            "toxigen/prompts",
            "MIT + CDLA-Permissive-2.0",
            "ship-ok",
            "posts",
            "Machine-written statements about 16 groups, from the prompt files; 1 for hate_* "
            "files (native 'hate'), 0 for neutral_* files. Ids are 'class_group:line.k'.",
            _load_toxigen,
            _HATE,
        ),
        Adapter(
            "ailuminate_en",
            "ailuminate/airr_official_1.0_demo_en_us_prompt_set_release.csv",
            "CC-BY-4.0",
            "ship-ok",
            "prompts",
            "English AILuminate demo prompts, all unsafe (1); native is the hazard code "
            "(vcr, ncr, src, cse, dfm, spc_*, prv, ipv, iwp, hte, ssh, sxc_prn).",
            _load_ailuminate("ailuminate_en"),
            _AILUMINATE_MAPS,
            exclusive=True,
        ),
        Adapter(
            "ailuminate_fr",
            "ailuminate/airr_official_1.0_demo_fr_fr_prompt_set_release.csv",
            "CC-BY-4.0",
            "ship-ok",
            "prompts",
            "French AILuminate demo prompts, all unsafe (1); native is the hazard code "
            "(vcr, ncr, src, cse, dfm, spc_*, prv, ipv, iwp, hte, ssh, sxc_prn).",
            _load_ailuminate("ailuminate_fr"),
            _AILUMINATE_MAPS,
            exclusive=True,
        ),
        Adapter(
            "harmbench",
            "harmbench/harmbench_behaviors_text_all.csv",
            "MIT",
            "ship-ok",
            "prompts",
            "HarmBench behaviours (with their context string after a blank line), all harmful "
            "(1); native is SemanticCategory. No negatives.",
            _load_harmbench,
            _HARMBENCH_MAPS,
        ),
        Adapter(
            "advbench",
            "harmbench/advbench_behaviors.csv",
            "MIT",
            "ship-ok",
            "prompts",
            "AdvBench harmful behaviours, all 1; no native labels. No negatives.",
            _load_advbench,
        ),
        Adapter(
            "strongreject",
            "harmbench/strongreject_dataset.csv",
            "MIT",
            "ship-ok",
            "prompts",
            "StrongREJECT forbidden prompts, all 1; native is the category (e.g. 'Violence', "
            "'Non-violent crimes'). No negatives.",
            _load_strongreject,
            _STRONGREJECT_MAPS,
        ),
        Adapter(
            "simple_safety_tests",
            "simple_safety_tests/test_cases.csv",
            "CC-BY-4.0",
            "ship-ok",
            "prompts",
            "SimpleSafetyTests prompts, all unsafe (1); native is harm_area (5 areas). "
            "No negatives.",
            _load_simple_safety_tests,
            _SST_MAPS,
        ),
        Adapter(
            "dices_350_expert",
            "dices/dices_350_expert.json",
            "CC-BY-4.0",
            "ship-ok",
            "conversations",
            "DICES-350 with the expert gold label. " + _DICES_DESCRIPTION,
            _load_dices("dices_350_expert"),
        ),
        Adapter(
            "dices_350_crowd",
            "dices/dices_350_crowdsourced.json",
            "CC-BY-4.0",
            "ship-ok",
            "conversations",
            "DICES-350 with the crowd majority. " + _DICES_DESCRIPTION,
            _load_dices("dices_350_crowd"),
        ),
        Adapter(
            "dices_990",
            "dices/dices_990.json",
            "CC-BY-4.0",
            "ship-ok",
            "conversations",
            "DICES-990 with the crowd majority. " + _DICES_DESCRIPTION,
            _load_dices("dices_990"),
        ),
        Adapter(
            "wildguard",
            "wildguard_mix_sample/wildguard_full_benchmark.json",
            "repack MIT; upstream ODC-By",
            "ship-ok",
            "prompts",
            "WildGuardMix prompts; 1 for label 'harmful', 0 for 'safe'; native is the harm "
            "subcategory (source without 'wildguardmix_'), None for benign rows.",
            _load_wildguard,
            _WILDGUARD_MAPS,
            exclusive=True,
        ),
        Adapter(
            "toxicchat",
            "toxicchat_train/toxic_chat_train.json",
            "CC-BY-NC-4.0",
            "dev-only",
            "prompts",
            "ToxicChat user prompts to a chatbot; 1 when the human toxicity majority is '1', "
            "0 when '0'; no native labels (the jailbreaking label is not used).",
            _load_toxicchat,
        ),
    ]
}


ADAPTERS.update(
    {a.name: a for a in (*social_sets.ADAPTERS, *prompt_sets.ADAPTERS, *written_sets.ADAPTERS)}
)


# --------------------------------------------------------------------------------------------
# Public API.


def data_root(root: str | Path | None) -> Path:
    """The shared datasets folder: `root`, else $BASTION_DATASETS, else ../shared/datasets."""
    if root is not None and str(root):
        path, how = Path(root), "given"
    elif os.environ.get(ENV_VAR):
        path, how = Path(os.environ[ENV_VAR]), f"from ${ENV_VAR}"
    else:
        path, how = DEFAULT_ROOT, "default"
    if not path.is_dir():
        raise DatasetError(
            f"datasets folder {path} ({how}, resolved to {path.resolve()}) does not exist; "
            f"pass the folder of the shared datasets or set ${ENV_VAR}"
        )
    return path


def _adapter(name: str) -> Adapter:
    try:
        return ADAPTERS[name]
    except KeyError:
        known = ", ".join(ADAPTERS)
        raise DatasetError(f"unknown dataset {name!r}; known datasets: {known}") from None


def load_dataset(
    name: str, root: str | Path | None = None, limit: int | None = None, seed: int = 0
) -> LabelledSet:
    """Load a shared dataset by name; `limit` takes a stratified sample of at most that many."""
    adapter = _adapter(name)
    # Sets shipped in the package (written for Bastion) have an absolute path: no folder needed.
    path = (
        Path(adapter.path) if Path(adapter.path).is_absolute() else data_root(root) / adapter.path
    )
    if not path.exists():
        raise DatasetError(f"dataset {name!r}: {path} does not exist")
    data = adapter.loader(path)
    data.name = adapter.name
    data.licence = adapter.licence
    data.use = adapter.use
    data.exclusive = adapter.exclusive
    data.description = " ".join(s for s in (adapter.description, data.description) if s)
    return data.sample(limit, seed)


def label_map_for(name: str, policy_id: str) -> LabelMap | None:
    """The built-in map from a dataset's native labels to a pack's categories, if there is one."""
    mapping = _adapter(name).label_maps.get(policy_id)
    return LabelMap({k: list(v) for k, v in mapping.items()}) if mapping else None


# --------------------------------------------------------------------------------------------
# A user's own file.

_POSITIVE = frozenset({"1", "1.0", "true", "yes", "y", "unsafe", "harmful", "flagged", "toxic"})
_NEGATIVE = frozenset(
    {"0", "0.0", "false", "no", "n", "safe", "not", "not flagged", "not_flagged", "unflagged"}
)


def _label(value: Any, path: Path, line: int, column: str) -> float:
    """1, 0 or NaN (blank / null) from a cell; anything else is an error naming the value."""
    if value is None or isinstance(value, bool):
        return NAN if value is None else float(value)
    if isinstance(value, int | float) and value in (0, 1):
        return float(value)
    if isinstance(value, str):
        token = value.strip().lower()
        if not token:
            return NAN
        if token in _POSITIVE:
            return 1.0
        if token in _NEGATIVE:
            return 0.0
    raise DatasetError(
        f"{path}, line {line}: column {column!r} has {value!r}; expected 0/1, true/false, "
        "yes/no, safe/unsafe, harmful/safe or flagged/not (blank for unknown)"
    )


def _jsonl_rows(path: Path) -> list[tuple[int, dict[str, Any]]]:
    hint = " (a .json file is read as JSON lines: one object per line)"
    return list(json_lines(path, hint if path.suffix.lower() == ".json" else ""))


def _user_rows(
    path: Path, required: Sequence[str]
) -> tuple[list[str], Iterator[tuple[int, Mapping[str, Any]]]]:
    """Columns and (line, row) pairs of a user's CSV or JSONL file."""
    suffix = path.suffix.lower()
    if suffix == ".csv":
        header, rows = csv_table(path)
        present = [c for c in required if c in header]
        return header, rows(present)
    if suffix in (".jsonl", ".json", ".ndjson"):
        records = _jsonl_rows(path)
        columns = list(dict.fromkeys(k for _, rec in records for k in rec))
        return columns, iter(records)
    raise DatasetError(f"{path}: unknown file type {suffix!r}; use .jsonl (JSON lines) or .csv")


class _TextRows:
    """(line, row, text) for each row of a user file with non-empty text; counts the others."""

    def __init__(
        self, path: Path, rows: Iterator[tuple[int, Mapping[str, Any]]], text_col: str
    ) -> None:
        self.path, self.rows, self.text_col, self.empty = path, rows, text_col, 0

    def __iter__(self) -> Iterator[tuple[int, Mapping[str, Any], str]]:
        for line, row in self.rows:
            if self.text_col not in row:
                raise DatasetError(f"{self.path}, line {line}: no {self.text_col!r} field")
            text = text_value(self.path, f"line {line}", row[self.text_col], self.text_col)
            if not text.strip():
                self.empty += 1
                continue
            yield line, row, text


def load_file(
    path: str | Path,
    text_col: str = "text",
    label_col: str | None = "label",
    category_cols: list[str] | None = None,
    name: str | None = None,
) -> tuple[LabelledSet, np.ndarray | None, list[str]]:
    """Read a user's JSONL or CSV file of texts with a binary label and/or per-category labels.

    Returns the set, the per-category label matrix (rows x `category_cols`, NaN where blank) or
    None, and the category column names. Without a binary label column the binary label is 1
    when any category is 1, 0 when all are 0, NaN otherwise. An `id` column, if any, gives ids.
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: no such file")
    cats = list(category_cols or [])
    columns, rows = _user_rows(path, [text_col])
    if text_col not in columns:
        raise DatasetError(columns_error(path, "text column", [text_col], columns))
    use_label = label_col is not None and (label_col in columns or not cats)
    if use_label and label_col not in columns:
        assert label_col is not None
        message = columns_error(path, "label column", [label_col], columns)
        raise DatasetError(f"{message} (give category columns instead, or no label column)")
    missing = [c for c in cats if c not in columns]
    if missing:
        raise DatasetError(columns_error(path, "category column(s)", missing, columns))
    texts: list[str] = []
    binary: list[float] = []
    matrix: list[list[float]] = []
    ids: list[str] = []
    kept = _TextRows(path, rows, text_col)
    for line, row, text in kept:
        cells = [_label(row.get(c), path, line, c) for c in cats]
        if use_label:
            assert label_col is not None
            label = _label(row.get(label_col), path, line, label_col)
            if label == 0 and any(c == 1 for c in cells):
                raise DatasetError(
                    f"{path}, line {line}: {label_col!r} says safe but a category column is 1"
                )
        elif any(c == 1 for c in cells):
            label = 1.0
        elif cells and all(c == 0 for c in cells):
            label = 0.0
        else:
            label = NAN
        texts.append(text)
        binary.append(label)
        matrix.append(cells)
        row_id = row.get("id")
        ids.append(str(row_id) if row_id not in (None, "") else f"line {line}")
    what = f"label column {label_col!r}" if use_label else "no binary label column"
    if cats:
        what += f", category columns {', '.join(cats)}"
    notes = [f"User file {path} ({what})."]
    if kept.empty:
        notes.append(skipped_note(kept.empty))
    data = LabelledSet(
        name or path.stem,
        texts,
        np.asarray(binary, dtype=np.float64),
        description=" ".join(notes),
        ids=ids,
        exclusive=False,
    )
    if not cats:
        return data, None, []
    labels = np.asarray(matrix, dtype=np.float64).reshape(len(texts), len(cats))
    return data, labels, cats


def file_columns(path: str | Path) -> list[str]:
    """The columns of a user's JSONL or CSV file (the CSV header, or every key any line has)."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: no such file")
    return _user_rows(path, [])[0]


def file_column(path: str | Path, column: str, text_col: str = "text") -> list[tuple[str, Any]]:
    """(where, raw value or None) of one column for each row `load_file` keeps, in its order:
    what `load_file` does not read, such as an annotation export's decision paths."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: no such file")
    _, rows = _user_rows(path, [text_col])
    return [
        (f"{path}, line {line}", row.get(column))
        for line, row, _ in _TextRows(path, rows, text_col)
    ]
