"""The HTTP service: OpenAI-compatible `/v1/moderations`, Bastion's `/v1/moderate`, health and metrics.

Every route but the health probes needs an API key with the right scope. Every verdict is
written to the decision log before the response is sent, so what the service acknowledged is
on disk (SQLite in WAL with synchronous=FULL, or PostgreSQL) even if the process is killed the
next instant. A bad request (malformed JSON, wrong types, an oversized body, an image that is
not an image, bad base64, a decode over its time limit) gets a 4xx JSON error in OpenAI's
error shape naming the problem; nothing a request sends can take the process down.

The annotation and review web app (`bastion.annotation.web`, under `/ui` and `/login`) is
served here too, on the same store; people log in to it with a password.

`GET /v1/decisions` reads that log back ('decisions:read'), fenced to the key's project; see
`_readable_project` for who may read which project. Review queues and banks
(`bastion.server.triage_routes`) and recall jobs (`bastion.server.recall_jobs`) are routers
included here, under the same keys; each starts and stops what it runs with the app.

`create_app` builds what the routes share from the settings (the store, the moderator pool, the
metrics, the decision log, the key checks) and puts it on `app.state`; the routes are
module-level routers that read it from there (`bastion.server.state`).

(No `from __future__ import annotations` here: FastAPI reads the route signatures' annotations
at definition time.)
"""

import base64
import hashlib
import logging
import re
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.routing import iter_route_contexts
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from pydantic import BeforeValidator
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from bastion import __version__
from bastion.annotation import web
from bastion.annotation.web import PAGE_HEADERS, ReviewQueueSummary, WebApp, error_page, is_page
from bastion.annotation.workflow import Workflow
from bastion.banks.registry import Banks
from bastion.errors import (
    BastionError,
    ErrorCode,
    ForbiddenError,
    InputError,
    InvalidRequestError,
)
from bastion.items import Item, item_from_openai_input
from bastion.media.sources import MediaSource
from bastion.moderator import Verdict
from bastion.server import recall_jobs, triage_routes
from bastion.server.bank_lookup import ImageDecoders
from bastion.server.batching import Batcher
from bastion.server.pool import ModelKey, ModeratorPool
from bastion.server.recall_jobs import RecallJobs
from bastion.server.schemas import (
    DecisionList,
    ErrorResponse,
    Health,
    ItemIn,
    ModerateRequest,
    ModerateResponse,
    ModerationRequest,
    ModerationResponse,
    ModerationResult,
)
from bastion.server.security import (
    BodyLimitMiddleware,
    KeyGuard,
    RateLimiter,
    VerifiedKeys,
    error_body,
    require,
)
from bastion.server.settings import ServerSettings
from bastion.server.state import ThePool, TheStore
from bastion.store import ApiKey, DecisionRecord, Store
from bastion.store.keys import SCOPE_DECISIONS_READ, SCOPE_KEYS_ADMIN
from bastion.triage.labels import ReviewLabel

log = logging.getLogger("bastion.server")


class _Metrics:
    """The service's Prometheus metrics. With `multiprocess_dir` (`bastion serve --workers N`),
    every worker writes its values to files there (prometheus_client's multiprocess mode, which
    $PROMETHEUS_MULTIPROC_DIR turned on before the worker started) and /metrics, whichever
    worker answers, reports the sum over all of them."""

    def __init__(self, multiprocess_dir: Path | None = None) -> None:
        self.multiprocess_dir = multiprocess_dir
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "bastion_requests_total", "HTTP requests", ["route", "status"], registry=self.registry
        )
        self.latency = Histogram(
            "bastion_request_seconds",
            "Request latency",
            ["route"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=self.registry,
        )
        self.batch = Histogram(
            "bastion_batch_items",
            "Items per model call (micro-batches of concurrent requests)",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
            registry=self.registry,
        )
        self.request_items = Histogram(
            "bastion_request_items",
            "Items per moderation request",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
            registry=self.registry,
        )
        self.flags = Counter(
            "bastion_flags_total",
            "Items flagged, by category",
            ["category"],
            registry=self.registry,
        )
        self.commit = Histogram(
            "bastion_log_commit_decisions",
            "Decisions per decision-log commit (concurrent requests share one)",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 1024),
            registry=self.registry,
        )
        self.items = Counter("bastion_items_total", "Items moderated", registry=self.registry)
        self.errors = Counter(
            "bastion_errors_total", "Errors by type", ["type"], registry=self.registry
        )

    def exposed(self) -> CollectorRegistry:
        """What /metrics reports: this process's registry, or every worker's files summed."""
        if self.multiprocess_dir is None:
            return self.registry
        from prometheus_client.multiprocess import MultiProcessCollector

        every_worker = CollectorRegistry()
        MultiProcessCollector(every_worker, path=str(self.multiprocess_dir))  # type: ignore[no-untyped-call]
        return every_worker


class _Observe:
    """Request id, request count and latency per route, as plain ASGI middleware.

    Plain ASGI rather than `@app.middleware("http")`: Starlette's BaseHTTPMiddleware runs each
    request through an extra task and memory stream, which cost about a millisecond of CPU per
    request, as much as scoring a short text in a batch.
    """

    def __init__(self, app: Any, metrics: "_Metrics") -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        given = next((v for k, v in scope["headers"] if k == b"x-request-id"), b"")
        request_id = given.decode("latin-1") or f"modr-{uuid.uuid4().hex}"
        scope.setdefault("state", {})["request_id"] = request_id
        status = 500

        async def send_with_id(message: Any) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                MutableHeaders(scope=message).append("x-request-id", request_id)
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            path = getattr(scope.get("route"), "path", "unmatched")
            self.metrics.requests.labels(path, str(status)).inc()
            self.metrics.latency.labels(path).observe(time.perf_counter() - start)


class _DecisionLog:
    """Writes verdicts to the store's decision log; while the app runs, with group commit.

    Requests whose decisions are ready while a commit runs share the next one (a `Batcher` that
    never waits), so under load one fsync serves many requests; each request still returns only
    once its own decisions are committed, all of them or none. The batcher lives from the app's
    start to its stop, which may happen more than once for one app; outside them (an app driven
    without its lifespan) each request commits on its own.
    """

    def __init__(self, store: Store, on_commit: Callable[[int], None]) -> None:
        self.store = store
        self.on_commit = on_commit
        self._batcher: Batcher[DecisionRecord, None] | None = None

    def start(self) -> None:
        self._batcher = Batcher(
            self._commit,
            max_wait_ms=0,
            max_items=4096,
            on_batch=self.on_commit,
            name="decision-log",
        )

    def stop(self) -> None:
        batcher, self._batcher = self._batcher, None
        if batcher is not None:
            batcher.close()

    def write(self, records: list[DecisionRecord]) -> None:
        batcher = self._batcher
        if batcher is None:
            self._commit(records)
        else:
            batcher.submit(records)

    def _commit(self, records: list[DecisionRecord]) -> list[None]:
        self.store.log_decisions(records)
        return [None] * len(records)


def create_app(
    settings: ServerSettings | None = None,
    store: Store | None = None,
    pool: ModeratorPool | None = None,
) -> FastAPI:
    settings = settings or ServerSettings()
    metrics = _Metrics(settings.metrics_dir if settings.workers > 1 else None)
    owns_store, owns_pool = store is None, pool is None
    store = store or Store.open(settings.home)
    limiter = (
        RateLimiter(store, settings.rate_limit_per_minute)
        if settings.rate_limit_per_minute
        else None
    )
    pool = pool or ModeratorPool(
        settings.home,
        default_policy=settings.default_policy,
        default_model=settings.default_model,
        detectors=settings.detectors,
        media_limits=settings.media_limits,
        runtime=settings.runtime,
        batch_wait_ms=settings.batch_wait_ms,
        batch_max_items=settings.batch_max_items,
        llm=settings.llm,
    )
    if pool.on_batch is None:
        pool.on_batch = metrics.batch.observe

    decision_log = _DecisionLog(store, metrics.commit.observe)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if settings.preload:
            from starlette.concurrency import run_in_threadpool

            await run_in_threadpool(pool.get, pool.default)
        decision_log.start()
        yield
        if owns_pool:  # what the caller passed in, the caller closes
            pool.close()
        decision_log.stop()
        if owns_store:
            store.close()

    app = FastAPI(
        title="Bastion",
        version=__version__,
        description="Self-hosted moderation against your own content policy. "
        "`/v1/moderations` is OpenAI-compatible.",
        lifespan=lifespan,
        responses={status: {"model": ErrorResponse} for status in (400, 401, 403, 413, 429, 500)},
        docs_url=None,  # served below, with the pages' security headers, when settings.docs
        redoc_url=None,
    )
    if settings.docs:
        app.add_api_route("/docs", _swagger_ui, include_in_schema=False)
    # What the routers read (`router` below, `bastion.server.triage_routes`, `.recall_jobs`,
    # and `bastion.annotation.web`, whose `WebApp` is set below).
    app.state.settings = settings
    app.state.store = store
    app.state.pool = pool
    app.state.metrics = metrics
    app.state.decision_log = decision_log
    app.state.keys = KeyGuard(
        settings.require_auth, VerifiedKeys(store.verify_key, settings.key_cache_s), limiter
    )
    app.state.banks = Banks(settings.home)
    app.state.lookup_decoders = ImageDecoders(settings.media_limits)
    app.state.recall_jobs = RecallJobs(settings.home, store, pool)
    app.add_middleware(
        BodyLimitMiddleware,
        max_bytes=settings.max_body_bytes,
        max_json_depth=settings.max_json_depth,
    )
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type"],
        )

    app.add_middleware(_Observe, metrics=metrics)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        metrics.errors.labels(ErrorCode.invalid_request).inc()
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e.get('loc', ()) if p != 'body') or 'body'}: {e.get('msg')}"
            for e in exc.errors()[:10]
        )
        return _error(400, f"invalid request: {problems}", ErrorCode.invalid_request)

    @app.exception_handler(BastionError)
    async def domain_error(request: Request, exc: BastionError) -> Response:
        """Every domain error, with the status and code its class carries: in OpenAI's error
        shape, or as a page on the web app's pages, which people read."""
        if is_page(request):
            return error_page(request, exc)
        metrics.errors.labels(exc.code).inc()
        if exc.client_message is not None:  # the message is the server's business: log it
            log.error("%s on %s: %s", type(exc).__name__, request.url.path, exc)
        return _error(exc.status, exc.client_message or str(exc), exc.code, exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def starlette_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        # Keep the exception's headers: a 405 must say which methods are allowed (RFC 9110).
        headers = dict(exc.headers) if exc.headers else None
        if exc.status_code == 405:
            # Starlette names only the first route on the path (GET /v1/banks) and not the
            # others on it (POST /v1/banks): name them all.
            headers = {**(headers or {}), "Allow": ", ".join(_allowed_methods(app, request))}
        code = _HTTP_STATUS_CODES.get(exc.status_code)
        if code is None:
            code = ErrorCode.invalid_request if exc.status_code < 500 else ErrorCode.internal_error
        metrics.errors.labels(code).inc()
        return _error(exc.status_code, str(exc.detail), code, headers=headers)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        metrics.errors.labels(ErrorCode.internal_error).inc()
        log.exception("unhandled error on %s", request.url.path)  # the body is never logged
        return _error(500, "internal error; the request was not scored", ErrorCode.internal_error)

    app.include_router(router)
    app.include_router(triage_routes.router)
    app.include_router(recall_jobs.router)
    if settings.web:
        app.state.web = WebApp(
            Workflow(store),
            settings.media_limits,
            desk=_ReviewDesk(store),
            secure_cookies=settings.secure_cookies,
        )
        app.include_router(web.router)

    return app


_DOCS_CDN = "https://cdn.jsdelivr.net"
_DOCS_ICON = "https://fastapi.tiangolo.com"


def _swagger_ui() -> HTMLResponse:
    """Swagger UI for /openapi.json, with the web app's security headers. Its script and styles
    come from a CDN (so /docs is off unless asked for: a browser offline cannot show it); the
    policy allows that CDN and, by its hash, the one inline script that starts the UI."""
    page = get_swagger_ui_html(openapi_url="/openapi.json", title="Bastion API")
    html = bytes(page.body).decode()
    inline = re.findall(r"<script>(.*?)</script>", html, re.DOTALL)
    hashes = " ".join(
        f"'sha256-{base64.b64encode(hashlib.sha256(s.encode()).digest()).decode()}'" for s in inline
    )
    policy = (
        f"default-src 'self'; script-src 'self' {_DOCS_CDN} {hashes}; "
        f"style-src 'self' {_DOCS_CDN} 'unsafe-inline'; img-src 'self' data: {_DOCS_ICON}; "
        "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    )
    headers = {**PAGE_HEADERS, "Content-Security-Policy": policy}
    return HTMLResponse(html, headers=headers)


class _ReviewDesk:
    """The triage review queues for the web app (`bastion.annotation.web.ReviewDesk`); an
    unknown item is a `NotFoundError` (a 404 page), a claim another reviewer holds a refusal."""

    labels = tuple(label.value for label in ReviewLabel)

    def __init__(self, store: Store, top: int = 5) -> None:
        self.store = store
        self.top = top

    def queues(self) -> list[ReviewQueueSummary]:
        from bastion.triage.queue import ItemState, queue_names

        out = []
        for name in queue_names(self.store):
            queue = self._queue(name)
            out.append(
                ReviewQueueSummary(
                    name=name,
                    pending=queue.counts().pending,
                    items=queue.list(ItemState.pending, limit=self.top),
                )
            )
        return out

    def claim(self, queue: str, reviewer: str) -> Any | None:
        items = self._queue(queue).claim(reviewer, 1)
        return items[0] if items else None

    def item(self, queue: str, item_id: str) -> Any:
        return self._queue(queue).get(item_id)

    def decide(
        self, queue: str, item_id: str, reviewer: str, label: str, categories: list[str], note: str
    ) -> Any:
        return self._queue(queue).decide(item_id, reviewer, label, categories, note)

    def _queue(self, name: str) -> Any:
        from bastion.triage import ReviewQueue

        return ReviewQueue(self.store, name)


_HTTP_STATUS_CODES: dict[int, ErrorCode] = {
    404: ErrorCode.not_found,
    405: ErrorCode.method_not_allowed,
    413: ErrorCode.request_too_large,
    415: ErrorCode.unsupported_media_type,
}
"""The code of an error Starlette or FastAPI raise themselves (no route, wrong method), by
status; any other 4xx is `invalid_request`, any 5xx `internal_error`."""


def _error(
    status: int, message: str, code: ErrorCode, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(error_body(status, message, code), status_code=status, headers=headers)


def _allowed_methods(app: FastAPI, request: Request) -> list[str]:
    """Every method some route of `app` takes on the request's path, sorted; the routes of the
    routers it includes too (`iter_route_contexts` reaches into them)."""
    methods: set[str] = set()
    for route in iter_route_contexts(app.router.routes):
        match, _ = route.matches(dict(request.scope))
        if match != Match.NONE:
            methods.update(route.methods or ())
    return sorted(methods)


def _loggable(text: str | None) -> str | None:
    """The text as the log keeps it: NUL characters (which PostgreSQL cannot store) as U+FFFD."""
    return None if text is None else text.replace("\x00", "\ufffd")


def _only_known_query(request: Request, known: tuple[str, ...]) -> None:
    """A 400 for a query parameter the route does not take: `?projet=b` (a typo) must not quietly
    read the key's own project as if nothing had been asked."""
    unknown = sorted(set(request.query_params) - set(known))
    if unknown:
        raise InvalidRequestError(
            f"invalid request: unknown query parameter {unknown[0]!r}; this route takes "
            + ", ".join(known)
        )


_NUMBER = re.compile(r"\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*")


def _not_a_number(value: Any) -> Any:
    """Refuse a bare number for `since`: pydantic would read it as a Unix time (seconds or
    milliseconds, by its size), which the API does not promise and a caller did not mean."""
    if isinstance(value, str) and _NUMBER.fullmatch(value):
        raise ValueError(
            "a number is not a time: give ISO 8601 with a zone, e.g. 2025-01-31T12:00:00Z"
        )
    return value


def _utc_since(since: datetime | None) -> datetime | None:
    """`since` as UTC, or a 400 naming it: a time without a zone is ambiguous (the log is in
    UTC, the caller's clock may not be), and one that leaves the calendar in UTC is unusable."""
    if since is None:
        return None
    if since.utcoffset() is None:
        problem = "has no time zone; give one, e.g. 2025-01-31T12:00:00Z"
    else:
        try:
            return since.astimezone(UTC)
        except OverflowError:
            problem = "is out of range once converted to UTC"
    raise InvalidRequestError(f"invalid request: query.since: {since.isoformat()} {problem}")


def _readable_project(key: ApiKey | None, requested: str | None) -> str | None:
    """Whose decisions a key may read: its own project's, unless it may administer keys.

    A key reads its own project's log, and naming that project changes nothing; naming another
    is a 403. A key with 'keys:admin' also reads its own project by default, and any project it
    names: it could mint a reader key for that project anyway, so this grants it nothing new,
    while an admin-role key whose scopes were cut down to 'decisions:read' stays in its project.
    With auth off (local experiments) there is no key and no fence: `requested` or every project.
    """
    if key is None:
        return requested
    if requested is None or requested == key.project:
        return key.project
    if key.allows(SCOPE_KEYS_ADMIN):
        return requested
    raise ForbiddenError(
        f"this key reads only its own project's decisions ('{key.project}'); reading "
        f"'{requested}' needs a key with '{SCOPE_KEYS_ADMIN}'"
    )


def _openai_result(verdict: Verdict, category_ids: list[str]) -> ModerationResult:
    """OpenAI's result for a verdict; blank input is answered as OpenAI does: nothing flagged."""
    if verdict.error:
        return ModerationResult(
            flagged=False,
            categories=dict.fromkeys(category_ids, False),
            category_scores=dict.fromkeys(category_ids, 0.0),
            category_applied_input_types={c: [] for c in category_ids},
        )
    return ModerationResult(
        flagged=verdict.flagged,
        categories=verdict.categories,
        category_scores=verdict.category_scores,
        category_applied_input_types=verdict.category_applied_input_types,
    )


def _openai_items(body: ModerationRequest) -> list[Item]:
    if isinstance(body.input, str):
        return [Item(text=body.input)]
    texts = [p for p in body.input if isinstance(p, str)]
    if texts:
        return [Item(text=t) for t in texts]
    # Parts of one item: validated by pydantic already, parsed by the shared OpenAI-form reader.
    return [item_from_openai_input([p.model_dump() for p in body.input if not isinstance(p, str)])]


def _item(it: ItemIn, n: int) -> Item | str:
    """The Item, or why it could not be built (a bad data URI): that item's error, not the batch's."""
    try:
        return Item(
            text=it.text,
            id=it.id,
            metadata=it.metadata,
            images=[MediaSource.from_request(u, "image") for u in it.images],
            video=MediaSource.from_request(it.video, "video") if it.video else None,
            audio=MediaSource.from_request(it.audio, "audio") if it.audio else None,
        )
    except BastionError as exc:
        return f"items[{n}]: {exc}"


def content_hash(item: Item) -> str:
    """sha256 over the text and each media's bytes (or path): what the decision was about."""
    digest = hashlib.sha256(item.text.encode("utf-8", errors="replace"))
    for source in item.media:
        digest.update(b"\x00" + source.kind.encode())
        if source.data is not None:
            digest.update(hashlib.sha256(source.data).digest())
        else:
            digest.update(str(source.path).encode())
    return digest.hexdigest()


# ---------------------------------------------------------------------- the routes

router = APIRouter()
"""The service's own routes: probes and metrics, moderation, the decision log. They read what
they share from `app.state` (`bastion.server.state`; the metrics and the decision log as
`metrics` and `decision_log`)."""


# ------------------------------------------------------------------ probes and metrics


@router.get("/healthz", response_model=Health, tags=["ops"])
def healthz(pool: ThePool) -> Health:
    return Health(status="ok", models=pool.loaded())


@router.get("/readyz", response_model=Health, tags=["ops"], responses={503: {"model": Health}})
def readyz(pool: ThePool) -> Response:
    ready = pool.default.name in pool.loaded()
    body = Health(status="ok" if ready else "loading", models=pool.loaded())
    return JSONResponse(body.model_dump(), status_code=200 if ready else 503)


@router.get("/metrics", tags=["ops"], response_class=Response)
def metrics_route(request: Request) -> Response:
    metrics: _Metrics = request.app.state.metrics
    return Response(generate_latest(metrics.exposed()), media_type=CONTENT_TYPE_LATEST)


# ------------------------------------------------------------------ moderation


def _run(
    request: Request,
    route: str,
    key: ModelKey,
    items: list[Item],
    api_key: ApiKey | None,
) -> list[Verdict]:
    """The items' verdicts, counted in the metrics and written to the decision log."""
    state = request.app.state
    settings: ServerSettings = state.settings
    metrics: _Metrics = state.metrics
    decision_log: _DecisionLog = state.decision_log
    pool: ModeratorPool = state.pool
    loaded = pool.get(key)
    start = time.perf_counter()
    verdicts = loaded.moderate(items)
    elapsed_ms = (time.perf_counter() - start) * 1000
    metrics.request_items.observe(len(items))
    metrics.items.inc(len(items))
    for verdict in verdicts:
        for category, flagged in verdict.categories.items():
            if flagged:
                metrics.flags.labels(category).inc()
    decision_log.write(
        [
            DecisionRecord(
                request_id=request.state.request_id,
                item_index=i,
                item_id=item.id,
                content_hash=content_hash(item),
                policy_version=v.policy_version,
                model_version=v.model_version,
                flagged=v.flagged,
                action=v.action.value,
                scores=v.category_scores,
                categories=[c for c, f in v.categories.items() if f],
                error=v.error,
                key_id=api_key.id if api_key else None,
                project=api_key.project if api_key else None,
                route=route,
                latency_ms=elapsed_ms,
                content=_loggable(item.text) if settings.log_content else None,
            )
            for i, (item, v) in enumerate(zip(items, verdicts, strict=True))
        ]
    )
    return verdicts


@router.post(
    "/v1/moderations",
    response_model=ModerationResponse,
    tags=["moderation"],
    summary="OpenAI-compatible moderation",
)
def moderations(
    body: ModerationRequest,
    request: Request,
    api_key: Annotated[ApiKey | None, Depends(require("moderate"))],
    pool: ThePool,
) -> ModerationResponse:
    key = pool.resolve(body.model)
    items = _openai_items(body)
    verdicts = _run(request, "/v1/moderations", key, items, api_key)
    failed = [
        (i, v.error)
        for i, (it, v) in enumerate(zip(items, verdicts, strict=True))
        if v.error and not it.is_blank
    ]
    if failed:
        i, error = failed[0]
        raise InputError(f"input {i}: {error}" if len(items) > 1 else str(error))
    category_ids = pool.get(key).moderator.policy.category_ids
    return ModerationResponse(
        id=request.state.request_id,
        model=body.model or key.name,
        results=[_openai_result(v, category_ids) for v in verdicts],
    )


@router.post(
    "/v1/moderate",
    response_model=ModerateResponse,
    tags=["moderation"],
    summary="Bastion verdicts: actions, evidence, per-item errors",
)
def moderate(
    body: ModerateRequest,
    request: Request,
    api_key: Annotated[ApiKey | None, Depends(require("moderate"))],
    pool: ThePool,
) -> ModerateResponse:
    key = pool.resolve(body.model, body.policy)
    moderator = pool.get(key).moderator
    built: list[Item | str] = [_item(it, n) for n, it in enumerate(body.items)]
    items = [b for b in built if isinstance(b, Item)]
    scored = iter(_run(request, "/v1/moderate", key, items, api_key) if items else [])
    verdicts = [
        next(scored)
        if isinstance(b, Item)
        else Verdict(
            id=body.items[n].id,
            policy_version=moderator.policy.version,
            model_version=moderator.model_version,
            error=b,
        )
        for n, b in enumerate(built)
    ]
    return ModerateResponse(
        id=request.state.request_id,
        policy_version=moderator.policy.version,
        model_version=moderator.model_version,
        verdicts=verdicts,
    )


# ------------------------------------------------------------------ decision log


@router.get(
    "/v1/decisions",
    response_model=DecisionList,
    tags=["decisions"],
    summary="Read the decision log of the key's project, newest first",
)
def decisions(
    request: Request,
    api_key: Annotated[ApiKey | None, Depends(require(SCOPE_DECISIONS_READ))],
    store: TheStore,
    request_id: Annotated[
        str | None, Query(min_length=1, description="only this request's decisions")
    ] = None,
    since: Annotated[
        datetime | None,
        BeforeValidator(_not_a_number),
        Query(
            description="decisions logged at or after this ISO 8601 time, which must have a "
            "zone: 2025-01-31T12:00:00Z, or 2025-01-31T13:00:00%2B01:00 URL-encoded"
        ),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000, description="at most this many")] = 100,
    project: Annotated[
        str | None,
        Query(min_length=1, description="another project's log (keys with 'keys:admin')"),
    ] = None,
) -> DecisionList:
    _only_known_query(request, ("request_id", "since", "limit", "project"))
    records = store.decisions(
        request_id=request_id,
        project=_readable_project(api_key, project),
        since=_utc_since(since),
        limit=limit,
    )
    return DecisionList(data=records)
