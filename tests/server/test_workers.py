"""`bastion serve --workers 2`: two processes on one port behave as one service.

Which worker takes a connection is the kernel's choice, so the tests open a new connection per
request and keep going until both workers have answered (each response names its worker, see
held_serve.py), with a deadline: a busy machine makes them slower, never wrong.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from multiprocessing.reduction import ForkingPickler
from pathlib import Path

import httpx
import pytest
import uvicorn
from serving import free_port, start_server, wait_until

from bastion.server.workers import FreezeAfterStartup, tcp_listening_socket, worker_threads

pytestmark = pytest.mark.slow

RATE_LIMIT = 3
"""Requests a minute per key: one token back every 20 s, far longer than a test's burst."""


class Workers:
    def __init__(self, base: str, key: str, metrics_dir: Path) -> None:
        self.base = base
        self.key = key
        self.metrics_dir = metrics_dir

    def get(self, path: str, key: str | None = None) -> httpx.Response:
        """On a new connection, which either worker may take."""
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        with httpx.Client(timeout=30) as client:
            return client.get(f"{self.base}{path}", headers=headers)


@pytest.fixture(scope="module")
def workers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Workers]:
    home = tmp_path_factory.mktemp("workers") / "home"
    metrics_dir = home.parent / "metrics"
    port = free_port()
    args = ["--rate-limit", str(RATE_LIMIT), "--metrics-dir", str(metrics_dir)]
    proc, key = start_server(home, port, workers=2, args=args)
    assert key
    try:
        yield Workers(f"http://127.0.0.1:{port}", key, metrics_dir)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def test_one_keys_rate_limit_holds_across_two_workers(workers: Workers) -> None:
    """Each worker refuses the key once the burst is spent between them, not after a burst
    of its own: kept per process, the limit would let twice as many through."""
    allowed, refused_by = 0, set[str]()
    start = time.monotonic()
    while len(refused_by) < 2:
        assert time.monotonic() - start < 120, "both workers did not answer within 120 s"
        r = workers.get("/v1/decisions?limit=1", workers.key)
        assert r.status_code in (200, 429), r.text
        if r.status_code == 200:
            allowed += 1
        else:
            refused_by.add(r.headers["x-test-worker"])
            assert int(r.headers["retry-after"]) >= 1
    refilled = int((time.monotonic() - start) * RATE_LIMIT / 60)  # a slow machine's extra
    assert RATE_LIMIT <= allowed <= RATE_LIMIT + refilled


def test_metrics_count_every_workers_requests(workers: Workers) -> None:
    """/metrics, whichever worker answers it, counts the requests both served."""
    served_by: set[str] = set()
    sent = 0
    deadline = time.monotonic() + 120
    while len(served_by) < 2 or sent < 6:
        assert time.monotonic() < deadline, "both workers did not answer within 120 s"
        r = workers.get("/healthz")
        assert r.status_code == 200
        served_by.add(r.headers["x-test-worker"])
        sent += 1
    answered_by: dict[str, float] = {}
    while len(answered_by) < 2:
        assert time.monotonic() < deadline + 120, "both workers did not answer /metrics"
        r = workers.get("/metrics")
        found = re.search(r'^bastion_requests_total\{route="/healthz",status="200"\} (\S+)$',
                          r.text, re.MULTILINE)  # fmt: skip
        assert found, r.text
        answered_by[r.headers["x-test-worker"]] = float(found.group(1))
    assert set(answered_by.values()) == {float(sent)}
    assert {p.name.split("_")[1] for p in workers.metrics_dir.glob("counter_*.db")} >= {
        f"{pid}.db" for pid in answered_by
    }


def test_workers_stop_when_their_supervisor_is_killed(tmp_path: Path) -> None:
    """SIGKILL to `bastion serve`'s own process only: its workers notice, drain and exit, so
    the port is free for the next start rather than held by orphans."""
    port = free_port()
    proc, _ = start_server(tmp_path, port, workers=2)
    try:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)

        def port_closed() -> bool:
            try:
                httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
            except httpx.ConnectError:
                return True
            except httpx.TransportError:
                pass
            return False

        wait_until(port_closed, 60, "the orphaned workers closing the port")
        proc, _ = start_server(tmp_path, port)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)


def test_a_worker_that_cannot_start_stops_the_service_with_status_3(tmp_path: Path) -> None:
    """Not restarted in a loop: the supervisor stops, and `bastion serve` exits 3 as a single
    process does when it cannot start."""
    options = ["--home", str(tmp_path), "--port", str(free_port()), "--workers", "2"]
    result = subprocess.run(
        [sys.executable, "-m", "bastion.cli", "serve", *options, "--model", "no-such-model"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 3, result.stdout + result.stderr


def test_each_worker_gets_its_share_of_the_cpus() -> None:
    assert worker_threads(2, cpus=8) == 4
    assert worker_threads(3, cpus=8) == 2
    assert worker_threads(4, cpus=2) == 1  # never none


def _nodelay_of_a_connection_accepted_on(listening: socket.socket) -> int:
    """TCP_NODELAY of the connection asyncio accepts on `listening`, as a worker's loop does."""

    async def main() -> int:
        seen: asyncio.Future[int] = asyncio.get_running_loop().create_future()

        async def accepted(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            conn = writer.get_extra_info("socket")
            seen.set_result(conn.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            writer.close()

        server = await asyncio.start_server(accepted, sock=listening)
        _, client = await asyncio.open_connection(*listening.getsockname()[:2])
        try:
            return await asyncio.wait_for(seen, timeout=60)
        finally:
            client.close()
            server.close()

    return asyncio.run(main())


def test_connections_the_workers_accept_are_sent_without_waiting_for_acks() -> None:
    def bound() -> socket.socket:
        return uvicorn.Config(app="unused:app", host="127.0.0.1", port=0).bind_socket()

    # uvicorn's own socket says protocol 0, so asyncio leaves Nagle's algorithm on: a small
    # response then waits for the client's delayed ACK (about 40 ms on Linux)
    assert _nodelay_of_a_connection_accepted_on(bound()) == 0
    # the supervisor's socket, passed to a worker the way multiprocessing passes it
    ours = tcp_listening_socket(bound())
    in_worker = ForkingPickler.loads(ForkingPickler.dumps(ours))
    assert in_worker.proto == socket.IPPROTO_TCP
    assert _nodelay_of_a_connection_accepted_on(in_worker) != 0
    ours.close()


def test_a_serving_process_freezes_what_start_up_made_and_nothing_before() -> None:
    """The collector stops walking the model's objects once start-up completes (not before:
    the model loads during start-up), and requests pass through untouched."""
    seen: list[str] = []

    async def app(scope: dict, receive, send) -> None:  # type: ignore[no-untyped-def]
        if scope["type"] == "lifespan":
            await receive()
            seen.append(f"startup, frozen {gc.get_freeze_count()}")
            await send({"type": "lifespan.startup.complete"})
        else:
            seen.append(scope["type"])

    async def lifespan_then_request() -> None:
        wrapped = FreezeAfterStartup(app)
        sent: list[dict] = []

        async def receive() -> dict:
            return {"type": "lifespan.startup"}

        async def send(message: dict) -> None:
            sent.append(message)

        await wrapped({"type": "lifespan"}, receive, send)
        assert sent == [{"type": "lifespan.startup.complete"}]
        await wrapped({"type": "http"}, receive, send)

    gc.unfreeze()
    try:
        asyncio.run(lifespan_then_request())
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
    assert seen == ["startup, frozen 0", "http"]
