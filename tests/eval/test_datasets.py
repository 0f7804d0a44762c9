"""Dataset adapters: small fixture files in every format, then (slow) the real shared data."""

from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bastion.errors import DatasetError
from bastion.eval import datasets as ds
from bastion.eval import prompt_sets, social_sets, written_sets
from bastion.eval.datasets import (
    ADAPTERS,
    data_root,
    file_column,
    file_columns,
    label_map_for,
    load_dataset,
    load_file,
)
from bastion.eval.labels import LabelMap, category_labels

REAL_ROOT = (Path(__file__).parents[2] / ".." / "shared" / "datasets").resolve()
PACK_DIR = Path(ds.__file__).parents[1] / "policy" / "packs"


# ---------------------------------------------------------------------------------------------
# A fake datasets folder with the same names as the shared one and a handful of rows each.


def _csv(path: Path, header: list[str], rows: list[list[Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)


def _json(path: Path, doc: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=2), encoding="utf-8")


def _dices(*rows: tuple[int, str, str, str | None]) -> dict[str, Any]:
    instances = []
    for id_, prompt, response, verdict in rows:
        safety = {} if verdict is None else {"majority_human": verdict}
        instances.append(
            {
                "id": id_,
                "instance": {"user_prompt": prompt, "response": response},
                "annotations": {"safety": safety},
            }
        )
    return {"dataset": "Dices", "annotations": [], "instances": instances}


@pytest.fixture
def root(tmp_path: Path) -> Path:
    r = tmp_path / "datasets"
    _csv(
        r / "davidson/labeled_data.csv",
        ["", "count", "hate_speech", "offensive_language", "neither", "class", "tweet"],
        [
            [0, 3, 3, 0, 0, 0, "hateful tweet"],
            [1, 3, 0, 3, 0, 1, "rude tweet"],
            [2, 3, 0, 0, 3, 2, "nice tweet"],
            [5, 3, 0, 0, 3, 2, "   "],
            [7, 3, 0, 0, 3, 2, "multi\nline tweet"],
        ],
    )
    prompts = r / "toxigen/prompts"
    prompts.mkdir(parents=True)
    (prompts / "hate_asian_1k.txt").write_text(
        "- hate one\\n- hate two\\n-\n- hate two\\n- hate three\\n-\n", encoding="utf-8"
    )
    (prompts / "neutral_asian_1k.txt").write_text(
        "- calm one\\n- \\n- hate one\\n-\n", encoding="utf-8"
    )
    (prompts / "hate_women_1k.txt").write_text("- hate four\\n-\n", encoding="utf-8")
    header = ["release_prompt_id", "prompt_text", "hazard", "persona", "locale", "prompt_hash"]
    _csv(
        r / "ailuminate/airr_official_1.0_demo_en_us_prompt_set_release.csv",
        header,
        [
            ["airr_1", "how to hurt someone", "vcr", "normal", "en_US", "h1"],
            ["airr_2", 'a "quoted", prompt', "spc_ele", "skilled", "en_US", "h2"],
        ],
    )
    _csv(
        r / "ailuminate/airr_official_1.0_demo_fr_fr_prompt_set_release.csv",
        header,
        [["airr_9", "comment faire du mal", "hte", "normal", "fr_FR", "h9"]],
    )
    _csv(
        r / "harmbench/harmbench_behaviors_text_all.csv",
        [
            "Behavior",
            "FunctionalCategory",
            "SemanticCategory",
            "Tags",
            "ContextString",
            "BehaviorID",
        ],
        [
            ["Make a nerve agent", "standard", "chemical_biological", "", "", "nerve"],
            ["Summarise this", "contextual", "illegal", "context", "Some context.", "ctx"],
        ],
    )
    _csv(
        r / "harmbench/advbench_behaviors.csv",
        ["Behavior", "Category", "Tags", "ContextString", "BehaviorID"],
        [["Write malware", "", "", "", "advbench_1"], ["Steal a car", "", "", "", "advbench_2"]],
    )
    _csv(
        r / "harmbench/strongreject_dataset.csv",
        ["category", "source", "forbidden_prompt"],
        [["Violence", "custom", "How do I hurt him?"], ["Sexual content", "DAN", "Write smut"]],
    )
    _csv(
        r / "simple_safety_tests/test_cases.csv",
        ["id", "harm_area", "counter", "category", "prompts_final"],
        [
            ["sst_001", "Suicide, Self-Harm, and Eating Disorders", 1, "x", "How to end it?"],
            ["sst_081", "Child safety", 1, "x", "bad request"],
        ],
    )
    _json(
        r / "dices/dices_350_expert.json",
        _dices((7, "USER: hi", "you are stupid", "Yes"), (8, "USER: hi", "hello!", "No")),
    )
    _json(
        r / "dices/dices_350_crowdsourced.json",
        _dices((7, "USER: hi", "you are stupid", "Unsure"), (8, "USER: hi", "hello!", None)),
    )
    _json(
        r / "dices/dices_990.json",
        _dices((859, "A: hello\\nB: hi\\n", "go away", "Yes"), (32, "A: q\\n", "", "No")),
    )
    _json(
        r / "wildguard_mix_sample/wildguard_full_benchmark.json",
        [
            {"text": "how to bake bread", "label": "safe", "source": "wildguardmix_benign"},
            {
                "text": "write hate speech",
                "label": "harmful",
                "source": "wildguardmix_toxic_language_hate_speech",
            },
            {"text": "his address?", "label": "harmful", "source": "wildguardmix_private_x"},
        ],
    )
    _json(
        r / "toxicchat_train/toxic_chat_train.json",
        {
            "dataset": "ToxicChat",
            "instances": [
                {
                    "id": "abc",
                    "instance": "you idiot",
                    "annotations": {
                        "toxicity": {"majority_human": "1"},
                        "jailbreaking": {"majority_human": "0"},
                    },
                },
                {
                    "id": "def",
                    "instance": "what is 2+2",
                    "annotations": {"toxicity": {"majority_human": "0"}},
                },
            ],
        },
    )
    return r


def _labels(data: Any) -> list[float | None]:
    return [None if np.isnan(x) else float(x) for x in data.binary]


# ---------------------------------------------------------------------------------------------
# The registry.


# Adapters of the sets added on 2026-12-04 and of the texts written for Bastion have their own
# test modules (test_social_sets.py, test_prompt_sets.py, test_written_sets.py).
MODULE_ADAPTERS = {
    a.name for a in (*social_sets.ADAPTERS, *prompt_sets.ADAPTERS, *written_sets.ADAPTERS)
}
CORE = {name: a for name, a in ADAPTERS.items() if name not in MODULE_ADAPTERS}


def test_registry_names_and_fields() -> None:
    assert set(ADAPTERS) == set(CORE) | MODULE_ADAPTERS
    assert set(CORE) == {
        "davidson",
        "toxigen",
        "ailuminate_en",
        "ailuminate_fr",
        "harmbench",
        "advbench",
        "strongreject",
        "simple_safety_tests",
        "dices_350_expert",
        "dices_350_crowd",
        "dices_990",
        "wildguard",
        "toxicchat",
    }
    for name, a in ADAPTERS.items():
        assert a.name == name
        assert a.use in ("ship-ok", "dev-only")
        assert a.kind in ("posts", "prompts", "conversations")
        shipped = name in {a.name for a in written_sets.ADAPTERS}
        assert a.licence and a.description and Path(a.path).is_absolute() == shipped
        assert set(a.label_maps) <= {"openai", "mlcommons"}
    assert ADAPTERS["toxicchat"].use == "dev-only"  # CC-BY-NC-4.0
    assert all(a.use == "ship-ok" for n, a in ADAPTERS.items() if n != "toxicchat")


@pytest.mark.parametrize("pack", ["openai", "mlcommons"])
def test_label_maps_name_only_categories_of_the_packs(pack: str) -> None:
    if not (PACK_DIR / f"{pack}.yaml").is_file():
        pytest.skip(f"built-in pack {PACK_DIR / f'{pack}.yaml'} not written yet")
    from bastion.policy import load_policy

    policy = load_policy(pack)
    checked = 0
    for name, adapter in ADAPTERS.items():
        mapping = adapter.label_maps.get(pack)
        if mapping:
            LabelMap(mapping).check(policy, source=f"{name} -> {pack}")
            checked += 1
    assert checked >= 5


def test_label_map_for() -> None:
    lm = label_map_for("davidson", "openai")
    assert lm is not None and dict(lm.mapping) == {"hate": ["hate"]}
    assert label_map_for("davidson", "mlcommons") is not None
    assert label_map_for("advbench", "openai") is None
    assert label_map_for("davidson", "my-own-policy") is None
    mlc = label_map_for("ailuminate_en", "mlcommons")
    assert mlc is not None and mlc.mapping["spc_fin"] == ["s6"] and mlc.mapping["ssh"] == ["s11"]
    oai = label_map_for("ailuminate_en", "openai")
    assert oai is not None and "dfm" not in oai.mapping and oai.mapping["cse"] == ["sexual/minors"]
    with pytest.raises(DatasetError, match="unknown dataset"):
        label_map_for("nope", "openai")


# ---------------------------------------------------------------------------------------------
# Root, names and paths.


def test_data_root_argument_env_and_default(
    root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("BASTION_DATASETS", raising=False)
    assert data_root(root) == root
    assert data_root(str(root)) == root
    monkeypatch.setenv("BASTION_DATASETS", str(root))
    assert data_root(None) == root
    monkeypatch.delenv("BASTION_DATASETS")
    work = tmp_path / "project"
    work.mkdir()
    (tmp_path / "shared" / "datasets").mkdir(parents=True)
    monkeypatch.chdir(work)
    assert data_root(None) == ds.DEFAULT_ROOT == Path("../shared/datasets")


def test_missing_root_names_the_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    missing = tmp_path / "no-such-folder"
    with pytest.raises(DatasetError, match="no-such-folder"):
        data_root(missing)
    monkeypatch.setenv("BASTION_DATASETS", str(missing))
    with pytest.raises(DatasetError, match=r"no-such-folder.*BASTION_DATASETS"):
        load_dataset("davidson")


def test_unknown_dataset_lists_known_names(root: Path) -> None:
    with pytest.raises(DatasetError, match=r"unknown dataset 'nope'.*davidson.*toxicchat"):
        load_dataset("nope", root=root)


def test_missing_file_names_the_path(root: Path) -> None:
    (root / "davidson/labeled_data.csv").unlink()
    with pytest.raises(DatasetError, match=r"davidson/labeled_data\.csv does not exist"):
        load_dataset("davidson", root=root)


# ---------------------------------------------------------------------------------------------
# Each adapter on fixture files.


def test_davidson(root: Path) -> None:
    d = load_dataset("davidson", root=root)
    assert d.texts == ["hateful tweet", "rude tweet", "nice tweet", "multi\nline tweet"]
    assert _labels(d) == [1.0, 1.0, 0.0, 0.0]
    assert d.native == ["hate", "offensive", None, None]
    assert d.ids == ["0", "1", "2", "7"]
    assert d.exclusive and d.use == "ship-ok" and d.licence == "MIT"
    assert "skipped 1 empty rows" in d.description
    assert "class 2" in d.description  # the description documents the mapping


def test_davidson_offensive_is_unknown_per_category(root: Path) -> None:
    if not (PACK_DIR / "openai.yaml").is_file():
        pytest.skip("built-in openai pack not written yet")
    from bastion.policy import load_policy

    policy = load_policy("openai")
    d = load_dataset("davidson", root=root)
    y = category_labels(d, policy, label_map_for("davidson", "openai"))
    hate = policy.category_ids.index("hate")
    assert y[0, hate] == 1 and np.nansum(y[0]) == 1  # exclusive: negative elsewhere
    assert np.isnan(y[1]).all()  # offensive: unmapped, so unknown
    assert (y[2] == 0).all()  # neither: safe everywhere


def test_davidson_bad_class_names_file_and_line(root: Path) -> None:
    path = root / "davidson/labeled_data.csv"
    path.write_text(
        ",count,hate_speech,offensive_language,neither,class,tweet\n"
        '0,3,3,0,0,0,ok\n1,3,0,0,0,7,"a\nb"\n',
        encoding="utf-8",
    )
    with pytest.raises(DatasetError, match=r"labeled_data\.csv, line 3: class .* '7'"):
        load_dataset("davidson", root=root)


def test_missing_text_column_names_column_and_columns(root: Path) -> None:
    _csv(root / "harmbench/advbench_behaviors.csv", ["Prompt", "BehaviorID"], [["x", "1"]])
    with pytest.raises(DatasetError, match=r"advbench_behaviors\.csv: .*'Behavior'.*'Prompt'"):
        load_dataset("advbench", root=root)


def test_short_csv_row_names_line(root: Path) -> None:
    (root / "harmbench/strongreject_dataset.csv").write_text(
        "category,source,forbidden_prompt\nViolence,custom,fine\nViolence\n", encoding="utf-8"
    )
    with pytest.raises(DatasetError, match=r"strongreject_dataset\.csv, line 3: .*forbidden"):
        load_dataset("strongreject", root=root)


def test_invalid_utf8_names_file_and_line(root: Path) -> None:
    path = root / "simple_safety_tests/test_cases.csv"
    path.write_bytes(
        b"id,harm_area,counter,category,prompts_final\nsst_1,a,1,b,ok\nsst_2,a,1,b,\xff\n"
    )
    with pytest.raises(DatasetError, match=r"test_cases\.csv, line 3: not valid UTF-8"):
        load_dataset("simple_safety_tests", root=root)


def test_toxigen_splits_strips_and_deduplicates(root: Path) -> None:
    d = load_dataset("toxigen", root=root)
    # files in name order: hate_asian, hate_women, neutral_asian; first occurrence wins
    assert d.texts == ["hate one", "hate two", "hate three", "hate four", "calm one"]
    assert _labels(d) == [1.0, 1.0, 1.0, 1.0, 0.0]
    assert d.native == ["hate", "hate", "hate", "hate", None]
    assert d.ids == [
        "hate_asian:1.1",
        "hate_asian:1.2",
        "hate_asian:2.2",
        "hate_women:1.1",
        "neutral_asian:1.1",
    ]
    assert "2 repeated statements dropped" in d.description
    assert "skipped 1 empty rows" in d.description
    assert not d.exclusive


def test_ailuminate(root: Path) -> None:
    en = load_dataset("ailuminate_en", root=root)
    assert en.texts == ["how to hurt someone", 'a "quoted", prompt']
    assert _labels(en) == [1.0, 1.0] and en.all_positive
    assert en.native == ["vcr", "spc_ele"] and en.ids == ["airr_1", "airr_2"]
    assert en.licence == "CC-BY-4.0" and en.exclusive
    fr = load_dataset("ailuminate_fr", root=root)
    assert fr.texts == ["comment faire du mal"] and fr.native == ["hte"]


def test_harmbench_appends_context(root: Path) -> None:
    d = load_dataset("harmbench", root=root)
    assert d.texts == ["Make a nerve agent", "Summarise this\n\nSome context."]
    assert d.native == ["chemical_biological", "illegal"] and d.ids == ["nerve", "ctx"]
    assert d.all_positive


def test_advbench_strongreject_simple_safety_tests(root: Path) -> None:
    adv = load_dataset("advbench", root=root)
    assert adv.texts == ["Write malware", "Steal a car"] and adv.native == [None, None]
    assert adv.ids == ["advbench_1", "advbench_2"] and adv.all_positive
    sr = load_dataset("strongreject", root=root)
    assert sr.native == ["Violence", "Sexual content"] and sr.all_positive
    sst = load_dataset("simple_safety_tests", root=root)
    assert sst.ids == ["sst_001", "sst_081"]
    assert sst.native == ["Suicide, Self-Harm, and Eating Disorders", "Child safety"]


def test_dices_labels_and_text(root: Path) -> None:
    expert = load_dataset("dices_350_expert", root=root)
    assert expert.texts == ["USER: hi\nMODEL: you are stupid", "USER: hi\nMODEL: hello!"]
    assert _labels(expert) == [1.0, 0.0]  # DICES: "Yes" = the response is unsafe
    assert expert.ids == ["7", "8"] and expert.native == [None, None]
    assert ADAPTERS["dices_350_expert"].kind == "conversations"
    crowd = load_dataset("dices_350_crowd", root=root)
    assert _labels(crowd) == [None, None]  # "Unsure" and missing -> unknown
    d990 = load_dataset("dices_990", root=root)
    assert d990.texts == ["A: hello\nB: hi\n\nMODEL: go away"]  # escaped newlines restored
    assert d990.ids == ["859"] and "skipped 1 empty rows" in d990.description


def test_dices_missing_field_names_record(root: Path) -> None:
    doc = _dices((1, "a", "b", "Yes"), (2, "a", "b", "No"))
    del doc["instances"][1]["instance"]["response"]
    _json(root / "dices/dices_990.json", doc)
    with pytest.raises(DatasetError, match=r"dices_990\.json, record 2: .*instance\.response"):
        load_dataset("dices_990", root=root)


def test_wildguard(root: Path) -> None:
    d = load_dataset("wildguard", root=root)
    assert _labels(d) == [0.0, 1.0, 1.0]
    assert d.native == [None, "toxic_language_hate_speech", "private_x"]
    assert d.exclusive and d.ids == ["1", "2", "3"]


def test_wildguard_bad_label_names_record(root: Path) -> None:
    _json(
        root / "wildguard_mix_sample/wildguard_full_benchmark.json",
        [{"text": "a", "label": "safe"}, {"text": "b", "label": "maybe"}],
    )
    with pytest.raises(DatasetError, match=r"wildguard_full_benchmark\.json, record 2: .*'maybe'"):
        load_dataset("wildguard", root=root)


def test_malformed_json_names_file_and_line(root: Path) -> None:
    (root / "wildguard_mix_sample/wildguard_full_benchmark.json").write_text(
        '[\n  {"text": "a", "label": "safe"},\n  {"text": "b" "label": "safe"}\n]\n',
        encoding="utf-8",
    )
    with pytest.raises(DatasetError, match=r"wildguard_full_benchmark\.json, line 3: not valid"):
        load_dataset("wildguard", root=root)


def test_toxicchat(root: Path) -> None:
    d = load_dataset("toxicchat", root=root)
    assert d.texts == ["you idiot", "what is 2+2"] and _labels(d) == [1.0, 0.0]
    assert d.ids == ["abc", "def"]
    assert d.use == "dev-only" and d.licence == "CC-BY-NC-4.0"


def test_every_adapter_loads_from_the_fixture_root(root: Path) -> None:
    for name in CORE:
        d = load_dataset(name, root=root)
        assert (
            d.name == name and len(d) > 0 and d.description.startswith(ADAPTERS[name].description)
        )
        assert len(set(d.ids)) == len(d.ids), name


def test_limit_samples(root: Path) -> None:
    d = load_dataset("davidson", root=root, limit=2, seed=1)
    assert len(d) == 2 and d.name == "davidson" and d.licence == "MIT"
    assert load_dataset("davidson", root=root, limit=2, seed=1).ids == d.ids


# ---------------------------------------------------------------------------------------------
# A user's own file.


def test_load_file_csv_binary_labels(tmp_path: Path) -> None:
    path = tmp_path / "mine.csv"
    _csv(
        path,
        ["id", "body", "is_bad"],
        [
            ["a", "one", "1"],
            ["b", "two", "0"],
            ["c", "three", "TRUE"],
            ["d", "four", "no"],
            ["e", "five", "Unsafe"],
            ["f", "six", "safe"],
            ["g", "seven", "harmful"],
            ["h", "eight", "Flagged"],
            ["i", "nine", "not"],
            ["j", "ten", ""],
            ["k", "", "1"],
        ],
    )
    data, matrix, names = load_file(path, text_col="body", label_col="is_bad")
    assert matrix is None and names == []
    assert data.name == "mine" and len(data) == 10
    assert _labels(data) == [1.0, 0.0, 1.0, 0.0, 1.0, 0.0, 1.0, 1.0, 0.0, None]
    assert data.ids[:2] == ["a", "b"]
    assert "skipped 1 empty rows" in data.description


def test_load_file_jsonl_and_json_lines(tmp_path: Path) -> None:
    lines = [
        {"text": "hi", "label": True},
        {"text": "bad", "label": 1},
        {"text": "meh", "label": "safe", "id": 42},
    ]
    for suffix in (".jsonl", ".json"):
        path = tmp_path / f"mine{suffix}"
        path.write_text("\n".join(json.dumps(x) for x in lines) + "\n\n", encoding="utf-8")
        data, matrix, _ = load_file(path, name="custom")
        assert data.name == "custom" and matrix is None
        assert data.texts == ["hi", "bad", "meh"] and _labels(data) == [1.0, 1.0, 0.0]
        assert data.ids == ["line 1", "line 2", "42"]


def test_load_file_category_columns(tmp_path: Path) -> None:
    path = tmp_path / "cats.csv"
    _csv(
        path,
        ["text", "hate", "spam"],
        [["a", "1", "0"], ["b", "0", "0"], ["c", "", ""], ["d", "0", ""], ["e", "", "1"]],
    )
    data, matrix, names = load_file(path, label_col=None, category_cols=["hate", "spam"])
    assert names == ["hate", "spam"]
    assert matrix is not None and matrix.shape == (5, 2)
    np.testing.assert_array_equal(
        matrix, [[1, 0], [0, 0], [np.nan, np.nan], [0, np.nan], [np.nan, 1]]
    )
    assert _labels(data) == [1.0, 0.0, None, None, 1.0]
    # the default label column "label" is absent: categories give the binary label
    again, _, _ = load_file(path, category_cols=["hate", "spam"])
    assert _labels(again) == _labels(data)


def test_load_file_label_and_category_columns_must_agree(tmp_path: Path) -> None:
    path = tmp_path / "both.jsonl"
    path.write_text(
        '{"text": "a", "label": 1, "hate": 1}\n{"text": "b", "label": 0, "hate": 1}\n',
        encoding="utf-8",
    )
    with pytest.raises(DatasetError, match=r"both\.jsonl, line 2: 'label' says safe"):
        load_file(path, category_cols=["hate"])


def test_load_file_bad_label_names_file_line_and_value(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    _csv(path, ["text", "label"], [["a", "1"], ["b", "maybe"]])
    with pytest.raises(DatasetError, match=r"bad\.csv, line 3: column 'label' has 'maybe'"):
        load_file(path)
    jpath = tmp_path / "bad.jsonl"
    jpath.write_text('{"text": "a", "label": 1}\n{"text": "b", "label": 2}\n', encoding="utf-8")
    with pytest.raises(DatasetError, match=r"bad\.jsonl, line 2: column 'label' has 2"):
        load_file(jpath)
    cpath = tmp_path / "badcat.csv"
    _csv(cpath, ["text", "hate"], [["a", "x"]])
    with pytest.raises(DatasetError, match=r"badcat\.csv, line 2: column 'hate' has 'x'"):
        load_file(cpath, category_cols=["hate"])


def test_load_file_missing_columns(tmp_path: Path) -> None:
    path = tmp_path / "cols.csv"
    _csv(path, ["body", "label"], [["a", "1"]])
    with pytest.raises(DatasetError, match=r"cols\.csv: no text column 'text'.*'body', 'label'"):
        load_file(path)
    with pytest.raises(DatasetError, match=r"no label column 'is_bad'"):
        load_file(path, text_col="body", label_col="is_bad")
    with pytest.raises(DatasetError, match=r"no category column\(s\) 'spam'"):
        load_file(path, text_col="body", category_cols=["spam"])
    jpath = tmp_path / "cols.jsonl"
    jpath.write_text('{"text": "a", "label": 1}\n{"body": "b", "label": 1}\n', encoding="utf-8")
    with pytest.raises(DatasetError, match=r"cols\.jsonl, line 2: no 'text' field"):
        load_file(jpath)


def test_load_file_without_labels(tmp_path: Path) -> None:
    path = tmp_path / "plain.jsonl"
    path.write_text('{"text": "a"}\n', encoding="utf-8")
    data, matrix, names = load_file(path, label_col=None)
    assert _labels(data) == [None] and matrix is None and names == []


def test_load_file_invalid_utf8_and_malformed_json(tmp_path: Path) -> None:
    path = tmp_path / "enc.jsonl"
    path.write_bytes(b'{"text": "a", "label": 1}\n{"text": "caf\xe9", "label": 0}\n')
    with pytest.raises(DatasetError, match=r"enc\.jsonl, line 2: not valid UTF-8"):
        load_file(path)
    cpath = tmp_path / "enc.csv"
    cpath.write_bytes(b"text,label\na,1\nb,0\n\xc3(,1\n")
    with pytest.raises(DatasetError, match=r"enc\.csv, line 4: not valid UTF-8"):
        load_file(cpath)
    jpath = tmp_path / "broken.jsonl"
    jpath.write_text('{"text": "a", "label": 1}\n\n{"text": "b", label: 0}\n', encoding="utf-8")
    with pytest.raises(DatasetError, match=r"broken\.jsonl, line 3: not valid JSON"):
        load_file(jpath)
    array = tmp_path / "array.json"
    array.write_text('[\n{"text": "a", "label": 1}\n]\n', encoding="utf-8")
    with pytest.raises(DatasetError, match=r"array\.json, line 1: .*JSON lines"):
        load_file(array)


def test_load_file_other_errors(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="no such file"):
        load_file(tmp_path / "absent.csv")
    txt = tmp_path / "notes.txt"
    txt.write_text("hello\n", encoding="utf-8")
    with pytest.raises(DatasetError, match=r"notes\.txt: unknown file type '\.txt'"):
        load_file(txt)
    empty = tmp_path / "empty.csv"
    empty.write_text("", encoding="utf-8")
    with pytest.raises(DatasetError, match=r"empty\.csv: empty file"):
        load_file(empty)
    wrong = tmp_path / "wrong.jsonl"
    wrong.write_text('{"text": 5, "label": 1}\n', encoding="utf-8")
    with pytest.raises(DatasetError, match=r"wrong\.jsonl, line 1: 'text' must be a string"):
        load_file(wrong)


# ---------------------------------------------------------------------------------------------
# The real shared data (slow; skipped when the folder is absent).

# name: (rows, positives, negatives, unknown)
REAL_COUNTS = {
    "davidson": (24_783, 1_430 + 19_190, 4_163, 0),
    "toxigen": (668, 371, 297, 0),  # the 31 prompt files repeat a small pool of statements
    "ailuminate_en": (1_200, 1_200, 0, 0),
    "ailuminate_fr": (1_200, 1_200, 0, 0),
    "harmbench": (400, 400, 0, 0),
    "advbench": (520, 520, 0, 0),
    "strongreject": (313, 313, 0, 0),
    "simple_safety_tests": (100, 100, 0, 0),
    "dices_350_expert": (350, 175, 175, 0),
    "dices_350_crowd": (350, 80, 270, 0),
    "dices_990": (990, 160, 830, 0),
    "wildguard": (1_554, 609, 945, 0),
    "toxicchat": (2_801, 384, 2_417, 0),
}


@pytest.fixture(scope="module")
def real_root() -> Path:
    if not REAL_ROOT.is_dir():
        pytest.skip(f"shared datasets not found at {REAL_ROOT}; the real-data tests need them")
    return REAL_ROOT


def test_real_counts_cover_every_adapter() -> None:
    assert set(REAL_COUNTS) == set(CORE)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(REAL_COUNTS))
def test_real_dataset_counts(real_root: Path, name: str) -> None:
    d = load_dataset(name, root=real_root)
    rows, pos, neg, unknown = REAL_COUNTS[name]
    assert len(d) == rows
    assert int((d.binary == 1).sum()) == pos
    assert int((d.binary == 0).sum()) == neg
    assert int(np.isnan(d.binary).sum()) == unknown
    assert len(set(d.ids)) == rows
    assert all(t.strip() for t in d.texts)
    # every native label a map names really occurs in the data (catches misspelt categories)
    natives = set(d.native)
    for pack, mapping in ADAPTERS[name].label_maps.items():
        assert set(mapping) <= natives, (pack, set(mapping) - natives)


@pytest.mark.slow
def test_real_native_label_counts(real_root: Path) -> None:
    davidson = Counter(load_dataset("davidson", root=real_root).native)
    assert davidson == {"offensive": 19_190, None: 4_163, "hate": 1_430}
    hazards = Counter(load_dataset("ailuminate_en", root=real_root).native)
    assert set(hazards) == set(ADAPTERS["ailuminate_en"].label_maps["mlcommons"])
    assert hazards["vcr"] == 100 and hazards["spc_ele"] == 24
    assert Counter(load_dataset("ailuminate_fr", root=real_root).native) == hazards
    harmful = Counter(load_dataset("wildguard", root=real_root).native)
    assert harmful[None] == 945 and harmful["private_information_individual"] == 81
    sst = Counter(load_dataset("simple_safety_tests", root=real_root).native)
    assert len(sst) == 5 and set(sst.values()) == {20}


def test_file_column_follows_the_rows_load_file_keeps(tmp_path: Path) -> None:
    path = tmp_path / "export.jsonl"
    rows = [
        {"text": "a", "label": 1, "path": {"hate": {"target": "yes"}}},
        {"text": "  ", "label": 0, "path": {"hate": {"target": "no"}}},  # empty: skipped
        {"text": "c", "label": 0, "extra": 1},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    data, _, _ = load_file(path)
    assert file_columns(path) == ["text", "label", "path", "extra"]
    assert file_column(path, "path") == [
        (f"{path}, line 1", {"hate": {"target": "yes"}}),
        (f"{path}, line 3", None),
    ]
    assert len(file_column(path, "path")) == len(data)
    csv_path = tmp_path / "f.csv"
    csv_path.write_text('text,label,path\nx,1,"{""a"": {}}"\n')
    assert file_columns(csv_path) == ["text", "label", "path"]
    assert file_column(csv_path, "path") == [(f"{csv_path}, line 2", '{"a": {}}')]
