"""The starter policy (one category, three decision steps), a live server and a real browser."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from browser import CHROMIUM, PASSWORD, LiveServer, free_port

import bastion.policy
from bastion.annotation.workflow import Workflow
from bastion.policy import LoadedPolicy, load_policy
from bastion.server.app import ServerSettings, create_app
from bastion.store import Store


@pytest.fixture(scope="module")
def policy() -> LoadedPolicy:
    return load_policy(Path(bastion.policy.__file__).parent / "starter.yaml")


@pytest.fixture
def live_server(tmp_path: Path) -> Iterator[LiveServer]:
    """The service with an admin, a reviewer and two annotators (password PASSWORD each)."""
    home = tmp_path / "home"
    store = Store.open(home)
    workflow = Workflow(store)
    people = {
        name: workflow.add_person(name, role, PASSWORD, "test")
        for name, role in (
            ("root", "admin"),
            ("rita", "reviewer"),
            ("ann", "annotator"),
            ("ben", "annotator"),
        )
    }
    settings = ServerSettings(home=home, preload=False, rate_limit_per_minute=None)
    app = create_app(settings, store=store)
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
        yield LiveServer(f"http://127.0.0.1:{port}", store, workflow, home, people)
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        store.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.skip(f"the browser tests need Debian's chromium at {CHROMIUM} (make install)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox"])
        try:
            yield b
        finally:
            b.close()
