"""A live Bastion server and a real browser for the web app's tests.

The server is the real app (`create_app`) on a SQLite store, run by uvicorn in a thread on a
free port; the browser is Debian's chromium driven by Playwright (never a downloaded one).
Tests that need the browser skip with a clear message where chromium is not installed
(`make install` installs it). The fixtures are in conftest.py.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvicorn

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


@contextmanager
def running(app: Any) -> Iterator[str]:
    """Serve `app` with uvicorn in a thread on a free port; yields its base URL."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


@contextmanager
def chromium() -> Iterator[Any]:
    """Debian's chromium, headless, through Playwright."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox"])
        try:
            yield b
        finally:
            b.close()


def log_in(browser: Any, server: LiveServer, name: str) -> Any:
    """A new page logged in as `name` (checking that /ui first sends it to the login page)."""
    page = browser.new_page(viewport={"width": 1366, "height": 860})
    page.goto(server.url + "/ui")
    assert "/login" in page.url  # not logged in: sent to the login page
    page.get_by_label("Name").fill(name)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(server.url + "/ui")
    return page


def answer_steps(page: Any, *answers: str) -> None:
    """Answer the visible steps in order by clicking (each answer brings the next step)."""
    for n, answer in enumerate(answers):
        step = page.locator("fieldset.step:visible").nth(n)
        step.locator(f"input[type=radio][value='{answer}']").check()
