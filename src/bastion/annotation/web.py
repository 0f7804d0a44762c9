"""The web app annotators and reviewers work in: log in, queues, the task page, adjudication, admin.

Served by the same FastAPI service as the API (`bastion serve`), as server-rendered HTML with a
little JavaScript (`static/task.js`: the next step appears from the previous answer, evidence
spans are selected with the mouse, and keys answer the common questions). Everything the page
does also works as a plain form post: the server rebuilds the decision path from the answers by
following the policy's steps from the first, and the validator has the last word, so a page
that misbehaves can never store an annotation the policy does not allow.

People log in with a password (a salted scrypt hash in the store); the session cookie is
HttpOnly and SameSite=Lax, and every form carries the session's form token (CSRF). Images are
shown with NudeNet's regions blurred by default (reviewer wellbeing); a click asks the server
for the unblurred image, which is only then sent.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import math
import threading
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Annotated, Any, Final, Protocol
from urllib.parse import quote

from fastapi import APIRouter, Depends, FastAPI, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.routing import APIRoute
from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.concurrency import run_in_threadpool

from bastion.annotation.schema import Annotation, PathStep, Span, task_form
from bastion.annotation.workflow import (
    AnnotationRejected,
    Person,
    PersonRole,
    Project,
    Task,
    TaskState,
    Workflow,
    final_annotations,
)
from bastion.errors import BastionError, ForbiddenError, NotFoundError
from bastion.media.limits import MediaLimits
from bastion.store import limits
from bastion.store.store import Store

COOKIE: Final = "bastion_session"
STATIC: Final = {"task.js": "text/javascript", "app.css": "text/css"}
VIDEO_SUFFIXES: Final = (".mp4", ".webm", ".mov", ".mkv", ".avi")
SECURITY_HEADERS: Final = {
    # Only this site's own script, styles and images; never inside another site's frame (a
    # framed task page could trick an annotator into clicking answers).
    "Content-Security-Policy": "default-src 'self'; img-src 'self'; object-src 'none'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}
"""What every page and every file the browser loads for one is sent with (the static files
too: a script served without `nosniff` could be read as another type)."""
PAGE_HEADERS: Final = {"Cache-Control": "no-store", **SECURITY_HEADERS}

_templates = Environment(
    loader=PackageLoader("bastion.annotation", "templates"),
    autoescape=select_autoescape(["html"]),
    trim_blocks=True,
    lstrip_blocks=True,
)


class _LoginRequired(Exception):
    pass


class _PageRoute(APIRoute):
    """Routes a person reads: a visitor who is not logged in is sent to the login page, and the
    service's error handler answers their domain errors with a page (`error_page`), not the
    API's JSON."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def handle(request: Request) -> Response:
            try:
                return await handler(request)
            except _LoginRequired:
                return RedirectResponse(f"/login?next={request.url.path}", status_code=303)

        return handle


def is_page(request: Request) -> bool:
    """Whether the request went to one of the web app's pages (whose errors a person reads)."""
    return isinstance(request.scope.get("route"), _PageRoute)


_ERROR_TITLES: Final = {403: "Not allowed", 404: "Not found"}


def error_page(request: Request, exc: BastionError) -> HTMLResponse:
    """The page a domain error shows a person: 403 and 404 as the error's class says, any other
    refusal (a bad form, a claim someone else holds) 400, "Cannot do that" and the message."""
    status = exc.status if exc.status in _ERROR_TITLES else 400
    title = _ERROR_TITLES.get(status, "Cannot do that")
    return _page(request, "error.html", None, status, title=title, message=str(exc))


class LoginThrottle:
    """Failed log-ins, counted per (login name, client address) pair and per address, with a
    back-off that grows.

    A pair's first `free_failures` failures cost nothing; after that each attempt from that
    address for that name waits `first_wait_s`, doubling with every further failure, up to
    `max_wait_s`; log-ins inside the wait are refused (429) without checking the password, so
    guessing stays slow and a flood cannot make the server run scrypt for each guess. A
    success resets the pair. One address is throttled the same way across all names past
    `free_failures_per_client` failures (higher: an office shares one address), which slows
    one machine trying many names.

    No count is kept per name alone: that would let a stranger, from anywhere, lock a person
    out (and refuse the right password too). Here a stranger's failures slow only the
    stranger's own address; the person logs in from theirs as usual. Counts are forgotten
    after `forget_s` without a failure.

    The counts are kept in the store (`bastion.store.limits`), keyed by a hash of the name and
    address, so every worker process and every replica on the database throttles together:
    guesses spread over four workers or two replicas wait as long as guesses sent to one. A
    restart forgets nothing; the audit log keeps every failure as well. `clock` (seconds, the
    Unix time by default: every process sharing the store must read the same clock) is the
    tests' seam.
    """

    def __init__(
        self,
        store: Store,
        free_failures: int = 5,
        free_failures_per_client: int = 100,
        first_wait_s: float = 1.0,
        max_wait_s: float = 900.0,
        forget_s: float = 3600.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.free_failures = free_failures
        self.free_failures_per_client = free_failures_per_client
        self.first_wait_s = first_wait_s
        self.max_wait_s = max_wait_s
        self.forget_s = forget_s
        self.clock = clock

    def back_off(self, failures: int, free: int) -> float:
        """Seconds to wait after the last of `failures` failures, when the first `free` cost
        nothing: 0, then first_wait_s, doubling per failure, capped at max_wait_s."""
        if failures <= free:
            return 0.0
        return min(self.max_wait_s, self.first_wait_s * 2.0 ** min(failures - free - 1, 64))

    def wait(self, name: str, client: str) -> float:
        """Seconds until `name` may try to log in from `client` again (0: now)."""
        keys = self._keys(name, client)
        counts = limits.failure_counts(self.store, [k for k, _ in keys])
        now = self.clock()
        waits = [0.0]
        for key, free in keys:
            failures, last = counts.get(key, (0, now))
            waits.append(last + self.back_off(failures, free) - now)
        return max(waits)

    def failed(self, name: str, client: str) -> None:
        keys = [k for k, _ in self._keys(name, client)]
        limits.count_failure(self.store, keys, now=self.clock(), forget_s=self.forget_s)

    def succeeded(self, name: str, client: str) -> None:
        """The right password: this name starts afresh from this address. The address's own
        count stays, or one account of one's own would reset guessing at others'."""
        limits.clear_failures(self.store, self._keys(name, client)[0][0])

    def _keys(self, name: str, client: str) -> list[tuple[str, int]]:
        """What is counted, as the ids the store keeps (hashes: no name or address is stored),
        each with its free failures."""
        return [
            (_counted("pair", name, client), self.free_failures),
            (_counted("client", client), self.free_failures_per_client),
        ]


def _counted(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode("utf-8", "surrogatepass")).hexdigest()


class QueuedItem(Protocol):
    """What the home page shows of an item waiting in a review queue (a triage `ReviewItem`)."""

    @property
    def item_id(self) -> str: ...

    @property
    def text(self) -> str | None: ...

    @property
    def priority(self) -> float: ...


@dataclass(frozen=True)
class ReviewQueueSummary:
    """A triage review queue as the home page lists it: its name, how many items wait in it,
    and the first of them in queue order."""

    name: str
    pending: int
    items: Sequence[QueuedItem]


class ReviewDesk(Protocol):
    """The triage review queues as the web app works them (the server passes one in, so this
    module does not depend on triage): list, claim the next item, read one, decide it."""

    @property
    def labels(self) -> Sequence[str]:
        """The labels a reviewer chooses from (the triage `ReviewLabel`s), in the page's order."""
        ...

    def queues(self) -> list[ReviewQueueSummary]:
        """Each queue that holds items, with its top pending items."""
        ...

    def claim(self, queue: str, reviewer: str) -> Any | None:
        """The next item of `queue`, claimed for `reviewer`, or None when none is free."""
        ...

    def item(self, queue: str, item_id: str) -> Any: ...

    def decide(
        self, queue: str, item_id: str, reviewer: str, label: str, categories: list[str], note: str
    ) -> Any: ...


@dataclass(frozen=True)
class _Viewer:
    person: Person
    csrf: str


class WebApp:
    """What the web app's pages share, kept on `app.state.web`: the annotation workflow, the
    media view (closed with the app), the triage review queues (`desk`, which reviewers and
    admins work from the home page; None: the service has none), the log-in throttle, and
    whether the session cookie is marked Secure (behind HTTPS)."""

    def __init__(
        self,
        workflow: Workflow,
        media_limits: MediaLimits | None = None,
        desk: ReviewDesk | None = None,
        *,
        secure_cookies: bool = False,
        throttle: LoginThrottle | None = None,
    ) -> None:
        self.workflow = workflow
        self.media = _MediaView(media_limits or MediaLimits())
        self.desk = desk
        self.secure_cookies = secure_cookies
        self.throttle = throttle or LoginThrottle(workflow.store)

    def viewer(self, request: Request) -> _Viewer:
        """Who is logged in with the request's session cookie (else to the login page)."""
        token = request.cookies.get(COOKIE)
        found = self.workflow.session(token) if token else None
        if found is None:
            raise _LoginRequired
        return _Viewer(*found)

    def reviewer_desk(self, who: _Viewer) -> ReviewDesk:
        if self.desk is None:
            raise NotFoundError("this service has no review queues")
        if not who.person.can_adjudicate():
            raise ForbiddenError(f"{who.person.name} ({who.person.role}) may not review queues")
        return self.desk


async def _web(request: Request) -> WebApp:
    web: WebApp = request.app.state.web
    return web


TheWeb = Annotated[WebApp, Depends(_web)]


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    yield
    await run_in_threadpool(app.state.web.media.close)


router = APIRouter(route_class=_PageRoute, include_in_schema=False, lifespan=_lifespan)
"""The web app's routes; they read what they share from `app.state.web` (a `WebApp`)."""


async def _form_of(request: Request, who: _Viewer) -> Mapping[str, Any]:
    form = await request.form()
    if not hmac.compare_digest(str(form.get("csrf", "")), who.csrf):
        raise ForbiddenError("the form token is missing or stale; reload the page and retry")
    return form


# -- log in and out ----------------------------------------------------------------------


@router.get("/login")
def login_page(request: Request, next: str = "/ui") -> HTMLResponse:
    return _page(request, "login.html", None, next=_local(next))


@router.post("/login")
async def login(request: Request, web: TheWeb) -> Response:
    form = await request.form()
    name, password = str(form.get("name", "")), str(form.get("password", ""))
    target = _local(str(form.get("next", "/ui")))
    who_tries = (name.strip().lower(), request.client.host if request.client else "?")
    wait = await run_in_threadpool(web.throttle.wait, *who_tries)
    if wait > 0:
        refused = _page(
            request, "login.html", None, 429, next=target, name=name,
            error=f"Too many failed log-ins. Try again in {_duration(wait)}.",
        )  # fmt: skip
        refused.headers["Retry-After"] = str(math.ceil(wait))
        return refused
    found = await run_in_threadpool(web.workflow.log_in, name, password)
    if found is None:
        await run_in_threadpool(web.throttle.failed, *who_tries)
        return _page(
            request, "login.html", None, 401, next=target, name=name,
            error="Wrong name or password.",
        )  # fmt: skip
    await run_in_threadpool(web.throttle.succeeded, *who_tries)
    _, token, _ = found
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(
        COOKIE, token, httponly=True, samesite="lax", secure=web.secure_cookies, path="/"
    )
    return response


@router.post("/logout")
async def logout(request: Request, web: TheWeb) -> Response:
    who = web.viewer(request)
    await _form_of(request, who)
    web.workflow.log_out(request.cookies.get(COOKIE, ""))
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(COOKIE, path="/")
    return response


@router.get("/ui/static/{name}")
def static(name: str) -> Response:
    if name not in STATIC:
        raise NotFoundError(f"no static file {name!r}")
    body = files("bastion.annotation").joinpath("static", name).read_bytes()
    return Response(
        body,
        media_type=STATIC[name],
        headers={**SECURITY_HEADERS, "Cache-Control": "max-age=300"},
    )


# -- queues ------------------------------------------------------------------------------


@router.get("/ui")
def home(request: Request, web: TheWeb, done: str = "") -> HTMLResponse:
    who = web.viewer(request)
    projects = [
        {"project": p, "counts": web.workflow.counts(p.id)}
        for p in web.workflow.projects(who.person)
    ]
    adjudication = (
        web.workflow.adjudication_queue(who.person) if who.person.can_adjudicate() else []
    )
    queues = web.desk.queues() if web.desk and who.person.can_adjudicate() else []
    return _page(
        request, "home.html", who, projects=projects, adjudication=adjudication,
        queues=queues, message=_notice(done),
    )  # fmt: skip


@router.post("/ui/projects/{project_id}/next")
async def next_task(request: Request, web: TheWeb, project_id: str) -> Response:
    who = web.viewer(request)
    await _form_of(request, who)
    task = web.workflow.next_task(who.person, project_id)
    if task is None:
        return RedirectResponse(f"/ui?done=nothing:{quote(project_id)}", status_code=303)
    return RedirectResponse(f"/ui/tasks/{task.id}", status_code=303)


# -- the task page -----------------------------------------------------------------------


@router.get("/ui/tasks/{task_id}")
def task_page(request: Request, web: TheWeb, task_id: int) -> HTMLResponse:
    who = web.viewer(request)
    task = web.workflow.task_for(who.person, task_id)
    return _task_page(request, who, web.workflow, web.media, task, "annotate")


async def _save(
    web: WebApp, request: Request, task_id: int, mode: str, record: Callable[..., Any], done: str
) -> Response:
    """Read the form, rebuild and record the annotations (`record`: submit or adjudicate);
    a refusal shows the page again with every reason and the answers kept."""
    who = web.viewer(request)
    form = await _form_of(request, who)
    task = web.workflow.task_for(who.person, task_id)
    annotations, problems = annotations_from_form(form, web.workflow.project(task.project_id), task)
    if not problems:
        try:
            await run_in_threadpool(record, who.person, task_id, annotations)
        except AnnotationRejected as exc:
            problems = exc.problems
    if problems:
        return _task_page(request, who, web.workflow, web.media, task, mode, form, problems, 422)
    return RedirectResponse(f"/ui?done={done}:{task_id}", status_code=303)


@router.post("/ui/tasks/{task_id}")
async def submit(request: Request, web: TheWeb, task_id: int) -> Response:
    return await _save(web, request, task_id, "annotate", web.workflow.submit, "saved")


@router.get("/ui/tasks/{task_id}/media/{index}")
async def task_media(
    request: Request, web: TheWeb, task_id: int, index: int, reveal: int = 0, frame: int = 0
) -> Response:
    who = web.viewer(request)
    task = web.workflow.task_for(who.person, task_id)
    if not 0 <= index < len(task.media):
        raise NotFoundError(f"task {task_id} has no media number {index}")
    body = await run_in_threadpool(web.media.png, task.media[index], frame, bool(reveal))
    return Response(body, media_type="image/png", headers={"Cache-Control": "private, no-store"})


# -- adjudication ------------------------------------------------------------------------


@router.get("/ui/adjudication/{task_id}")
def adjudication_page(request: Request, web: TheWeb, task_id: int) -> HTMLResponse:
    who = web.viewer(request)
    if not who.person.can_adjudicate():
        raise ForbiddenError(f"{who.person.name} ({who.person.role}) may not adjudicate")
    task = web.workflow.task_for(who.person, task_id)
    return _task_page(request, who, web.workflow, web.media, task, "adjudicate")


@router.post("/ui/adjudication/{task_id}")
async def adjudicate(request: Request, web: TheWeb, task_id: int) -> Response:
    return await _save(web, request, task_id, "adjudicate", web.workflow.adjudicate, "adjudicated")


# -- triage review queues ----------------------------------------------------------------


@router.post("/ui/review/{queue}/next")
async def review_next(request: Request, web: TheWeb, queue: str) -> Response:
    who = web.viewer(request)
    await _form_of(request, who)
    item = await run_in_threadpool(web.reviewer_desk(who).claim, queue, who.person.name)
    if item is None:
        return RedirectResponse(f"/ui?done=empty:{quote(queue)}", status_code=303)
    return RedirectResponse(
        f"/ui/review/{quote(queue)}/{quote(item.item_id, safe='')}", status_code=303
    )


@router.get("/ui/review/{queue}/{item_id}")
def review_page(request: Request, web: TheWeb, queue: str, item_id: str) -> HTMLResponse:
    who = web.viewer(request)
    review = web.reviewer_desk(who)
    item = review.item(queue, item_id)
    return _page(request, "review.html", who, item=item, labels=review.labels)


@router.get("/ui/review/{queue}/{item_id}/media/{index}")
async def review_media(
    request: Request, web: TheWeb, queue: str, item_id: str, index: int, reveal: int = 0
) -> Response:
    who = web.viewer(request)
    item = web.reviewer_desk(who).item(queue, item_id)
    if not 0 <= index < len(item.media):
        raise NotFoundError(f"item {item_id} has no media number {index}")
    body = await run_in_threadpool(web.media.png, item.media[index], 0, bool(reveal))
    return Response(body, media_type="image/png", headers={"Cache-Control": "private, no-store"})


@router.post("/ui/review/{queue}/{item_id}")
async def review_decide(request: Request, web: TheWeb, queue: str, item_id: str) -> Response:
    who = web.viewer(request)
    form = await _form_of(request, who)
    review = web.reviewer_desk(who)
    label = str(form.get("label", ""))
    if label not in review.labels:
        item = review.item(queue, item_id)
        return _page(
            request, "review.html", who, 422, item=item, labels=review.labels,
            problems=["choose a verdict"], note=str(form.get("note", "")),
        )  # fmt: skip
    categories = [c.strip() for c in str(form.get("categories", "")).split(",") if c.strip()]
    await run_in_threadpool(
        review.decide, queue, item_id, who.person.name, label, categories,
        str(form.get("note", "")),
    )  # fmt: skip
    return RedirectResponse(f"/ui?done=reviewed:{quote(item_id)}", status_code=303)


# -- reports and admin -------------------------------------------------------------------


@router.get("/ui/projects/{project_id}/report")
def report_page(request: Request, web: TheWeb, project_id: str) -> HTMLResponse:
    who = web.viewer(request)
    if not who.person.can_adjudicate():
        raise ForbiddenError("reports are for reviewers and admins")
    web.workflow.check_access(who.person, project_id)
    report = web.workflow.report(project_id)
    return _page(request, "report.html", who, report=report)


@router.get("/ui/admin")
def admin_page(request: Request, web: TheWeb, done: str = "") -> HTMLResponse:
    who = web.viewer(request)
    _admin_only(who.person)
    return _page(
        request, "admin.html", who, people=web.workflow.people(),
        projects=web.workflow.projects(who.person), audit=web.workflow.audit(limit=50),
        roles=[r.value for r in PersonRole], message=_notice(done),
    )  # fmt: skip


@router.post("/ui/admin/people")
async def add_person(request: Request, web: TheWeb) -> Response:
    who = web.viewer(request)
    _admin_only(who.person)
    form = await _form_of(request, who)
    name = str(form.get("name", ""))
    await run_in_threadpool(
        web.workflow.add_person, name, str(form.get("role", "")),
        str(form.get("password", "")), who.person.name,
    )  # fmt: skip
    return RedirectResponse(f"/ui/admin?done=person:{quote(name)}", status_code=303)


@router.post("/ui/admin/members")
async def add_member(request: Request, web: TheWeb) -> Response:
    who = web.viewer(request)
    _admin_only(who.person)
    form = await _form_of(request, who)
    project, name = str(form.get("project", "")), str(form.get("name", ""))
    web.workflow.add_member(project, name, who.person.name)
    return RedirectResponse(f"/ui/admin?done=member:{quote(name)}", status_code=303)


def annotations_from_form(
    form: Mapping[str, Any], project: Project, task: Task
) -> tuple[list[Annotation], list[str]]:
    """The annotations a task form says, one per category, and what is missing.

    The path is rebuilt by following the policy's steps from the first, taking each step's
    answer from the form: answers to steps off that path (left over after the annotator changed
    an earlier answer) are ignored, as the page hides them. The verdict and rule come from the
    answer that ends the path, so they cannot contradict it."""
    annotations, problems = [], []
    for k, category_id in enumerate(project.categories):
        category = project.policy.policy.category(category_id)
        steps = {s.id: s for s in category.decision_steps}
        path: list[PathStep] = []
        step = category.decision_steps[0]
        verdict, rule = None, None
        while verdict is None:
            given = str(form.get(f"c{k}.{step.id}", "")).strip()
            chosen = next((a for a in step.answers if a.answer == given), None)
            if chosen is None:
                problems.append(f"{category_id}: answer '{step.question}'")
                break
            spans, span_problems = _spans(
                str(form.get(f"c{k}.{step.id}.spans", "") or "[]"), task.text
            )
            problems += [f"{category_id}, step '{step.id}': {p}" for p in span_problems]
            path.append(PathStep(step=step.id, answer=chosen.answer, spans=spans))
            if chosen.next is not None:
                if chosen.next in (s.step for s in path) or chosen.next not in steps:
                    problems.append(f"{category_id}: the policy's steps loop at '{chosen.next}'")
                    break
                step = steps[chosen.next]
            else:
                verdict, rule = chosen.verdict, chosen.rule
        if verdict is None:
            continue
        violation = verdict == "violating"
        cited = [str(r) for r in _list(form, f"c{k}.rules") if str(r)]
        rule_ids = list(dict.fromkeys(([rule] if rule else []) + cited)) if violation else []
        try:
            severity = int(str(form.get(f"c{k}.severity", "") or category.severity))
            confidence = float(str(form.get(f"c{k}.confidence", "") or "1"))
            annotations.append(
                Annotation(
                    category=category_id,
                    path=path,
                    violation=violation,
                    severity=severity if violation else 0,
                    rule_ids=rule_ids,
                    rationale=str(form.get(f"c{k}.rationale", "")).strip(),
                    confidence=confidence,
                    policy_version=project.policy.version,
                )
            )
        except ValueError as exc:
            problems.append(f"{category_id}: {_first_line(exc)}")
    return annotations, problems


def _spans(raw: str, text: str) -> tuple[list[Span], list[str]]:
    """Evidence spans from the page: a JSON list of [start, end] character offsets."""
    try:
        pairs = json.loads(raw)
        if not isinstance(pairs, list) or not all(
            isinstance(p, list) and len(p) == 2 and all(isinstance(v, int) for v in p)
            for p in pairs
        ):
            raise ValueError
    except ValueError:
        return [], [f"evidence spans {raw[:60]!r} are not a list of [start, end] pairs"]
    spans, problems = [], []
    for start, end in pairs:
        if not 0 <= start < end <= len(text):
            problems.append(f"evidence [{start}, {end}) is outside the text")
        else:
            spans.append(Span(start=start, end=end, text=text[start:end]))
    return spans, problems


def _list(form: Mapping[str, Any], key: str) -> list[Any]:
    getlist = getattr(form, "getlist", None)
    if getlist is not None:
        return list(getlist(key))
    value = form.get(key)
    return [] if value is None else [value]


def _first_line(exc: Exception) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def _task_page(
    request: Request,
    who: _Viewer,
    workflow: Workflow,
    media: _MediaView,
    task: Task,
    mode: str,
    form: Mapping[str, Any] | None = None,
    problems: list[str] | None = None,
    status: int = 200,
) -> HTMLResponse:
    project = workflow.project(task.project_id)
    stored = workflow.annotations(task.id)
    done = mode == "annotate" and workflow.submitted(who.person, task.id)
    show_others = mode == "adjudicate" or who.person.role == PersonRole.admin
    categories = []
    for k, category_id in enumerate(project.categories):
        form_spec = task_form(project.policy, category_id)
        suggestion = None if task.blind else task.suggestions.get(category_id)
        categories.append(
            {
                "k": k,
                "form": form_spec,
                "suggestion": suggestion,
                "others": [s for s in stored if s.annotation.category == category_id]
                if show_others
                else [],
                "spec": json.dumps(form_spec.model_dump(mode="json")),
            }
        )
    # A fresh form starts empty: suggestions are shown beside it, never pre-filled into it, so
    # accepting one is a decision rather than a default.
    values = _form_values(form) if form is not None else {}
    images = [
        {
            "index": n,
            "name": Path(ref).name,
            "frames": media.timestamps(ref) if _is_video(ref) else None,
        }
        for n, ref in enumerate(task.media)
    ]
    return _page(
        request,
        "task.html",
        who,
        status,
        task=task,
        project=project,
        mode=mode,
        categories=categories,
        problems=problems or [],
        values=json.dumps(values),
        done=done,
        images=images,
        transcript=str(task.metadata.get("transcript", "")),
        final=final_annotations(stored, task) if task.state == TaskState.done else {},
    )


def _form_values(form: Mapping[str, Any]) -> dict[str, Any]:
    """What the person typed, to put back on the page after a refusal."""
    return {
        key: _list(form, key) if key.endswith(".rules") else str(form.get(key, ""))
        for key in form
        if key != "csrf"
    }


NOTICES: Final = {
    "saved": "Saved task {}. Thank you.",
    "adjudicated": "Adjudicated task {}.",
    "nothing": "Nothing left for you in {}.",
    "person": "Added {}.",
    "member": "Added {} to the project.",
    "reviewed": "Decided {}.",
    "empty": "No item is waiting in {}.",
}
"""What a page may say after a redirect. The link names a notice and its one value, never the
words: a crafted link cannot put a message of its own on a trusted page."""


def _notice(done: str) -> str:
    kind, _, value = done.partition(":")
    template = NOTICES.get(kind)
    if template is None or not value or len(value) > 64:
        return ""
    return template.format(value)


def _duration(seconds: float) -> str:
    """A wait as a person reads it: whole seconds under two minutes, else whole minutes."""
    if seconds < 120:
        whole = max(1, math.ceil(seconds))
        return f"{whole} second{'s' * (whole > 1)}"
    return f"{math.ceil(seconds / 60)} minutes"


def _is_video(ref: str) -> bool:
    return ref.lower().endswith(VIDEO_SUFFIXES)


def _admin_only(person: Person) -> None:
    if person.role != PersonRole.admin:
        raise ForbiddenError(f"{person.name} ({person.role}) may not open the admin pages")


def _local(target: str) -> str:
    """A redirect target inside this site (an open redirect would help phishing). Browsers read
    a backslash as a slash, so `/\\host` is as foreign as `//host`."""
    local = target.startswith("/") and not target.startswith("//") and "\\" not in target
    return target if local else "/ui"


def _page(
    request: Request, template: str, who: _Viewer | None, status: int = 200, **context: Any
) -> HTMLResponse:
    body = _templates.get_template(template).render(
        who=who.person if who else None,
        csrf=who.csrf if who else "",
        path=request.url.path,
        **context,
    )
    return HTMLResponse(body, status_code=status, headers=PAGE_HEADERS)


class _MediaView:
    """Images and video frames for the task page, decoded in a sandboxed decoder process under
    the media limits, with NudeNet's regions blurred unless the person asked to see them."""

    BLUR_RADIUS: Final = 28

    def __init__(self, limits: MediaLimits) -> None:
        self.limits = limits
        self._lock = threading.Lock()
        self._pool: Any = None
        self._nudenet: Any = None
        self._recent: dict[str, Any] = {}

    def png(self, ref: str, frame: int, reveal: bool) -> bytes:
        from PIL import Image, ImageFilter

        from bastion.media.decode import DecodedVideo

        decoded = self._decoded(ref)
        if isinstance(decoded, DecodedVideo):
            if not 0 <= frame < len(decoded.frames):
                raise NotFoundError(f"{Path(ref).name} has no frame {frame}")
            pixels = decoded.frames[frame].image
        else:
            pixels = decoded.frames[0]
        image = Image.fromarray(pixels)
        if not reveal and self._detector() is None:  # NudeNet not installed: blur it all
            image = image.filter(ImageFilter.GaussianBlur(self.BLUR_RADIUS))
        elif not reveal:
            for region in self._detector().detect([pixels])[0]:
                x, y, w, h = region.box
                box = (max(0, x), max(0, y), min(image.width, x + w), min(image.height, y + h))
                if box[2] > box[0] and box[3] > box[1]:
                    patch = image.crop(box).filter(ImageFilter.GaussianBlur(self.BLUR_RADIUS))
                    image.paste(patch, box[:2])
        out = io.BytesIO()
        image.save(out, format="PNG")
        return out.getvalue()

    def timestamps(self, ref: str) -> list[float]:
        """The times (seconds) of a video's sampled frames, which the page shows under each."""
        from bastion.media.decode import DecodedVideo

        decoded = self._decoded(ref)
        return [f.timestamp_s for f in decoded.frames] if isinstance(decoded, DecodedVideo) else []

    def _decoded(self, ref: str) -> Any:
        """A decoded file; the last few are kept, as a video's page asks for each of its frames."""
        from bastion.media.sources import MediaSource

        with self._lock:
            if ref in self._recent:
                return self._recent[ref]
        decoded = self._decoder().decode(
            MediaSource.of(ref, "video" if _is_video(ref) else "image")
        )
        with self._lock:
            self._recent[ref] = decoded
            while len(self._recent) > 4:
                self._recent.pop(next(iter(self._recent)))
        return decoded

    def _decoder(self) -> Any:
        with self._lock:
            if self._pool is None:
                from bastion.media.sandbox import DecoderPool

                self._pool = DecoderPool(self.limits, workers=1)
            return self._pool

    def _detector(self) -> Any:
        """NudeNet, or None when its optional package is not installed (then nothing is
        known about where the sensitive regions are, so the whole picture is blurred)."""
        with self._lock:
            if self._nudenet is None:
                from bastion.media.nudenet import NudeNet, missing_reason

                if missing_reason() is not None:
                    return None
                self._nudenet = NudeNet()
            return self._nudenet

    def close(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.close()
