"""Starting `bastion serve` as a user does, for the tests that need a real server process."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

import httpx

T = TypeVar("T")

START_TIMEOUT_S = 300
"""How long a server may take to answer /readyz: loading the model takes seconds, or minutes on
a machine other jobs keep busy (the deadline only bounds a test that has already failed)."""


def at_once(calls: Sequence[Callable[[], T]]) -> list[T | Exception]:
    """Run `calls` in threads released together; each one's result, or what it raised."""
    results: list[T | Exception] = [RuntimeError("did not run")] * len(calls)
    start = threading.Barrier(len(calls))

    def run(i: int) -> None:
        start.wait()
        try:
            results[i] = calls[i]()
        except Exception as exc:
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def wait_until(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    """Poll `condition` until it holds; fail naming `what` if it has not after `timeout_s`.

    The deadline is generous on purpose: it only bounds a test that has already failed, so a
    busy machine makes the test slower, never wrong.
    """
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {timeout_s} s")
        time.sleep(0.02)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def start_server(
    home: Path,
    port: int,
    *,
    gate: Path | None = None,
    workers: int = 1,
    args: Sequence[str] = (),
    env: dict[str, str] | None = None,
) -> tuple[subprocess.Popen[str], str | None]:
    """The process and the admin key it printed (None when the store already had keys).

    The server runs with `--workers workers` and any further `args`, in a session of its own
    (so `os.killpg(proc.pid, ...)` reaches its workers too), with `env` added to the
    environment. With `gate` (a directory), every moderation request is held in its handler
    until the test creates `gate/release` (see held_serve.py); `gate/entered-PID-N` appears as
    each one arrives. Through held_serve.py (with a gate, or more than one worker) every
    response names the worker process that answered in its `x-test-worker` header.
    """
    command = [sys.executable, "-m", "bastion.cli"]
    extra = dict(env or {})
    if gate is not None or workers > 1:
        command = [sys.executable, str(Path(__file__).with_name("held_serve.py"))]
    if gate is not None:
        extra["BASTION_TEST_GATE"] = str(gate)
    options = ["--port", str(port), "--home", str(home), "--workers", str(workers), *args]
    proc = subprocess.Popen(
        [*command, "serve", *options],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1", **extra},
        start_new_session=True,
    )
    assert proc.stdout is not None
    key = None
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if match := re.fullmatch(r"admin API key: (bst_\S+)\n", line):
            key = match.group(1)
        if line.startswith("Bastion serving on") or not line:
            break
    base = f"http://127.0.0.1:{port}"
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                return proc, key
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(10)
    output = proc.stdout.read()
    raise AssertionError(f"server did not become ready in {START_TIMEOUT_S} s; it said:\n{output}")
