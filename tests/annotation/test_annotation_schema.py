"""The annotation form generated from a policy category, and the validator's reasons."""

from __future__ import annotations

from bastion.annotation import Annotation, PathStep, Region, Span, check_annotation, task_form
from bastion.policy import LoadedPolicy

CATEGORY = "harassment/threatening"
TEXT = "I know which bus you take home. Tomorrow you won't get off it in one piece."


def span(text: str) -> Span:
    start = TEXT.index(text)
    return Span(start=start, end=start + len(text), text=text)


def threat(policy: LoadedPolicy, **changes: object) -> Annotation:
    values: dict[str, object] = {
        "category": CATEGORY,
        "path": [
            PathStep(step="target", answer="yes", spans=[span("you take home")]),
            PathStep(step="harm", answer="yes", spans=[span("won't get off it in one piece")]),
            PathStep(step="serious", answer="yes"),
        ],
        "violation": True,
        "severity": 4,
        "rule_ids": ["direct-threat"],
        "rationale": "A specific threat against the reader.",
        "policy_version": policy.version,
        "annotator": "ann1",
    }
    return Annotation(**(values | changes))  # type: ignore[arg-type]


def test_the_form_lists_the_steps_in_order_with_where_each_answer_leads(
    policy: LoadedPolicy,
) -> None:
    form = task_form(policy, CATEGORY)
    assert form.policy_version == policy.version and form.severity == 4
    assert [s.id for s in form.steps] == ["target", "harm", "serious"]
    target = form.steps[0]
    assert [(a.answer, a.next, a.verdict) for a in target.answers] == [
        ("yes", "harm", None),
        ("no", None, "not_violating"),
    ]
    assert form.steps[2].answers[0].rule == "direct-threat"
    assert set(form.rules) == {"direct-threat", "incitement", "R3"}


def test_a_valid_annotation_has_no_problems(policy: LoadedPolicy) -> None:
    assert check_annotation(threat(policy), policy, TEXT) == []
    safe = Annotation(
        category=CATEGORY,
        path=[PathStep(step="target", answer="no")],
        violation=False,
        policy_version=policy.version,
    )
    assert check_annotation(safe, policy, TEXT) == []


def test_the_label_must_follow_from_the_path(policy: LoadedPolicy) -> None:
    wrong = threat(policy, violation=False, severity=0, rule_ids=[])
    [problem] = check_annotation(wrong, policy, TEXT)
    assert "ends in 'violating' but violation is false" in problem
    short = threat(policy, path=[PathStep(step="target", answer="yes")])
    assert (
        "stops before a verdict; the next step is 'harm'"
        in check_annotation(short, policy, TEXT)[0]
    )
    skipped = threat(policy, path=[PathStep(step="harm", answer="yes")])
    assert "expected 'target'" in check_annotation(skipped, policy, TEXT)[0]


def test_spans_must_cover_the_text_they_quote(policy: LoadedPolicy) -> None:
    moved = threat(
        policy,
        path=[
            PathStep(step="target", answer="yes", spans=[Span(start=0, end=6, text="I know")]),
            PathStep(step="harm", answer="yes", spans=[Span(start=2, end=10, text="the bus!")]),
            PathStep(step="serious", answer="yes", spans=[Span(start=70, end=900, text="x")]),
        ],
    )
    problems = check_annotation(moved, policy, TEXT)
    assert len(problems) == 2
    assert problems[0].startswith("step 2 ('harm'): span [2, 10) covers 'know whi', not 'the bus!'")
    assert "outside the text (75 characters)" in problems[1]


def test_rule_ids_must_exist_and_match_the_path(policy: LoadedPolicy) -> None:
    invented = threat(policy, rule_ids=["direct-threat", "doxxing"])
    assert check_annotation(invented, policy, TEXT) == [
        "rule 'doxxing' is not a rule of harassment/threatening (known: R3, direct-threat, incitement)"
    ]
    uncited = threat(policy, rule_ids=["incitement"])
    assert check_annotation(uncited, policy, TEXT) == [
        "the path ends in rule 'direct-threat'; cite it"
    ]


def test_severity_regions_policy_version_and_category_are_checked(policy: LoadedPolicy) -> None:
    assert "severity must be 1-4" in check_annotation(threat(policy, severity=0), policy, TEXT)[0]
    boxed = threat(
        policy,
        path=[
            PathStep(step="target", answer="yes", regions=[Region(image=0, box=(10, 10, 50, 50))]),
            PathStep(step="harm", answer="yes", regions=[Region(image=1, box=(0, 0, 5, 5))]),
            PathStep(step="serious", answer="yes", regions=[Region(image=0, box=(90, 90, 20, 20))]),
        ],
    )
    problems = check_annotation(boxed, policy, TEXT, image_sizes=[(100, 100)])
    assert problems == [
        "step 2 ('harm'): region on image 1, but the item has 1",
        "step 3 ('serious'): region (90, 90, 20, 20) is not inside image 0 (100x100)",
    ]
    old = threat(policy, policy_version="my-platform@0.0.1+0000")
    assert "made under policy my-platform@0.0.1+0000" in check_annotation(old, policy, TEXT)[0]
    other = threat(policy, category="hate")
    assert check_annotation(other, policy, TEXT) == [
        f"unknown category 'hate' in policy {policy.version}"
    ]
