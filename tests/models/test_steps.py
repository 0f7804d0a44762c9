"""Decision paths as auxiliary targets: answers become indices, unreached steps stay unknown."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import bastion.policy
from bastion.models.steps import (
    UNKNOWN,
    StepColumn,
    StepTargetError,
    answer_accuracy,
    parse_path,
    step_columns,
    step_targets,
)
from bastion.policy import LoadedPolicy, load_policy

CATEGORY = "harassment/threatening"


@pytest.fixture(scope="module")
def starter() -> LoadedPolicy:
    return load_policy(Path(bastion.policy.__file__).parent / "starter.yaml")


def test_one_column_per_step_with_the_policy_answers_in_order(starter: LoadedPolicy) -> None:
    columns = step_columns(starter)
    assert columns == [
        StepColumn(CATEGORY, "target", ("yes", "no")),
        StepColumn(CATEGORY, "harm", ("yes", "no")),
        StepColumn(CATEGORY, "serious", ("yes", "no")),
    ]
    assert columns[0].name == "harassment/threatening:target"


def test_answers_become_indices_and_unreached_steps_stay_unknown(starter: LoadedPolicy) -> None:
    columns = step_columns(starter)
    paths = [
        {CATEGORY: {"target": "yes", "harm": "yes", "serious": "no"}},
        {CATEGORY: {"target": "No"}},  # ended at the first step; case and spaces do not matter
        {CATEGORY: {"harm": " YES "}},  # a step on its own (the path was partly recorded)
        {},  # an item annotated without a path
        {"spam": {"link": "yes"}},  # another policy's category: not a column here
    ]
    got = step_targets(columns, paths)
    assert got.dtype == np.int64 and got.shape == (5, 3)
    assert got.tolist() == [
        [0, 0, 1],
        [1, UNKNOWN, UNKNOWN],
        [UNKNOWN, 0, UNKNOWN],
        [UNKNOWN] * 3,
        [UNKNOWN] * 3,
    ]


def test_a_step_or_answer_the_policy_lacks_is_an_error_naming_the_row(
    starter: LoadedPolicy,
) -> None:
    columns = step_columns(starter)
    with pytest.raises(StepTargetError, match=r"line 7: category .* has no decision step 'tone'"):
        step_targets(columns, [{CATEGORY: {"tone": "yes"}}], where=["line 7"])
    with pytest.raises(StepTargetError, match=r"row 2: .*:harm answered 'maybe'; .*'yes', 'no'"):
        step_targets(columns, [{}, {CATEGORY: {"harm": "maybe"}}])


def test_paths_from_files_are_checked() -> None:
    path = {"hate": {"target": "yes"}}
    assert parse_path(path, "x") == path
    assert parse_path('{"hate": {"target": "yes"}}', "x") == path  # a CSV cell holds JSON text
    assert parse_path(None, "x") == {} and parse_path("", "x") == {}
    with pytest.raises(StepTargetError, match="line 3: 'path' must map category ids"):
        parse_path({"hate": ["yes"]}, "line 3")
    with pytest.raises(StepTargetError, match="line 4: 'path' is not valid JSON"):
        parse_path("{hate", "line 4")


def test_answer_accuracy_counts_only_known_answers() -> None:
    predicted = [
        np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]]),
        np.array([[0.1, 0.2, 0.7], [0.5, 0.3, 0.2], [0.3, 0.4, 0.3]]),
    ]
    steps = np.array([[0, 2], [0, UNKNOWN], [UNKNOWN, UNKNOWN]])
    assert answer_accuracy(predicted, steps) == [0.5, 1.0]
    assert answer_accuracy(predicted[:1], np.full((3, 1), UNKNOWN)) == [None]
