"""Labelled sets and label maps: sampling, negatives and native labels -> policy categories."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bastion.errors import LabelMapError
from bastion.eval.labels import LabelledSet, LabelMap, category_labels
from bastion.policy import LoadedPolicy, parse_policy

NAN = float("nan")

POLICY_YAML = """\
id: tiny
version: "1"
name: Tiny
categories:
  - {id: hate, name: Hate, definition: d, severity: 3}
  - {id: violence, name: Violence, definition: d, severity: 3}
  - {id: sexual, name: Sexual, definition: d, severity: 2}
"""


@pytest.fixture
def policy() -> LoadedPolicy:
    return parse_policy(POLICY_YAML)


def _set(binary: list[float], native: list[str | None] | None = None, **kw: object) -> LabelledSet:
    texts = [f"t{i}" for i in range(len(binary))]
    return LabelledSet("d", texts, np.array(binary), native or [], **kw)  # type: ignore[arg-type]


def _mixed() -> LabelledSet:
    # 30 positives, 60 negatives, 10 unknown, interleaved.
    binary = [1.0] * 30 + [0.0] * 60 + [NAN] * 10
    order = np.random.default_rng(123).permutation(100)
    return _set([binary[i] for i in order])


def _counts(data: LabelledSet) -> tuple[int, int, int]:
    b = data.binary
    return int((b == 1).sum()), int((b == 0).sum()), int(np.isnan(b).sum())


# --- LabelledSet ------------------------------------------------------------------------------


def test_defaults_fill_native_and_ids() -> None:
    data = _set([1.0, 0.0])
    assert data.native == [None, None]
    assert data.ids == ["0", "1"]
    assert data.binary.dtype == np.float64


def test_lengths_must_agree() -> None:
    with pytest.raises(ValueError, match="differ in length"):
        LabelledSet("d", ["a", "b"], np.array([1.0]))


def test_all_positive() -> None:
    assert _set([1.0, 1.0, NAN]).all_positive
    assert not _set([1.0, 0.0]).all_positive
    assert not _set([NAN, NAN]).all_positive
    assert not _set([]).all_positive


@pytest.mark.parametrize("limit", [10, 20, 33, 50, 77])
def test_sample_is_stratified(limit: int) -> None:
    data = _mixed()
    sample = data.sample(limit, seed=7)
    pos, neg, unk = _counts(sample)
    assert abs(pos - limit * 0.3) <= 1
    assert abs(neg - limit * 0.6) <= 1
    assert abs(unk - limit * 0.1) <= 1
    # Sampled rows are real rows, each once, in their original order.
    idx = [int(i) for i in sample.ids]
    assert idx == sorted(set(idx))
    for i, text, label in zip(idx, sample.texts, sample.binary, strict=True):
        assert text == data.texts[i]
        assert (np.isnan(label) and np.isnan(data.binary[i])) or label == data.binary[i]


def test_sample_is_deterministic_per_seed() -> None:
    data = _mixed()
    assert data.sample(20, seed=1).ids == data.sample(20, seed=1).ids
    assert data.sample(20, seed=1).ids != data.sample(20, seed=2).ids


def test_sample_without_limit_or_above_size_returns_everything() -> None:
    data = _mixed()
    assert data.sample(None) is data
    assert data.sample(0) is data
    assert data.sample(100) is data
    assert data.sample(1000) is data


def test_sample_keeps_a_rare_class() -> None:
    data = _set([1.0] + [0.0] * 99)
    sample = data.sample(10, seed=0)
    assert _counts(sample)[0] == 1


def test_sample_returns_at_most_limit_rows() -> None:
    # The docstring promises "at most `limit` rows". Three equal classes and limit 5: each class's
    # share rounds up (5/3 -> 2), so rounding must not push the total past the limit.
    data = _set([1.0] * 10 + [0.0] * 10 + [NAN] * 10)
    assert len(data.sample(5, seed=0)) <= 5


def test_with_negatives_adds_only_safe_rows() -> None:
    positives = _set([1.0, 1.0], ["hate", "violence"], licence="A", use="research")
    others = LabelledSet(
        "other",
        ["bad", "fine", "unknown", "also fine"],
        np.array([1.0, 0.0, NAN, 0.0]),
        ["x", "y", None, None],
        licence="B",
        use="research",
    )
    combined = positives.with_negatives(others)
    assert combined.texts == ["t0", "t1", "fine", "also fine"]
    assert list(combined.binary) == [1.0, 1.0, 0.0, 0.0]
    assert combined.native == ["hate", "violence", None, None]
    assert combined.ids == ["0", "1", "other:1", "other:3"]
    assert combined.name == "d+other-safe"
    assert "A" in combined.licence
    assert "B" in combined.licence
    assert combined.use == "research"
    assert not combined.all_positive


def test_with_negatives_is_dev_only_if_either_set_is() -> None:
    a = _set([1.0], use="research")
    b = _set([0.0], use="dev-only")
    assert a.with_negatives(b).use == "dev-only"


# --- category_labels --------------------------------------------------------------------------


def test_without_a_label_map_only_safe_rows_are_known(policy: LoadedPolicy) -> None:
    y = category_labels(_set([0.0, 1.0, NAN], ["hate", "hate", None]), policy, None)
    assert y.shape == (3, 3)
    assert (y[0] == 0).all()
    assert np.isnan(y[1:]).all()


def test_exclusive_mapped_positive(policy: LoadedPolicy) -> None:
    data = _set([0.0, 1.0, 1.0, 1.0, NAN], ["hate", "slur", "gore", "spam", "slur"])
    lmap = LabelMap({"slur": ["hate"], "gore": ["violence"]})
    y = category_labels(data, policy, lmap)
    # Columns follow the policy: hate, violence, sexual.
    assert list(y[0]) == [0.0, 0.0, 0.0]  # a safe row is safe everywhere
    assert list(y[1]) == [1.0, 0.0, 0.0]
    assert list(y[2]) == [0.0, 1.0, 0.0]
    assert np.isnan(y[3]).all()  # "spam" is not mapped: nothing is known
    assert np.isnan(y[4]).all()  # unknown binary label: nothing is known


def test_not_exclusive_mapped_positive_leaves_other_categories_unknown(
    policy: LoadedPolicy,
) -> None:
    data = _set([1.0, 0.0], ["slur", "slur"], exclusive=False)
    y = category_labels(data, policy, LabelMap({"slur": ["hate"]}))
    assert y[0, 0] == 1.0
    assert np.isnan(y[0, 1])
    assert np.isnan(y[0, 2])
    assert list(y[1]) == [0.0, 0.0, 0.0]


def test_label_map_exclusive_overrides_the_set(policy: LoadedPolicy) -> None:
    data = _set([1.0], ["slur"], exclusive=True)
    y = category_labels(data, policy, LabelMap({"slur": ["hate"]}, exclusive=False))
    assert y[0, 0] == 1.0
    assert np.isnan(y[0, 1:]).all()
    data = _set([1.0], ["slur"], exclusive=False)
    y = category_labels(data, policy, LabelMap({"slur": ["hate"]}, exclusive=True))
    assert list(y[0]) == [1.0, 0.0, 0.0]


def test_native_label_mapped_to_several_categories(policy: LoadedPolicy) -> None:
    data = _set([1.0], ["violent-hate"])
    y = category_labels(data, policy, LabelMap({"violent-hate": ["hate", "violence"]}))
    assert list(y[0]) == [1.0, 1.0, 0.0]


def test_positive_without_native_label_stays_unknown(policy: LoadedPolicy) -> None:
    y = category_labels(_set([1.0], [None]), policy, LabelMap({"slur": ["hate"]}))
    assert np.isnan(y).all()


# --- LabelMap ---------------------------------------------------------------------------------


def test_check_names_the_unknown_category(policy: LoadedPolicy) -> None:
    lmap = LabelMap({"slur": ["hate"], "nsfw": ["porn"]})
    with pytest.raises(LabelMapError) as info:
        lmap.check(policy, source="my-map.yaml")
    msg = str(info.value)
    assert "'porn'" in msg
    assert "'nsfw'" in msg
    assert "my-map.yaml" in msg
    assert "hate, sexual, violence" in msg
    LabelMap({"slur": ["hate"]}).check(policy)  # a good map passes


def test_category_labels_checks_the_map(policy: LoadedPolicy) -> None:
    with pytest.raises(LabelMapError, match="porn"):
        category_labels(_set([1.0], ["nsfw"]), policy, LabelMap({"nsfw": ["porn"]}))


def test_from_file_plain_mapping(tmp_path: Path) -> None:
    path = tmp_path / "map.yaml"
    path.write_text("slur: hate\ngore: [violence, hate]\nspam:\n7: sexual\n", encoding="utf-8")
    lmap = LabelMap.from_file(path)
    assert dict(lmap.mapping) == {
        "slur": ["hate"],
        "gore": ["violence", "hate"],
        "spam": [],
        "7": ["sexual"],
    }
    assert lmap.exclusive is None


def test_from_file_with_top_level_map_key(tmp_path: Path) -> None:
    path = tmp_path / "map.yaml"
    path.write_text("exclusive: false\nmap:\n  slur: hate\n  gore: [violence]\n", encoding="utf-8")
    lmap = LabelMap.from_file(path)
    assert dict(lmap.mapping) == {"slur": ["hate"], "gore": ["violence"]}
    assert lmap.exclusive is False


@pytest.mark.parametrize("text", ["- hate\n- violence\n", "map:\n  - hate\n", "just a string\n"])
def test_from_file_rejects_non_mappings(tmp_path: Path, text: str) -> None:
    path = tmp_path / "map.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(LabelMapError, match="mapping"):
        LabelMap.from_file(path)


def test_from_file_missing_or_broken_yaml(tmp_path: Path) -> None:
    with pytest.raises(LabelMapError, match="could not read"):
        LabelMap.from_file(tmp_path / "missing.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("a: [unclosed\n", encoding="utf-8")
    with pytest.raises(LabelMapError, match="could not read"):
        LabelMap.from_file(broken)


def test_from_file_rejects_a_non_category_value(tmp_path: Path) -> None:
    path = tmp_path / "map.yaml"
    path.write_text("slur: 3\n", encoding="utf-8")
    with pytest.raises(LabelMapError):
        LabelMap.from_file(path)


def test_to_json_round_trips_the_mapping() -> None:
    assert LabelMap({"a": ("hate",), "b": []}).to_json() == '{"a": ["hate"], "b": []}'
