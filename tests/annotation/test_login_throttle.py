"""Log-in throttling: per (name, address) with a back-off that grows, which a stranger cannot set
for someone else, counted in the store so that every worker and replica throttles together (on
SQLite and PostgreSQL: the tests that take `store` run on both). The clock is a seam, so nothing
here sleeps."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from bastion.annotation.web import LoginThrottle, WebApp, router
from bastion.annotation.workflow import Workflow
from bastion.store import Store, passwords
from databases import backend, database_url, home, store  # noqa: F401  (fixtures)

PASSWORD = "a long enough password"
WRONG = {"name": "rita", "password": "not the password", "next": "/ui"}
RIGHT = {**WRONG, "password": PASSWORD}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def app(tmp_path: Path, clock: Clock, monkeypatch: pytest.MonkeyPatch) -> Iterator[FastAPI]:
    monkeypatch.setattr(passwords, "N", 2**4)  # cheap hashes; the real cost is tested elsewhere
    opened = Store.open(tmp_path / "home")
    workflow = Workflow(opened)
    workflow.add_person("rita", "reviewer", PASSWORD, "test")
    app = FastAPI()
    app.state.web = WebApp(workflow, throttle=LoginThrottle(opened, clock=clock))
    app.include_router(router)
    try:
        yield app
    finally:
        opened.close()


def from_address(app: FastAPI, host: str) -> TestClient:
    return TestClient(app, client=(host, 40000), follow_redirects=False)


def test_a_strangers_failures_do_not_refuse_the_right_password_from_another_address(
    app: FastAPI,
) -> None:
    stranger, rita = from_address(app, "203.0.113.9"), from_address(app, "198.51.100.7")
    statuses = [stranger.post("/login", data=WRONG).status_code for _ in range(30)]
    assert statuses[:6] == [401] * 6 and set(statuses[6:]) == {429}
    refused = stranger.post("/login", data=RIGHT)  # the stranger's address waits, even for it
    assert refused.status_code == 429 and "Too many failed log-ins" in refused.text
    assert int(refused.headers["retry-after"]) >= 1
    assert rita.post("/login", data=RIGHT).status_code == 303  # Rita, from hers, is let in


def test_the_back_off_doubles_with_each_failure_up_to_its_cap_and_success_resets_it(
    app: FastAPI, clock: Clock
) -> None:
    client = from_address(app, "198.51.100.7")
    for _ in range(5):  # the free failures: no wait
        assert client.post("/login", data=WRONG).status_code == 401
    waits = []
    for _ in range(12):
        assert client.post("/login", data=WRONG).status_code == 401
        refused = client.post("/login", data=WRONG)
        assert refused.status_code == 429  # refused inside the wait, and not counted
        waits.append(int(refused.headers["retry-after"]))
        clock.now += waits[-1]
    assert waits == [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 900, 900]
    assert client.post("/login", data=RIGHT).status_code == 303
    # Afresh after the right password: the free failures again, no wait.
    assert [client.post("/login", data=WRONG).status_code for _ in range(5)] == [401] * 5
    assert client.post("/login", data=WRONG).status_code == 401


def test_one_address_trying_many_names_is_slowed_too(store: Store) -> None:  # noqa: F811
    clock = Clock()
    throttle = LoginThrottle(store, free_failures_per_client=3, clock=clock)
    for name in ("a", "b", "c", "d"):
        assert throttle.wait(name, "203.0.113.9") == 0
        throttle.failed(name, "203.0.113.9")
    assert throttle.wait("e", "203.0.113.9") == 1.0
    assert throttle.wait("e", "198.51.100.7") == 0  # another address is not affected
    clock.now += 1.0
    assert throttle.wait("e", "203.0.113.9") == 0


def test_counts_are_forgotten_after_a_quiet_spell(store: Store) -> None:  # noqa: F811
    clock = Clock()
    throttle = LoginThrottle(store, free_failures=1, forget_s=3600, clock=clock)
    for _ in range(3):
        throttle.failed("rita", "203.0.113.9")
    assert throttle.wait("rita", "203.0.113.9") == 2.0
    clock.now += 3600
    throttle.failed("rita", "203.0.113.9")  # the first failure of a fresh count: free
    assert throttle.wait("rita", "203.0.113.9") == 0


def test_workers_and_replicas_on_one_store_throttle_together(
    home: Path,  # noqa: F811
    database_url: str,  # noqa: F811
    store: Store,  # noqa: F811
) -> None:
    """Guesses spread over two processes (two engines on one database: two workers, or two
    replicas) wait as long as guesses sent to one; a success on either resets the pair."""
    clock = Clock()
    with Store.open(home, database_url) as other:
        here, there = (LoginThrottle(s, free_failures=2, clock=clock) for s in (store, other))
        for throttle in (here, there, here):
            assert throttle.wait("rita", "203.0.113.9") == 0
            throttle.failed("rita", "203.0.113.9")
        assert here.wait("rita", "203.0.113.9") == there.wait("rita", "203.0.113.9") == 1.0
        there.succeeded("rita", "203.0.113.9")
        assert here.wait("rita", "203.0.113.9") == 0


def test_no_login_name_or_address_is_stored(store: Store) -> None:  # noqa: F811
    throttle = LoginThrottle(store, clock=Clock())
    throttle.failed("rita@example.org", "203.0.113.9")
    with store.engine.connect() as connection:
        rows = connection.exec_driver_sql("SELECT * FROM login_failures").all()
    assert len(rows) == 2
    assert not any("rita" in str(v) or "203.0.113" in str(v) for row in rows for v in row)
