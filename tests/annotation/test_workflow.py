"""The annotation workflow in the store: people and sessions, projects, tasks, hand-out,
submission, task states and adjudication, the agreement report, the audit log and the export of
finished work.

Every test takes `workflow`, so it runs on SQLite and on PostgreSQL (tests/databases.py; the
PostgreSQL cases need $BASTION_TEST_POSTGRES_URL, which `.ci/postgres.sh` sets). Time is a
clock moved by hand, so sessions and assignments expire without sleeping. Passwords are hashed
with a cheap scrypt cost here (the stored hash names its own parameters, so verifying is
unchanged); the real cost is pinned in tests/store/test_passwords.py.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
from datetime import timedelta
from itertools import count
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import select, text

import bastion.policy
from bastion.annotation import Annotation, PathStep, Span
from bastion.annotation.export import classification_rows
from bastion.annotation.preannotate import in_blind_slice
from bastion.annotation.workflow import (
    ASSIGNMENT_TTL,
    SESSION_TTL,
    AnnotationRejected,
    GoldAnswer,
    NewTask,
    Person,
    PersonRole,
    Project,
    Task,
    TaskState,
    Workflow,
    WorkflowError,
)
from bastion.errors import ForbiddenError, NotFoundError
from bastion.policy import LoadedPolicy, parse_policy
from bastion.store import Store, passwords
from bastion.store.models import PersonRow
from bastion.store.passwords import MIN_LENGTH, verify_password
from databases import Clock, backend, database_url, home, store  # noqa: F401  (fixtures)

CATEGORY = "harassment/threatening"
STARTER = (Path(bastion.policy.__file__).parent / "starter.yaml").read_text()
VERSION = parse_policy(STARTER).version
PASSWORD = "correct horse battery"
THREAT = "I know which bus you take home. Tomorrow you won't get off it in one piece."

# Decision paths through the starter category: target -> harm -> serious.
VIOLATES = ("yes", "yes", "yes")  # the only path that ends in a violation (rule direct-threat)
HYPERBOLE = ("yes", "yes", "no")
NO_HARM = ("yes", "no")
NO_TARGET = ("no",)
STEPS = ("target", "harm", "serious")


@pytest.fixture(autouse=True)
def cheap_password_hashes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(passwords, "N", 2**4)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def workflow(store: Store, clock: Clock) -> Workflow:  # noqa: F811
    return Workflow(store, clock=clock)


# -- helpers ---------------------------------------------------------------------------------


def add(workflow: Workflow, name: str, role: str = "annotator") -> Person:
    return workflow.add_person(name, role, PASSWORD, actor="root")


def project(
    workflow: Workflow,
    members: tuple[Person, ...] = (),
    project_id: str = "p1",
    policy_text: str = STARTER,
    **options: Any,
) -> Project:
    made = workflow.create_project(project_id, policy_text, actor="root", **options)
    for member in members:
        workflow.add_member(project_id, member.name, actor="root")
    return made


def tasks(*item_ids: str, **fields: Any) -> list[NewTask]:
    return [NewTask(item_id=i, text=f"text of {i}", **fields) for i in item_ids]


def judge(answers: tuple[str, ...], category: str = CATEGORY, **fields: object) -> Annotation:
    """A valid annotation of the starter category that takes the path `answers`."""
    violation = answers == VIOLATES
    values: dict[str, object] = {
        "category": category,
        "path": [PathStep(step=s, answer=a) for s, a in zip(STEPS, answers, strict=False)],
        "violation": violation,
        "severity": 4 if violation else 0,
        "rule_ids": ["direct-threat"] if violation else [],
        "policy_version": VERSION,
    }
    values.update(fields)
    return Annotation.model_validate(values)


def answer(workflow: Workflow, person: Person, project_id: str, answers: tuple[str, ...]) -> Task:
    """`person` takes their next task of the project and submits `answers` for it."""
    task = workflow.next_task(person, project_id)
    assert task is not None
    return workflow.submit(person, task.id, [judge(answers)])


def actions(workflow: Workflow, project_id: str | None = None) -> list[tuple[str, str]]:
    """(actor, action) of the audit log, oldest first."""
    return [(e.actor, e.action) for e in reversed(workflow.audit(project_id))]


def two_category_policy(*, steps_in_second: bool = True) -> str:
    """The starter policy with a second category (a copy under another id)."""
    data = yaml.safe_load(STARTER)
    second = copy.deepcopy(data["categories"][0])
    second["id"] = "harassment/doxxing"
    second["name"] = "Doxxing"
    if not steps_in_second:
        del second["decision_steps"]
    data["categories"].append(second)
    return yaml.safe_dump(data, sort_keys=False)


# -- people and sessions ---------------------------------------------------------------------


def test_people_are_added_with_a_role_and_a_unique_name(workflow: Workflow) -> None:
    ann = add(workflow, "ann")
    rev = add(workflow, "rev", PersonRole.reviewer)
    assert (ann.name, ann.role, rev.role) == ("ann", PersonRole.annotator, PersonRole.reviewer)
    assert workflow.person("rev") == rev
    assert [p.name for p in workflow.people()] == ["ann", "rev"]
    with pytest.raises(WorkflowError, match="someone called 'ann' already exists"):
        workflow.add_person("ann", "admin", "another long password", actor="root")
    assert workflow.person("ann").role == PersonRole.annotator  # the first one is left alone
    with pytest.raises(WorkflowError, match="must be one word"):
        add(workflow, "ann smith")
    with pytest.raises(NotFoundError):
        workflow.person("nobody")


def test_a_short_password_or_an_unknown_role_is_refused(workflow: Workflow) -> None:
    with pytest.raises(WorkflowError, match=f"at least {MIN_LENGTH} characters"):
        workflow.add_person("ann", "annotator", "x" * (MIN_LENGTH - 1), actor="root")
    with pytest.raises(WorkflowError) as refused:
        workflow.add_person("ann", "boss", PASSWORD, actor="root")
    assert "'boss'" in str(refused.value)
    assert all(role in str(refused.value) for role in ("admin", "reviewer", "annotator"))
    assert workflow.people() == []  # neither was added
    assert workflow.add_person("ann", "annotator", "x" * MIN_LENGTH, actor="root").name == "ann"


def test_the_stored_password_is_a_salted_hash_that_verifies(
    workflow: Workflow,
    store: Store,  # noqa: F811
) -> None:
    add(workflow, "ann")
    add(workflow, "bob")
    with store.transaction("read hashes") as session:
        hashes = dict(session.execute(select(PersonRow.name, PersonRow.password_hash)).all())
    assert PASSWORD not in hashes["ann"]
    assert hashes["ann"] != hashes["bob"]  # same password, different salt
    assert verify_password(PASSWORD, hashes["ann"])
    assert not verify_password(PASSWORD + "!", hashes["ann"])


def test_log_in_opens_a_session_and_a_wrong_password_is_audited_without_it(
    workflow: Workflow,
) -> None:
    ann = add(workflow, "ann")
    assert workflow.log_in("ann", "wrong password 123") is None
    assert workflow.log_in("nobody", PASSWORD) is None
    opened = workflow.log_in(" ann ", PASSWORD)
    assert opened is not None
    person, token, csrf = opened
    assert person == ann and token and csrf and token != csrf
    assert workflow.session(token) == (ann, csrf)
    assert workflow.session(token + "x") is None
    assert actions(workflow)[-3:] == [
        ("ann", "login.failed"),
        ("nobody", "login.failed"),
        ("ann", "login"),
    ]
    logged = json.dumps([[str(e.at), e.actor, e.action, e.detail] for e in workflow.audit()])
    assert "wrong password" not in logged and PASSWORD not in logged


def test_an_unknown_name_costs_the_same_scrypt_work_as_a_wrong_password(
    workflow: Workflow, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Timing would only be flaky evidence; counting the scrypt calls is exact: one for a wrong
    password, one (at the same cost parameters) for a name nobody has."""
    add(workflow, "ann")
    calls: list[tuple[int, int, int]] = []
    real_scrypt = hashlib.scrypt

    def counting(password: bytes, **kw: Any) -> bytes:
        calls.append((kw["n"], kw["r"], kw["p"]))
        return real_scrypt(password, **kw)

    monkeypatch.setattr(hashlib, "scrypt", counting)
    assert workflow.log_in("ann", "wrong password 123") is None
    wrong_password = list(calls)
    calls.clear()
    assert workflow.log_in("nobody", "wrong password 123") is None
    assert calls == wrong_password == [(passwords.N, passwords.R, passwords.P)]


def test_a_session_expires_after_its_ttl_and_log_out_ends_it(
    workflow: Workflow, clock: Clock
) -> None:
    ann = add(workflow, "ann")
    first, second = workflow.log_in("ann", PASSWORD), workflow.log_in("ann", PASSWORD)
    assert first is not None and second is not None
    workflow.log_out(first[1])
    assert workflow.session(first[1]) is None
    assert workflow.session(second[1]) == (ann, second[2])  # only that session ended
    workflow.log_out("not a token")  # nothing to end: no error
    workflow.log_out(first[1])  # already ended: not logged twice
    assert [e.action for e in workflow.audit() if e.actor == "ann"].count("logout") == 1
    clock.advance(SESSION_TTL - timedelta(seconds=1))
    assert workflow.session(second[1]) is not None
    clock.advance(timedelta(seconds=1))
    assert workflow.session(second[1]) is None


# -- projects --------------------------------------------------------------------------------


def test_a_project_freezes_its_policy_and_checks_its_settings(
    workflow: Workflow, policy: LoadedPolicy
) -> None:
    made = project(workflow)
    assert made.policy.version == parse_policy(STARTER).version == policy.version
    assert (made.categories, made.overlap, made.borderline_overlap) == ([CATEGORY], 2, 3)
    edited = STARTER.replace("Threats against a person", "Threats against anyone")
    other = project(workflow, project_id="p2", policy_text=edited)
    assert other.policy.version != policy.version
    assert workflow.project("p1").policy.version == policy.version  # not moved by p2
    assert workflow.project("p2").policy.version == parse_policy(edited).version
    with pytest.raises(WorkflowError, match="already exists"):
        project(workflow)
    refusals: list[tuple[dict[str, Any], str]] = [
        ({"categories": ["violence"]}, f"unknown categories \\['violence'\\].*{CATEGORY}"),
        ({"overlap": 0}, "overlap must be at least 1"),
        ({"overlap": 3, "borderline_overlap": 2}, "borderline overlap at least overlap"),
        ({"blind_share": 1.5}, "blind share must be between 0 and 1"),
        ({"blind_share": -0.1}, "blind share must be between 0 and 1"),
        ({"blind_share": math.nan}, "blind share must be between 0 and 1"),
    ]
    for bad, message in refusals:
        with pytest.raises(WorkflowError, match=message):
            project(workflow, project_id="bad", **bad)
    with pytest.raises(NotFoundError):
        workflow.project("bad")


def test_a_project_chooses_among_the_policys_categories(workflow: Workflow) -> None:
    both = project(workflow, policy_text=two_category_policy())
    assert both.categories == [CATEGORY, "harassment/doxxing"]
    one = project(
        workflow, project_id="p2", policy_text=two_category_policy(), categories=[CATEGORY]
    )
    assert one.categories == [CATEGORY]
    with pytest.raises(WorkflowError, match="no decision steps"):
        project(workflow, project_id="p3", policy_text=two_category_policy(steps_in_second=False))
    with pytest.raises(WorkflowError, match="letters, digits"):
        project(workflow, project_id="p 4")


def test_members_see_their_projects_and_admins_see_all(workflow: Workflow) -> None:
    ann, bob = add(workflow, "ann"), add(workflow, "bob")
    rev, admin = add(workflow, "rev", "reviewer"), add(workflow, "boss", "admin")
    project(workflow, (ann, rev), project_id="p1")
    project(workflow, (bob,), project_id="p2")
    workflow.add_member("p1", "ann", actor="root")  # twice: still one membership
    assert [p.id for p in workflow.projects(ann)] == ["p1"]
    assert [p.id for p in workflow.projects(bob)] == ["p2"]
    assert [p.id for p in workflow.projects(rev)] == ["p1"]
    assert [p.id for p in workflow.projects(admin)] == ["p1", "p2"]
    workflow.check_access(ann, "p1")
    workflow.check_access(admin, "p2")
    with pytest.raises(ForbiddenError, match="ann is not a member of project 'p2'"):
        workflow.check_access(ann, "p2")
    with pytest.raises(ForbiddenError):
        workflow.check_access(rev, "p2")
    for who in (ann, admin):
        with pytest.raises(NotFoundError, match="no annotation project 'p9'"):
            workflow.check_access(who, "p9")
    with pytest.raises(NotFoundError):
        workflow.add_member("p1", "nobody", actor="root")
    assert actions(workflow, "p1").count(("root", "member.add")) == 2


# -- tasks -----------------------------------------------------------------------------------


def test_add_tasks_reports_items_already_there_and_leaves_them_alone(workflow: Workflow) -> None:
    project(workflow)
    first = workflow.add_tasks("p1", tasks("a", "b"), actor="root")
    assert (first.added, first.already_there, first.problems) == (2, [], [])
    again = workflow.add_tasks(
        "p1", [NewTask("b", "new text"), NewTask("c", "c"), NewTask("c", "c twice")], actor="root"
    )
    assert (again.added, again.already_there, again.problems) == (1, ["b", "c"], [])
    admin = add(workflow, "boss", "admin")
    texts = []
    while (task := workflow.next_task(admin, "p1")) is not None:
        texts.append(task.text)
        workflow.submit(admin, task.id, [judge(NO_TARGET)])
    assert texts == ["text of a", "text of b", "c"]
    added = [e.detail for e in reversed(workflow.audit("p1")) if e.action == "tasks.add"]
    assert added[1] == {
        "added": 1,
        "gold": 0,
        "borderline": 0,
        "already_there": 2,
        "refused": 0,
    }


def test_a_bad_task_is_refused_by_name_and_the_rest_are_added(workflow: Workflow) -> None:
    version = project(workflow, policy_text=two_category_policy()).policy.version
    other_version = judge(NO_TARGET, policy_version=VERSION)  # the starter's, not the project's
    result = workflow.add_tasks(
        "p1",
        [
            NewTask("good", "text"),
            NewTask("media-only", "", media=["https://example.com/a.png"]),
            NewTask("wrong-category", "text", suggestions={"violence": judge(NO_TARGET, policy_version=version)}),
            NewTask("mislabelled", "text", suggestions={"harassment/doxxing": judge(NO_TARGET, policy_version=version)}),
            NewTask("old-suggestion", "text", suggestions={CATEGORY: other_version}),
            NewTask("half-gold", "text", gold={CATEGORY: GoldAnswer(True)}),
            NewTask("empty", "  "),
            NewTask("good-gold", "text", gold={c: GoldAnswer(False) for c in [CATEGORY, "harassment/doxxing"]}),
        ],
        actor="root",
    )  # fmt: skip
    assert result.added == 3
    assert result.already_there == []
    refused = ["wrong-category", "mislabelled", "old-suggestion", "half-gold", "empty"]
    assert len(result.problems) == len(refused)
    for item, problem in zip(refused, result.problems, strict=True):
        assert f"item '{item}'" in problem
    assert VERSION in result.problems[2] and version in result.problems[2]
    assert "every category" in result.problems[3]
    assert "neither text nor media" in result.problems[4]
    assert workflow.counts("p1") == {"open": 3, "adjudication": 0, "done": 0}


def test_borderline_items_need_more_people_and_the_blind_share_hides_suggestions(
    workflow: Workflow,
) -> None:
    admin = add(workflow, "boss", "admin")
    suggestion = {CATEGORY: judge(VIOLATES, source="llm")}
    for project_id, share in [("none", 0.0), ("all", 1.0)]:
        project(workflow, project_id=project_id, overlap=2, borderline_overlap=4, blind_share=share)
        workflow.add_tasks(
            project_id,
            [
                *tasks("a1", "a2", "a3", "a4", suggestions=suggestion),
                *tasks("b1", "b2", borderline=True, suggestions=suggestion),
            ],
            actor="root",
        )
        handed = []
        while (task := workflow.next_task(admin, project_id)) is not None:
            handed.append(task)
            workflow.submit(admin, task.id, [judge(VIOLATES)])
        assert {t.item_id: t.required for t in handed} == {
            "a1": 2, "a2": 2, "a3": 2, "a4": 2, "b1": 4, "b2": 4,
        }  # fmt: skip
        assert {t.blind for t in handed} == {share == 1.0}
        assert all(t.suggestions == suggestion for t in handed)  # kept; the form hides them


# -- hand-out --------------------------------------------------------------------------------


def test_next_task_gives_back_the_held_task_until_it_is_submitted(workflow: Workflow) -> None:
    ann = add(workflow, "ann")
    project(workflow, (ann,))
    workflow.add_tasks("p1", tasks("a", "b"), actor="root")
    first = workflow.next_task(ann, "p1")
    assert first is not None and first.item_id == "a"
    again = workflow.next_task(ann, "p1")
    assert again is not None and again.id == first.id
    assert actions(workflow, "p1").count(("ann", "task.assign")) == 1
    workflow.submit(ann, first.id, [judge(NO_TARGET)])
    second = workflow.next_task(ann, "p1")
    assert second is not None and second.item_id == "b"  # "a" still needs someone, not ann
    workflow.submit(ann, second.id, [judge(NO_TARGET)])
    assert workflow.next_task(ann, "p1") is None
    assert workflow.counts("p1") == {"open": 2, "adjudication": 0, "done": 0}


def test_a_task_is_handed_to_at_most_required_people_at_once(workflow: Workflow) -> None:
    ann, bob, cat = add(workflow, "ann"), add(workflow, "bob"), add(workflow, "cat")
    project(workflow, (ann, bob, cat))
    workflow.add_tasks("p1", tasks("a"), actor="root")
    assert workflow.next_task(ann, "p1") is not None
    assert workflow.next_task(bob, "p1") is not None
    assert workflow.next_task(cat, "p1") is None
    outsider = add(workflow, "dan")
    with pytest.raises(ForbiddenError):
        workflow.next_task(outsider, "p1")
    with pytest.raises(NotFoundError):
        workflow.next_task(ann, "p9")


def test_an_unsubmitted_assignment_frees_its_slot_after_the_ttl(
    workflow: Workflow, clock: Clock
) -> None:
    ann, bob, cat, dan = (add(workflow, n) for n in ("ann", "bob", "cat", "dan"))
    project(workflow, (ann, bob, cat, dan))
    workflow.add_tasks("p1", tasks("a"), actor="root")
    task = workflow.next_task(ann, "p1")
    assert task is not None
    workflow.submit(ann, task.id, [judge(VIOLATES)])
    assert workflow.next_task(bob, "p1") is not None
    clock.advance(ASSIGNMENT_TTL - timedelta(minutes=1))
    assert workflow.next_task(cat, "p1") is None  # bob still holds the second slot
    clock.advance(timedelta(minutes=2))
    handed = workflow.next_task(cat, "p1")
    assert handed is not None and handed.id == task.id  # bob's slot, not ann's (submitted)
    assert workflow.next_task(dan, "p1") is None
    # Bob's late annotation is still accepted; cat's completes the task.
    workflow.submit(bob, task.id, [judge(VIOLATES)])
    assert workflow.task(task.id).state == TaskState.done
    assert len(workflow.annotations(task.id)) == 2
    # Cat still holds the finished task unsubmitted: she is not sent back to it.
    assert workflow.next_task(cat, "p1") is None


# -- submission ------------------------------------------------------------------------------


def test_a_submission_with_problems_is_refused_whole_and_audited(workflow: Workflow) -> None:
    ann = add(workflow, "ann")
    project(workflow, (ann,))
    workflow.add_tasks("p1", [NewTask("a", THREAT)], actor="root")
    task = workflow.next_task(ann, "p1")
    assert task is not None
    bad = judge(HYPERBOLE, violation=True)  # the path ends not violating; severity 0
    bad.path[0].spans.append(Span(start=0, end=500, text="I know"))
    with pytest.raises(AnnotationRejected) as refused:
        workflow.submit(ann, task.id, [bad])
    problems = refused.value.problems
    assert len(problems) == 3, problems
    assert any("severity must be 1-4" in p for p in problems)
    assert any("outside the text" in p for p in problems)
    assert all(p.startswith(f"{CATEGORY}: ") for p in problems)
    assert workflow.annotations(task.id) == []
    assert not workflow.submitted(ann, task.id)
    rejected = workflow.audit("p1")[0]
    assert (rejected.actor, rejected.action, rejected.task_id) == (
        "ann",
        "annotation.rejected",
        task.id,
    )
    assert rejected.detail == {"problems": problems}
    for wrong, message in [
        ([], f"category '{CATEGORY}' is not answered"),
        ([judge(VIOLATES), judge(NO_TARGET)], f"category '{CATEGORY}' is answered 2 times"),
        (
            [judge(VIOLATES), judge(NO_TARGET, category="harassment/doxxing")],
            "category 'harassment/doxxing' is not part of this project",
        ),
    ]:
        with pytest.raises(AnnotationRejected) as refused:
            workflow.submit(ann, task.id, wrong)
        assert message in refused.value.problems
    assert workflow.annotations(task.id) == []
    workflow.submit(ann, task.id, [judge(VIOLATES)])  # the assignment is still there to submit
    assert workflow.submitted(ann, task.id)
    assert len(workflow.annotations(task.id)) == 1


def test_submission_is_once_by_the_person_handed_the_task_under_their_name(
    workflow: Workflow,
) -> None:
    ann, bob, rev = add(workflow, "ann"), add(workflow, "bob"), add(workflow, "rev", "reviewer")
    project(workflow, (ann, bob, rev), overlap=1, borderline_overlap=1)
    workflow.add_tasks("p1", tasks("a", "b"), actor="root")
    task = workflow.next_task(ann, "p1")
    assert task is not None
    with pytest.raises(ForbiddenError, match="not handed to bob"):
        workflow.submit(bob, task.id, [judge(NO_TARGET)])
    done = workflow.submit(ann, task.id, [judge(NO_TARGET, annotator="mallory", source="llm")])
    assert done.state == TaskState.done
    [stored] = workflow.annotations(task.id)
    assert (stored.person, stored.kind) == ("ann", "annotation")
    assert (stored.annotation.annotator, stored.annotation.source) == ("ann", "human")
    with pytest.raises(WorkflowError, match="ann already submitted task"):
        workflow.submit(ann, task.id, [judge(VIOLATES)])
    with pytest.raises(ForbiddenError):  # a reviewer may see a done task, not annotate it
        workflow.submit(rev, task.id, [judge(NO_TARGET)])
    assert len(workflow.annotations(task.id)) == 1


# -- task states and adjudication ------------------------------------------------------------


def test_agreement_finishes_a_task_and_disagreement_sends_it_to_adjudication(
    workflow: Workflow,
) -> None:
    ann, bob = add(workflow, "ann"), add(workflow, "bob")
    project(workflow, (ann, bob))
    workflow.add_tasks("p1", tasks("agree", "differ", "same-verdict"), actor="root")
    assert answer(workflow, ann, "p1", VIOLATES).state == TaskState.open  # one of two
    assert answer(workflow, bob, "p1", VIOLATES).state == TaskState.done
    assert answer(workflow, ann, "p1", VIOLATES).state == TaskState.open
    assert answer(workflow, bob, "p1", HYPERBOLE).state == TaskState.adjudication
    assert answer(workflow, ann, "p1", NO_HARM).state == TaskState.open
    assert answer(workflow, bob, "p1", NO_TARGET).state == TaskState.done  # verdicts agree
    assert workflow.counts("p1") == {"open": 0, "adjudication": 1, "done": 2}
    assert ("bastion", "task.done") in actions(workflow, "p1")
    assert ("bastion", "task.adjudication") in actions(workflow, "p1")
    finished = {f.item_id: f.final for f in workflow.finished("p1")}
    assert set(finished) == {"agree", "same-verdict"}
    assert finished["same-verdict"].annotator == "ann"  # a tie: the earliest
    assert [s.step for s in finished["same-verdict"].path] == ["target", "harm"]


def test_a_borderline_task_waits_for_its_third_annotation(workflow: Workflow) -> None:
    people = [add(workflow, n) for n in ("ann", "bob", "cat")]
    project(workflow, tuple(people))
    workflow.add_tasks("p1", tasks("edge", borderline=True), actor="root")
    assert answer(workflow, people[0], "p1", VIOLATES).state == TaskState.open
    assert answer(workflow, people[1], "p1", VIOLATES).state == TaskState.open
    assert answer(workflow, people[2], "p1", VIOLATES).state == TaskState.done


def test_a_reviewer_adjudicates_and_the_adjudication_is_final(workflow: Workflow) -> None:
    ann, bob = add(workflow, "ann"), add(workflow, "bob")
    rev, outsider = add(workflow, "rev", "reviewer"), add(workflow, "out", "reviewer")
    project(workflow, (ann, bob, rev))
    project(workflow, (outsider,), project_id="p2")
    workflow.add_tasks("p1", tasks("a", "b"), actor="root")
    answer(workflow, ann, "p1", VIOLATES)
    task = answer(workflow, bob, "p1", HYPERBOLE)
    assert task.state == TaskState.adjudication
    assert [t.id for t in workflow.adjudication_queue(rev)] == [task.id]
    assert workflow.adjudication_queue(outsider) == []
    with pytest.raises(ForbiddenError):
        workflow.adjudication_queue(ann)
    with pytest.raises(ForbiddenError):
        workflow.adjudicate(ann, task.id, [judge(HYPERBOLE)])
    with pytest.raises(ForbiddenError):
        workflow.adjudicate(outsider, task.id, [judge(HYPERBOLE)])
    with pytest.raises(AnnotationRejected):
        workflow.adjudicate(rev, task.id, [judge(HYPERBOLE, violation=True, severity=4)])
    done = workflow.adjudicate(rev, task.id, [judge(HYPERBOLE, annotator="ann")])
    assert done.state == TaskState.done
    assert workflow.adjudication_queue(rev) == []
    [final] = workflow.finished("p1")
    assert (final.item_id, final.final.annotator, final.final.violation) == ("a", "rev", False)
    assert [(s.person, s.kind) for s in workflow.annotations(task.id)] == [
        ("ann", "annotation"),
        ("bob", "annotation"),
        ("rev", "adjudication"),
    ]
    assert actions(workflow, "p1")[-1] == ("rev", "task.adjudicate")
    with pytest.raises(WorkflowError, match="is done, not waiting for adjudication"):
        workflow.adjudicate(rev, task.id, [judge(VIOLATES)])
    admin = add(workflow, "boss", "admin")
    still_open = workflow.next_task(ann, "p1")
    assert still_open is not None
    with pytest.raises(WorkflowError, match="is open, not waiting for adjudication"):
        workflow.adjudicate(admin, still_open.id, [judge(VIOLATES)])


def test_a_late_annotation_does_not_reopen_an_adjudicated_task(
    workflow: Workflow, clock: Clock
) -> None:
    ann, bob, cat = add(workflow, "ann"), add(workflow, "bob"), add(workflow, "cat")
    rev = add(workflow, "rev", "reviewer")
    project(workflow, (ann, bob, cat, rev))
    workflow.add_tasks("p1", tasks("a"), actor="root")
    late = workflow.next_task(ann, "p1")
    assert late is not None
    clock.advance(ASSIGNMENT_TTL + timedelta(minutes=1))
    answer(workflow, bob, "p1", VIOLATES)
    assert answer(workflow, cat, "p1", HYPERBOLE).state == TaskState.adjudication
    workflow.adjudicate(rev, late.id, [judge(HYPERBOLE)])
    after = workflow.submit(ann, late.id, [judge(HYPERBOLE)])  # agrees with the reviewer
    assert after.state == TaskState.done
    assert [f.final.annotator for f in workflow.finished("p1")] == ["rev"]


def test_a_gold_task_is_final_with_the_answer_that_matches_gold(workflow: Workflow) -> None:
    ann, bob = add(workflow, "ann"), add(workflow, "bob")
    project(workflow, (ann, bob))
    gold = {CATEGORY: GoldAnswer(True, {"target": "yes", "harm": "yes", "serious": "yes"})}
    workflow.add_tasks("p1", tasks("g1", "g2", gold=gold), actor="root")
    answer(workflow, ann, "p1", HYPERBOLE)
    matched = answer(workflow, bob, "p1", VIOLATES)
    assert matched.state == TaskState.done  # a disagreement, but gold settles it
    assert matched.gold == gold
    answer(workflow, ann, "p1", HYPERBOLE)
    assert answer(workflow, bob, "p1", NO_HARM).state == TaskState.adjudication  # nobody right
    [final] = workflow.finished("p1")
    assert (final.item_id, final.final.annotator, final.final.violation) == ("g1", "bob", True)


# -- the agreement report and the export -----------------------------------------------------


def _item_in_slice(prefix: str, blind: bool, project_id: str) -> str:
    return next(
        f"{prefix}{k}" for k in count() if in_blind_slice(f"{prefix}{k}", 0.5, project_id) == blind
    )


SHOWN_ITEM = _item_in_slice("shown", False, "report")
BLIND_ITEM = _item_in_slice("blind", True, "report")

# What ann and bob answer for each item of the report project (items in the order added).
REPORT_ANSWERS = {
    SHOWN_ITEM: (VIOLATES, VIOLATES),  # suggestion: violates (shown)
    "both-no": (NO_TARGET, NO_TARGET),
    BLIND_ITEM: (VIOLATES, HYPERBOLE),  # suggestion: violates (blind)
    "no-either-way": (NO_HARM, HYPERBOLE),
    "gold": (VIOLATES, HYPERBOLE),  # gold: violates
}


def _report_project(workflow: Workflow) -> dict[str, Task]:
    """ann and bob annotate the five items of REPORT_ANSWERS; the tasks by item id."""
    ann, bob = add(workflow, "ann"), add(workflow, "bob")
    project(workflow, (ann, bob), "report", overlap=2, borderline_overlap=2, blind_share=0.5)
    suggestion = {CATEGORY: judge(VIOLATES, source="llm", annotator="model")}
    added = workflow.add_tasks(
        "report",
        [
            NewTask(SHOWN_ITEM, THREAT, suggestions=suggestion),
            NewTask("both-no", "text"),
            NewTask(BLIND_ITEM, "text", suggestions=suggestion),
            NewTask("no-either-way", "text"),
            NewTask("gold", "text", gold={CATEGORY: GoldAnswer(True)}),
        ],
        actor="root",
    )
    assert added.added == 5
    handed: dict[str, Task] = {}
    for k, person in enumerate((ann, bob)):
        while (task := workflow.next_task(person, "report")) is not None:
            handed[task.item_id] = workflow.submit(
                person, task.id, [judge(REPORT_ANSWERS[task.item_id][k])]
            )
    assert set(handed) == set(REPORT_ANSWERS)
    assert (handed[SHOWN_ITEM].blind, handed[BLIND_ITEM].blind) == (False, True)
    return handed


def test_the_report_measures_agreement_gold_accuracy_and_acceptance(workflow: Workflow) -> None:
    handed = _report_project(workflow)
    assert workflow.report("report").tasks == {"open": 0, "adjudication": 1, "done": 4}
    # The reviewer's word settles the task; it is not one more annotator to agree with.
    rev = add(workflow, "rev", "reviewer")
    workflow.add_member("report", "rev", actor="root")
    workflow.adjudicate(rev, handed[BLIND_ITEM].id, [judge(VIOLATES)])
    report = workflow.report("report")
    assert report.policy_version == VERSION
    assert report.tasks == {"open": 0, "adjudication": 0, "done": 5}
    assert list(report.pairwise_kappa) == ["ann / bob"]
    # Verdicts (ann, bob): (T, T), (F, F), (T, F), (F, F), (T, F). Coincidences o_TT = 2,
    # o_FF = 4, o_TF = o_FT = 2; n_T = 4, n_F = 6, n = 10: alpha = 1 - 9 * 4 / (2 * 4 * 6) = 1/4.
    assert report.label_alpha[CATEGORY] == pytest.approx(0.25)
    assert report.label_alpha["all"] == pytest.approx(0.25)
    # target: yes/yes four times, no/no once: no disagreement, alpha 1.
    # harm (only those past target): (y, y), (y, y), (n, y), (y, y): n_y = 7, n_n = 1, n = 8,
    #   alpha = 1 - 7 * 2 / (2 * 7 * 1) = 0.
    # serious: (y, y), (y, n), (y, n) (no-either-way: only bob got there, a unit of one, left
    #   out): n_y = 4, n_n = 2, n = 6, alpha = 1 - 5 * 4 / (2 * 4 * 2) = -1/4.
    assert report.step_alpha == pytest.approx(
        {f"{CATEGORY}/target": 1.0, f"{CATEGORY}/harm": 0.0, f"{CATEGORY}/serious": -0.25}
    )
    assert report.low_agreement_steps == [f"{CATEGORY}/serious", f"{CATEGORY}/harm"]
    # Observed agreement 3/5; ann says T 3 times of 5, bob once: chance = (3 * 1 + 2 * 4) / 25
    # = 0.44; kappa = (0.6 - 0.44) / 0.56 = 2/7.
    kappa, n = report.pairwise_kappa["ann / bob"]
    assert kappa == pytest.approx(2 / 7)
    assert n == 5
    assert report.gold_accuracy == {"ann": (1.0, 1), "bob": (0.0, 1)}
    # Suggested "violates": shown item both agree (2/2); blind item ann agrees, bob not (1/2).
    assert report.acceptance == {"shown": (1.0, 2), "blind": (0.5, 2)}
    as_dict = report.as_dict()
    assert as_dict["pairwise_kappa"]["ann / bob"]["n"] == 5
    assert json.loads(json.dumps(as_dict)) == as_dict


def test_finished_work_exports_the_agreed_and_adjudicated_labels(
    workflow: Workflow, policy: LoadedPolicy
) -> None:
    handed = _report_project(workflow)
    rev = add(workflow, "rev", "reviewer")
    workflow.add_member("report", "rev", actor="root")
    before = {f.item_id for f in workflow.finished("report")}
    assert before == set(REPORT_ANSWERS) - {BLIND_ITEM}
    workflow.adjudicate(rev, handed[BLIND_ITEM].id, [judge(HYPERBOLE)])
    finished = workflow.finished("report")
    suggested = {f.item_id: f.suggestion for f in finished}
    assert suggested[SHOWN_ITEM] == judge(VIOLATES, source="llm", annotator="model")
    assert suggested["gold"] is None
    rows = {r["id"]: r for r in classification_rows(finished, policy)}
    paths = {
        SHOWN_ITEM: VIOLATES,
        "both-no": NO_TARGET,
        BLIND_ITEM: HYPERBOLE,  # the reviewer's
        "no-either-way": NO_HARM,  # same verdict, a tie on the path: ann's (the earlier)
        "gold": VIOLATES,  # the one that matches gold (ann's), not bob's
    }
    assert list(rows) == list(paths)
    for item, path in paths.items():
        label = int(path == VIOLATES)
        assert rows[item]["label"] == rows[item][CATEGORY] == label, item
        assert rows[item]["path"] == {CATEGORY: dict(zip(STEPS, path, strict=False))}, item
    assert rows[SHOWN_ITEM]["text"] == THREAT


# -- the audit log ---------------------------------------------------------------------------


def test_every_change_is_audited_with_its_actor(workflow: Workflow) -> None:
    ann = add(workflow, "ann")
    project(workflow, (ann,), overlap=1, borderline_overlap=1)
    workflow.add_tasks("p1", tasks("a"), actor="root")
    workflow.log_in("ann", PASSWORD)
    answer(workflow, ann, "p1", NO_TARGET)
    assert actions(workflow) == [
        ("root", "person.add"),
        ("root", "project.create"),
        ("root", "member.add"),
        ("root", "tasks.add"),
        ("ann", "login"),
        ("ann", "task.assign"),
        ("ann", "annotation.submit"),
        ("bastion", "task.done"),
    ]
    entries = workflow.audit()
    assert entries[0].task_id == entries[1].task_id is not None
    assert entries[1].detail == {CATEGORY: False}
    assert entries[-1].detail == {"name": "ann", "role": "annotator"}
    assert [e.action for e in workflow.audit(limit=2)] == ["task.done", "annotation.submit"]
    assert len(workflow.audit("p1")) == 6  # the person and the login belong to no project


@pytest.mark.parametrize(
    "statement",
    ["UPDATE audit_log SET actor = 'someone else'", "DELETE FROM audit_log"],
)
def test_the_database_refuses_to_rewrite_the_audit_log(workflow: Workflow, statement: str) -> None:
    add(workflow, "ann")
    before = workflow.audit()
    with pytest.raises(Exception, match="append-only"), workflow.store.engine.begin() as db:
        db.execute(text(statement))
    assert workflow.audit() == before
