"""Review queues and banks on the service: scopes, claims that stay exclusive, decisions by the
key that made them, bank matches with per-value errors and additions with per-entry errors, banks
created over the API, and images and hashes looked up in one call."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from bastion.banks.registry import Banks
from bastion.media.hashing import pdq_hash
from bastion.media.limits import MediaLimits
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
        ("nobody", Role.reader),
    ):
        key, secret = store.create_key(name, role)
        keys[name], ids[name] = secret, key.id
    settings = ServerSettings(
        home=home,
        rate_limit_per_minute=None,
        preload=False,
        media_limits=MediaLimits(max_image_bytes=1_000_000),
    )
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


def _picture(seed: int, size: int = 256) -> Image.Image:
    """A picture with structure PDQ can see: gradients and a few blocks placed by `seed`."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size].astype(float) / size
    angle = rng.uniform(0, np.pi)
    base = np.cos(angle) * x + np.sin(angle) * y
    rgb = np.stack([base, 1 - base, (x * y) ** 0.5], axis=2) * 200
    for _ in range(6):
        top, left = rng.integers(0, size * 3 // 4, 2)
        side = int(rng.integers(size // 8, size // 3))
        rgb[top : top + side, left : left + side] = rng.integers(0, 256, 3)
    return Image.fromarray(rgb.clip(0, 255).astype(np.uint8))


def _encoded(image: Image.Image, fmt: str = "PNG", **options: object) -> bytes:
    out = io.BytesIO()
    image.save(out, format=fmt, **options)
    return out.getvalue()


def test_create_bank_then_list_it_and_refuse_a_second_or_a_bad_one(
    served: tuple[TestClient, Store, dict],
) -> None:
    client, _, ctx = served
    body = {"name": "fresh-hashes", "kind": "hash", "description": "known images"}
    body["settings"] = {"pdq_threshold": 20}
    r = client.post("/v1/banks", json=body, headers=auth(ctx, "admin"))
    assert r.status_code == 201, r.text
    assert r.json() == {
        "name": "fresh-hashes",
        "kind": "hash",
        "version": 1,
        "entries": 0,
        "description": "known images",
    }
    assert Banks(ctx["home"]).open("fresh-hashes").settings.pdq_threshold == 20
    listed = client.get("/v1/banks", headers=auth(ctx, "mod")).json()["data"]
    assert "fresh-hashes" in [b["name"] for b in listed]

    again = client.post("/v1/banks", json=body, headers=auth(ctx, "admin"))
    assert again.status_code == 409 and again.json()["error"]["code"] == "bank_exists"
    denied = client.post(
        "/v1/banks", json={"name": "mine", "kind": "text"}, headers=auth(ctx, "mod")
    )
    assert denied.status_code == 403

    def refused(payload: dict) -> str:
        r = client.post("/v1/banks", json=payload, headers=auth(ctx, "admin"))
        assert r.status_code == 400, r.text
        return str(r.json()["error"]["message"])

    assert "bad bank name" in refused({"name": "Has Spaces", "kind": "text"})
    assert "kind" in refused({"name": "odd-kind", "kind": "video"})
    assert "pdq_threshold" in refused(
        {"name": "too-wide", "kind": "hash", "settings": {"pdq_threshold": 999}}
    )
    assert "encoder" in refused(
        {"name": "other-encoder", "kind": "embedding", "settings": {"encoder": "/etc"}}
    )
    assert "odd-kind" not in Banks(ctx["home"]).names()

    r = client.post(
        "/v1/banks", json={"name": "exemplars", "kind": "embedding"}, headers=auth(ctx, "admin")
    )
    assert r.status_code == 201 and r.json()["kind"] == "embedding"


def test_an_embedding_bank_lists_bad_entries_like_the_other_kinds(
    served: tuple[TestClient, Store, dict],
) -> None:
    """Every kind checks each entry (`Bank.validate_entry`) before adding the good ones, so an
    entry an embedding bank cannot hold is a per-entry error, as for hash and text banks (it
    used to fail the whole request), and nothing is embedded for it."""
    client, _, ctx = served
    Banks(ctx["home"]).create("exemplar-signals", "embedding")
    as_text = {"id": "as-text", "value": SPAM, "signal": "text", "category": "illicit"}
    blank = {"id": "blank", "value": "   ", "category": "illicit"}
    url, entries = "/v1/banks/exemplar-signals/entries", {"entries": [as_text, blank]}
    r = client.post(url, json=entries, headers=auth(ctx, "admin"))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["added"] == [] and body["bank_version"] == 1
    assert "holds 'embedding' entries, not 'text'" in body["errors"][0]
    assert "'blank'" in body["errors"][1] and "has no text" in body["errors"][1]


def test_lookup_an_uploaded_image_finds_its_altered_copy_and_not_another_picture(
    served: tuple[TestClient, Store, dict],
) -> None:
    client, _, ctx = served
    Banks(ctx["home"]).create("lookup-images", "hash")
    original = _picture(1)
    png = _encoded(original)

    def lookup(data: bytes, content_type: str = "image/png") -> dict:
        r = client.post(
            "/v1/banks/lookup-images/lookup",
            content=data,
            headers={**auth(ctx, "mod"), "Content-Type": content_type},
        )
        assert r.status_code == 200, r.text
        return dict(r.json())

    first = lookup(png)
    hashes = first["hashes"]
    assert first["input"] == "image" and first["data"] == []
    assert hashes["pdq"] == pdq_hash(np.asarray(original)).hash and hashes["pdq_quality"] >= 50
    assert hashes["md5"] == hashlib.md5(png).hexdigest()
    r = client.post(
        "/v1/banks/lookup-images/entries",
        json={
            "entries": [
                {"id": "img-pdq", "value": hashes["pdq"], "category": "violence", "severity": 3},
                {"id": "img-md5", "value": hashes["md5"], "category": "violence", "severity": 3},
            ]
        },
        headers=auth(ctx, "admin"),
    )
    assert r.json()["added"] == ["img-pdq", "img-md5"]

    exact = lookup(png)
    assert {m["entry_id"]: m["distance"] for m in exact["data"]} == {"img-pdq": 0, "img-md5": 0}
    altered = _encoded(original.resize((200, 200)), "JPEG", quality=70)
    near = lookup(altered, "image/jpeg")
    assert [m["entry_id"] for m in near["data"]] == ["img-pdq"]
    assert 0 < near["data"][0]["distance"] <= 31 and near["data"][0]["category"] == "violence"
    assert lookup(_encoded(_picture(2)))["data"] == []

    by_hash = client.post(
        f"/v1/banks/lookup-images/lookup?hash={near['hashes']['pdq']}", headers=auth(ctx, "mod")
    )
    assert by_hash.status_code == 200 and by_hash.json()["input"] == "hash"
    assert by_hash.json()["data"][0]["distance"] == near["data"][0]["distance"]
    as_form = client.post(
        "/v1/banks/lookup-images/lookup",
        data={"hash": hashes["md5"].upper()},
        headers=auth(ctx, "mod"),
    )
    assert as_form.status_code == 200, as_form.text
    assert as_form.json()["hashes"]["md5"] == hashes["md5"]
    assert [m["entry_id"] for m in as_form.json()["data"]] == ["img-md5"]

    multipart = client.post(
        "/v1/banks/lookup-images/lookup",
        files={"file": ("copy.jpg", altered, "image/jpeg")},
        headers=auth(ctx, "mod"),
    )
    assert multipart.status_code == 200, multipart.text
    assert [m["entry_id"] for m in multipart.json()["data"]] == ["img-pdq"]


def test_lookup_refuses_bad_input_by_name(served: tuple[TestClient, Store, dict]) -> None:
    client, _, ctx = served
    banks = Banks(ctx["home"])
    banks.create("lookup-refusals", "hash")
    banks.create("lookup-texts", "text")
    url = "/v1/banks/lookup-refusals/lookup"

    def refused(status: int = 400, path: str = url, **request: object) -> str:
        headers = {**auth(ctx, "mod"), **request.pop("headers", {})}  # type: ignore[dict-item]
        r = client.post(path, headers=headers, **request)  # type: ignore[arg-type]
        assert r.status_code == status, r.text
        return str(r.json()["error"]["message"])

    raw = {"Content-Type": "image/png"}
    assert "not an image" in refused(content=b"GIF? no, just text", headers=raw)
    assert "cannot decode" in refused(content=_encoded(_picture(3))[:300], headers=raw)
    assert "empty" in refused(content=b"", headers=raw)
    assert "wrong length" in refused(params={"hash": "abc123"})
    assert "'z' at position 1" in refused(params={"hash": "z" * 64})
    assert "nothing to look up" in refused()
    png = _encoded(_picture(3))
    assert "not both" in refused(params={"hash": "0" * 64}, content=png, headers=raw)
    assert "text bank" in refused(path="/v1/banks/lookup-texts/lookup", params={"hash": "0" * 64})
    assert "no bank" in refused(404, path="/v1/banks/nope/lookup", params={"hash": "0" * 64})
    assert "got text/plain" in refused(
        415, content=b'{"hash": "x"}', headers={"Content-Type": "text/plain"}
    )
    big = b"\x89PNG" + b"\x00" * 1_100_000
    assert "over the image size limit" in refused(413, content=big, headers=raw)
    reader = client.post(url, params={"hash": "0" * 64}, headers=auth(ctx, "nobody"))
    assert reader.status_code == 403
