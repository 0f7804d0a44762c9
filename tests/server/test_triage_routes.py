"""Review queues and banks on the service: scopes, claims that stay exclusive, decisions by the
key that made them, bank matches with per-value errors and additions with per-entry errors."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from bastion.banks.registry import Banks
from bastion.server.app import ServerSettings, create_app
from bastion.store import Role, Store
from bastion.triage import QueueItem, ReviewQueue

SPAM = "Win a free cruise today!!! Click the link in my profile to claim your prize now"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, Store, dict]]:
    home: Path = tmp_path_factory.mktemp("home")
    store = Store.open(home)
    keys = {}
    ids = {}
    for name, role in (
        ("admin", Role.admin),
        ("ana", Role.reviewer),
        ("ben", Role.reviewer),
        ("mod", Role.moderator),
    ):
        key, secret = store.create_key(name, role)
        keys[name], ids[name] = secret, key.id
    settings = ServerSettings(home=home, rate_limit_per_minute=None, preload=False)
    with TestClient(create_app(settings, store=store)) as client:
        yield client, store, {"keys": keys, "ids": ids, "home": home}
    store.close()


def auth(ctx: dict, who: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {ctx['keys'][who]}"}


def test_reviewers_claim_exclusively_and_decide_as_themselves(
    served: tuple[TestClient, Store, dict],
) -> None:
    client, store, ctx = served
    ReviewQueue(store, "q1").enqueue(
        QueueItem(f"item-{i}", priority=float(i), text=f"post {i}") for i in range(3)
    )
    r = client.post("/v1/queues/q1/claim", json={"n": 2}, headers=auth(ctx, "ana"))
    assert r.status_code == 200
    assert [i["id"] for i in r.json()["data"]] == ["item-2", "item-1"]
    assert r.json()["counts"] == {"pending": 1, "claimed": 2, "decided": 0}
    r = client.post("/v1/queues/q1/claim", json={"n": 5}, headers=auth(ctx, "ben"))
    assert [i["id"] for i in r.json()["data"]] == ["item-0"]

    # Ben may not decide what Ana holds; a moderator key may not review at all.
    r = client.post(
        "/v1/queues/q1/items/item-2/decision", json={"label": "violating"}, headers=auth(ctx, "ben")
    )
    assert r.status_code == 409 and r.json()["error"]["code"] == "claimed_by_other"
    r = client.post("/v1/queues/q1/claim", json={}, headers=auth(ctx, "mod"))
    assert r.status_code == 403

    r = client.post(
        "/v1/queues/q1/items/item-2/decision",
        json={"label": "violating", "categories": ["hate"], "note": "slur in caption"},
        headers=auth(ctx, "ana"),
    )
    assert r.status_code == 200
    body = r.json()
    assert body["state"] == "decided" and body["decision"]["reviewer"] == ctx["ids"]["ana"]
    assert body["decision"]["categories"] == ["hate"]
    decided = client.get("/v1/queues/q1/items?state=decided", headers=auth(ctx, "ana")).json()
    assert [i["id"] for i in decided["data"]] == ["item-2"]

    bad_label = client.post(
        "/v1/queues/q1/items/item-1/decision", json={"label": "maybe"}, headers=auth(ctx, "ana")
    )
    unknown = client.post(
        "/v1/queues/q1/items/nope/decision", json={"label": "unsure"}, headers=auth(ctx, "ana")
    )
    assert bad_label.status_code == 400 and unknown.status_code == 404


def test_text_bank_match_and_add_with_per_value_errors(
    served: tuple[TestClient, Store, dict],
) -> None:
    client, _, ctx = served
    Banks(ctx["home"]).create("spam", "text")
    r = client.post(
        "/v1/banks/spam/entries",
        json={
            "entries": [
                {"id": "cruise", "value": SPAM, "category": "illicit", "severity": 1},
                {"id": "short", "value": "hi", "category": "illicit"},
            ]
        },
        headers=auth(ctx, "admin"),
    )
    assert r.status_code == 200
    body = r.json()
    assert body["added"] == ["cruise"] and body["bank_version"] == 2
    assert len(body["errors"]) == 1 and "'short'" in body["errors"][0]
    denied = client.post(
        "/v1/banks/spam/entries",
        json={"entries": [{"id": "x", "value": SPAM, "category": "illicit"}]},
        headers=auth(ctx, "mod"),
    )
    assert denied.status_code == 403

    edited = SPAM.upper().replace("!!!", "!")
    r = client.post(
        "/v1/banks/spam/match",
        json={"values": [edited, "The bakery opens at seven tomorrow morning"]},
        headers=auth(ctx, "mod"),
    )
    assert r.status_code == 200
    first, second = r.json()["data"]
    assert [m["entry_id"] for m in first] == ["cruise"] and 0 <= first[0]["distance"] < 0.3
    assert second == [] and r.json()["errors"] == [None, None]
    listed = client.get("/v1/banks", headers=auth(ctx, "mod")).json()["data"]
    assert {"name": "spam", "kind": "text", "version": 2, "entries": 1, "description": ""} in listed
    assert (
        client.post(
            "/v1/banks/nope/match", json={"values": ["x"]}, headers=auth(ctx, "mod")
        ).status_code
        == 404
    )


def test_hash_bank_lookup_by_pdq_with_a_bad_hash_beside_good_ones(
    served: tuple[TestClient, Store, dict],
) -> None:
    client, _, ctx = served
    Banks(ctx["home"]).create("known-images", "hash")
    rng = np.random.default_rng(7)
    bits = rng.integers(0, 2, 256).astype(bool)
    known = np.packbits(bits).tobytes().hex()
    flipped = bits.copy()
    flipped[:20] = ~flipped[:20]  # 20 bits away: the same picture
    near = np.packbits(flipped).tobytes().hex()
    r = client.post(
        "/v1/banks/known-images/entries",
        json={
            "entries": [{"id": "img-1", "value": known, "category": "sexual/minors", "severity": 4}]
        },
        headers=auth(ctx, "admin"),
    )
    assert r.json()["added"] == ["img-1"]
    r = client.post(
        "/v1/banks/known-images/match",
        json={"values": [near, "not-a-hash"]},
        headers=auth(ctx, "mod"),
    )
    matches, errors = r.json()["data"], r.json()["errors"]
    assert [m["entry_id"] for m in matches[0]] == ["img-1"] and matches[0][0]["distance"] == 20
    assert matches[1] == [] and errors[0] is None and errors[1]
