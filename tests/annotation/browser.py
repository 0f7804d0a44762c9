"""A live Bastion server and a real browser for the web app's tests.

The server is the real app (`create_app`) on a SQLite store, run by uvicorn in a thread on a
free port; the browser is Debian's chromium driven by Playwright (never a downloaded one).
Tests that need the browser skip with a clear message where chromium is not installed
(`make install` installs it). The fixtures are in conftest.py.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from pathlib import Path

import bastion.policy
from bastion.annotation.workflow import Person, Workflow
from bastion.store import Store

CHROMIUM = Path("/usr/bin/chromium")
PASSWORD = "a long enough password"
STARTER = Path(bastion.policy.__file__).parent / "starter.yaml"


@dataclass
class LiveServer:
    url: str
    store: Store
    workflow: Workflow
    home: Path
    people: dict[str, Person]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
