"""SIGTERM with requests in flight: the server stops accepting, drains what it took, and exits 0.

What a rolling deploy relies on: every request the server had already taken gets its full
answer (and is in the decision log), no new connection is accepted once the signal lands, and
the process ends by itself, with status 0, well inside `bastion serve`'s drain timeout.

The requests are held inside their handlers on purpose (held_serve.py's gate) from before the
signal until after the listening socket has closed, so "in flight at the signal" is a fact the
test arranges, not a race it hopes to win: a busy machine makes it slower, never wrong.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from serving import free_port, start_server, wait_until

from bastion.store import Store

pytestmark = pytest.mark.slow

HELD = 3
"""Requests taken by the server and held in their handlers when the signal comes."""

ITEMS_PER_REQUEST = 16

DRAIN_TIMEOUT_S = 30.0
"""`bastion serve`'s timeout_graceful_shutdown."""


@dataclass
class Call:
    request_id: str
    texts: list[str]
    done_at: float | None = None
    status: int | None = None
    body: dict[str, Any] = field(default_factory=dict)
    error: str | None = None


@pytest.mark.parametrize("workers", [1, 2])
def test_sigterm_drains_in_flight_requests_then_exits_0(tmp_path: Path, workers: int) -> None:
    """With two workers the signal goes to the supervisor (`bastion serve`'s process), as a
    process manager sends it; it closes the port and has each worker drain what it took."""
    gate = tmp_path / "gate"
    gate.mkdir()
    home = tmp_path / "home"
    port = free_port()
    proc, key = start_server(home, port, gate=gate, workers=workers)
    assert key
    base = f"http://127.0.0.1:{port}"
    calls = [
        Call(f"req-{n}", [f"message {i} of request {n}" for i in range(ITEMS_PER_REQUEST)])
        for n in range(HELD)
    ]

    def send(call: Call) -> None:
        with httpx.Client(headers={"Authorization": f"Bearer {key}"}, timeout=120) as client:
            try:
                r = client.post(
                    f"{base}/v1/moderations",
                    json={"input": call.texts},
                    headers={"x-request-id": call.request_id},
                )
                call.status = r.status_code
                call.body = r.json()
            except Exception as exc:  # refused, dropped, or not our JSON: all recorded
                call.error = repr(exc)
            finally:
                call.done_at = time.monotonic()

    threads = [threading.Thread(target=send, args=(c,)) for c in calls]
    for t in threads:
        t.start()
    try:
        # Each request has reached moderation, inside its handler, and is held there.
        wait_until(lambda: len(list(gate.glob("entered-*"))) == HELD, 120, "every request held")
        holders = {p.name.split("-")[1] for p in gate.glob("entered-*")}
        assert all(c.done_at is None for c in calls), [c.error for c in calls]

        signalled_at = time.monotonic()
        proc.send_signal(signal.SIGTERM)

        # The listening socket closes at once; the requests already taken are still running.
        refused_while_draining = False
        while time.monotonic() < signalled_at + 60 and not refused_while_draining:
            try:
                httpx.get(f"{base}/healthz", timeout=2)
            except httpx.ConnectError:
                refused_while_draining = True
            except httpx.TransportError:
                pass  # accepted just before the close, then dropped unserved: try again
            time.sleep(0.02)
        assert refused_while_draining, "a new connection was still accepted while draining"
        assert all(c.done_at is None for c in calls)  # still held: nothing cut off
        assert proc.poll() is None, "the server exited with requests still in flight"

        (gate / "release").touch()
        returncode = proc.wait(timeout=DRAIN_TIMEOUT_S + 10)
        exited_after = time.monotonic() - signalled_at
        for holder in holders:  # every worker that held a request has finished too
            wait_until(lambda h=int(holder): not _alive(h), 30, f"worker {holder} exited")
    finally:
        (gate / "release").touch()
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        for t in threads:
            t.join(30)
        output = proc.stdout.read() if proc.stdout else ""

    assert returncode == 0, output
    assert exited_after < DRAIN_TIMEOUT_S, output  # drained, not cut off by the timeout
    assert "timeout graceful shutdown exceeded" not in output
    assert not any(t.is_alive() for t in threads)
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{base}/healthz", timeout=2)

    # Every request the server had taken when the signal came got its whole answer.
    for call in calls:
        assert call.status == 200, (call.request_id, call.error, output)
        results = call.body["results"]
        assert len(results) == ITEMS_PER_REQUEST
        assert all(set(r["category_scores"]) == set(r["categories"]) for r in results)

    # What was acknowledged is logged, whole; what was logged was acknowledged.
    with Store.open(home) as store:
        rows = store.decisions(limit=1_000_000)
    logged: dict[str, dict[int, dict[str, float]]] = {}
    for row in rows:
        logged.setdefault(row.request_id, {})[row.item_index] = row.scores
    assert set(logged) == {c.request_id for c in calls}
    for call in calls:
        scores = [r["category_scores"] for r in call.body["results"]]
        assert [logged[call.request_id][i] for i in range(ITEMS_PER_REQUEST)] == scores


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
