"""Adapters of the social sets: small invented fixture files in each set's format, then (slow)
the real shared data."""

from __future__ import annotations

import csv
import io
import zipfile
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bastion.errors import DatasetError
from bastion.eval import social_sets
from bastion.eval.datasets import ADAPTERS, label_map_for, load_dataset
from bastion.eval.labels import NATIVE_SEPARATOR, LabelMap, category_labels

REAL_ROOT = (Path(__file__).parents[2] / ".." / "shared" / "datasets").resolve()
PACK_DIR = Path(social_sets.__file__).parents[1] / "policy" / "packs"
NAMES = {"toxic_spans", "convabuse", "mlma", "hatexplain", "implicit_hate"}


# ---------------------------------------------------------------------------------------------
# Writing fixture files.


def _csv(path: Path, header: list[str], rows: list[list[Any]], delimiter: str = ",") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, delimiter=delimiter)
        writer.writerow(header)
        writer.writerows(rows)


def _labels(data: Any) -> list[float | None]:
    return [None if np.isnan(x) else float(x) for x in data.binary]


def _policy(pack: str) -> Any:
    if not (PACK_DIR / f"{pack}.yaml").is_file():
        pytest.skip(f"built-in pack {pack} not written yet")
    from bastion.policy import load_policy

    return load_policy(pack)


def _category(y: np.ndarray, policy: Any, row: int, category: str) -> float | None:
    value = y[row, policy.category_ids.index(category)]
    return None if np.isnan(value) else float(value)


# Toxic Spans: comments, annotations (one per annotator and post) and typed spans.
_COMMENTS = [
    ["101", "you are a fool and I will find you"],
    ["102", "those people are vermin"],
    ["103", "a calm remark about taxes"],
    ["104", "darn this weather"],
    ["105", "you are a fool and I will find you"],  # repeat of 101
    ["106", "   "],
    ["107", "a split decision"],
]
# (annotation, comment, all toxic, not toxic)
_ANNOTATIONS = [
    (0, "101", False, False),
    (1, "101", False, False),
    (2, "101", False, False),
    (3, "102", False, False),
    (4, "102", False, False),
    (5, "102", True, True),  # no span, both boxes: votes not toxic
    (6, "103", True, True),
    (7, "103", True, True),
    (8, "103", False, False),
    (9, "104", False, False),
    (10, "104", True, False),  # whole post toxic, no span: votes toxic
    (11, "104", False, False),  # nothing marked: no vote
    (12, "105", False, False),
    (13, "105", False, False),
    (14, "106", False, False),
    (15, "106", False, False),
    (16, "107", False, False),
    (17, "107", False, False),
    (18, "107", True, True),
    (19, "107", True, True),
]
_SPANS = [
    (0, "Insult"),
    (0, "Threat"),
    (1, "Insult"),
    (1, "Threat"),
    (2, "Insult"),
    (3, "Identity based Attack"),
    (4, "Identity based "),  # cut short in the source
    (8, "Insult"),
    (9, "Profane/Obscene"),
    (12, "Insu"),
    (13, "Insult"),
    (14, "Insult"),
    (15, "Insult"),
    (16, "Insult"),
    (17, ""),  # a span without a type
]


def _write_toxic_spans(root: Path) -> None:
    folder = root / "toxic_spans"
    _csv(folder / "comments.csv", ["comment_id", "comment_text"], _COMMENTS)
    _csv(
        folder / "annotations.csv",
        ["annotation", "comment_id", "worker", "country", "all toxic", "not toxic"],
        [[a, c, 7, "USA", all_, not_] for a, c, all_, not_ in _ANNOTATIONS],
    )
    _csv(
        folder / "spans.csv",
        ["annotation", "type", "start", "end"],
        [[a, t, 0, 3] for a, t in _SPANS],
    )


# ConvAbuse: one row per user turn, a block of 17 columns per annotator (8 annotators).
_SEVERITIES = ("1", "0", "-1", "-2", "-3")
_KINDS = (
    "ableist",
    "homophobic",
    "intellectual",
    "racist",
    "sexist",
    "sex_harassment",
    "transphobic",
)
_TARGETS = ("target.generalised", "target.individual", "target.system")


def _convabuse_header() -> list[str]:
    header = ["example_id", "conv_id", "prev_agent", "prev_user", "agent", "user", "bot"]
    for k in range(1, 9):
        header += [f"Annotator{k}_is_abuse.{s}" for s in _SEVERITIES]
        # as in the source, annotators 7 and 8 have a column named 'Annotator6_transphobic'
        header += [
            f"Annotator{6 if k > 6 and kind == 'transphobic' else k}_{kind}" for kind in _KINDS
        ]
        header += [f"Annotator{k}_{t}" for t in _TARGETS]
        header += [f"Annotator{k}_explicit", f"Annotator{k}_implicit"]
    return header


Vote = tuple[str, set[str]]  # severity and the kinds / targets marked


def _convabuse_row(example_id: int, user: str, votes: dict[int, Vote | list[str]]) -> list[str]:
    row = [str(example_id), "9", "hello", "hi", "how are you?", user, "E.L.I.Z.A."]
    for k in range(1, 9):
        vote = votes.get(k)
        if vote is None:
            row += [""] * 17
        elif isinstance(vote, list):
            row += vote  # raw cells
        else:
            severity, marked = vote
            row += ["1" if s == severity else "0" for s in _SEVERITIES]
            row += ["1" if name in marked else "0" for name in (*_KINDS, *_TARGETS)]
            row += ["1", "0"]
    return row


def _write_convabuse(root: Path) -> None:
    folder = root / "convabuse"
    header = _convabuse_header()
    twice = ["1, 0", "0, 0", "0, 1", "0, 0", "0, 0"] + ["0, 0"] * 12  # labelled twice
    train = [
        _convabuse_row(
            1,
            "you are useless",
            {
                1: ("-1", {"intellectual", "target.system"}),
                2: ("-2", {"intellectual", "target.system"}),
                3: ("1", set()),
            },
        ),
        _convabuse_row(2, "hello there", {1: ("1", set()), 2: ("1", set()), 4: ("0", set())}),
        _convabuse_row(
            3,
            "send me pictures now",
            {
                2: ("-1", {"sex_harassment", "sexist", "target.system"}),
                5: ("-3", {"sex_harassment", "target.system"}),
                6: ("-1", {"sex_harassment"}),
            },
        ),
        _convabuse_row(
            4,
            "my neighbour is a freak",
            {
                6: ("-1", {"transphobic", "target.individual"}),
                7: ("-1", {"transphobic", "target.individual"}),
                8: ("-2", {"transphobic", "target.individual"}),
            },
        ),
        _convabuse_row(5, "maybe", {1: ("0", set()), 2: ("-1", set())}),
        _convabuse_row(6, "hi bot", {3: twice, 4: ("1", set())}),
    ]
    valid = [
        _convabuse_row(1, "hello there", {1: ("-1", set()), 2: ("-1", set())}),  # repeat
        _convabuse_row(2, "", {1: ("1", set()), 2: ("1", set())}),
    ]
    test = [
        _convabuse_row(
            1,
            "those people again",
            {
                1: ("-1", {"racist", "target.generalised"}),
                2: ("-1", {"racist", "target.generalised"}),
            },
        ),
    ]
    for split, rows in (("train", train), ("valid", valid), ("test", test)):
        _csv(folder / f"ConvAbuseEMNLP{split}.csv", header, rows)


# MLMA: a zip of per-language CSV files.
_MLMA_HEADER = [
    "HITId",
    "tweet",
    "sentiment",
    "directness",
    "annotator_sentiment",
    "target",
    "group",
]


def _mlma_zip(path: Path, rows: list[list[Any]], member: str = "en_dataset.csv") -> None:
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(_MLMA_HEADER)
    writer.writerows(rows)
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(f"hate_speech_mlma/{member}", buffer.getvalue())
        archive.writestr("hate_speech_mlma/fr_dataset.csv", ",".join(_MLMA_HEADER) + "\r\n")


_MLMA_ROWS = [
    [1, "invented hateful tweet", "hateful", "direct", "anger", "origin", "other"],
    [2, "invented rude tweet", "offensive_disrespectful", "indirect", "disgust", "other", "other"],
    [3, "invented plain tweet", "normal", "indirect", "indifference", "other", "other"],
    [4, "invented mixed tweet", "offensive_normal", "indirect", "shock", "gender", "women"],
    [5, "invented hateful tweet", "offensive", "direct", "anger", "origin", "other"],  # repeat
    [6, "invented scared tweet", "fearful_abusive_hateful", "indirect", "fear", "origin", "other"],
    [7, "", "offensive", "indirect", "anger", "other", "other"],
]

# HateXplain: one CSV, label 0 / 1 / 2 and five target flags.
_HATEXPLAIN_HEADER = [
    "text",
    "rationale_pos",
    "label",
    "label_gender",
    "label_religion",
    "label_race",
    "label_economic",
    "label_minority",
]


def _hatexplain_row(text: str, label: int | str) -> list[Any]:
    return [text, "", label, 0, 0, 1, 0, 0]


# Implicit Hate: stage-1 posts, the stage-1 IDs in the same order, stage-2 subtypes by ID.
_STAGE1 = [
    ("11", "plain opinion about a match", "not_hate"),
    ("12", "coded grievance", "implicit_hate"),
    ("13", "open slur post", "explicit_hate"),
    ("14", "odd one", "not_hate"),
    ("15", "coded grievance", "implicit_hate"),  # repeat of 12
    ("16", 'implicit post with "quotes"', "implicit_hate"),
]
_STAGE2 = [("12", "white_grievance", "inferiority"), ("14", "threatening", "")]


def _write_implicit_hate(root: Path, stage1_ids: list[tuple[str, str, str]] | None = None) -> None:
    folder = root / "implicit_hate"
    ids = _STAGE1 if stage1_ids is None else stage1_ids
    _csv(
        folder / "implicit_hate_v1_stg1_posts.tsv",
        ["post", "class"],
        [[t, c] for _, t, c in _STAGE1],
        "\t",
    )
    _csv(folder / "implicit_hate_v1_stg1.tsv", ["ID", "class"], [[i, c] for i, _, c in ids], "\t")
    _csv(
        folder / "implicit_hate_v1_stg2.tsv",
        ["ID", "implicit_class", "extra_implicit_class"],
        [list(r) for r in _STAGE2],
        "\t",
    )


@pytest.fixture
def root(tmp_path: Path) -> Path:
    r = tmp_path / "datasets"
    _write_toxic_spans(r)
    _write_convabuse(r)
    _mlma_zip(r / "mlma/hate_speech_mlma.zip", _MLMA_ROWS)
    _csv(
        r / "hatexplain/preprocessed.csv",
        _HATEXPLAIN_HEADER,
        [
            _hatexplain_row("an ordinary post", 0),
            _hatexplain_row("a rude post", 1),
            _hatexplain_row("a hateful post", 2),
            _hatexplain_row("a rude post", 0),  # repeat with another label: first kept
            _hatexplain_row("  ", 0),
        ],
    )
    _write_implicit_hate(r)
    return r


# ---------------------------------------------------------------------------------------------
# The registry and the label maps.


def test_adapters_are_registered_with_fields() -> None:
    assert {a.name for a in social_sets.ADAPTERS} == NAMES
    for adapter in social_sets.ADAPTERS:
        assert ADAPTERS[adapter.name] is adapter
        assert adapter.use == "ship-ok" and adapter.licence
        assert adapter.kind in ("posts", "prompts", "conversations")
        assert adapter.description and not Path(adapter.path).is_absolute()
        assert set(adapter.label_maps) == {"openai", "mlcommons"}
        assert not adapter.exclusive  # several native labels, or labels that do not exclude others
    assert ADAPTERS["mlma"].licence == "MIT" and ADAPTERS["toxic_spans"].licence == "CC0-1.0"


@pytest.mark.parametrize("pack", ["openai", "mlcommons"])
def test_label_maps_name_only_categories_of_the_packs(pack: str) -> None:
    policy = _policy(pack)
    for adapter in social_sets.ADAPTERS:
        LabelMap(adapter.label_maps[pack]).check(policy, source=f"{adapter.name} -> {pack}")


def test_label_map_decisions() -> None:
    oai = label_map_for("toxic_spans", "openai")
    assert oai is not None and oai.mapping["insult"] == ["harassment"]
    assert "profane" not in oai.mapping and "other_toxicity" not in oai.mapping
    conv = label_map_for("convabuse", "openai")
    assert conv is not None and "intellectual" not in conv.mapping
    assert conv.mapping["sex_harassment"] == ["sexual"]
    hx = label_map_for("hatexplain", "mlcommons")
    assert hx is not None and dict(hx.mapping) == {"hate": ["s10"]}


# ---------------------------------------------------------------------------------------------
# Toxic Spans.


def test_toxic_spans(root: Path) -> None:
    d = load_dataset("toxic_spans", root=root)
    assert d.texts == [
        "you are a fool and I will find you",
        "those people are vermin",
        "a calm remark about taxes",
        "darn this weather",
        "a split decision",
    ]
    assert _labels(d) == [1.0, 1.0, None, 1.0, None]  # no row is 0
    assert d.native == ["insult|threat", "identity_attack", None, None, None]
    assert d.ids == ["101", "102", "103", "104", "107"]
    assert d.licence == "CC0-1.0" and not d.exclusive
    assert "1 repeated texts dropped" in d.description
    assert "skipped 1 empty rows" in d.description
    assert "2 posts NaN" in d.description


def test_toxic_spans_categories(root: Path) -> None:
    d = load_dataset("toxic_spans", root=root)
    openai = _policy("openai")
    y = category_labels(d, openai, label_map_for("toxic_spans", "openai"))
    assert _category(y, openai, 0, "harassment") == 1 and _category(y, openai, 0, "violence") == 1
    assert _category(y, openai, 0, "hate") is None  # not exclusive: unknown, not 0
    assert _category(y, openai, 0, "harassment/threatening") is None
    assert _category(y, openai, 1, "hate") == 1 and _category(y, openai, 1, "harassment") is None
    assert np.isnan(y[2:]).all()  # NaN rows, and a toxic row with no majority type
    mlc = _policy("mlcommons")
    y = category_labels(d, mlc, label_map_for("toxic_spans", "mlcommons"))
    assert _category(y, mlc, 0, "s1") == 1 and _category(y, mlc, 1, "s10") == 1
    assert int(np.nansum(y)) == 2


def test_toxic_spans_bad_span_type_names_file_and_line(root: Path) -> None:
    _csv(root / "toxic_spans/spans.csv", ["annotation", "type"], [[0, "Insult"], [1, "Rude"]])
    with pytest.raises(DatasetError, match=r"spans\.csv, line 3: unknown span type 'Rude'"):
        load_dataset("toxic_spans", root=root)


def test_toxic_spans_bad_flag_and_unknown_annotation(root: Path) -> None:
    path = root / "toxic_spans/annotations.csv"
    path.write_text(
        "annotation,comment_id,worker,country,all toxic,not toxic\n0,101,1,USA,False,maybe\n",
        encoding="utf-8",
    )
    with pytest.raises(DatasetError, match=r"annotations\.csv, line 2: 'not toxic' .* 'maybe'"):
        load_dataset("toxic_spans", root=root)
    path.write_text(
        "annotation,comment_id,worker,country,all toxic,not toxic\n0,101,1,USA,False,False\n",
        encoding="utf-8",
    )
    with pytest.raises(DatasetError, match=r"spans\.csv, line 4: annotation '1' is not in"):
        load_dataset("toxic_spans", root=root)


# ---------------------------------------------------------------------------------------------
# ConvAbuse.


def test_convabuse(root: Path) -> None:
    d = load_dataset("convabuse", root=root)
    assert d.texts == [
        "you are useless",
        "hello there",
        "send me pictures now",
        "my neighbour is a freak",
        "maybe",
        "hi bot",
        "those people again",
    ]
    assert _labels(d) == [1.0, 0.0, 1.0, 1.0, None, 0.0, 1.0]
    assert d.native == [
        "intellectual|target_system",
        None,
        "sex_harassment|target_system",  # sexist: 1 of 3 annotators
        "transphobic|target_individual",  # annotators 7 and 8 read from their own columns
        None,
        None,
        "racist|target_generalised",
    ]
    assert d.ids == [
        "train:1",
        "train:2",
        "train:3",
        "train:4",
        "train:5",
        "train:6",
        "test:1",
    ]
    assert d.licence == "CC-BY-4.0" and d.use == "ship-ok"
    assert "1 repeated texts dropped" in d.description
    assert "skipped 1 empty rows" in d.description


def test_convabuse_categories(root: Path) -> None:
    d = load_dataset("convabuse", root=root)
    openai = _policy("openai")
    y = category_labels(d, openai, label_map_for("convabuse", "openai"))
    assert np.isnan(y[0]).all()  # intellectual, aimed at the agent: unmapped
    assert (y[1] == 0).all() and (y[5] == 0).all()  # safe everywhere
    assert _category(y, openai, 2, "sexual") == 1 and _category(y, openai, 2, "harassment") is None
    assert _category(y, openai, 3, "harassment") == 1 and _category(y, openai, 3, "hate") is None
    assert np.isnan(y[4]).all()
    assert _category(y, openai, 6, "hate") == 1
    mlc = _policy("mlcommons")
    y = category_labels(d, mlc, label_map_for("convabuse", "mlcommons"))
    assert _category(y, mlc, 2, "s12") == 1 and _category(y, mlc, 6, "s10") == 1
    assert np.isnan(y[3]).all()


def test_convabuse_bad_cell_names_file_line_and_column(root: Path) -> None:
    path = root / "convabuse/ConvAbuseEMNLPvalid.csv"
    bad = ["0", "0", "2", "0", "0"] + ["0"] * 12
    _csv(
        path,
        _convabuse_header(),
        [_convabuse_row(1, "fine", {1: ("1", set())}), _convabuse_row(2, "odd", {3: bad})],
    )
    with pytest.raises(
        DatasetError, match=r"ConvAbuseEMNLPvalid\.csv, line 3: 'Annotator3_is_abuse\.-1' .* '2'"
    ):
        load_dataset("convabuse", root=root)
    two_levels = ["1", "0", "1", "0", "0"] + ["0"] * 12
    _csv(path, _convabuse_header(), [_convabuse_row(1, "odd", {2: two_levels})])
    with pytest.raises(DatasetError, match=r"line 2: Annotator2 marks 2 abuse levels"):
        load_dataset("convabuse", root=root)


def test_convabuse_missing_split_and_bad_header(root: Path) -> None:
    (root / "convabuse/ConvAbuseEMNLPtest.csv").unlink()
    with pytest.raises(DatasetError, match=r"ConvAbuseEMNLPtest\.csv: cannot read file"):
        load_dataset("convabuse", root=root)
    header = _convabuse_header()
    header[header.index("Annotator2_racist")] = "Annotator2_rude"
    _csv(root / "convabuse/ConvAbuseEMNLPtest.csv", header, [])
    with pytest.raises(DatasetError, match=r"'Annotator2_rude'; expected an annotator's 'racist'"):
        load_dataset("convabuse", root=root)


# ---------------------------------------------------------------------------------------------
# MLMA.


def test_mlma(root: Path) -> None:
    d = load_dataset("mlma", root=root)
    assert d.texts == [
        "invented hateful tweet",
        "invented rude tweet",
        "invented plain tweet",
        "invented mixed tweet",
        "invented scared tweet",
    ]
    assert _labels(d) == [1.0, 1.0, None, None, 1.0]  # 'normal', alone or mixed: unknown
    assert d.native == ["hateful", "offensive|disrespectful", None, None, "hateful|abusive|fearful"]
    assert d.ids == ["1", "2", "3", "4", "6"]
    assert "1 repeated texts dropped" in d.description
    assert "skipped 1 empty rows" in d.description


def test_mlma_categories(root: Path) -> None:
    d = load_dataset("mlma", root=root)
    for pack, category in (("openai", "hate"), ("mlcommons", "s10")):
        policy = _policy(pack)
        y = category_labels(d, policy, label_map_for("mlma", pack))
        assert _category(y, policy, 0, category) == 1 and _category(y, policy, 4, category) == 1
        assert np.isnan(y[1]).all() and np.isnan(y[2]).all()
        assert int(np.nansum(y)) == 2


def test_mlma_bad_sentiment_names_member_and_line(root: Path) -> None:
    path = root / "mlma/hate_speech_mlma.zip"
    _mlma_zip(path, [_MLMA_ROWS[0], [2, "text", "angry_hateful", "direct", "x", "y", "z"]])
    with pytest.raises(
        DatasetError, match=r"hate_speech_mlma\.zip:hate_speech_mlma/en_dataset\.csv, line 3: "
    ):
        load_dataset("mlma", root=root)


def test_mlma_missing_member_and_broken_zip(root: Path) -> None:
    path = root / "mlma/hate_speech_mlma.zip"
    _mlma_zip(path, _MLMA_ROWS, member="ar_dataset.csv")
    with pytest.raises(DatasetError, match=r"no member named 'en_dataset\.csv'.*ar_dataset"):
        load_dataset("mlma", root=root)
    path.write_bytes(b"not a zip")
    with pytest.raises(DatasetError, match=r"hate_speech_mlma\.zip: not a valid zip archive"):
        load_dataset("mlma", root=root)


# ---------------------------------------------------------------------------------------------
# HateXplain.


def test_hatexplain(root: Path) -> None:
    d = load_dataset("hatexplain", root=root)
    assert d.texts == ["an ordinary post", "a rude post", "a hateful post"]
    assert _labels(d) == [0.0, 1.0, 1.0]
    assert d.native == [None, "offensive", "hate"]
    assert d.ids == ["2", "3", "4"]
    assert not d.exclusive and d.licence == "upstream MIT, repack Apache-2.0"
    assert "1 repeated texts dropped" in d.description
    assert "skipped 1 empty rows" in d.description


def test_hatexplain_categories(root: Path) -> None:
    d = load_dataset("hatexplain", root=root)
    for pack, category in (("openai", "hate"), ("mlcommons", "s10")):
        policy = _policy(pack)
        y = category_labels(d, policy, label_map_for("hatexplain", pack))
        assert (y[0] == 0).all()
        assert np.isnan(y[1]).all()  # offensive: unmapped
        assert _category(y, policy, 2, category) == 1
        assert np.isnan(np.delete(y[2], policy.category_ids.index(category))).all()


def test_hatexplain_bad_label_names_file_and_line(root: Path) -> None:
    _csv(
        root / "hatexplain/preprocessed.csv",
        _HATEXPLAIN_HEADER,
        [_hatexplain_row("fine", 0), _hatexplain_row("odd", "hate")],
    )
    with pytest.raises(DatasetError, match=r"preprocessed\.csv, line 3: label .* 'hate'"):
        load_dataset("hatexplain", root=root)


# ---------------------------------------------------------------------------------------------
# Implicit Hate.


def test_implicit_hate(root: Path) -> None:
    d = load_dataset("implicit_hate", root=root)
    assert d.texts == [
        "plain opinion about a match",
        "coded grievance",
        "open slur post",
        "odd one",
        'implicit post with "quotes"',
    ]
    assert _labels(d) == [0.0, 1.0, 1.0, None, 1.0]
    assert d.native == [
        None,
        "implicit_hate|white_grievance|inferiority",
        "explicit_hate",
        None,  # not_hate in stage 1, a threatening subtype in stage 2: unknown
        "implicit_hate",
    ]
    assert d.ids == ["11", "12", "13", "14", "16"]
    assert "1 repeated texts dropped" in d.description


def test_implicit_hate_categories(root: Path) -> None:
    d = load_dataset("implicit_hate", root=root)
    for pack, category in (("openai", "hate"), ("mlcommons", "s10")):
        policy = _policy(pack)
        y = category_labels(d, policy, label_map_for("implicit_hate", pack))
        assert (y[0] == 0).all() and np.isnan(y[3]).all()
        assert [_category(y, policy, i, category) for i in (1, 2, 4)] == [1.0, 1.0, 1.0]
        assert int(np.nansum(y)) == 3


def test_implicit_hate_files_out_of_step(root: Path) -> None:
    swapped = [_STAGE1[0], _STAGE1[2], _STAGE1[1], *_STAGE1[3:]]
    _write_implicit_hate(root, swapped)
    with pytest.raises(
        DatasetError,
        match=r"stg1_posts\.tsv, line 3: class 'implicit_hate' differs from "
        r"implicit_hate_v1_stg1\.tsv, line 3",
    ):
        load_dataset("implicit_hate", root=root)
    _write_implicit_hate(root, _STAGE1[:-1])
    with pytest.raises(DatasetError, match=r"more posts than implicit_hate_v1_stg1\.tsv"):
        load_dataset("implicit_hate", root=root)


def test_implicit_hate_bad_subtype_names_file_and_line(root: Path) -> None:
    _csv(
        root / "implicit_hate/implicit_hate_v1_stg2.tsv",
        ["ID", "implicit_class", "extra_implicit_class"],
        [["12", "irony", ""], ["13", "sarcasm", ""]],
        "\t",
    )
    with pytest.raises(DatasetError, match=r"stg2\.tsv, line 3: class must be one of .*'sarcasm'"):
        load_dataset("implicit_hate", root=root)


# ---------------------------------------------------------------------------------------------
# The real shared data (slow; skipped when the folder is absent).

# name: (rows, positives, negatives, unknown), measured on the shared copy
REAL_COUNTS = {
    "toxic_spans": (15_934, 11_221, 0, 4_713),
    "convabuse": (2_912, 449, 2_194, 269),
    "mlma": (5_593, 4_241, 0, 1_352),
    "hatexplain": (18_954, 11_247, 7_707, 0),
    "implicit_hate": (21_476, 8_185, 13_215, 76),
}


@pytest.fixture(scope="module")
def real_root() -> Path:
    if not REAL_ROOT.is_dir():
        pytest.skip(f"shared datasets not found at {REAL_ROOT}; the real-data tests need them")
    return REAL_ROOT


def test_real_counts_cover_every_adapter() -> None:
    assert set(REAL_COUNTS) == NAMES


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(REAL_COUNTS))
def test_real_dataset_counts(real_root: Path, name: str) -> None:
    d = load_dataset(name, root=real_root)
    rows, pos, neg, unknown = REAL_COUNTS[name]
    assert len(d) == rows
    assert int((d.binary == 1).sum()) == pos
    assert int((d.binary == 0).sum()) == neg
    assert int(np.isnan(d.binary).sum()) == unknown
    assert len(set(d.ids)) == rows and len(set(d.texts)) == rows
    assert all(t.strip() for t in d.texts)
    assert all(n is None for n, b in zip(d.native, d.binary, strict=True) if b != 1)
    # every native label a map names really occurs in the data (catches misspelt labels)
    natives = {t for n in d.native if n for t in n.split(NATIVE_SEPARATOR)}
    for pack, mapping in ADAPTERS[name].label_maps.items():
        assert set(mapping) <= natives, (pack, set(mapping) - natives)


def _tokens(name: str, root: Path) -> Counter[str]:
    d = load_dataset(name, root=root)
    return Counter(t for n in d.native if n for t in n.split(NATIVE_SEPARATOR))


@pytest.mark.slow
def test_real_native_label_counts(real_root: Path) -> None:
    assert _tokens("toxic_spans", real_root) == {
        "insult": 8_063,
        "profane": 487,
        "identity_attack": 367,
        "threat": 114,
        "other_toxicity": 111,
    }
    convabuse = _tokens("convabuse", real_root)
    assert convabuse["sex_harassment"] == 158 and convabuse["target_system"] == 410
    assert convabuse["intellectual"] == 53 and "transphobic" not in convabuse
    mlma = _tokens("mlma", real_root)
    assert mlma["hateful"] == 885 and mlma["offensive"] == 3_573 and "normal" not in mlma
    assert _tokens("hatexplain", real_root) == {"hate": 5_852, "offensive": 5_395}
    implicit = _tokens("implicit_hate", real_root)
    assert implicit["implicit_hate"] == 7_098 and implicit["explicit_hate"] == 1_087
    assert implicit["threatening"] == 672 and implicit["white_grievance"] == 1_545


@pytest.mark.slow
def test_real_category_labels(real_root: Path) -> None:
    openai = _policy("openai")
    d = load_dataset("toxic_spans", root=real_root)
    y = category_labels(d, openai, label_map_for("toxic_spans", "openai"))
    positives = {c: int((y[:, j] == 1).sum()) for j, c in enumerate(openai.category_ids)}
    assert positives["harassment"] == 8_063 and positives["hate"] == 367
    assert positives["violence"] == 114 and positives["harassment/threatening"] == 0
    assert not (y == 0).any()  # no safe rows, not exclusive: nothing is known negative
    d = load_dataset("convabuse", root=real_root)
    y = category_labels(d, openai, label_map_for("convabuse", "openai"))
    hate, sexual = openai.category_ids.index("hate"), openai.category_ids.index("sexual")
    assert int((y[:, hate] == 1).sum()) == 83 and int((y[:, sexual] == 1).sum()) == 158
