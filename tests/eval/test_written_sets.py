"""Texts written for Bastion: the shipped files, their splits and label maps, and bad lines."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from bastion.errors import DatasetError
from bastion.eval.datasets import label_map_for, load_dataset
from bastion.eval.labels import category_labels
from bastion.eval.written_sets import KINDS, WRITTEN_DIR, _load_written
from bastion.policy import load_policy


def _words(text: str) -> str:
    return " ".join(re.findall(r"\w+", text.lower()))


def test_train_and_check_splits_are_disjoint_and_large_enough() -> None:
    train = load_dataset("bastion_written", root="/nonexistent")  # shipped: no folder needed
    check = load_dataset("bastion_written_check")
    assert not {_words(t) for t in train.texts} & {_words(t) for t in check.texts}
    for data, least in ((train, 300), (check, 60)):
        kinds = Counter(k for k, y in zip(data.native, data.binary, strict=True) if y == 1)
        areas = {
            "sexual": kinds["sexual"] + kinds["sexual-harassment"],
            "self-harm": sum(v for k, v in kinds.items() if k and k.startswith("self-harm")),
            "violence": kinds["violence"] + kinds["violence/graphic"],
            "threat": kinds["threat"],
            "harassment": kinds["insult"] + kinds["harm-wish"],
        }
        assert min(areas.values()) >= least, areas
    # a fifth or so of each file is held out
    share = len(check) / (len(train) + len(check))
    assert 0.17 < share < 0.23


def test_every_file_has_safe_look_alikes_as_many_as_violations() -> None:
    for file in sorted(WRITTEN_DIR.glob("*.jsonl")):
        if file.name == "plain.jsonl":  # a short supplement of plain, short texts
            continue
        rows = [json.loads(line) for line in file.read_text("utf-8").splitlines() if line]
        labels = Counter(r["label"] for r in rows)
        assert labels[0] >= 380 and labels[1] >= 380, (file.name, labels)
        assert all(r["kind"].startswith("safe:") for r in rows if r["label"] == 0)
        assert len({_words(r["text"]) for r in rows}) == len(rows), file.name


@pytest.mark.parametrize("pack", ["openai", "mlcommons"])
def test_label_maps_fit_the_packs_and_mask_what_a_kind_does_not_say(pack: str) -> None:
    policy = load_policy(pack)
    data = load_dataset("bastion_written")
    lmap = label_map_for("bastion_written", pack)
    assert lmap is not None
    lmap.check(policy)
    y = category_labels(data, policy, lmap)
    safe = data.binary == 0
    assert (y[safe] == 0).all()  # a look-alike is safe for every category
    ids = policy.category_ids
    threat = np.array([n == "threat" for n in data.native])
    if pack == "openai":
        assert set(lmap.mapping) == KINDS
        assert (y[threat, ids.index("harassment/threatening")] == 1).all()
        assert np.isnan(y[threat, ids.index("sexual")]).all()  # not said: masked
    else:
        insult = np.array([n == "insult" for n in data.native])
        assert np.isnan(y[insult]).all()  # MLCommons has no harassment hazard


def _write(folder: Path, *lines: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "area.jsonl").write_text("\n".join(lines) + "\n", "utf-8")
    return folder


def test_loader_reads_its_split_only(tmp_path: Path) -> None:
    folder = _write(
        tmp_path / "w",
        json.dumps({"text": "a made-up threat", "label": 1, "kind": "threat", "split": "train"}),
        json.dumps({"text": "a made-up idiom", "label": 0, "kind": "safe:idiom", "split": "check"}),
        "",
    )
    train, check = _load_written("train")(folder), _load_written("check")(folder)
    assert train.texts == ["a made-up threat"] and train.native == ["threat"]
    assert check.texts == ["a made-up idiom"] and check.native == [None]
    assert check.binary.tolist() == [0.0]


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ("{not json", "not valid JSON"),
        (json.dumps({"text": "x", "label": 2, "kind": "threat", "split": "train"}), "label 0 or 1"),
        (json.dumps({"text": "x", "label": 1, "kind": "threat", "split": "dev"}), "split train"),
        (json.dumps({"text": "x", "label": 1, "kind": "gore", "split": "train"}), "kind 'gore'"),
    ],
)
def test_a_bad_line_is_named_with_its_file_and_line(
    tmp_path: Path, line: str, problem: str
) -> None:
    ok = json.dumps({"text": "fine", "label": 0, "kind": "safe:x", "split": "train"})
    folder = _write(tmp_path / "w", ok, line)
    with pytest.raises(DatasetError, match=rf"area\.jsonl, line 2: .*{re.escape(problem)}"):
        _load_written("train")(folder)
