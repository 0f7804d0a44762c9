"""`GET /v1/decisions`: the decision log read back, fenced to the key's project, with checked query parameters."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from bastion.server.app import ServerSettings, create_app
from bastion.store import DecisionRecord, Role, Store

THREAT = "I will find where you live and hurt you"


def record(request_id: str, project: str | None, index: int = 0, **fields: Any) -> DecisionRecord:
    values: dict[str, Any] = {
        "request_id": request_id,
        "item_index": index,
        "item_id": f"{request_id}/{index}",
        "content_hash": f"{index:064x}",
        "policy_version": "openai@1",
        "model_version": "default",
        "flagged": True,
        "action": "block",
        "scores": {"hate": 0.75, "violence": 1 / 3},
        "categories": ["hate"],
        "error": None,
        "key_id": "key_000000000000",
        "project": project,
        "route": "/v1/moderate",
        "latency_ms": 4.25,
        "content": None,
    }
    values.update(fields)
    return DecisionRecord(**values)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    opened = Store.open(tmp_path)
    try:
        yield opened
    finally:
        opened.close()


@pytest.fixture
def keys(store: Store) -> dict[str, str]:
    """Secrets by name: readers, moderators and admins of projects "a" and "b", and odd ones."""
    made = {
        f"{role.value}-{project}": store.create_key(f"{role.value} {project}", role, project)[1]
        for role in Role
        for project in ("a", "b")
    }
    made["read-only-admin-a"] = store.create_key(
        "read-only admin", Role.admin, "a", scopes=["decisions:read"]
    )[1]
    revoked, made["revoked-reader-a"] = store.create_key("gone", Role.reader, "a")
    store.revoke_key(revoked.id)
    return made


@pytest.fixture
def client(tmp_path: Path, store: Store) -> Iterator[TestClient]:
    settings = ServerSettings(home=tmp_path, preload=False, rate_limit_per_minute=None)
    with TestClient(create_app(settings, store=store)) as c:
        yield c


def read(client: TestClient, secret: str, **params: Any) -> Any:
    r = client.get("/v1/decisions", params=params, headers={"Authorization": f"Bearer {secret}"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["object"] == "list"
    return body["data"]


def error(client: TestClient, secret: str | None, **params: Any) -> tuple[int, dict[str, Any]]:
    headers = {"Authorization": f"Bearer {secret}"} if secret else {}
    r = client.get("/v1/decisions", params=params, headers=headers)
    body = r.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "code", "param"}
    return r.status_code, body["error"]


def test_each_key_reads_only_its_own_project(
    client: TestClient, store: Store, keys: dict[str, str]
) -> None:
    store.log_decisions([record("req-a1", "a", 0), record("req-a1", "a", 1)])
    store.log_decisions([record("req-b1", "b")])
    store.log_decisions([record("req-none", None)])  # logged with auth off: nobody's project
    store.log_decisions([record("req-a2", "a")])

    def requests(data: list[dict[str, Any]]) -> list[tuple[str, int]]:
        return [(d["request_id"], d["item_index"]) for d in data]

    mine = [("req-a2", 0), ("req-a1", 1), ("req-a1", 0)]  # newest first
    assert requests(read(client, keys["reader-a"])) == mine
    assert requests(read(client, keys["reader-a"], project="a")) == mine
    assert requests(read(client, keys["reader-b"])) == [("req-b1", 0)]
    assert read(client, keys["reader-b"], request_id="req-a1") == []  # not even by its id

    status, body = error(client, keys["reader-a"], project="b")
    assert status == 403 and body["code"] == "forbidden" and body["type"] == "permission_error"
    assert "'a'" in body["message"] and "keys:admin" in body["message"]
    status, _ = error(client, keys["read-only-admin-a"], project="b")  # admin role, cut scopes
    assert status == 403
    assert requests(read(client, keys["read-only-admin-a"])) == mine

    # An admin key reads its own project by default, and another when it names it.
    assert requests(read(client, keys["admin-a"])) == mine
    assert requests(read(client, keys["admin-a"], project="b")) == [("req-b1", 0)]
    assert read(client, keys["admin-b"], project="nobody-uses-this") == []


@pytest.mark.parametrize(
    ("who", "status", "code"),
    [
        (None, 401, "invalid_api_key"),
        ("revoked-reader-a", 401, "invalid_api_key"),
        ("moderator-a", 403, "forbidden"),  # may moderate, may not read the log
    ],
)
def test_reading_needs_a_live_key_with_decisions_read(
    client: TestClient, store: Store, keys: dict[str, str], who: str | None, status: int, code: str
) -> None:
    store.log_decisions([record("req-a1", "a")])
    got, body = error(client, keys[who] if who else None)
    assert (got, body["code"]) == (status, code)
    assert "req-a1" not in body["message"]


def test_request_id_and_since_filter(
    client: TestClient, store: Store, keys: dict[str, str]
) -> None:
    store.log_decisions([record("old", "a")])
    store.log_decisions([record("new", "a", 0), record("new", "a", 1)])
    reader = keys["reader-a"]

    (old,) = read(client, reader, request_id="old")
    assert old["item_id"] == "old/0" and old["scores"] == {"hate": 0.75, "violence": 1 / 3}
    assert old["project"] == "a" and old["content"] is None and old["latency_ms"] == 4.25

    new_at = datetime.fromisoformat(read(client, reader, request_id="new")[0]["created_at"])
    assert new_at.utcoffset() == timedelta(0)
    assert old["created_at"] < read(client, reader, request_id="new")[0]["created_at"]
    since_new = [d["request_id"] for d in read(client, reader, since=new_at.isoformat())]
    assert since_new == ["new", "new"]  # inclusive, and "old" is before it
    elsewhere = new_at.astimezone(timezone(timedelta(hours=5, minutes=30))).isoformat()
    assert [d["request_id"] for d in read(client, reader, since=elsewhere)] == ["new", "new"]
    zulu = new_at.isoformat().replace("+00:00", "Z")
    assert len(read(client, reader, since=zulu)) == 2
    assert read(client, reader, since=(new_at + timedelta(seconds=1)).isoformat()) == []
    assert len(read(client, reader, since=(new_at - timedelta(days=1)).isoformat())) == 3


def test_content_is_returned_only_where_it_was_logged(
    client: TestClient, store: Store, keys: dict[str, str]
) -> None:
    store.log_decisions([record("kept", "a", content="héllo ✓"), record("kept", "a", 1)])
    data = {d["item_index"]: d["content"] for d in read(client, keys["reader-a"])}
    assert data == {0: "héllo ✓", 1: None}


@pytest.mark.parametrize(
    "since",
    [
        "yesterday",
        "2025-13-01T00:00:00Z",
        "2025-01-31T12:00:00",  # no zone: whose noon?
        "2025-01-31T12:00:00 01:00",  # "+01:00" sent unencoded arrives as a space
        "0001-01-01T00:00:00+14:00",  # before year 1 in UTC
        "0.5",  # numbers are not read as Unix times (schemathesis found pydantic did)
        "1700000000",
    ],
)
def test_a_bad_since_is_a_400_naming_the_parameter(
    client: TestClient, keys: dict[str, str], since: str
) -> None:
    status, body = error(client, keys["reader-a"], since=since)
    assert status == 400 and body["type"] == "invalid_request_error"
    assert "since" in body["message"]


def test_an_unknown_query_parameter_is_a_400_naming_it(
    client: TestClient, keys: dict[str, str]
) -> None:
    status, body = error(client, keys["reader-a"], projet="b")
    assert status == 400 and "'projet'" in body["message"]


def test_limit_is_bounded_and_defaults_to_100(
    client: TestClient, store: Store, keys: dict[str, str]
) -> None:
    store.log_decisions([record("big", "a", i) for i in range(150)])
    reader = keys["reader-a"]
    assert len(read(client, reader)) == 100
    assert len(read(client, reader, limit=1000)) == 150
    assert [d["item_index"] for d in read(client, reader, limit=2)] == [149, 148]  # newest first
    assert len(read(client, reader, limit=1)) == 1
    for bad in (0, -1, 1001, "many"):
        status, body = error(client, reader, limit=bad)
        assert status == 400 and "limit" in body["message"], (bad, body)


def test_without_auth_every_project_is_readable(tmp_path: Path, store: Store) -> None:
    store.log_decisions([record("a1", "a")])
    store.log_decisions([record("b1", "b")])
    settings = ServerSettings(home=tmp_path, preload=False, require_auth=False)
    with TestClient(create_app(settings, store=store)) as c:
        assert [d["request_id"] for d in c.get("/v1/decisions").json()["data"]] == ["b1", "a1"]
        by_project = c.get("/v1/decisions", params={"project": "a"}).json()["data"]
        assert [d["request_id"] for d in by_project] == ["a1"]


@pytest.mark.slow
def test_a_moderated_request_reads_back_as_it_was_answered(
    client: TestClient, keys: dict[str, str]
) -> None:
    r = client.post(
        "/v1/moderations",
        json={"input": ["what a lovely morning", THREAT]},
        headers={"Authorization": f"Bearer {keys['moderator-b']}"},
    )
    assert r.status_code == 200, r.text
    request_id = r.json()["id"]
    logged = read(client, keys["reader-b"], request_id=request_id)
    assert [d["item_index"] for d in logged] == [1, 0]
    for d in logged:
        answered = r.json()["results"][d["item_index"]]
        assert d["scores"] == answered["category_scores"]
        assert d["flagged"] == answered["flagged"]
        assert d["project"] == "b" and d["route"] == "/v1/moderations"
        assert d["content"] is None  # the service was not asked to log content
    assert read(client, keys["reader-a"], request_id=request_id) == []
