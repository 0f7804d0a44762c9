"""Recall jobs on the HTTP service: a pool of items run through every recall channel in the
background, ranked by expected harm, and optionally put into a review queue.

`POST /v1/recall/jobs` checks the request (the banks exist, the policy and model resolve, item
ids are unique), writes the job to `HOME/recall-jobs/ID/` and answers 202 with its id. A worker
thread runs the jobs one at a time, in the order they were accepted, never in a request's
thread: `bastion.triage.recall.recall` over the pool, `bastion.triage.rank.rank` (expected harm,
no learned ranker) over its candidates, and, when the job names a `queue`, the ranked items into
that review queue, as `bastion recall` and `bastion rank --enqueue` do. `GET .../ID` says where
the job is; `GET .../ID/candidates` pages the ranked candidates once it is done. An item with
neither text nor media (or with media that is not a base64 data URI) is named in the job's
`errors` and the rest are recalled.

Nothing that was accepted is lost. The job's directory (the pool as JSONL, the job's spec, its
status) is written and fsynced under a temporary name and renamed into place before the 202, and
the status is replaced atomically (a temporary file, then `os.replace`) at each step. When the
router starts, the jobs it finds queued or running are queued again, oldest first; one that was
running starts over, which is safe: recall writes nothing until the end, and queueing the same
candidates again updates them in place. A job runs under a lock file, so two servers on one home
never run the same job at once.

Scopes: a job needs both 'moderate' and 'banks:read', to submit it and to read it. Recall scores
every item with the classifier, which is what 'moderate' grants, and matches items against the
banks, which is 'banks:read'. The admin and moderator roles have both; a reviewer (no
'moderate') and a reader (neither) get 403. Candidates carry the pool's content, so a job is
read only by keys of the project that submitted it, or with 'keys:admin' (as the decision log
is); to any other key it does not exist (404). Putting the candidates into a review queue needs
no 'review' scope: it decides nothing, and reviewers still claim and decide each item.

Jobs share the service's loaded moderator, so they compete with online requests for the CPU. A
job with media holds the moderator's media lock while it runs (media is scored one request at
a time), so media requests wait behind it; text requests do not.

(No `from __future__ import annotations`: FastAPI reads these signatures at run time.)
"""

import contextlib
import json
import logging
import os
import queue
import re
import shutil
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, FastAPI, Query, Response
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from bastion.atomic import fsync, write_atomic
from bastion.banks.files import UnknownBankError
from bastion.banks.registry import Banks
from bastion.batch.inputs import JsonlInput
from bastion.errors import (
    BastionError,
    ConflictError,
    ErrorCode,
    InputError,
    InvalidRequestError,
    NotFoundError,
)
from bastion.media.sources import MediaKind, MediaSource
from bastion.server.pool import ModelKey, ModeratorPool
from bastion.server.schemas import ErrorResponse
from bastion.server.security import require
from bastion.server.state import state_of
from bastion.server.triage_routes import QUEUE_NAME_PATTERN
from bastion.store import ApiKey, Store
from bastion.store.keys import SCOPE_BANKS_READ, SCOPE_KEYS_ADMIN, SCOPE_MODERATE
from bastion.triage import ReviewQueue
from bastion.triage.rank import rank
from bastion.triage.recall import RecallSettings, recall

log = logging.getLogger("bastion.server.recall")

MAX_POOL_ITEMS = 50_000
"""Items per job; a bigger pool goes through `bastion recall`, or several jobs."""

JobStatus = Literal["queued", "running", "done", "failed"]

JOBS_DIR = "recall-jobs"
_POOL = "items.jsonl"
_SPEC = "job.json"
_STATE = "status.json"
_CANDIDATES = "candidates.jsonl"
_RUN_LOCK = ".run.lock"
_STAGING_PREFIX = ".new-"
_JOB_ID = re.compile(r"rj-[0-9a-f]{32}")
_PROGRESS_EVERY_S = 1.0
_MEDIA_KINDS: dict[str, MediaKind] = {"image": "image", "video": "video", "audio": "audio"}


class RecallItemMetadata(BaseModel):
    """What recall and ranking read besides the content: who posted it, how far it spread."""

    model_config = ConfigDict(extra="forbid", strict=True)

    author: str | None = Field(None, min_length=1, max_length=256, description="for the source")
    reach: float | None = Field(None, ge=0, allow_inf_nan=False, description="views, audience")
    reports: int | None = Field(None, ge=0, description="user reports")
    created_at: AwareDatetime | None = Field(None, description="ISO 8601 with a time zone")


class RecallItemIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    id: str = Field(min_length=1, max_length=256)
    text: str | None = Field(None, max_length=100_000)
    media: list[str] = Field(
        default_factory=list,
        max_length=16,
        description="base64 data URIs (data:image/...;base64,..., at most one video and one "
        "audio); file paths and URLs are not read from requests",
    )
    metadata: RecallItemMetadata = Field(default_factory=RecallItemMetadata)


class RecallJobRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    items: list[RecallItemIn] = Field(min_length=1, max_length=MAX_POOL_ITEMS)
    banks: list[str] = Field(
        default_factory=list,
        max_length=32,
        description="the banks to match, of any kind (none: only the classifier and source)",
    )
    policy: str | None = Field(None, max_length=128, description="a policy this server has")
    model: str | None = Field(None, max_length=128, description='"default", "zero-shot", ...')
    queue: str | None = Field(
        None,
        pattern=QUEUE_NAME_PATTERN,
        description="a review queue to put the ranked candidates into",
    )


class RecallJobAccepted(BaseModel):
    id: str
    status: Literal["queued"] = "queued"
    created_at: datetime


class JobProgress(BaseModel):
    done: int = Field(0, description="pool items read so far")
    total: int = Field(0, description="pool items to read")


class EnqueuedOut(BaseModel):
    queue: str
    added: int
    updated: int
    already_decided: int


class RecallJobOut(BaseModel):
    id: str
    status: JobStatus
    progress: JobProgress
    counts: dict[str, int] = Field(description="items each channel found (when done)")
    candidates: int = Field(description="items any channel found (when done)")
    errors: list[str] = Field(description="items that could not be recalled, and why")
    error: str | None = Field(description="why the job failed")
    banks: list[str]
    policy: str
    model: str
    queue: str | None
    enqueued: EnqueuedOut | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class CandidateOut(BaseModel):
    position: int = Field(description="0 is reviewed first")
    id: str
    score: float
    expected_harm: float
    text: str | None
    channels: dict[str, float] = Field(description="each channel that found it, and how strongly")
    distances: dict[str, float] = Field(description="the nearest match's distance per channel")
    scores: dict[str, float] = Field(description="the classifier's probability per category")
    reach: float | None
    reports: float | None
    author: str | None
    created_at: datetime | None
    metadata: dict[str, Any]
    features: dict[str, float | None] = Field(description="what the ranker scored (null: n/a)")


class CandidateList(BaseModel):
    object: Literal["list"] = "list"
    job: str
    total: int
    data: list[CandidateOut]


class JobNotDoneError(ConflictError):
    """The job's candidates are asked for before it is done."""

    code = ErrorCode.job_not_done


class JobSpec(BaseModel):
    """What was accepted (`job.json`, never changed): who asked, for what."""

    id: str
    banks: list[str]
    policy: str
    model: str
    queue: str | None
    project: str | None
    key_id: str | None
    has_media: bool
    created_at: datetime


class JobState(BaseModel):
    """Where the job is (`status.json`, replaced atomically)."""

    status: JobStatus = "queued"
    progress: JobProgress = Field(default_factory=JobProgress)
    counts: dict[str, int] = Field(default_factory=dict)
    candidates: int = 0
    errors: list[str] = Field(default_factory=list)
    error: str | None = None
    enqueued: EnqueuedOut | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None


class _Stopped(Exception):
    """The service is stopping: leave the job running on disk, to start again at the next start."""


class RecallJobs:
    """The recall jobs of one home: accepted to disk, run one at a time by a worker thread that
    `start` starts (queuing again what an earlier run left unfinished) and `stop` stops."""

    def __init__(
        self,
        home: Path,
        store: Store,
        pool: ModeratorPool,
        settings: RecallSettings | None = None,
    ) -> None:
        self.root = home / JOBS_DIR
        self.banks = Banks(home)
        self.store = store
        self.pool = pool
        self.settings = settings or RecallSettings()
        self._lock = threading.Lock()
        self._pending: queue.Queue[str | None] | None = None
        self._worker: threading.Thread | None = None
        self._stopping = threading.Event()
        self._ran = threading.Condition()  # notified each time the worker leaves a job

    # -- requests ------------------------------------------------------------------------------

    def submit(self, request: RecallJobRequest, key: ApiKey | None) -> JobSpec:
        """Check the request, write the job to disk and queue it; UnknownBankError for a bank the
        service lacks, InputError for anything else that cannot be run."""
        known = set(self.banks.names())
        names = list(dict.fromkeys(request.banks))
        missing = [b for b in names if b not in known]
        if missing:
            raise UnknownBankError(
                f"no bank named {missing[0]!r} (this server has: "
                f"{', '.join(sorted(known)) or 'none'})"
            )
        model_key = self.pool.resolve(request.model, request.policy)
        _check_unique_ids(request.items)
        lines, errors = _pool_lines(request.items)
        if not lines:
            raise InputError(
                f"none of the {len(request.items)} items can be recalled; the first: {errors[0]}"
            )
        spec = JobSpec(
            id=f"rj-{uuid.uuid4().hex}",
            banks=names,
            policy=model_key.policy,
            model=model_key.model,
            queue=request.queue,
            project=None if key is None else key.project,
            key_id=None if key is None else key.id,
            has_media=any(k in line for line in lines for k in ("images", "video", "audio")),
            created_at=datetime.now(UTC),
        )
        state = JobState(progress=JobProgress(total=len(lines)), errors=errors)
        self.root.mkdir(parents=True, exist_ok=True)
        staging = self.root / f"{_STAGING_PREFIX}{spec.id}"
        staging.mkdir()
        try:
            write_atomic(staging / _POOL, (_json_line(line) for line in lines))
            write_atomic(staging / _SPEC, [spec.model_dump_json().encode()])
            write_atomic(staging / _STATE, [state.model_dump_json().encode()])
            with self._lock:  # into place and onto the worker's queue as one step (see `start`)
                os.rename(staging, self.root / spec.id)
                fsync(self.root)
                if self._pending is not None:
                    self._pending.put(spec.id)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return spec

    def get(self, job_id: str, key: ApiKey | None) -> RecallJobOut:
        spec, state = self._read(job_id, key)
        return RecallJobOut(
            id=spec.id,
            status=state.status,
            progress=state.progress,
            counts=state.counts,
            candidates=state.candidates,
            errors=state.errors,
            error=state.error,
            banks=spec.banks,
            policy=spec.policy,
            model=spec.model,
            queue=spec.queue,
            enqueued=state.enqueued,
            created_at=spec.created_at,
            started_at=state.started_at,
            finished_at=state.finished_at,
        )

    def wait(self, job_id: str, key: ApiKey | None, timeout_s: float) -> RecallJobOut:
        """The job once it is done or failed, or as it stands after `timeout_s` (for callers in
        the same process, such as tests, that would otherwise poll its status)."""
        with self._ran:
            self._ran.wait_for(
                lambda: self.get(job_id, key).status in ("done", "failed"), timeout_s
            )
        return self.get(job_id, key)

    def candidates(self, job_id: str, key: ApiKey | None, limit: int, offset: int) -> CandidateList:
        """A page of the ranked candidates of a done job (JobNotDoneError before)."""
        spec, state = self._read(job_id, key)
        if state.status != "done":
            why = f": {state.error}" if state.error else ""
            raise JobNotDoneError(
                f"recall job {job_id} is {state.status}{why}; its candidates are listed once it "
                "is done"
            )
        page: list[CandidateOut] = []
        with (self.root / job_id / _CANDIDATES).open(encoding="utf-8") as fh:
            for n, line in enumerate(fh):
                if n >= offset + limit:
                    break
                if n >= offset:
                    page.append(CandidateOut.model_validate_json(line))
        return CandidateList(job=spec.id, total=state.candidates, data=page)

    def _read(self, job_id: str, key: ApiKey | None) -> tuple[JobSpec, JobState]:
        directory = self.root / job_id
        if not _JOB_ID.fullmatch(job_id) or not (directory / _SPEC).is_file():
            raise NotFoundError(f"no recall job {job_id!r}")
        spec = JobSpec.model_validate_json((directory / _SPEC).read_bytes())
        readable = key is None or key.project == spec.project or key.allows(SCOPE_KEYS_ADMIN)
        if not readable:  # to any other key it does not exist
            raise NotFoundError(f"no recall job {job_id!r}")
        return spec, JobState.model_validate_json((directory / _STATE).read_bytes())

    # -- the worker ----------------------------------------------------------------------------

    def start(self) -> None:
        """Start the worker, first queuing the jobs an earlier run left queued or running."""
        with self._lock:
            if self._worker is not None:
                return
            self.root.mkdir(parents=True, exist_ok=True)
            for stale in self.root.glob(f"{_STAGING_PREFIX}*"):  # never acknowledged
                shutil.rmtree(stale, ignore_errors=True)
            pending: queue.Queue[str | None] = queue.Queue()
            for job_id in self._unfinished():
                pending.put(job_id)
            stopping = threading.Event()
            worker = threading.Thread(
                target=self._work, args=(pending, stopping), name="bastion-recall", daemon=True
            )
            self._pending, self._worker, self._stopping = pending, worker, stopping
            worker.start()

    def stop(self, timeout_s: float = 60.0) -> None:
        """Stop the worker; a job it is running stops at its next batch and stays 'running' on
        disk, to start over at the next `start`."""
        with self._lock:
            worker, pending, stopping = self._worker, self._pending, self._stopping
            self._worker = self._pending = None
        if worker is None or pending is None:
            return
        stopping.set()
        pending.put(None)
        worker.join(timeout_s)
        if worker.is_alive():
            log.warning("the recall worker did not stop within %.0f s", timeout_s)

    def _unfinished(self) -> list[str]:
        """Ids of the jobs on disk that are queued or running, oldest first."""
        found: list[tuple[datetime, str]] = []
        for directory in self.root.iterdir():
            if not _JOB_ID.fullmatch(directory.name):
                continue
            try:
                spec = JobSpec.model_validate_json((directory / _SPEC).read_bytes())
                state = JobState.model_validate_json((directory / _STATE).read_bytes())
            except (OSError, ValueError) as exc:
                log.error("recall job %s cannot be read, so it is not run: %s", directory, exc)
                continue
            if state.status in ("queued", "running"):
                found.append((spec.created_at, spec.id))
        return [job_id for _, job_id in sorted(found)]

    def _work(self, pending: queue.Queue[str | None], stopping: threading.Event) -> None:
        while not stopping.is_set():
            job_id = pending.get()
            if job_id is None:
                return
            try:
                self._run(job_id, stopping)
            except Exception:  # the worker outlives any one job
                log.exception("recall job %s could not be run", job_id)
            finally:
                with self._ran:
                    self._ran.notify_all()

    def _run(self, job_id: str, stopping: threading.Event) -> None:
        directory = self.root / job_id
        with _held(directory / _RUN_LOCK) as held:
            if not held:  # another server on this home is running it
                return
            spec = JobSpec.model_validate_json((directory / _SPEC).read_bytes())
            state = JobState.model_validate_json((directory / _STATE).read_bytes())
            if state.status not in ("queued", "running"):
                return
            state.status, state.started_at = "running", datetime.now(UTC)
            state.progress.done = 0
            _save_state(directory, state)
            try:
                self._recall(directory, spec, state, stopping)
            except _Stopped:
                log.info("recall job %s stopped with the service; it starts over next time", job_id)
                return
            except BastionError as exc:
                state.status, state.error = "failed", str(exc)
            except Exception as exc:
                log.exception("recall job %s failed", job_id)
                state.status = "failed"
                state.error = f"internal error ({type(exc).__name__}); see the server's log"
            else:
                state.status = "done"
            state.finished_at = datetime.now(UTC)
            _save_state(directory, state)

    def _recall(
        self, directory: Path, spec: JobSpec, state: JobState, stopping: threading.Event
    ) -> None:
        banks = [self.banks.open(name) for name in spec.banks]
        loaded = self.pool.get(ModelKey(spec.policy, spec.model))
        last_saved = time.monotonic()

        def progress(done: int, total: int) -> None:
            nonlocal last_saved
            if stopping.is_set():
                raise _Stopped
            state.progress = JobProgress(done=done, total=total)
            if time.monotonic() - last_saved >= _PROGRESS_EVERY_S:
                _save_state(directory, state)
                last_saved = time.monotonic()

        media_lock = loaded.media_lock if spec.has_media else contextlib.nullcontext()
        with media_lock:
            result = recall(
                JsonlInput((directory / _POOL).resolve(), "items"),
                loaded.moderator,
                banks=banks,
                settings=self.settings,
                progress=progress,
            )
        ranked = rank(result.candidates)
        write_atomic(directory / _CANDIDATES, (_json_line(r.to_json()) for r in ranked))
        if spec.queue is not None:
            added = ReviewQueue(self.store, spec.queue).enqueue(
                r.queue_item(len(ranked)) for r in ranked
            )
            state.enqueued = EnqueuedOut(
                queue=spec.queue,
                added=len(added.added),
                updated=len(added.updated),
                already_decided=len(added.already_decided),
            )
        state.counts = result.hit_counts()
        state.candidates = len(ranked)
        state.errors = [*state.errors, *result.errors]


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    """The worker runs the service's jobs (`app.state.recall_jobs`) while the app is up."""
    jobs: RecallJobs = app.state.recall_jobs
    jobs.start()
    yield
    await run_in_threadpool(jobs.stop)


router = APIRouter(
    lifespan=_lifespan,
    responses={404: {"model": ErrorResponse, "description": "no such job"}},
)
_may_recall = require(SCOPE_MODERATE, SCOPE_BANKS_READ)


TheJobs = Annotated[RecallJobs, Depends(state_of("recall_jobs"))]


@router.post(
    "/v1/recall/jobs",
    response_model=RecallJobAccepted,
    status_code=202,
    tags=["recall"],
    summary="Recall the likely violations in a pool of items, in the background",
    responses={404: {"model": ErrorResponse, "description": "a bank the server lacks"}},
)
def submit(
    body: RecallJobRequest,
    response: Response,
    key: Annotated[ApiKey | None, Depends(_may_recall)],
    jobs: TheJobs,
) -> RecallJobAccepted:
    try:
        spec = jobs.submit(body, key)
    except InputError as exc:  # the request's items, policy or model: a field is wrong
        raise InvalidRequestError(f"invalid request: {exc}") from None
    response.headers["Location"] = f"/v1/recall/jobs/{spec.id}"
    return RecallJobAccepted(id=spec.id, created_at=spec.created_at)


@router.get("/v1/recall/jobs/{job_id}", response_model=RecallJobOut, tags=["recall"])
def get_job(
    job_id: str,
    key: Annotated[ApiKey | None, Depends(_may_recall)],
    jobs: TheJobs,
) -> RecallJobOut:
    return jobs.get(job_id, key)


@router.get(
    "/v1/recall/jobs/{job_id}/candidates",
    response_model=CandidateList,
    tags=["recall"],
    summary="The job's candidates, most expected harm first",
    responses={409: {"model": ErrorResponse, "description": "the job is not done"}},
)
def get_candidates(
    job_id: str,
    key: Annotated[ApiKey | None, Depends(_may_recall)],
    jobs: TheJobs,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=MAX_POOL_ITEMS)] = 0,
) -> CandidateList:
    return jobs.candidates(job_id, key, limit, offset)


def _check_unique_ids(items: list[RecallItemIn]) -> None:
    first: dict[str, int] = {}
    for n, item in enumerate(items):
        if item.id in first:
            raise InputError(
                f"item id {item.id!r} appears more than once (items[{first[item.id]}] and "
                f"items[{n}]); ids name the candidates and the queue's items"
            )
        first[item.id] = n


def _pool_lines(items: list[RecallItemIn]) -> tuple[list[dict[str, Any]], list[str]]:
    """The pool's JSONL lines (the `bastion moderate` file contract, metadata as extra fields)
    for the items that can be recalled, and why each other item cannot."""
    lines: list[dict[str, Any]] = []
    errors: list[str] = []
    for n, item in enumerate(items):
        where = f"items[{n}] (id {item.id!r})"
        text = item.text or ""
        if not text.strip() and not item.media:
            errors.append(f"{where}: no text and no media; there is nothing to recall it by")
            continue
        try:
            media = _media_fields(item.media)
        except InputError as exc:
            errors.append(f"{where}: {exc}")
            continue
        meta = item.metadata.model_dump(mode="json", exclude_none=True)
        lines.append({**meta, "id": item.id, "text": text, **media})
    return lines, errors


def _media_fields(values: list[str]) -> dict[str, Any]:
    """`images`, `video` and `audio` of a pool line from data URIs, each checked (base64 and
    all) and told apart by its MIME type; an InputError names the first one that is wrong."""
    out: dict[str, Any] = {}
    for j, value in enumerate(values):
        if not value.startswith("data:"):
            raise InputError(
                f"media[{j}] must be a base64 data URI (data:<type>;base64,...); file paths "
                "and URLs are not read from requests"
            )
        mime = value[len("data:") :].split(",", 1)[0].split(";", 1)[0].lower()
        kind = _MEDIA_KINDS.get(mime.split("/", 1)[0])
        if kind is None:
            raise InputError(
                f"media[{j}] is of type {mime or 'none'}; send image/*, video/* or audio/*"
            )
        try:
            MediaSource.from_data_uri(value, kind)
        except InputError as exc:
            raise InputError(f"media[{j}]: {exc}") from None
        if kind == "image":
            out.setdefault("images", []).append(value)
        elif kind in out:
            raise InputError(f"media[{j}]: an item has at most one {kind}")
        else:
            out[kind] = value
    return out


def _json_line(row: dict[str, Any]) -> bytes:
    return (json.dumps(row, ensure_ascii=False, allow_nan=False) + "\n").encode("utf-8")


def _save_state(directory: Path, state: JobState) -> None:
    write_atomic(directory / _STATE, [state.model_dump_json().encode()])


@contextlib.contextmanager
def _held(path: Path) -> Iterator[bool]:
    """Hold an exclusive lock on `path` if no other process holds it: yields whether it did."""
    import fcntl

    with path.open("a") as handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
