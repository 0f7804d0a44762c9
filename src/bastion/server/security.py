"""Request guards: API keys with scopes, per-key rate limits, and a hard cap on body size.

Keys arrive as `Authorization: Bearer KEY`, which is what OpenAI clients send. The body cap is
enforced while the body streams in, not only from `Content-Length`, so a chunked 50 MB upload
is cut off at the cap instead of being buffered whole. Rate limits are a token bucket per key:
a burst up to a minute's allowance, refilled continuously, kept in the store so that every
worker and replica shares it.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Annotated, Any, TypeVar

import numpy as np
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from bastion.errors import (
    ErrorCode,
    ForbiddenError,
    RateLimitedError,
    UnauthorizedError,
)
from bastion.server.settings import MAX_JSON_DEPTH
from bastion.store.keys import ApiKey, hash_secret
from bastion.store.limits import take_token
from bastion.store.store import Store

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def error_body(status: int, message: str, code: ErrorCode) -> dict[str, Any]:
    """OpenAI's error shape, whose `type` follows from the status as OpenAI's does."""
    kind = "invalid_request_error" if status < 500 else "server_error"
    if status in (401, 403):
        kind = "authentication_error" if status == 401 else "permission_error"
    return {"error": {"message": message, "type": kind, "code": code.value, "param": None}}


class BodyLimitMiddleware:
    """Refuse request bodies over `max_bytes` with 413, by header or while streaming, and JSON
    bodies that are not UTF-8 or nest deeper than `max_json_depth` with 400 naming the fault.

    The JSON checks run here, on the body already read, because past this point FastAPI
    answers both with a bare "There was an error parsing the body": Python's decoder raises
    UnicodeDecodeError for the one and RecursionError (near 1,000 levels) for the other. The
    depth is found without parsing: a scan that skips strings and counts brackets, cheap even
    at the size limit, and stopped at the first level past the limit.
    """

    def __init__(self, app: ASGIApp, max_bytes: int, max_json_depth: int = MAX_JSON_DEPTH) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.max_json_depth = max_json_depth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(send, 413, _too_large(int(declared), self.max_bytes))
            return
        # Read the body here, counting, and stop at the cap: the app parses JSON from a fully
        # read body anyway, and an exception raised inside its body reading would come back as
        # a generic 400 rather than a 413.
        chunks: list[Message] = []
        seen = 0
        while True:
            message = await receive()
            chunks.append(message)
            if message["type"] != "http.request":
                break
            seen += len(message.get("body", b""))
            if seen > self.max_bytes:
                await self._refuse(send, 413, _too_large(seen, self.max_bytes))
                return
            if not message.get("more_body", False):
                break
        if seen and _is_json(headers.get(b"content-type")):
            body = b"".join(m.get("body", b"") for m in chunks if m["type"] == "http.request")
            problem = json_body_problem(body, self.max_json_depth)
            if problem is not None:
                await self._refuse(send, 400, error_body(400, problem, ErrorCode.invalid_body))
                return
        replay = iter(chunks)

        async def replay_receive() -> Message:
            try:
                return next(replay)
            except StopIteration:
                return await receive()

        await self.app(scope, replay_receive, send)

    @staticmethod
    async def _refuse(send: Send, status: int, body: dict[str, Any]) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", b"application/json"), (b"connection", b"close")],
            }
        )
        await send({"type": "http.response.body", "body": json.dumps(body).encode()})


def _too_large(size: int, limit: int) -> dict[str, Any]:
    return error_body(
        413,
        f"request body of {size:,} bytes or more is over the limit of {limit:,}; "
        "send fewer or smaller items (large backlogs: `bastion score`)",
        ErrorCode.request_too_large,
    )


def _is_json(content_type: bytes | None) -> bool:
    """Whether FastAPI would read the body as JSON: no content type, or a JSON one."""
    if not content_type:
        return True
    media = content_type.split(b";", 1)[0].strip().lower()
    return media == b"application/json" or media.endswith(b"+json")


_JSON_STRING = re.compile(rb'"[^"\\]*+(?:\\.[^"\\]*+)*+"?', re.DOTALL)
"""A JSON string, whose brackets do not nest. An unclosed one runs to the end of the body, so
removing them all takes one linear pass whatever the bytes."""
_OPEN, _CLOSE = (np.frombuffer(b, dtype=np.uint8) for b in (b"[{", b"]}"))


def json_body_problem(body: bytes, max_depth: int) -> str | None:
    """Why a JSON body cannot be read (it is not UTF-8, or nests deeper than `max_depth`), or
    None. Any other fault in the JSON is left to the parser, whose message names its place."""
    try:
        body.decode("utf-8")
    except UnicodeDecodeError as exc:
        return f"invalid body: body is not UTF-8 at byte {exc.start} (JSON must be UTF-8)"
    if _json_depth_over(body, max_depth):
        return f"invalid body: JSON nested deeper than {max_depth} levels"
    return None


def _json_depth_over(body: bytes, max_depth: int, chunk: int = 1 << 20) -> bool:
    """Whether the brackets outside strings nest deeper than `max_depth`: the running sum of
    opening (+1) and closing (-1) brackets, in NumPy a chunk at a time (millions of brackets
    take milliseconds, where a Python loop over them took seconds). Removing the strings is
    one regex pass, skipped when the body has too few brackets to matter; at the 20 MB limit
    a body of millions of tiny strings costs it about what parsing them would."""
    if body.count(b"[") + body.count(b"{") <= max_depth:  # most bodies: too few to nest deep
        return False
    skeleton = _JSON_STRING.sub(b"", body)
    depth = 0
    for start in range(0, len(skeleton), chunk):
        part = np.frombuffer(
            skeleton, dtype=np.uint8, count=min(chunk, len(skeleton) - start), offset=start
        )
        steps = np.isin(part, _OPEN).astype(np.int32) - np.isin(part, _CLOSE)
        running = np.cumsum(steps) + depth
        if int(running.max()) > max_depth:
            return True
        depth = int(running[-1])
    return False


_V = TypeVar("_V")


def _make_room(entries: dict[str, _V], keep: Callable[[_V], bool]) -> dict[str, _V]:
    """A per-key memory kept bounded: `entries` as they are under 10,000; when full, only the
    ones `keep` accepts (those still good), and nothing if that is still full."""
    if len(entries) < 10_000:
        return entries
    kept = {k: v for k, v in entries.items() if keep(v)}
    return kept if len(kept) < 10_000 else {}


class RateLimiter:
    """Per-key rate limits, a token bucket per key: `per_minute` requests a minute, bursts up
    to that many.

    The buckets are kept in the store (`bastion.store.limits`), one row per key taken from in
    one atomic statement, so the limit holds whatever the number of worker processes and
    replicas on the database: four workers do not make it four times as high. `clock`
    (seconds, the Unix time by default: every process sharing the store must read the same
    clock) is the tests' seam.

    A write for every request would cost a busy service a transaction per request, so a
    limiter leases tokens from the store `lease` at a time (by default per_minute // 400, from
    1 to 16) and spends them from memory: one write per lease. Leased tokens are taken from the
    shared bucket, so nothing gets past the limit that the bucket did not hand out. What it
    costs: each process may hold up to `lease - 1` of a key's tokens unspent, so across W
    processes a key may be refused up to W * (lease - 1) requests early, and a stretch of time
    may let through that many more than the bucket handed out within it (tokens leased just
    before it began). At the default that is under 1 % of the limit with 4 processes. A lease
    not spent within `lease_s` seconds is dropped, so no process saves tokens for later. When
    the bucket has fewer than a lease left, a request takes a single token, so the last tokens
    still go to whoever asks. Limits under 800 a minute lease one token: exactly as before.
    """

    def __init__(
        self,
        store: Store,
        per_minute: int,
        *,
        clock: Callable[[], float] = time.time,
        lease: int | None = None,
        lease_s: float = 1.0,
    ) -> None:
        self.store = store
        self.per_minute = per_minute
        self.rate = per_minute / 60.0
        self.lease = lease if lease is not None else max(1, min(16, per_minute // 400))
        if not 1 <= self.lease <= max(1, per_minute):
            raise ValueError(f"lease of {self.lease} tokens for a limit of {per_minute}/min")
        self.lease_s = lease_s
        self._clock = clock
        self._leased: dict[str, tuple[int, float]] = {}  # key: (tokens left, usable until)
        self._lock = threading.Lock()

    def take(self, key: str) -> float:
        """0 when allowed now, else the seconds until a request would be."""
        now = self._clock()
        with self._lock:
            left, until = self._leased.get(key, (0, 0.0))
            if left > 0 and now < until:
                self._leased[key] = (left - 1, until)
                return 0.0
        if self.lease > 1 and self._take(key, now, self.lease) == 0.0:
            with self._lock:
                self._leased = _make_room(self._leased, lambda v: v[0] > 0 and v[1] > now)
                left, until = self._leased.get(key, (0, 0.0))
                kept = left if now < until else 0
                self._leased[key] = (kept + self.lease - 1, now + self.lease_s)
            return 0.0
        return self._take(key, now, 1)

    def _take(self, key: str, now: float, amount: int) -> float:
        return take_token(
            self.store,
            key,
            capacity=float(self.per_minute),
            per_second=self.rate,
            now=now,
            amount=amount,
        )


class VerifiedKeys:
    """Key checks with a short memory: a key found live is trusted for `ttl_s` seconds.

    Checking a key is a database read per request, which at a hundred requests a second on two
    cores cost more CPU than scoring the text. The cache is keyed by the secret's hash (the same
    hash the store keeps, never the secret) and holds only keys found live, so an unknown key
    is looked up every time. The price: a key revoked by another process (`bastion keys
    revoke`) keeps working here for up to `ttl_s` seconds (5 by default; 0 turns the cache off).
    `clock` (monotonic seconds, `time.monotonic` by default) is there so tests can move time on
    without sleeping.
    """

    def __init__(
        self,
        verify: Callable[[str], ApiKey | None],
        ttl_s: float = 5.0,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.verify = verify
        self.ttl_s = ttl_s
        self._clock = clock
        self._live: dict[str, tuple[float, ApiKey]] = {}
        self._lock = threading.Lock()

    def __call__(self, secret: str) -> ApiKey | None:
        if self.ttl_s <= 0:
            return self.verify(secret)
        digest = hash_secret(secret)
        now = self._clock()
        with self._lock:
            cached = self._live.get(digest)
        if cached is not None and cached[0] > now:
            return cached[1]
        key = self.verify(secret)
        with self._lock:
            if key is None:
                self._live.pop(digest, None)
            else:
                self._live = _make_room(self._live, lambda c: c[0] > now)
                self._live[digest] = (now + self.ttl_s, key)
        return key

    def forget(self) -> None:
        """Drop every remembered key (after a revocation in this process)."""
        with self._lock:
            self._live.clear()


class KeyGuard:
    """Who may call a route: with auth on, a live key (`verify`, a `VerifiedKeys`) holding every
    scope the route needs, within the key's rate limit (`limiter`, none: no limit); with auth
    off, anyone. The service keeps one as `app.state.keys`, which `require` reads."""

    def __init__(
        self,
        require_auth: bool,
        verify: Callable[[str], ApiKey | None],
        limiter: RateLimiter | None = None,
    ) -> None:
        self.require_auth = require_auth
        self.verify = verify
        self.limiter = limiter

    def check(self, secret: str | None, scopes: tuple[str, ...]) -> ApiKey | None:
        """The key of `secret` when it may go on (None with auth off); else UnauthorizedError,
        ForbiddenError or RateLimitedError saying why not."""
        if not self.require_auth:
            return None
        if secret is None:
            raise UnauthorizedError("missing API key: send 'Authorization: Bearer KEY'")
        key = self.verify(secret)
        if key is None:
            raise UnauthorizedError("invalid or revoked API key")
        missing = [s for s in scopes if not key.allows(s)]
        if missing:
            needs = " and ".join(f"'{s}'" for s in missing)
            raise ForbiddenError(
                f"this key ({key.role.value}) may not use this route (needs {needs})"
            )
        if self.limiter is not None:
            wait = self.limiter.take(key.id)
            if wait > 0:
                raise RateLimitedError(
                    f"rate limit of {self.limiter.per_minute} requests a minute reached for "
                    "this key",
                    retry_after_s=wait,
                )
        return key


_bearer = HTTPBearer(auto_error=False, description="Authorization: Bearer <API key>")


def require(scope: str, *more: str) -> Callable[..., ApiKey | None]:
    """The dependency that lets a request through with a live key holding every scope named
    (with auth off, anyone), within the key's rate limit: the service's `KeyGuard` decides."""
    scopes = (scope, *more)

    def check(
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> ApiKey | None:
        guard: KeyGuard = request.app.state.keys
        return guard.check(None if credentials is None else credentials.credentials, scopes)

    return check
