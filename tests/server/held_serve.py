"""`bastion serve` with a gate in front of moderation, for tests that need requests held open.

`python held_serve.py GATE_DIR serve ...` runs `bastion serve ...` in which every request that
reaches moderation first writes `GATE_DIR/entered-N` and then waits until `GATE_DIR/release`
exists. A test then knows for certain that the server has taken a request and is inside its
handler, and keeps it there for as long as it needs, instead of guessing from timing (which a
busy machine breaks). The service's own code is unchanged: the gate wraps `Loaded.moderate`,
the call each request's handler makes, from outside.
"""

from __future__ import annotations

import itertools
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

HOLD_AT_MOST_S = 300.0
"""A request is let through after this long even if never released (a test that failed)."""


def install(gate: Path) -> None:
    from bastion.server.pool import Loaded

    original = Loaded.moderate
    numbers = itertools.count()
    lock = threading.Lock()

    def held(self: Loaded, items: Sequence[Any]) -> Any:
        with lock:
            n = next(numbers)
        (gate / f"entered-{n}").touch()
        deadline = time.monotonic() + HOLD_AT_MOST_S
        while not (gate / "release").exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        return original(self, items)

    Loaded.moderate = held  # type: ignore[method-assign]


if __name__ == "__main__":
    install(Path(sys.argv[1]))
    from bastion.cli import main

    sys.argv = ["bastion", *sys.argv[2:]]
    main()
