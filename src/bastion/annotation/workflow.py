"""The annotation workflow in the store: people, projects, tasks, assignments, adjudication, audit.

A project annotates items against one policy version (its text is frozen into the project) for
a set of its categories. Each task is annotated by several people: `overlap` of them, or
`borderline_overlap` for an item the miner marked borderline (its label is the one most worth
getting right twice over). Tasks are handed out one at a time, never twice to one person. When
the last required annotation is in, the task is done if everyone gave the same verdict for
every category; otherwise it waits in the adjudication queue for a reviewer's final word. Gold
items (known answers) are mixed in like any task; people's verdicts on them measure accuracy.

Roles: an `annotator` annotates in the projects they are a member of; a `reviewer` also
adjudicates there; an `admin` does everything everywhere (people, projects, every queue).

Every change (a person added, a project made, tasks added, a task handed out, an annotation
submitted or refused, an adjudication, a login) is written to `audit_log` in the same
transaction as the change itself, so the log never misses a change that happened and never
records one that did not. Annotations and the audit log are only ever inserted.
"""

from __future__ import annotations

import hashlib
import secrets
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from functools import lru_cache
from typing import Any, Final

from pydantic import ValidationError
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from bastion.annotation.agreement import (
    acceptance,
    gold_accuracy,
    label_alpha,
    low_agreement,
    pairwise_kappa,
    step_alpha,
)
from bastion.annotation.export import Finished
from bastion.annotation.preannotate import in_blind_slice
from bastion.annotation.schema import Annotation, check_annotation, decision_key
from bastion.errors import BastionError, ForbiddenError, NotFoundError
from bastion.policy import LoadedPolicy, parse_policy
from bastion.store.models import (
    AnnotationProjectRow,
    AnnotationRow,
    AnnotationTaskRow,
    AssignmentRow,
    AuditRow,
    PersonRow,
    ProjectMemberRow,
    WebSessionRow,
)
from bastion.store.passwords import hash_password, password_problem, verify_password
from bastion.store.store import Store

SESSION_TTL: Final = timedelta(hours=12)
"""How long a login lasts: a working day, so nobody is logged out mid-shift."""

ASSIGNMENT_TTL: Final = timedelta(hours=2)
"""An assignment not submitted within this long no longer holds the task's slot for others (a
late submission is still accepted: more annotations never hurt)."""


class PersonRole(StrEnum):
    admin = "admin"
    reviewer = "reviewer"
    annotator = "annotator"


class TaskState(StrEnum):
    open = "open"  # waiting for more annotations
    adjudication = "adjudication"  # all in, people disagree: a reviewer decides
    done = "done"  # agreed, or adjudicated


class WorkflowError(BastionError):
    """A request the workflow refuses (HTTP 400). No such person, project or task is
    `bastion.errors.NotFoundError` (404); a role or membership that does not allow it is
    `bastion.errors.ForbiddenError` (403)."""


class AnnotationRejected(WorkflowError):
    """An annotation failed the validator; `problems` say why, for the annotator to fix."""

    def __init__(self, problems: Sequence[str]) -> None:
        super().__init__("the annotation was not accepted: " + "; ".join(problems))
        self.problems = list(problems)


@dataclass(frozen=True)
class Person:
    id: str
    name: str
    role: PersonRole

    def can_adjudicate(self) -> bool:
        return self.role in (PersonRole.admin, PersonRole.reviewer)


@dataclass(frozen=True)
class Project:
    id: str
    name: str
    policy: LoadedPolicy
    categories: list[str]
    overlap: int
    borderline_overlap: int
    blind_share: float


@dataclass(frozen=True)
class GoldAnswer:
    """The known verdict of a gold item for one category (and, optionally, the step answers)."""

    violation: bool
    path: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class NewTask:
    """An item to annotate: what `add_tasks` takes (from a mining batch or any JSONL)."""

    item_id: str
    text: str
    media: list[str] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)
    borderline: bool = False
    suggestions: dict[str, Annotation] = field(default_factory=dict)
    gold: dict[str, GoldAnswer] | None = None


@dataclass(frozen=True)
class Task:
    id: int
    project_id: str
    item_id: str
    text: str
    media: list[str]
    metadata: dict[str, Any]
    borderline: bool
    blind: bool
    required: int
    suggestions: dict[str, Annotation]
    gold: dict[str, GoldAnswer] | None
    state: TaskState


@dataclass(frozen=True)
class StoredAnnotation:
    person: str
    kind: str  # annotation | adjudication
    annotation: Annotation
    at: datetime


@dataclass(frozen=True)
class AddResult:
    """What `add_tasks` did: how many it added, the items already in the project (left as they
    were), and why each refused item was refused (the others were added all the same)."""

    added: int
    already_there: list[str]
    problems: list[str]


@dataclass(frozen=True)
class AuditEntry:
    at: datetime
    actor: str
    action: str
    project_id: str | None
    task_id: int | None
    detail: dict[str, Any]


@dataclass(frozen=True)
class AgreementReport:
    """`bastion annotate report`: how far people agree, per label and per step, and with gold."""

    project: str
    policy_version: str
    tasks: dict[str, int]
    label_alpha: dict[str, float]
    step_alpha: dict[str, float]
    low_agreement_steps: list[str]
    pairwise_kappa: dict[str, tuple[float, int]]
    gold_accuracy: dict[str, tuple[float, int]]
    acceptance: dict[str, tuple[float, int]]

    def as_dict(self) -> dict[str, Any]:
        return {
            "project": self.project,
            "policy_version": self.policy_version,
            "tasks": self.tasks,
            "label_alpha": self.label_alpha,
            "step_alpha": self.step_alpha,
            "low_agreement_steps": self.low_agreement_steps,
            "pairwise_kappa": {
                k: {"kappa": v, "n": n} for k, (v, n) in self.pairwise_kappa.items()
            },
            "gold_accuracy": {
                k: {"accuracy": v, "n": n} for k, (v, n) in self.gold_accuracy.items()
            },
            "acceptance": {k: {"rate": v, "n": n} for k, (v, n) in self.acceptance.items()},
        }


class Workflow:
    """The annotation workflow over a `Store` (its database holds the tables of migration 0004)."""

    def __init__(self, store: Store, clock: Callable[[], datetime] | None = None) -> None:
        self.store = store
        self._clock = clock or (lambda: datetime.now(UTC))

    # -- people ------------------------------------------------------------------------------

    def add_person(self, name: str, role: PersonRole | str, password: str, actor: str) -> Person:
        name = name.strip()
        if not name or any(c.isspace() for c in name):
            raise WorkflowError(f"login name {name!r} must be one word")
        role = _person_role(role)
        problem = password_problem(password)
        if problem:
            raise WorkflowError(problem)
        with self._write(f"add {name!r}") as session:
            if session.scalar(select(PersonRow).where(PersonRow.name == name)) is not None:
                raise WorkflowError(f"someone called {name!r} already exists")
            row = PersonRow(
                id="usr_" + secrets.token_hex(6),
                name=name,
                role=role.value,
                password_hash=hash_password(password),
                created_at=self._clock(),
                disabled_at=None,
            )
            session.add(row)
            self._audit(session, actor, "person.add", detail={"name": name, "role": role.value})
        return _person(row)

    def people(self) -> list[Person]:
        with self.store.transaction("list people") as session:
            rows = session.scalars(select(PersonRow).order_by(PersonRow.name)).all()
            return [_person(r) for r in rows if r.disabled_at is None]

    def person(self, name: str) -> Person:
        with self.store.transaction("read a person") as session:
            return _person(self._person_row(session, name))

    def log_in(self, name: str, password: str) -> tuple[Person, str, str] | None:
        """Check a password and open a session: (person, cookie token, form token), or None.

        The failed attempt is audited too (without the password), so guessing shows up. An
        unknown or disabled name costs the same scrypt work as a wrong password (see
        `verify_password`), so the time taken does not say which names exist."""
        with self._write("log in") as session:
            row = session.scalar(select(PersonRow).where(PersonRow.name == name.strip()))
            may_log_in = row is not None and row.disabled_at is None
            stored = row.password_hash if may_log_in and row is not None else None
            if not verify_password(password, stored) or row is None:
                self._audit(session, name.strip() or "?", "login.failed")
                return None
            token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(24)
            now = self._clock()
            session.add(
                WebSessionRow(
                    id=_token_hash(token),
                    person_id=row.id,
                    csrf=csrf,
                    created_at=now,
                    expires_at=now + SESSION_TTL,
                )
            )
            self._audit(session, row.name, "login")
            return _person(row), token, csrf

    def session(self, token: str) -> tuple[Person, str] | None:
        """The person and form token of a live session cookie, or None."""
        with self.store.transaction("read a session") as session:
            found = session.get(WebSessionRow, _token_hash(token))
            if found is None or found.expires_at <= self._clock():
                return None
            row = session.get(PersonRow, found.person_id)
            if row is None or row.disabled_at is not None:
                return None
            return _person(row), found.csrf

    def log_out(self, token: str) -> None:
        with self._write("log out") as session:
            found = session.get(WebSessionRow, _token_hash(token))
            if found is not None and found.expires_at > self._clock():
                found.expires_at = self._clock()
                person = session.get(PersonRow, found.person_id)
                self._audit(session, person.name if person else found.person_id, "logout")

    # -- projects ----------------------------------------------------------------------------

    def create_project(
        self,
        project_id: str,
        policy_text: str,
        *,
        name: str = "",
        categories: Sequence[str] = (),
        overlap: int = 2,
        borderline_overlap: int = 3,
        blind_share: float = 0.2,
        actor: str,
    ) -> Project:
        if not project_id or not all(c.isalnum() or c in "-_" for c in project_id):
            raise WorkflowError(f"project id {project_id!r}: use letters, digits, '-' and '_' only")
        policy = parse_policy(policy_text, f"project {project_id}")
        unknown = [c for c in categories if c not in policy.category_ids]
        if unknown:
            raise WorkflowError(
                f"unknown categories {unknown}; the policy has {', '.join(policy.category_ids)}"
            )
        chosen = list(categories) or list(policy.category_ids)
        missing = [c for c in chosen if not policy.policy.category(c).decision_steps]
        if missing:
            raise WorkflowError(
                f"categories {missing} have no decision steps to annotate; add them to the policy"
            )
        if overlap < 1 or borderline_overlap < overlap:
            raise WorkflowError(
                f"overlap must be at least 1 and borderline overlap at least overlap "
                f"(got {overlap} and {borderline_overlap})"
            )
        if not 0.0 <= blind_share <= 1.0:
            raise WorkflowError(f"blind share must be between 0 and 1, got {blind_share}")
        with self._write(f"create project {project_id!r}") as session:
            if session.get(AnnotationProjectRow, project_id) is not None:
                raise WorkflowError(f"project {project_id!r} already exists")
            row = AnnotationProjectRow(
                id=project_id,
                name=name or project_id,
                policy_text=policy_text,
                policy_version=policy.version,
                categories=chosen,
                overlap=overlap,
                borderline_overlap=borderline_overlap,
                blind_share=blind_share,
                created_at=self._clock(),
            )
            session.add(row)
            self._audit(
                session,
                actor,
                "project.create",
                project_id,
                detail={"policy_version": policy.version, "categories": chosen},
            )
        return _project(row)

    def project(self, project_id: str) -> Project:
        with self.store.transaction("read a project") as session:
            return _project(self._project_row(session, project_id))

    def projects(self, person: Person) -> list[Project]:
        """The projects `person` works on (every project, for an admin)."""
        with self.store.transaction("list projects") as session:
            query = select(AnnotationProjectRow).order_by(AnnotationProjectRow.id)
            if person.role != PersonRole.admin:
                query = query.join(
                    ProjectMemberRow, ProjectMemberRow.project_id == AnnotationProjectRow.id
                ).where(ProjectMemberRow.person_id == person.id)
            return [_project(r) for r in session.scalars(query).all()]

    def add_member(self, project_id: str, name: str, actor: str) -> None:
        with self._write(f"add {name!r} to {project_id!r}") as session:
            self._project_row(session, project_id)
            person = self._person_row(session, name)
            if session.get(ProjectMemberRow, (project_id, person.id)) is None:
                session.add(ProjectMemberRow(project_id=project_id, person_id=person.id))
                self._audit(session, actor, "member.add", project_id, detail={"name": name})

    def check_access(self, person: Person, project_id: str) -> None:
        """Raise ForbiddenError unless `person` works on the project (NotFoundError if none)."""
        with self.store.transaction("check project access") as session:
            self._project_row(session, project_id)
            if person.role == PersonRole.admin:
                return
            if session.get(ProjectMemberRow, (project_id, person.id)) is None:
                raise ForbiddenError(f"{person.name} is not a member of project {project_id!r}")

    # -- tasks -------------------------------------------------------------------------------

    def add_tasks(self, project_id: str, tasks: Iterable[NewTask], actor: str) -> AddResult:
        """Add tasks; an item already in the project is left as it is and reported.

        Suggestions must be for the project's categories and policy version; a gold answer
        must cover every category of the project. An item that breaks these is refused with
        the reason, and the rest are added."""
        project = self.project(project_id)
        rows, seen, already, problems = [], set(), [], []
        with self._write(f"add tasks to {project_id!r}") as session:
            existing = set(
                session.scalars(
                    select(AnnotationTaskRow.item_id).where(
                        AnnotationTaskRow.project_id == project_id
                    )
                ).all()
            )
            for task in tasks:
                if task.item_id in existing or task.item_id in seen:
                    already.append(task.item_id)
                    continue
                problem = _new_task_problem(task, project)
                if problem:
                    problems.append(problem)
                    continue
                seen.add(task.item_id)
                rows.append(
                    AnnotationTaskRow(
                        project_id=project_id,
                        item_id=task.item_id,
                        text=task.text,
                        media=list(task.media),
                        item_metadata=dict(task.metadata),
                        borderline=task.borderline,
                        blind=in_blind_slice(task.item_id, project.blind_share, salt=project_id),
                        required=project.borderline_overlap if task.borderline else project.overlap,
                        suggestions={
                            c: a.model_dump(mode="json") for c, a in task.suggestions.items()
                        },
                        gold=None
                        if task.gold is None
                        else {
                            c: {"violation": g.violation, "path": g.path}
                            for c, g in task.gold.items()
                        },
                        state=TaskState.open.value,
                        created_at=self._clock(),
                    )
                )
            session.add_all(rows)
            self._audit(
                session,
                actor,
                "tasks.add",
                project_id,
                detail={
                    "added": len(rows),
                    "gold": sum(r.gold is not None for r in rows),
                    "borderline": sum(r.borderline for r in rows),
                    "already_there": len(already),
                    "refused": len(problems),
                },
            )
        return AddResult(len(rows), already, problems)

    def next_task(self, person: Person, project_id: str) -> Task | None:
        """The task `person` should do next in the project: the open one they hold unsubmitted,
        else a new assignment of the oldest open task they have not done that still needs
        someone; None when there is nothing left for them."""
        self.check_access(person, project_id)
        with self._write(f"hand out a task of {project_id!r}") as session:
            if self.store.dialect == "postgresql":  # one hand-out at a time per project
                session.execute(
                    select(AnnotationProjectRow.id)
                    .where(AnnotationProjectRow.id == project_id)
                    .with_for_update()
                )
            held = session.scalars(
                select(AnnotationTaskRow)
                .join(AssignmentRow, AssignmentRow.task_id == AnnotationTaskRow.id)
                .where(
                    AnnotationTaskRow.project_id == project_id,
                    # a held task that others finished meanwhile is not worth her time
                    AnnotationTaskRow.state == TaskState.open.value,
                    AssignmentRow.person_id == person.id,
                    AssignmentRow.submitted_at.is_(None),
                )
                .order_by(AnnotationTaskRow.id)
            ).first()
            if held is not None:
                return _task(held)
            now = self._clock()
            live = (
                select(func.count(AssignmentRow.id))
                .where(
                    AssignmentRow.task_id == AnnotationTaskRow.id,
                    (AssignmentRow.submitted_at.is_not(None))
                    | (AssignmentRow.assigned_at > now - ASSIGNMENT_TTL),
                )
                .scalar_subquery()
            )
            mine = select(AssignmentRow.task_id).where(AssignmentRow.person_id == person.id)
            row = session.scalars(
                select(AnnotationTaskRow)
                .where(
                    AnnotationTaskRow.project_id == project_id,
                    AnnotationTaskRow.state == TaskState.open.value,
                    AnnotationTaskRow.id.not_in(mine),
                    live < AnnotationTaskRow.required,
                )
                .order_by(AnnotationTaskRow.id)
            ).first()
            if row is None:
                return None
            session.add(AssignmentRow(task_id=row.id, person_id=person.id, assigned_at=now))
            self._audit(session, person.name, "task.assign", project_id, row.id)
            return _task(row)

    def task(self, task_id: int) -> Task:
        with self.store.transaction("read a task") as session:
            return _task(self._task_row(session, task_id))

    def task_for(self, person: Person, task_id: int) -> Task:
        """The task, if `person` may see it: an admin always; a member of its project when it
        was handed to them, or, for a reviewer, when it waits for adjudication or is done."""
        task = self.task(task_id)
        self.check_access(person, task.project_id)
        if person.role == PersonRole.admin:
            return task
        if person.can_adjudicate() and task.state != TaskState.open:
            return task
        with self.store.transaction("read an assignment") as session:
            held = session.scalar(
                select(AssignmentRow.id).where(
                    AssignmentRow.task_id == task_id, AssignmentRow.person_id == person.id
                )
            )
        if held is None:
            raise ForbiddenError(f"task {task_id} was not handed to {person.name}")
        return task

    def submitted(self, person: Person, task_id: int) -> bool:
        with self.store.transaction("read an assignment") as session:
            row = session.scalar(
                select(AssignmentRow).where(
                    AssignmentRow.task_id == task_id, AssignmentRow.person_id == person.id
                )
            )
            return row is not None and row.submitted_at is not None

    def submit(self, person: Person, task_id: int, annotations: Sequence[Annotation]) -> Task:
        """Record `person`'s annotations of a task they were handed, one per project category.

        Each is checked by the validator first; any problem refuses the whole submission with
        every reason listed (`AnnotationRejected`), and the refusal is audited. When this was
        the last annotation the task needed, it is done or goes to adjudication."""
        task = self.task_for(person, task_id)
        project = self.project(task.project_id)
        annotations, problems = _checked_as(person, annotations, project, task)
        with self._write(f"submit task {task_id}") as session:
            assignment = session.scalar(
                select(AssignmentRow).where(
                    AssignmentRow.task_id == task_id, AssignmentRow.person_id == person.id
                )
            )
            if assignment is None:
                raise ForbiddenError(f"task {task_id} was not handed to {person.name}")
            if assignment.submitted_at is not None:
                raise WorkflowError(f"{person.name} already submitted task {task_id}")
            if problems:
                self._audit(
                    session,
                    person.name,
                    "annotation.rejected",
                    project.id,
                    task_id,
                    {"problems": problems},
                )
            else:
                now = self._clock()
                assignment.submitted_at = now
                for a in annotations:
                    session.add(_annotation_row(task_id, person, "annotation", a, now))
                self._audit(
                    session,
                    person.name,
                    "annotation.submit",
                    project.id,
                    task_id,
                    {a.category: a.violation for a in annotations},
                )
                session.flush()
                row = self._task_row(session, task_id)
                # A late annotation of a finished task joins the record (and the agreement
                # figures) but does not reopen it: the agreed or adjudicated answer stands.
                if row.state != TaskState.done.value:
                    row.state = _state_after_submission(session, row).value
                    if row.state != TaskState.open:
                        self._audit(session, "bastion", f"task.{row.state}", project.id, task_id)
        if problems:
            raise AnnotationRejected(problems)
        return self.task(task_id)

    def annotations(self, task_id: int) -> list[StoredAnnotation]:
        with self.store.transaction("read annotations") as session:
            return _stored(session, task_id)

    def adjudication_queue(self, person: Person, project_id: str | None = None) -> list[Task]:
        if not person.can_adjudicate():
            raise ForbiddenError(f"{person.name} ({person.role}) may not adjudicate")
        allowed = {p.id for p in self.projects(person)}
        with self.store.transaction("read the adjudication queue") as session:
            query = select(AnnotationTaskRow).where(
                AnnotationTaskRow.state == TaskState.adjudication.value
            )
            if project_id is not None:
                query = query.where(AnnotationTaskRow.project_id == project_id)
            rows = session.scalars(query.order_by(AnnotationTaskRow.id)).all()
            return [_task(r) for r in rows if r.project_id in allowed]

    def adjudicate(self, person: Person, task_id: int, annotations: Sequence[Annotation]) -> Task:
        """A reviewer's final annotations for a task people disagreed on; the task is done."""
        if not person.can_adjudicate():
            raise ForbiddenError(f"{person.name} ({person.role}) may not adjudicate")
        task = self.task_for(person, task_id)
        if task.state != TaskState.adjudication:
            raise WorkflowError(
                f"task {task_id} is {task.state.value}, not waiting for adjudication"
            )
        project = self.project(task.project_id)
        annotations, problems = _checked_as(person, annotations, project, task)
        if problems:
            raise AnnotationRejected(problems)
        with self._write(f"adjudicate task {task_id}") as session:
            row = self._task_row(session, task_id)
            if row.state != TaskState.adjudication.value:  # someone else was quicker
                raise WorkflowError(f"task {task_id} was adjudicated meanwhile")
            now = self._clock()
            for a in annotations:
                session.add(_annotation_row(task_id, person, "adjudication", a, now))
            row.state = TaskState.done.value
            self._audit(
                session,
                person.name,
                "task.adjudicate",
                project.id,
                task_id,
                {a.category: a.violation for a in annotations},
            )
        return self.task(task_id)

    def counts(self, project_id: str) -> dict[str, int]:
        with self.store.transaction("count tasks") as session:
            rows = session.execute(
                select(AnnotationTaskRow.state, func.count())
                .where(AnnotationTaskRow.project_id == project_id)
                .group_by(AnnotationTaskRow.state)
            ).all()
        found = {state: n for state, n in rows}
        return {s.value: int(found.get(s.value, 0)) for s in TaskState}

    # -- results -----------------------------------------------------------------------------

    def finished(self, project_id: str) -> list[Finished]:
        """The final annotation of every done task and category (adjudicated, else agreed),
        with the suggestion that was made for it."""
        project = self.project(project_id)
        out = []
        with self.store.transaction("read finished tasks") as session:
            rows = session.scalars(
                select(AnnotationTaskRow)
                .where(
                    AnnotationTaskRow.project_id == project_id,
                    AnnotationTaskRow.state == TaskState.done.value,
                )
                .order_by(AnnotationTaskRow.id)
            ).all()
            for row in rows:
                task = _task(row)
                final = final_annotations(_stored(session, row.id), task)
                for category in project.categories:
                    if category in final:
                        out.append(
                            Finished(
                                task.item_id,
                                task.text,
                                final[category],
                                task.suggestions.get(category),
                            )
                        )
        return out

    def report(self, project_id: str) -> AgreementReport:
        project = self.project(project_id)
        per_category: dict[str, dict[str, list[Annotation]]] = defaultdict(dict)
        labels: dict[str, dict[str, bool]] = defaultdict(dict)
        gold: dict[str, bool] = {}
        shown: list[tuple[Annotation, Annotation, bool]] = []
        with self.store.transaction("read annotations for the report") as session:
            tasks = session.scalars(
                select(AnnotationTaskRow).where(AnnotationTaskRow.project_id == project_id)
            ).all()
            for row in tasks:
                task = _task(row)
                people = [s for s in _stored(session, row.id) if s.kind == "annotation"]
                for s in people:
                    key = f"{task.item_id}/{s.annotation.category}"
                    per_category[s.annotation.category].setdefault(key, []).append(s.annotation)
                    labels[s.person][key] = s.annotation.violation
                    suggestion = task.suggestions.get(s.annotation.category)
                    if suggestion is not None:
                        shown.append((suggestion, s.annotation, task.blind))
                for category, answer in (task.gold or {}).items():
                    gold[f"{task.item_id}/{category}"] = answer.violation
        alphas = {c: label_alpha(per_category.get(c, {})) for c in project.categories}
        alphas["all"] = label_alpha({k: v for c in per_category.values() for k, v in c.items()})
        steps = {
            f"{c}/{step}": alpha
            for c in project.categories
            for step, alpha in step_alpha(per_category.get(c, {})).items()
        }
        return AgreementReport(
            project=project_id,
            policy_version=project.policy.version,
            tasks=self.counts(project_id),
            label_alpha=alphas,
            step_alpha=steps,
            low_agreement_steps=low_agreement(steps),
            pairwise_kappa={
                f"{a} / {b}": value for (a, b), value in pairwise_kappa(labels).items()
            },
            gold_accuracy=gold_accuracy(labels, gold),
            acceptance=acceptance(shown),
        )

    def audit(self, project_id: str | None = None, limit: int = 200) -> list[AuditEntry]:
        """The newest entries first (of one project, or all)."""
        with self.store.transaction("read the audit log") as session:
            query = select(AuditRow).order_by(AuditRow.id.desc()).limit(limit)
            if project_id is not None:
                query = query.where(AuditRow.project_id == project_id)
            return [
                AuditEntry(r.at, r.actor, r.action, r.project_id, r.task_id, dict(r.detail))
                for r in session.scalars(query).all()
            ]

    # -- internals ---------------------------------------------------------------------------

    def _write(self, what: str) -> Any:
        return self.store.transaction(what, write=True)

    def _audit(
        self,
        session: Session,
        actor: str,
        action: str,
        project_id: str | None = None,
        task_id: int | None = None,
        detail: Mapping[str, Any] | None = None,
    ) -> None:
        session.add(
            AuditRow(
                at=self._clock(),
                actor=actor,
                action=action,
                project_id=project_id,
                task_id=task_id,
                detail=dict(detail or {}),
            )
        )

    @staticmethod
    def _person_row(session: Session, name: str) -> PersonRow:
        row = session.scalar(select(PersonRow).where(PersonRow.name == name))
        if row is None or row.disabled_at is not None:
            raise NotFoundError(f"nobody called {name!r}")
        return row

    @staticmethod
    def _project_row(session: Session, project_id: str) -> AnnotationProjectRow:
        row = session.get(AnnotationProjectRow, project_id)
        if row is None:
            raise NotFoundError(f"no annotation project {project_id!r}")
        return row

    @staticmethod
    def _task_row(session: Session, task_id: int) -> AnnotationTaskRow:
        row = session.get(AnnotationTaskRow, task_id)
        if row is None:
            raise NotFoundError(f"no task {task_id}")
        return row


def final_annotations(stored: Sequence[StoredAnnotation], task: Task) -> dict[str, Annotation]:
    """Each category's final annotation: the adjudicator's if there is one; else, for a gold
    item, the first annotation with the gold verdict; else the most common (verdict, path)
    among the annotators, the earliest on a tie."""
    adjudicated = {s.annotation.category: s.annotation for s in stored if s.kind == "adjudication"}
    by_category: dict[str, list[Annotation]] = defaultdict(list)
    for s in stored:
        if s.kind == "annotation":
            by_category[s.annotation.category].append(s.annotation)
    final = {}
    for category, given in by_category.items():
        if category in adjudicated:
            final[category] = adjudicated[category]
            continue
        if task.gold is not None and category in task.gold:
            right = [a for a in given if a.violation == task.gold[category].violation]
            if right:
                final[category] = right[0]
            continue
        votes = Counter(decision_key(a) for a in given)
        best = max(votes.values())
        final[category] = next(a for a in given if votes[decision_key(a)] == best)
    return final


def _state_after_submission(session: Session, row: AnnotationTaskRow) -> TaskState:
    submitted = session.scalar(
        select(func.count(AssignmentRow.id)).where(
            AssignmentRow.task_id == row.id, AssignmentRow.submitted_at.is_not(None)
        )
    )
    if (submitted or 0) < row.required:
        return TaskState.open
    task = _task(row)
    stored = _stored(session, row.id)
    verdicts: dict[str, set[bool]] = defaultdict(set)
    for s in stored:
        verdicts[s.annotation.category].add(s.annotation.violation)
    if task.gold is not None:
        final = final_annotations(stored, task)
        return TaskState.done if set(final) >= set(task.gold) else TaskState.adjudication
    if all(len(v) == 1 for v in verdicts.values()):
        return TaskState.done
    return TaskState.adjudication


def _checked_as(
    person: Person, given: Sequence[Annotation], project: Project, task: Task
) -> tuple[list[Annotation], list[str]]:
    """The annotations as `person`'s own (whatever the client said of annotator and source),
    and why they cannot be accepted for the task."""
    annotations = [
        a.model_copy(update={"annotator": person.name, "source": "human"}) for a in given
    ]
    return annotations, _submission_problems(annotations, project, task)


def _submission_problems(
    annotations: Sequence[Annotation], project: Project, task: Task
) -> list[str]:
    problems = []
    given = Counter(a.category for a in annotations)
    problems += [f"category '{c}' is answered {n} times" for c, n in given.items() if n > 1]
    problems += [f"category '{c}' is not answered" for c in project.categories if c not in given]
    problems += [
        f"category '{c}' is not part of this project" for c in given if c not in project.categories
    ]
    for a in annotations:
        problems += [f"{a.category}: {p}" for p in check_annotation(a, project.policy, task.text)]
    return problems


def _new_task_problem(task: NewTask, project: Project) -> str | None:
    where = f"item {task.item_id!r}"
    if not task.item_id.strip():
        return "an item has an empty id"
    if not task.text.strip() and not task.media:
        return f"{where} has neither text nor media"
    for category, suggestion in task.suggestions.items():
        if category not in project.categories or suggestion.category != category:
            return f"{where}: a suggestion for '{category}', which the project does not annotate"
        if suggestion.policy_version != project.policy.version:
            return (
                f"{where}: the suggestion was made under policy {suggestion.policy_version}, "
                f"the project is on {project.policy.version}"
            )
    if task.gold is not None and set(task.gold) != set(project.categories):
        return (
            f"{where}: a gold answer must give every category of the project "
            f"({', '.join(project.categories)}), got {', '.join(task.gold) or 'none'}"
        )
    return None


def _annotation_row(
    task_id: int, person: Person, kind: str, annotation: Annotation, now: datetime
) -> AnnotationRow:
    return AnnotationRow(
        task_id=task_id,
        person_id=person.id,
        kind=kind,
        category=annotation.category,
        body=annotation.model_dump(mode="json"),
        created_at=now,
    )


def _stored(session: Session, task_id: int) -> list[StoredAnnotation]:
    rows = session.execute(
        select(AnnotationRow, PersonRow.name)
        .join(PersonRow, PersonRow.id == AnnotationRow.person_id)
        .where(AnnotationRow.task_id == task_id)
        .order_by(AnnotationRow.id)
    ).all()
    return [
        StoredAnnotation(name, row.kind, Annotation.model_validate(row.body), row.created_at)
        for row, name in rows
    ]


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _person_role(role: PersonRole | str) -> PersonRole:
    try:
        return PersonRole(role)
    except ValueError:
        known = ", ".join(r.value for r in PersonRole)
        raise WorkflowError(f"unknown role {role!r}; use one of {known}") from None


def _person(row: PersonRow) -> Person:
    return Person(row.id, row.name, PersonRole(row.role))


def _project(row: AnnotationProjectRow) -> Project:
    return Project(
        id=row.id,
        name=row.name,
        policy=_frozen_policy(row.policy_text, row.id),
        categories=list(row.categories),
        overlap=row.overlap,
        borderline_overlap=row.borderline_overlap,
        blind_share=row.blind_share,
    )


@lru_cache(maxsize=32)
def _frozen_policy(text: str, project_id: str) -> LoadedPolicy:
    """A project's policy, parsed once per process: every page and submission reads the project,
    and its text never changes."""
    return parse_policy(text, f"project {project_id}")


def _task(row: AnnotationTaskRow) -> Task:
    try:
        suggestions = {c: Annotation.model_validate(a) for c, a in row.suggestions.items()}
    except ValidationError as exc:  # written by this module, so only a hand edit gets here
        raise WorkflowError(f"task {row.id}: a stored suggestion is unreadable: {exc}") from exc
    return Task(
        id=row.id,
        project_id=row.project_id,
        item_id=row.item_id,
        text=row.text,
        media=list(row.media),
        metadata=dict(row.item_metadata),
        borderline=row.borderline,
        blind=row.blind,
        required=row.required,
        suggestions=suggestions,
        gold=None
        if row.gold is None
        else {
            c: GoldAnswer(bool(g["violation"]), dict(g.get("path", {})))
            for c, g in row.gold.items()
        },
        state=TaskState(row.state),
    )
