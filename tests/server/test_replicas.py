"""Two replicas, two `bastion serve` processes on different ports over one PostgreSQL database,
behave as one service: keys, rate limits, the decision log and review queues are the database's,
not a process's.

Needs PostgreSQL ($BASTION_TEST_POSTGRES_URL, which `.ci/postgres.sh` sets; skipped without it,
failed without it where $CI_REQUIRE_POSTGRES=1, as the store tests are). Nothing waits a fixed
time: a state is polled for, with a deadline that only bounds a test that has already failed.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from serving import at_once, free_port, start_server

from bastion.store import Role, Store
from bastion.triage import ReviewQueue
from bastion.triage.queue import QueueItem
from databases import _postgres_database

pytestmark = pytest.mark.slow

KEY_CACHE_S = 2.0
RATE_LIMIT = 3
"""Requests a minute per key: one token back every 20 s, far longer than a test's burst."""


@dataclass
class Replicas:
    urls: tuple[str, str]
    database_url: str
    home: Path

    def store(self) -> Store:
        return Store.open(self.home / "client", self.database_url)

    def key(self, role: Role = Role.admin) -> str:
        with self.store() as store:
            _, secret = store.create_key(f"test {role.value}", role)
        return secret


def call(url: str, method: str, path: str, key: str, **kwargs: object) -> httpx.Response:
    with httpx.Client(headers={"Authorization": f"Bearer {key}"}, timeout=60) as client:
        return client.request(method, f"{url}{path}", **kwargs)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    yield from _postgres_database()


@pytest.fixture(scope="module")
def replicas(postgres_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Replicas]:
    root = tmp_path_factory.mktemp("replicas")
    Store.open(root / "client", postgres_url).close()  # migrated once, before both start
    env = {"BASTION_DATABASE_URL": postgres_url}
    args = ["--rate-limit", str(RATE_LIMIT), "--key-cache-s", str(KEY_CACHE_S)]
    procs: list[subprocess.Popen[str]] = []
    lock = threading.Lock()

    def start(name: str) -> str:
        port = free_port()
        proc, key = start_server(root / name, port, args=args, env=env)
        with lock:
            procs.append(proc)
        assert key is None  # the keys are the database's: made before, by the test
        return f"http://127.0.0.1:{port}"

    with Store.open(root / "client", postgres_url) as store:
        store.create_key("so that neither replica makes an admin key", Role.admin)
    try:
        started = at_once([lambda: start("a"), lambda: start("b")])
        for url in started:
            if isinstance(url, Exception):
                raise url
        a, b = (str(u) for u in started)
        yield Replicas((a, b), postgres_url, root)
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)


def test_a_key_revoked_is_refused_by_both_within_the_key_cache_time(replicas: Replicas) -> None:
    key = replicas.key()
    for url in replicas.urls:  # each replica has checked it, and remembers it as live
        assert call(url, "GET", "/v1/decisions?limit=1", key).status_code == 200
    with replicas.store() as store:  # `bastion keys revoke`, from anywhere
        (found,) = [k for k in store.list_keys() if key.startswith(k.prefix)]
        assert store.revoke_key(found.id)
    revoked_at = time.monotonic()
    refused_after: dict[str, float] = {}
    while len(refused_after) < 2:
        for url in set(replicas.urls) - set(refused_after):
            if call(url, "GET", "/v1/decisions?limit=1", key).status_code == 401:
                refused_after[url] = time.monotonic() - revoked_at
        assert time.monotonic() - revoked_at < KEY_CACHE_S + 60, refused_after
        time.sleep(0.05)
    # Refused by each once its cache time ran out; the slack is only for a busy machine.
    assert max(refused_after.values()) < KEY_CACHE_S + 30, refused_after


def test_one_rate_limit_spans_both_replicas(replicas: Replicas) -> None:
    key = replicas.key()
    a, b = replicas.urls
    start = time.monotonic()
    statuses = [
        call(url, "GET", "/v1/decisions?limit=1", key).status_code for url in (a, b, a, b, a, b)
    ]
    refilled = int((time.monotonic() - start) * RATE_LIMIT / 60)  # a slow machine's extra
    allowed = statuses.count(200)
    assert statuses[:RATE_LIMIT] == [200] * RATE_LIMIT
    assert RATE_LIMIT <= allowed <= RATE_LIMIT + refilled, statuses  # per replica: 6 of 6
    assert set(statuses[RATE_LIMIT + refilled :]) == {429}


def test_decisions_made_on_either_are_read_back_from_either(replicas: Replicas) -> None:
    key, reader = replicas.key(), replicas.key()  # two requests each: inside the rate limit
    a, b = replicas.urls
    for url, request_id in ((a, "req-on-a"), (b, "req-on-b")):
        r = call(
            url,
            "POST",
            "/v1/moderations",
            key,
            json={"input": [f"hello from {request_id}", "a second item"]},
            headers={"x-request-id": request_id},
        )
        assert r.status_code == 200, r.text
    for url, other in ((a, "req-on-b"), (b, "req-on-a")):
        r = call(url, "GET", f"/v1/decisions?request_id={other}", reader)
        assert r.status_code == 200, r.text
        assert sorted(d["item_index"] for d in r.json()["data"]) == [0, 1]


def test_two_reviewers_on_two_replicas_never_hold_the_same_item(replicas: Replicas) -> None:
    with replicas.store() as store:
        ReviewQueue(store, "replicas").enqueue(
            [QueueItem(item_id=f"item-{n}", priority=1.0) for n in range(12)]
        )
    reviewers = [replicas.key(Role.reviewer) for _ in replicas.urls]
    held: list[list[str]] = [[], []]
    for _ in range(RATE_LIMIT):  # both claim two at the same moment, each on its own replica
        answers = at_once(
            [
                lambda i=i, url=url: call(
                    url, "POST", "/v1/queues/replicas/claim", reviewers[i], json={"n": 2}
                )
                for i, url in enumerate(replicas.urls)
            ]
        )
        for i, r in enumerate(answers):
            assert isinstance(r, httpx.Response) and r.status_code == 200, r
            held[i] += [item["id"] for item in r.json()["data"]]
    assert not set(held[0]) & set(held[1])
    assert sorted(held[0] + held[1], key=lambda s: int(s.split("-")[1])) == [
        f"item-{n}" for n in range(12)
    ]
