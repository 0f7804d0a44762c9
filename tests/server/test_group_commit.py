"""Group commit of the decision log: concurrent requests share a transaction, each is answered
only once its own decisions are in the log, and one request's failed write stays its own."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from serving import at_once, wait_until

from bastion.server.app import ServerSettings, create_app
from bastion.server.batching import Batcher
from bastion.store import DecisionRecord, Role, Store
from bastion.store.errors import StoreError

REQUESTS = 12


class SlowStore(Store):
    """A store whose next commit can be held (`hold`, called with the commit's size) until the
    test's condition holds, so requests queue up behind it on purpose rather than by timing;
    fails a commit with an item id 'poison'; records every commit's size."""

    commits: list[int]
    hold: Callable[[int], None] | None = None

    def log_decisions(self, records: Sequence[DecisionRecord]) -> None:
        hold, self.hold = self.hold, None
        if hold is not None:
            hold(len(records))
        if any(r.item_id == "poison" for r in records):
            raise StoreError("the disk refused this batch")
        super().log_decisions(records)
        self.commits.append(len(records))


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, SlowStore]]:
    home: Path = tmp_path_factory.mktemp("home")
    store = SlowStore.open(home)
    assert isinstance(store, SlowStore)
    store.commits = []
    _, key = store.create_key("test", Role.admin)
    app = create_app(ServerSettings(home=home, rate_limit_per_minute=None), store=store)
    with TestClient(app) as client:
        client.headers["Authorization"] = f"Bearer {key}"
        yield client, store
    store.close()


def _burst(
    client: TestClient,
    store: SlowStore,
    monkeypatch: pytest.MonkeyPatch,
    bodies: list[dict[str, object]],
) -> list[tuple[int, str]]:
    """POST each body (one item each) to /v1/moderate at once; (status, request id) per body.

    The burst's first commit is held until every other request's decisions are queued behind
    it in the decision log's batcher, however slowly a busy machine gets them there.
    """
    log: list[Batcher[DecisionRecord, None]] = []
    submit = Batcher.submit

    def noting_the_log(
        self: Batcher[DecisionRecord, None], items: Sequence[DecisionRecord]
    ) -> list[None]:
        if self.name == "decision-log" and not log:
            log.append(self)
        return submit(self, items)

    def until_the_rest_queue(first: int) -> None:
        rest = len(bodies) - first
        wait_until(
            lambda: bool(log) and log[0]._queue.qsize() >= rest,
            120,
            f"{rest} requests' decisions queued behind the first commit",
        )

    monkeypatch.setattr(Batcher, "submit", noting_the_log)
    store.hold = until_the_rest_queue

    def send(body: dict[str, object]) -> tuple[int, str]:
        r = client.post("/v1/moderate", json=body)
        return r.status_code, r.headers["x-request-id"]

    answers = at_once([functools.partial(send, body) for body in bodies])
    failed = [a for a in answers if isinstance(a, Exception)]
    assert not failed, failed
    return [a for a in answers if not isinstance(a, Exception)]


def _body(i: int, item_id: str | None = None) -> dict[str, object]:
    return {"items": [{"text": f"comment {i} on the match", "id": item_id or f"item-{i}"}]}


def test_concurrent_requests_share_commits_and_are_all_logged(
    served: tuple[TestClient, SlowStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    client, store = served
    store.commits.clear()
    answers = _burst(client, store, monkeypatch, [_body(i) for i in range(REQUESTS)])
    assert [status for status, _ in answers] == [200] * REQUESTS
    for i, (_, request_id) in enumerate(answers):
        logged = store.decisions(request_id=request_id)
        assert [d.item_id for d in logged] == [f"item-{i}"]
    # The first commit takes what has queued when it starts (one request, or all of them when
    # they arrive together); it is held until the rest are queued, so one more commit takes
    # them all at once: never a commit per request.
    assert sum(store.commits) == REQUESTS and len(store.commits) <= 2
    metrics = client.get("/metrics").text
    assert f"bastion_log_commit_decisions_sum {float(REQUESTS)}" in metrics


def test_a_failed_write_fails_only_its_own_request(
    served: tuple[TestClient, SlowStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    client, store = served
    bodies = [_body(i) for i in range(REQUESTS - 1)] + [_body(99, item_id="poison")]
    answers = _burst(client, store, monkeypatch, bodies)
    assert [status for status, _ in answers] == [200] * (REQUESTS - 1) + [503]
    for i, (_, request_id) in enumerate(answers[:-1]):
        assert [d.item_id for d in store.decisions(request_id=request_id)] == [f"item-{i}"]
    # The failed request's verdict was never acknowledged and is not in the log.
    assert store.decisions(request_id=answers[-1][1]) == []
