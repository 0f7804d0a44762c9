"""Review queues and banks on the HTTP service: reviewers list, claim and decide; moderators
match content against banks and look images up in hash banks; admins create banks and add to
them. Thin layers over `bastion.triage.queue` and `bastion.banks`, under the service's keys and
scopes.

The reviewer of a claim or decision is the API key's id (with auth off, the `reviewer` field of
the body), so who decided what is the key that did it, not a name a client typed.

`POST /v1/banks/{name}/lookup` is HMA's `/m/lookup`: one call with an image (or a hash) that
answers with the image's hashes and the bank's matches; `bastion.server.bank_lookup` reads the
request and hashes the image as moderation hashes it.

The routes read what they share from `app.state`, which `bastion.server.app.create_app` fills:
the store (`bastion.server.state`), the banks (`banks`) and the lookup's image decoders (`lookup_decoders`,
closed when the app stops).

(No `from __future__ import annotations`: FastAPI reads these signatures at run time.)
"""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, FastAPI, Query
from fastapi import Path as PathParam
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from bastion.banks.base import Bank, MediaBank
from bastion.banks.entries import Entry, Label, Match
from bastion.banks.files import (
    BankError,
    BankExistsError,
    BankKind,
    UnknownBankError,
    UnreadableBankError,
    WrongBankKindError,
    check_name,
)
from bastion.banks.hashes import check_value
from bastion.banks.registry import Banks, bank_class
from bastion.errors import InvalidRequestError
from bastion.server.bank_lookup import (
    LOOKUP_BODY,
    ImageDecoders,
    LookupInput,
    image_hashes,
    read_lookup,
)
from bastion.server.schemas import ErrorResponse
from bastion.server.security import require
from bastion.server.state import TheStore, state_of
from bastion.store import ApiKey
from bastion.store.keys import SCOPE_BANKS_READ, SCOPE_BANKS_WRITE, SCOPE_REVIEW
from bastion.triage import ReviewLabel, ReviewQueue

QUEUE_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_\-.:]{0,127}$"
QueueName = Annotated[
    str, PathParam(pattern=QUEUE_NAME_PATTERN, description="the review queue's name")
]


class ClaimRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    n: int = Field(1, ge=1, le=100, description="how many items to claim")
    ttl_s: float = Field(900.0, gt=0, le=86_400, description="how long the claim holds")
    reviewer: str | None = Field(None, description="who reviews (only when auth is off)")


class DecisionRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    label: ReviewLabel
    categories: list[str] = Field(default_factory=list, max_length=32)
    note: str = Field("", max_length=4000)
    reviewer: str | None = Field(None, description="who decided (only when auth is off)")


class QueueItemOut(BaseModel):
    id: str
    state: str
    priority: float
    expected_harm: float | None
    text: str | None
    media: list[str]
    channels: list[str]
    claimed_by: str | None
    claim_expires_at: str | None
    decision: dict[str, Any] | None


class QueueItemList(BaseModel):
    object: str = "list"
    counts: dict[str, int]
    data: list[QueueItemOut]


class BankOut(BaseModel):
    name: str
    kind: str
    version: int
    entries: int
    description: str


class BankList(BaseModel):
    object: str = "list"
    data: list[BankOut]


class MatchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    values: list[str] = Field(
        min_length=1,
        max_length=256,
        description="PDQ / MD5 / vPDQ hashes for a hash bank, texts for text and embedding banks",
    )


class MatchOut(BaseModel):
    entry_id: str
    distance: float
    category: str
    severity: int
    source: str
    negative: bool


class MatchList(BaseModel):
    object: str = "list"
    bank: str
    bank_version: int
    data: list[list[MatchOut]] = Field(description="one list of matches per value, in order")
    errors: list[str | None] = Field(description="per value: null, or why it could not be matched")


class EntryIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    id: str = Field(min_length=1, max_length=256)
    value: str = Field(min_length=1)
    signal: str | None = Field(None, description="pdq, vpdq, md5, text or embedding")
    category: str = Field(min_length=1, max_length=128)
    severity: int = Field(2, ge=0, le=4)
    source: str = Field("", max_length=256)
    notes: str = Field("", max_length=4000)
    negative: bool = Field(False, description="an allow-list entry")


class AddEntriesRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    entries: list[EntryIn] = Field(min_length=1, max_length=10_000)


class AddEntriesOut(BaseModel):
    bank: str
    bank_version: int
    added: list[str]
    errors: list[str]


class CreateBankRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    name: str = Field(
        min_length=1,
        max_length=64,
        description="lowercase letters, digits, '-', '_' or '.', starting with a letter or digit",
    )
    kind: BankKind
    description: str = Field("", max_length=4000, description="what the bank holds, for people")
    settings: dict[str, Any] = Field(
        default_factory=dict,
        max_length=64,
        description="the kind's settings (e.g. pdq_threshold for hash banks, threshold for "
        "text banks, min_similarity for embedding banks); the rest keep their defaults",
    )


class LookupHashes(BaseModel):
    """What was looked up: an image's PDQ and MD5, or the one hash that was given."""

    pdq: str | None = Field(None, description="PDQ hash, 64 hex characters")
    pdq_quality: int | None = Field(
        None,
        description="PDQ quality 0-100 of the image; under the bank's quality threshold "
        "(50 by default: a flat or blurred picture) the PDQ is not matched, the MD5 still is",
    )
    md5: str | None = Field(None, description="MD5 of the uploaded file's bytes, 32 hex characters")
    vpdq: str | None = Field(None, description="a vPDQ signal, when one was given")


class LookupOut(BaseModel):
    object: Literal["bank_lookup"] = "bank_lookup"
    bank: str
    bank_version: int
    input: Literal["image", "hash"] = Field(description="what the request sent")
    hashes: LookupHashes
    data: list[MatchOut] = Field(description="the bank's matches, nearest first")


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    yield
    await run_in_threadpool(app.state.lookup_decoders.close)


# 404: an unknown queue item or bank; 409: a claim held by someone else, or already decided.
router = APIRouter(
    responses={status: {"model": ErrorResponse} for status in (404, 409)}, lifespan=_lifespan
)


TheBanks = Annotated[Banks, Depends(state_of("banks"))]


def _reviewer_of(key: ApiKey | None, given: str | None) -> str:
    if key is not None:
        return key.id
    if not given:
        raise InvalidRequestError("invalid request: reviewer is required when auth is off")
    return given


def _open_bank(banks: Banks, name: str) -> Bank:
    """The bank named: UnknownBankError (404) when there is none, UnreadableBankError (500)
    when its files cannot be read, which is the service's fault and not the request's."""
    try:
        return banks.open(name)
    except BankError as exc:
        if isinstance(exc, UnknownBankError):
            raise
        raise UnreadableBankError(str(exc)) from None


@router.get("/v1/queues/{queue}/items", response_model=QueueItemList, tags=["review"])
def list_items(
    queue: QueueName,
    key: Annotated[ApiKey | None, Depends(require(SCOPE_REVIEW))],
    store: TheStore,
    state: Annotated[str | None, Query(description="pending, claimed or decided")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> QueueItemList:
    q = ReviewQueue(store, queue)
    return _listing(q, q.list(state=state, limit=limit))


@router.post("/v1/queues/{queue}/claim", response_model=QueueItemList, tags=["review"])
def claim(
    queue: QueueName,
    body: ClaimRequest,
    key: Annotated[ApiKey | None, Depends(require(SCOPE_REVIEW))],
    store: TheStore,
) -> QueueItemList:
    q = ReviewQueue(store, queue)
    items = q.claim(_reviewer_of(key, body.reviewer), n=body.n, ttl_s=body.ttl_s)
    return _listing(q, items)


@router.post(
    "/v1/queues/{queue}/items/{item_id}/decision", response_model=QueueItemOut, tags=["review"]
)
def decide(
    queue: QueueName,
    item_id: str,
    body: DecisionRequest,
    key: Annotated[ApiKey | None, Depends(require(SCOPE_REVIEW))],
    store: TheStore,
) -> QueueItemOut:
    q = ReviewQueue(store, queue)
    q.decide(
        item_id,
        _reviewer_of(key, body.reviewer),
        body.label,
        categories=body.categories,
        note=body.note,
    )
    return _item_out(q.get(item_id))


@router.get("/v1/banks", response_model=BankList, tags=["banks"])
def list_banks(
    key: Annotated[ApiKey | None, Depends(require(SCOPE_BANKS_READ))],
    banks: TheBanks,
) -> BankList:
    return BankList(data=[_bank_out(_open_bank(banks, n)) for n in banks.names()])


@router.post(
    "/v1/banks",
    response_model=BankOut,
    status_code=201,
    tags=["banks"],
    responses={409: {"model": ErrorResponse, "description": "a bank of that name exists"}},
)
def create_bank(
    body: CreateBankRequest,
    key: Annotated[ApiKey | None, Depends(require(SCOPE_BANKS_WRITE))],
    banks: TheBanks,
) -> BankOut:
    check_name(body.name)
    bank_class(body.kind).check_service_settings(body.settings)
    if body.name in banks.names():
        raise BankExistsError(f"bank {body.name!r} already exists")
    # BankExistsError too, when another request created it in the meantime.
    return _bank_out(banks.create(body.name, body.kind, body.settings, body.description))


@router.post("/v1/banks/{name}/match", response_model=MatchList, tags=["banks"])
def match(
    name: str,
    body: MatchRequest,
    key: Annotated[ApiKey | None, Depends(require(SCOPE_BANKS_READ))],
    banks: TheBanks,
) -> MatchList:
    bank = _open_bank(banks, name)
    results: list[list[MatchOut]] = []
    errors: list[str | None] = []
    for value in body.values:  # one at a time: a bad value is its own error
        try:
            found = bank.match_values([value])[0]
            results.append([_match_out(m) for m in found])
            errors.append(None)
        except BankError as exc:
            results.append([])
            errors.append(str(exc))
    return MatchList(
        bank=bank.manifest.name, bank_version=bank.manifest.version, data=results, errors=errors
    )


@router.post("/v1/banks/{name}/entries", response_model=AddEntriesOut, tags=["banks"])
def add_entries(
    name: str,
    body: AddEntriesRequest,
    key: Annotated[ApiKey | None, Depends(require(SCOPE_BANKS_WRITE))],
    banks: TheBanks,
) -> AddEntriesOut:
    bank = _open_bank(banks, name)
    good: list[Entry] = []
    errors: list[str] = []
    for n, e in enumerate(body.entries):
        try:
            entry = Entry(
                e.id,
                e.signal or bank.default_signal(e.value),
                e.value,
                Label(e.category, e.severity, e.source, e.notes),
                negative=e.negative,
            )
            good.append(bank.validate_entry(entry))
        except BankError as exc:
            errors.append(f"entries[{n}] ({e.id!r}): {exc}")
    updated = bank.add(good) if good else bank
    return AddEntriesOut(
        bank=updated.manifest.name,
        bank_version=updated.manifest.version,
        added=[e.id for e in good],
        errors=errors,
    )


@router.post(
    "/v1/banks/{name}/lookup",
    response_model=LookupOut,
    tags=["banks"],
    summary="Look an image or a hash up in a hash bank (HMA's /m/lookup)",
    responses={
        413: {"model": ErrorResponse, "description": "the image is over the size limit"},
        415: {"model": ErrorResponse, "description": "a body of another type"},
    },
    openapi_extra={"requestBody": LOOKUP_BODY},
)
def lookup(
    name: str,
    key: Annotated[ApiKey | None, Depends(require(SCOPE_BANKS_READ))],
    given: Annotated[LookupInput, Depends(read_lookup)],
    banks: TheBanks,
    decoders: Annotated[ImageDecoders, Depends(state_of("lookup_decoders"))],
) -> LookupOut:
    bank = _open_bank(banks, name)
    if not isinstance(bank, MediaBank):
        raise WrongBankKindError(
            f"bank {name!r} is a {bank.kind} bank; lookup matches images and hashes in hash "
            f"banks (match texts with POST /v1/banks/{name}/match)"
        )
    if given.image is not None:
        pdq, md5 = image_hashes(decoders, given.image)
        found = bank.match_media_hashes([[pdq]], [[md5]])[0]
        hashes = LookupHashes(pdq=pdq.hash, pdq_quality=pdq.quality, md5=md5)
    else:
        assert given.hash is not None
        signal, value = check_value(given.hash)
        found = bank.match_values([value])[0]
        hashes = LookupHashes.model_validate({signal: value})
    return LookupOut(
        bank=bank.manifest.name,
        bank_version=bank.manifest.version,
        input="image" if given.image is not None else "hash",
        hashes=hashes,
        data=[_match_out(m) for m in found],
    )


def _bank_out(bank: Bank) -> BankOut:
    m = bank.manifest
    return BankOut(
        name=m.name, kind=m.kind, version=m.version, entries=m.entries, description=m.description
    )


def _listing(queue: ReviewQueue, items: list[Any]) -> QueueItemList:
    """`items` with the queue's counts per state, as they are after the call."""
    counts = queue.counts()
    return QueueItemList(
        counts={"pending": counts.pending, "claimed": counts.claimed, "decided": counts.decided},
        data=[_item_out(i) for i in items],
    )


def _match_out(m: Match) -> MatchOut:
    return MatchOut(
        entry_id=m.entry_id,
        distance=float(m.distance),
        category=m.label.category,
        severity=m.label.severity,
        source=m.label.source,
        negative=m.negative,
    )


def _item_out(item: Any) -> QueueItemOut:
    decision = item.decision
    return QueueItemOut(
        id=item.item_id,
        state=item.state.value,
        priority=item.priority,
        expected_harm=item.expected_harm,
        text=item.text,
        media=list(item.media),
        channels=list(item.channels),
        claimed_by=item.claimed_by,
        claim_expires_at=None
        if item.claim_expires_at is None
        else item.claim_expires_at.isoformat(),
        decision=None
        if decision is None
        else {
            "label": decision.label.value,
            "categories": decision.categories,
            "note": decision.note,
            "reviewer": decision.reviewer,
            "decided_at": decision.decided_at.isoformat(),
        },
    )
