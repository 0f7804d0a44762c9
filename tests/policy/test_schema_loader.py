"""Policy schema and loader: built-in packs, versions, and errors naming file, line and field."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from bastion.errors import PolicyError
from bastion.policy import (
    BUILTIN_PACKS,
    Action,
    Bands,
    LoadedPolicy,
    load_policy,
    parse_policy,
    starter_policy_text,
)

OPENAI_IDS = [
    "harassment",
    "harassment/threatening",
    "hate",
    "hate/threatening",
    "illicit",
    "illicit/violent",
    "self-harm",
    "self-harm/intent",
    "self-harm/instructions",
    "sexual",
    "sexual/minors",
    "violence",
    "violence/graphic",
]

# A small valid policy; line numbers below refer to this layout (line 1 is "id: p").
HEAD = """\
id: p
version: "1"
name: P
categories:
  - id: my-cat
    name: C
    definition: d
"""


def _policy(severity: str = "2", extra: str = "") -> str:
    return HEAD + f"    severity: {severity}\n" + extra


def _problems(text: str) -> list[str]:
    with pytest.raises(PolicyError) as info:
        parse_policy(text, source="x.yaml")
    assert info.value.source == "x.yaml"
    return info.value.problems


def _only_problem(text: str) -> str:
    problems = _problems(text)
    assert len(problems) == 1, problems
    return problems[0]


STEPS_HEADER = "    decision_steps:\n"


def _step(step_id: str, *answers: str) -> str:
    body = f"      - id: {step_id}\n        question: q?\n        answers:\n"
    return body + "".join(f"          - {a}\n" for a in answers)


# --- built-in packs ---------------------------------------------------------------------------


def test_openai_pack_has_the_13_moderation_api_categories_in_order() -> None:
    loaded = load_policy("openai")
    assert isinstance(loaded, LoadedPolicy)
    assert loaded.policy.category_ids == OPENAI_IDS
    assert loaded.source == "<pack openai>"


def test_mlcommons_pack_has_s1_to_s14_in_order() -> None:
    assert load_policy("mlcommons").policy.category_ids == [f"s{i}" for i in range(1, 15)]


@pytest.mark.parametrize("pack", BUILTIN_PACKS)
def test_every_pack_category_has_enough_examples(pack: str) -> None:
    for cat in load_policy(pack).policy.categories:
        assert len(cat.examples.positive) >= 8, cat.id
        assert len(cat.examples.negative) >= 8, cat.id


@pytest.mark.parametrize("pack", BUILTIN_PACKS)
def test_every_decision_step_rule_exists(pack: str) -> None:
    cited = 0
    for cat in load_policy(pack).policy.categories:
        rule_ids = {r.id for r in cat.violates}
        for step in cat.decision_steps:
            for ans in step.answers:
                if ans.rule is not None:
                    cited += 1
                    assert ans.rule in rule_ids, (cat.id, step.id, ans.rule)
    assert cited > 0


def test_openai_negatives_include_a_technical_kill_process_phrase() -> None:
    negatives = [t for c in load_policy("openai").policy.categories for t in c.examples.negative]
    assert any(re.search(r"\bkill\b.*\bprocess", t, re.IGNORECASE) for t in negatives)


def test_builtin_pack_names_are_the_two_packs() -> None:
    assert set(BUILTIN_PACKS) == {"openai", "mlcommons"}


# --- starter file and versions ----------------------------------------------------------------


def test_starter_policy_validates() -> None:
    loaded = parse_policy(starter_policy_text())
    assert loaded.policy.id == "my-platform"
    cat = loaded.policy.category("harassment/threatening")
    # The plain-string rule in the starter is numbered after its position in the list.
    assert [r.id for r in cat.violates] == ["direct-threat", "incitement", "R3"]


def test_version_is_id_at_version_plus_hash() -> None:
    loaded = parse_policy(_policy())
    assert re.fullmatch(r"p@1\+[0-9a-f]{12}", loaded.version)
    assert loaded.version == f"p@1+{loaded.content_hash}"


WITH_EXAMPLES = _policy(
    extra="""\
    examples:
      positive: [I will hurt you]
      negative: [kill the process]
"""
)

REFORMATTED = """\
# Same meaning, different formatting: comments, flow style, key order, quoting.
name: 'P'   # the name
categories: [{severity: 2, definition: "d", examples: {negative: ["kill the process"],
  positive: ["I will hurt you"]}, name: C, id: my-cat}]
version: '1'
id: "p"
"""


def test_hash_ignores_comments_and_formatting() -> None:
    assert parse_policy(REFORMATTED).version == parse_policy(WITH_EXAMPLES).version


def test_hash_changes_when_an_example_changes() -> None:
    changed = WITH_EXAMPLES.replace("kill the process", "kill the processes")
    a, b = parse_policy(WITH_EXAMPLES), parse_policy(changed)
    assert a.policy.version == b.policy.version
    assert a.version != b.version


def test_hash_changes_when_declared_version_is_the_same_but_severity_differs() -> None:
    assert parse_policy(_policy("2")).content_hash != parse_policy(_policy("3")).content_hash


# --- errors -----------------------------------------------------------------------------------


def test_wrong_type_names_the_field_path_and_line() -> None:
    msg = _only_problem(_policy("high"))
    assert msg.startswith("line 8: ")
    assert "categories[0](my-cat).severity" in msg
    assert "'high'" in msg


def test_severity_out_of_range() -> None:
    msg = _only_problem(_policy("7"))
    assert "line 8" in msg
    assert "categories[0](my-cat).severity" in msg
    assert "less than or equal to 4" in msg
    assert "7" in msg


def test_duplicate_category_id_is_named() -> None:
    extra = "  - id: my-cat\n    name: D\n    definition: d\n    severity: 1\n"
    msg = _only_problem(_policy(extra=extra))
    assert "duplicate category ids" in msg
    assert "my-cat" in msg


def test_unknown_field_is_reported_with_its_name_and_line() -> None:
    msg = _only_problem(_policy(extra="    defintion: typo\n"))
    assert msg.startswith("line 9: ")
    assert "categories[0](my-cat).defintion" in msg
    assert "unknown field" in msg


def test_unknown_field_with_a_block_value_points_at_the_key_line() -> None:
    # The key is on line 9; its list value starts on line 10. The loader means to point at the key.
    msg = _only_problem(_policy(extra="    violatez:\n      - a rule\n"))
    assert "categories[0](my-cat).violatez" in msg
    assert msg.startswith("line 9: "), msg


def test_duplicate_yaml_key_is_reported_with_its_line() -> None:
    msg = _only_problem(_policy(extra="    name: again\n"))
    assert "duplicate key 'name'" in msg
    assert "line 9" in msg
    assert "first at line 6" in msg


def test_answer_leading_to_an_unknown_step() -> None:
    steps = STEPS_HEADER + _step(
        "a", "{answer: y, next: nowhere}", "{answer: n, verdict: violating}"
    )
    msg = _only_problem(_policy(extra=steps))
    assert "unknown step 'nowhere'" in msg
    assert "categories[0](my-cat)" in msg


def test_answer_citing_an_unknown_rule() -> None:
    steps = STEPS_HEADER + _step(
        "a", "{answer: y, verdict: violating, rule: R9}", "{answer: n, verdict: not_violating}"
    )
    msg = _only_problem(_policy(extra="    violates: [one rule]\n" + steps))
    assert "unknown rule 'R9'" in msg
    assert "R1" in msg


def test_loop_in_decision_steps() -> None:
    steps = (
        STEPS_HEADER
        + _step("a", "{answer: y, next: b}", "{answer: n, verdict: not_violating}")
        + _step("b", "{answer: y, next: a}", "{answer: n, verdict: not_violating}")
    )
    msg = _only_problem(_policy(extra=steps))
    assert "loop" in msg
    assert "a -> b -> a" in msg


def test_self_loop_in_decision_steps() -> None:
    steps = STEPS_HEADER + _step("a", "{answer: y, next: a}", "{answer: n, verdict: violating}")
    assert "a -> a" in _only_problem(_policy(extra=steps))


def test_answer_with_both_next_and_verdict() -> None:
    steps = (
        STEPS_HEADER
        + _step("a", "{answer: y, next: b, verdict: violating}", "{answer: n, verdict: violating}")
        + _step("b", "{answer: y, verdict: violating}", "{answer: n, verdict: not_violating}")
    )
    msg = _only_problem(_policy(extra=steps))
    assert "exactly one of 'next'" in msg
    assert "categories[0](my-cat).decision_steps[0](a).answers[0]" in msg
    assert msg.startswith("line 13: ")


def test_answer_with_neither_next_nor_verdict() -> None:
    steps = STEPS_HEADER + _step("a", "{answer: y}", "{answer: n, verdict: violating}")
    assert "exactly one of 'next'" in _only_problem(_policy(extra=steps))


def test_bands_with_block_below_review() -> None:
    msg = _only_problem(_policy(extra="bands: {review: 0.9, block: 0.4}\n"))
    assert msg.startswith("line 9: bands: ")
    assert "block (0.4) must be at least review (0.9)" in msg


def test_category_bands_with_block_below_review() -> None:
    msg = _only_problem(_policy(extra="    bands: {review: 0.9, block: 0.4}\n"))
    assert "categories[0](my-cat).bands" in msg


def test_several_problems_are_all_reported() -> None:
    text = _policy(
        "high",
        "    defintion: typo\n  - id: Bad Id\n    name: x\n    definition: d\n    severity: 9\n",
    )
    with pytest.raises(PolicyError) as info:
        parse_policy(text, source="x.yaml")
    problems = info.value.problems
    assert len(problems) == 4, problems
    joined = "\n".join(problems)
    assert "categories[0](my-cat).severity" in joined
    assert "categories[0](my-cat).defintion" in joined
    assert "categories[1](Bad Id).id" in joined
    assert "categories[1](Bad Id).severity" in joined
    assert "4 problems" in str(info.value)
    assert str(info.value).startswith("x.yaml: ")


def test_missing_required_field() -> None:
    msg = _only_problem(HEAD)
    assert "categories[0](my-cat).severity" in msg
    assert "required field is missing" in msg


def test_missing_file_names_the_path_and_lists_builtin_packs(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(PolicyError) as info:
        load_policy(missing)
    text = str(info.value)
    assert str(missing) in text
    assert "openai" in text
    assert "mlcommons" in text


def test_a_path_named_like_a_pack_is_not_the_pack(tmp_path: Path) -> None:
    # Only a *string* equal to a pack name means the pack; a Path is always a file.
    with pytest.raises(PolicyError):
        load_policy(tmp_path / "openai")


def test_load_policy_reads_a_file(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(_policy(), encoding="utf-8")
    loaded = load_policy(path)
    assert loaded.source == str(path)
    assert loaded.policy.category_ids == ["my-cat"]


def test_yaml_syntax_error_reports_line_and_column() -> None:
    msg = _only_problem("id: p\n  bad: indent\n")
    assert msg.startswith("line 2, column 6: ")


def test_top_level_must_be_a_mapping() -> None:
    assert "YAML mapping" in _only_problem("- a\n- b\n")


@pytest.mark.parametrize("text", ["? [a, b]\n: 1\n", "{[1]: 2}\n", "id: p\x07\n"])
def test_unhashable_keys_and_control_characters_raise_policy_error(text: str) -> None:
    with pytest.raises(PolicyError):
        parse_policy(text)


# --- bands and thresholds ---------------------------------------------------------------------


def test_bands_action_boundaries() -> None:
    bands = Bands(review=0.5, block=0.85)
    assert bands.action(0.0) is Action.allow
    assert bands.action(0.4999) is Action.allow
    assert bands.action(0.5) is Action.review
    assert bands.action(0.8499) is Action.review
    assert bands.action(0.85) is Action.block
    assert bands.action(1.0) is Action.block


def test_bands_equal_review_and_block_is_allowed_and_blocks() -> None:
    bands = Bands(review=0.6, block=0.6)
    assert bands.action(0.6) is Action.block
    assert bands.action(0.59) is Action.allow


def test_action_rank_orders_by_severity() -> None:
    assert [a.rank for a in (Action.allow, Action.review, Action.block)] == [0, 1, 2]


def test_threshold_defaults_to_review_band_and_honours_overrides() -> None:
    extra = (
        "  - id: own-bands\n    name: B\n    definition: d\n    severity: 1\n"
        "    bands: {review: 0.3, block: 0.7}\n"
        "  - id: flagged\n    name: F\n    definition: d\n    severity: 1\n"
        "    flag_threshold: 0.42\n    bands: {review: 0.3, block: 0.7}\n"
    )
    pol = parse_policy("bands: {review: 0.6, block: 0.9}\n" + _policy(extra=extra)).policy
    default = pol.bands
    assert pol.category("my-cat").threshold_or(default) == 0.6
    assert pol.category("own-bands").threshold_or(default) == 0.3
    assert pol.category("flagged").threshold_or(default) == 0.42
    assert pol.category("own-bands").bands_or(default) == Bands(review=0.3, block=0.7)
    assert pol.category("my-cat").bands_or(default) is default


def test_category_lookup_unknown_raises_key_error() -> None:
    with pytest.raises(KeyError):
        parse_policy(_policy()).policy.category("nope")


def test_plain_string_rules_are_numbered() -> None:
    extra = "    violates:\n      - first\n      - {id: custom, text: second}\n      - third\n"
    cat = parse_policy(_policy(extra=extra)).policy.category("my-cat")
    assert [(r.id, r.text) for r in cat.violates] == [
        ("R1", "first"),
        ("custom", "second"),
        ("R3", "third"),
    ]


def test_duplicate_rule_ids_are_rejected() -> None:
    extra = "    violates:\n      - first\n      - {id: R1, text: second}\n"
    assert "duplicate rule ids" in _only_problem(_policy(extra=extra))


def test_blank_example_is_rejected() -> None:
    msg = _only_problem(_policy(extra="    examples:\n      positive: ['  ']\n"))
    assert "example 0 is empty" in msg


# --- robustness: any input is a LoadedPolicy or a PolicyError -----------------------------------

VALID: dict[str, Any] = yaml.safe_load(
    _policy(
        extra="""\
    violates: [one, {id: two, text: second rule}]
    does_not_violate: [news]
    flag_threshold: 0.4
    bands: {review: 0.3, block: 0.8}
    decision_steps:
      - id: a
        question: q?
        answers:
          - {answer: y, next: b}
          - {answer: n, verdict: not_violating}
      - id: b
        question: r?
        answers:
          - {answer: y, verdict: violating, rule: two}
          - {answer: n, verdict: not_violating}
    examples:
      positive: [bad text]
      negative: [good text]
bands: {review: 0.5, block: 0.85}
description: a policy
"""
    )
)


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _paths(v, (*prefix, i))
    return out


PATHS = _paths(VALID)

json_junk = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=10,
)


def _set(data: Any, path: tuple[Any, ...], value: Any, delete: bool) -> Any:
    if not path:
        return value
    parent = data
    for part in path[:-1]:
        parent = parent[part]
    if delete:
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    return data


def test_valid_fixture_for_property_test_is_valid() -> None:
    assert parse_policy(yaml.safe_dump(VALID)).policy.category("my-cat").flag_threshold == 0.4


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    mutations=st.lists(
        st.tuples(st.sampled_from(PATHS), json_junk, st.booleans()), min_size=1, max_size=3
    )
)
def test_mutated_policy_is_loaded_or_rejected_with_policy_error(
    mutations: list[tuple[tuple[Any, ...], Any, bool]],
) -> None:
    data: Any = copy.deepcopy(VALID)
    for path, value, delete in mutations:
        try:
            data = _set(data, path, value, delete and bool(path))
        except (KeyError, IndexError, TypeError):
            continue  # an earlier mutation removed or replaced this path
    text = yaml.safe_dump(data, allow_unicode=True)
    try:
        loaded = parse_policy(text)
    except PolicyError as exc:
        assert exc.problems
        assert all(isinstance(p, str) and p for p in exc.problems)
    else:
        assert isinstance(loaded, LoadedPolicy)
        assert loaded.version.startswith(f"{loaded.policy.id}@")


@settings(max_examples=300, deadline=None)
@given(text=st.text(max_size=200))
@example(text="id: p\x07\n")
def test_arbitrary_text_is_loaded_or_rejected_with_policy_error(text: str) -> None:
    try:
        parse_policy(text)
    except PolicyError as exc:
        assert exc.problems


def test_a_loaded_policy_survives_pickling() -> None:
    """Ray and process pools ship policies to workers by pickling them."""
    import pickle

    from bastion.policy import load_policy

    policy = load_policy("openai")
    copy = pickle.loads(pickle.dumps(policy))
    assert copy.version == policy.version and copy.category_ids == policy.category_ids
    assert copy.policy.categories[0].definition == policy.policy.categories[0].definition
