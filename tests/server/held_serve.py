"""`bastion serve` with test hooks: a gate in front of moderation, and each worker's pid on its
responses, for tests that need requests held open or need to know which worker answered.

`python held_serve.py serve ...` runs `bastion serve ...` with these hooks, in its own process
and in every worker process `--workers N` spawns (a spawned worker runs this file again, as
`__mp_main__`, and puts them in as it builds its app):

- every response carries `x-test-worker: PID`, the process that answered;
- with $BASTION_TEST_GATE set to a directory, every request that reaches moderation first writes
  `GATE/entered-PID-N` and then waits until `GATE/release` exists. A test then knows for certain
  that the server has taken a request and is inside its handler, and keeps it there for as long
  as it needs, instead of guessing from timing (which a busy machine breaks).

The service's own code is unchanged: the gate wraps `Loaded.moderate`, the call each request's
handler makes, and the header is added by a middleware on the app `create_app` returns.
"""

from __future__ import annotations

import itertools
import os
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

GATE_ENV = "BASTION_TEST_GATE"
WORKER_HEADER = "x-test-worker"
HOLD_AT_MOST_S = 300.0
"""A request is let through after this long even if never released (a test that failed)."""


def hold_at(gate: Path) -> None:
    from bastion.server.pool import Loaded

    original = Loaded.moderate
    numbers = itertools.count()
    lock = threading.Lock()

    def held(self: Loaded, items: Sequence[Any]) -> Any:
        with lock:
            n = next(numbers)
        (gate / f"entered-{os.getpid()}-{n}").touch()
        deadline = time.monotonic() + HOLD_AT_MOST_S
        while not (gate / "release").exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        return original(self, items)

    Loaded.moderate = held  # type: ignore[method-assign]


def tag_responses() -> None:
    import bastion.server.app

    original = bastion.server.app.create_app
    from starlette.datastructures import MutableHeaders

    pid = str(os.getpid())

    class Tag:
        def __init__(self, app: Any) -> None:
            self.app = app

        async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
            async def tagged(message: Any) -> None:
                if message["type"] == "http.response.start":
                    MutableHeaders(scope=message).append(WORKER_HEADER, pid)
                await send(message)

            await self.app(scope, receive, tagged if scope["type"] == "http" else send)

    def create_app(*args: Any, **kwargs: Any) -> Any:
        app = original(*args, **kwargs)
        app.add_middleware(Tag)
        return app

    bastion.server.app.create_app = create_app


def install() -> None:
    tag_responses()
    if os.environ.get(GATE_ENV):
        hold_at(Path(os.environ[GATE_ENV]))


def install_when_the_worker_builds_its_app() -> None:
    """In a worker, the hooks go in as it builds its app, not as it starts: the supervisor
    health-checks a worker from its start, and the service's imports here (seconds on a busy
    machine) would come before the worker can answer."""
    from bastion.server.workers import WorkerApp

    build = WorkerApp.__call__

    def build_with_hooks(self: WorkerApp) -> Any:
        install()
        return build(self)

    WorkerApp.__call__ = build_with_hooks  # type: ignore[method-assign]


if __name__ == "__mp_main__":  # a worker that `--workers N` spawned
    install_when_the_worker_builds_its_app()

if __name__ == "__main__":
    install()
    from bastion.cli import main

    sys.argv = ["bastion", *sys.argv[1:]]
    main()
