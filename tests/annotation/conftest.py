"""The starter policy (one category, three decision steps), a live server and a real browser."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from browser import CHROMIUM, PASSWORD, LiveServer, chromium, running

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
    try:
        with running(create_app(settings, store=store)) as url:
            yield LiveServer(url, store, workflow, home, people)
    finally:
        store.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.skip(f"the browser tests need Debian's chromium at {CHROMIUM} (make install)")
    with chromium() as b:
        yield b
