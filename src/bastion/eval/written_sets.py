"""Texts written for Bastion, for the categories the shared sets barely cover: an adapter per split.

Sexual content, self-harm, graphic violence, threats and insults have few rows in the public sets,
and almost no safe look-alikes. `src/bastion/data/written/` holds texts written for Bastion (see
its README for how): per area at least 380 violating texts and 380 safe look-alikes across
registers and lengths, each row marked `train` or `check`. `bastion_written` is the training
split; `bastion_written_check` is held out of every recipe, as a check set, and one more fold of
the leave-one-dataset-out bench. They ship inside the package, so they load with no datasets
folder.
"""

from __future__ import annotations

from pathlib import Path

from bastion.errors import DatasetError
from bastion.eval.labels import LabelledSet
from bastion.eval.readers import Adapter, Loader, Rows, json_lines

WRITTEN_DIR = Path(__file__).resolve().parent.parent / "data" / "written"
SPLITS = ("train", "check")

_OPENAI = {
    "sexual": ["sexual"],
    "sexual-harassment": ["sexual", "harassment"],
    "self-harm": ["self-harm"],
    "self-harm/intent": ["self-harm", "self-harm/intent"],
    "self-harm/instructions": ["self-harm", "self-harm/instructions"],
    "violence": ["violence"],
    "violence/graphic": ["violence", "violence/graphic"],
    "threat": ["harassment", "harassment/threatening", "violence"],
    "insult": ["harassment"],
    "harm-wish": ["harassment"],
}
# MLCommons has no harassment hazard, and a graphic depiction is not by itself a violent crime:
# those kinds stay unknown there.
_MLCOMMONS = {
    "sexual": ["s12"],
    "self-harm": ["s11"],
    "self-harm/intent": ["s11"],
    "self-harm/instructions": ["s11"],
    "violence": ["s1"],
    "threat": ["s1"],
}
KINDS = frozenset(_OPENAI)


def _load_written(split: str) -> Loader:
    def load(folder: Path) -> LabelledSet:
        files = sorted(folder.glob("*.jsonl"))
        if not files:
            raise DatasetError(f"{folder}: no written texts (*.jsonl) in this folder")
        rows = Rows(f"bastion_written{'' if split == 'train' else '_check'}")
        for file in files:
            for line, rec in json_lines(file):
                where = f"{file}, line {line}"
                label, kind, part = rec.get("label"), rec.get("kind"), rec.get("split")
                if (
                    label not in (0, 1)
                    or part not in SPLITS
                    or not isinstance(rec.get("text"), str)
                ):
                    raise DatasetError(
                        f"{where}: needs text (a string), label 0 or 1, split train or check"
                    )
                if label == 1 and kind not in KINDS:
                    raise DatasetError(
                        f"{where}: kind {kind!r} of a violating text is not one of "
                        f"{', '.join(sorted(KINDS))}"
                    )
                if part == split:
                    native = str(kind) if label == 1 else None
                    rows.add(rec["text"], float(label), native, f"{file.stem}:{line}")
        return rows.build()

    return load


_DESCRIPTION = (
    "Texts written for Bastion (src/bastion/data/written, see its README): violating texts (1) "
    "whose native label is their kind ({kinds}), and safe look-alikes (0: safe for every "
    "category) on the same topics, across registers and lengths."
)

ADAPTERS: list[Adapter] = [
    Adapter(
        "bastion_written" if split == "train" else "bastion_written_check",
        str(WRITTEN_DIR),
        "written for Bastion",
        "ship-ok",
        "posts",
        _DESCRIPTION.format(kinds=", ".join(sorted(KINDS)))
        + (
            " The training split."
            if split == "train"
            else " The held-out check split: never trained on."
        ),
        _load_written(split),
        {"openai": _OPENAI, "mlcommons": _MLCOMMONS},
    )
    for split in SPLITS
]
