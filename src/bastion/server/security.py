"""Request guards: API keys with scopes, per-key rate limits, and a hard cap on body size.

Keys arrive as `Authorization: Bearer KEY`, which is what OpenAI clients send. The body cap is
enforced while the body streams in, not only from `Content-Length`, so a chunked 50 MB upload
is cut off at the cap instead of being buffered whole. Rate limits are a token bucket per key:
a burst up to a minute's allowance, refilled continuously.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

from bastion.store.keys import ApiKey, hash_secret

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def error_json(message: str, type_: str, code: str | None = None) -> bytes:
    return json.dumps(
        {"error": {"message": message, "type": type_, "code": code, "param": None}}
    ).encode()


class BodyLimitMiddleware:
    """Refuse request bodies over `max_bytes` with 413, by header or while streaming."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(send, int(declared))
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
                await self._refuse(send, seen)
                return
            if not message.get("more_body", False):
                break
        replay = iter(chunks)

        async def replay_receive() -> Message:
            try:
                return next(replay)
            except StopIteration:
                return await receive()

        await self.app(scope, replay_receive, send)

    async def _refuse(self, send: Send, size: int) -> None:
        body = error_json(
            f"request body of {size:,} bytes or more is over the limit of {self.max_bytes:,}; "
            "send fewer or smaller items (large backlogs: `bastion score`)",
            "invalid_request_error",
            "request_too_large",
        )
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"connection", b"close")],
            }
        )
        await send({"type": "http.response.body", "body": body})


@dataclass
class _Bucket:
    tokens: float
    at: float


class RateLimiter:
    """Token bucket per key: `per_minute` requests a minute, bursts up to that many."""

    def __init__(self, per_minute: int) -> None:
        self.per_minute = per_minute
        self.rate = per_minute / 60.0
        self._buckets: dict[str, _Bucket] = {}
        self._lock = threading.Lock()

    def take(self, key: str) -> float:
        """0 when allowed now, else the seconds until a request would be."""
        now = time.monotonic()
        with self._lock:
            bucket = self._buckets.get(key) or _Bucket(float(self.per_minute), now)
            bucket.tokens = min(
                float(self.per_minute), bucket.tokens + (now - bucket.at) * self.rate
            )
            bucket.at = now
            if bucket.tokens >= 1.0:
                bucket.tokens -= 1.0
                self._buckets[key] = bucket
                return 0.0
            self._buckets[key] = bucket
            return (1.0 - bucket.tokens) / self.rate


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
                if len(self._live) >= 10_000:  # bounded: drop the expired, else start over
                    self._live = {d: c for d, c in self._live.items() if c[0] > now}
                    if len(self._live) >= 10_000:
                        self._live.clear()
                self._live[digest] = (now + self.ttl_s, key)
        return key

    def forget(self) -> None:
        """Drop every remembered key (after a revocation in this process)."""
        with self._lock:
            self._live.clear()
