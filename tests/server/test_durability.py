"""Kill the server (SIGKILL) in the middle of a burst: every acknowledged verdict is in the log,
with one process writing it or with two workers writing it side by side."""

from __future__ import annotations

import os
import signal
import sqlite3
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest
from serving import free_port, start_server

from bastion.store import Store

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("workers", [1, 2])
def test_sigkill_mid_burst_loses_no_acknowledged_verdict(tmp_path: Path, workers: int) -> None:
    port = free_port()
    proc, key = start_server(tmp_path, port, workers=workers)
    assert key
    url = f"http://127.0.0.1:{port}/v1/moderations"
    acked: list[str] = []
    writers: set[str] = set()  # the worker processes that acknowledged something
    lock = threading.Lock()
    stop = threading.Event()

    def burst(worker: int) -> None:
        # A new connection per request, so that the kernel spreads them over the workers.
        with httpx.Client(
            headers={"Authorization": f"Bearer {key}"},
            timeout=10,
            limits=httpx.Limits(max_keepalive_connections=0),
        ) as client:
            n = 0
            while not stop.is_set():
                request_id = f"req-{worker}-{n}"
                n += 1
                try:
                    r = client.post(
                        url,
                        json={"input": [f"message {n} from {worker}", "see you soon"]},
                        headers={"x-request-id": request_id},
                    )
                except httpx.TransportError:
                    return  # the server is gone
                if r.status_code == 200:
                    with lock:
                        acked.append(request_id)
                        writers.add(r.headers.get("x-test-worker", "the only one"))

    threads = [threading.Thread(target=burst, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 120
    while (len(acked) < 40 or len(writers) < workers) and time.monotonic() < deadline:
        time.sleep(0.01)
    # Every process of the server at once, mid-burst, with requests in flight: what a power
    # cut or an OOM kill of the container does.
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(10)
    stop.set()
    for t in threads:
        t.join(15)
    assert len(acked) >= 40
    assert len(writers) == workers  # with two workers, both were writing the log

    # Nothing half-written: the database is intact and each request has all its rows or none.
    check = sqlite3.connect(tmp_path / "bastion.db")
    assert check.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    check.close()
    store = Store.open(tmp_path)
    rows = store.decisions(limit=100_000)
    store.close()
    per_request = Counter(d.request_id for d in rows)
    assert set(acked) <= set(per_request)
    assert set(per_request.values()) == {2}

    # The restarted server serves again, with the same keys and log.
    proc, again = start_server(tmp_path, port, workers=workers)
    try:
        assert again is None  # no second admin key on restart
        r = httpx.post(
            url, json={"input": "hello"}, headers={"Authorization": f"Bearer {key}"}, timeout=10
        )
        assert r.status_code == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
