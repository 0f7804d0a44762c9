"""Recall jobs on the service: accepted at once and run in the background, bad items named while
the rest are recalled, candidates ranked by expected harm and queued for review, scopes and
projects respected, and an accepted job finished by the next server on the same home."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from bastion.server.app import ServerSettings, create_app
from bastion.server.pool import ModeratorPool
from bastion.store import Role, Store
from scam_texts import BENIGN, LOOKALIKES, PARAPHRASES, SCAM

pytestmark = pytest.mark.slow  # loads the default model


@pytest.fixture(scope="module")
def pool(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModeratorPool]:
    shared = ModeratorPool(tmp_path_factory.mktemp("pool-home"))
    yield shared
    shared.close()


@pytest.fixture(scope="module")
def served(
    tmp_path_factory: pytest.TempPathFactory, pool: ModeratorPool
) -> Iterator[tuple[TestClient, dict]]:
    home = tmp_path_factory.mktemp("home")
    store = Store.open(home)
    keys = {}
    for name, role, project in (
        ("admin", Role.admin, "default"),
        ("mod", Role.moderator, "default"),
        ("rev", Role.reviewer, "default"),
        ("reader", Role.reader, "default"),
        ("other-mod", Role.moderator, "elsewhere"),
    ):
        _, keys[name] = store.create_key(name, role, project)
    with TestClient(create_app(_settings(home), store=store, pool=pool)) as client:
        bank = {"name": "scam-exemplars", "kind": "embedding"}
        assert client.post("/v1/banks", json=bank, headers=auth(keys, "admin")).status_code == 201
        entries = [
            {"id": f"scam-{i}", "value": t, "category": "illicit", "severity": 3}
            for i, t in enumerate(SCAM[:3])
        ] + [
            {"id": f"fine-{i}", "value": t, "category": "illicit", "negative": True}
            for i, t in enumerate(LOOKALIKES)
        ]
        r = client.post(
            "/v1/banks/scam-exemplars/entries",
            json={"entries": entries},
            headers=auth(keys, "admin"),
        )
        assert r.status_code == 200 and not r.json()["errors"]
        yield client, {"keys": keys, "home": home}
    store.close()


def _settings(home: Path) -> ServerSettings:
    return ServerSettings(home=home, rate_limit_per_minute=None, preload=False)


def auth(keys: dict[str, str], who: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {keys[who]}"}


def finished(client: TestClient, job_id: str, headers: dict[str, str]) -> dict:
    """The job once its worker has left it, as the API shows it (waits on the worker: no polling)."""
    jobs = client.app.state.recall_jobs  # type: ignore[attr-defined]
    jobs.wait(job_id, None, timeout_s=600)
    r = client.get(f"/v1/recall/jobs/{job_id}", headers=headers)
    assert r.status_code == 200, r.text
    assert r.json()["status"] in ("done", "failed"), (
        f"recall job {job_id} did not finish: {r.json()}"
    )
    return dict(r.json())


POOL = [
    {"id": "para-0", "text": PARAPHRASES[0], "metadata": {"reach": 50_000, "author": "u1"}},
    {"id": "blank", "text": "   "},
    *({"id": f"benign-{i}", "text": t, "metadata": {"reach": 10}} for i, t in enumerate(BENIGN)),
    {"id": "bad-media", "media": ["data:text/plain;base64,aGk="]},
]


def test_a_job_recalls_ranks_and_queues_and_names_the_items_it_could_not_read(
    served: tuple[TestClient, dict],
) -> None:
    client, ctx = served
    mod = auth(ctx["keys"], "mod")
    body = {"items": POOL, "banks": ["scam-exemplars"], "queue": "recall-q"}
    r = client.post("/v1/recall/jobs", json=body, headers=mod)
    assert r.status_code == 202, r.text
    job_id = r.json()["id"]
    assert r.json()["status"] == "queued" and r.headers["location"] == f"/v1/recall/jobs/{job_id}"

    job = finished(client, job_id, mod)
    assert job["status"] == "done" and job["error"] is None
    assert job["progress"] == {"done": len(POOL) - 2, "total": len(POOL) - 2}
    assert len(job["errors"]) == 2
    assert job["errors"][0].startswith("items[1] (id 'blank'): no text and no media")
    assert "items[10] (id 'bad-media'): media[0] is of type text/plain" in job["errors"][1]
    assert job["counts"]["embedding"] >= 1 and job["banks"] == ["scam-exemplars"]
    assert job["policy"] == "openai" and job["finished_at"] >= job["started_at"]

    r = client.get(f"/v1/recall/jobs/{job_id}/candidates", headers=mod)
    assert r.status_code == 200
    listing = r.json()
    assert listing["total"] == job["candidates"] == len(listing["data"]) >= 1
    top = listing["data"][0]
    assert top["id"] == "para-0" and top["position"] == 0 and "embedding" in top["channels"]
    assert 0 < top["distances"]["embedding"] < 0.6 and top["reach"] == 50_000
    assert top["author"] == "u1" and top["expected_harm"] > 0
    assert [c["expected_harm"] for c in listing["data"]] == sorted(
        (c["expected_harm"] for c in listing["data"]), reverse=True
    )
    assert all(
        "embedding" not in c["channels"] for c in listing["data"] if c["id"].startswith("benign")
    )
    page = client.get(f"/v1/recall/jobs/{job_id}/candidates?limit=1&offset=1", headers=mod)
    assert page.json()["data"] == listing["data"][1:2]

    assert job["enqueued"] == {
        "queue": "recall-q",
        "added": job["candidates"],
        "updated": 0,
        "already_decided": 0,
    }
    queued = client.get("/v1/queues/recall-q/items", headers=auth(ctx["keys"], "rev")).json()
    assert [i["id"] for i in queued["data"]] == [c["id"] for c in listing["data"]]
    assert "embedding" in queued["data"][0]["channels"]


def test_jobs_are_refused_before_they_are_accepted(served: tuple[TestClient, dict]) -> None:
    client, ctx = served
    keys = ctx["keys"]
    jobs_dir = ctx["home"] / "recall-jobs"
    before = sorted(p.name for p in jobs_dir.iterdir()) if jobs_dir.exists() else []
    one = [{"id": "a", "text": "hello there"}]

    def post(body: dict, who: str = "mod") -> tuple[int, str]:
        r = client.post("/v1/recall/jobs", json=body, headers=auth(keys, who))
        return r.status_code, str(r.json()["error"]["message"])

    assert post({"items": one}, "reader")[0] == 403
    status, message = post({"items": one}, "rev")
    assert status == 403 and "'moderate'" in message
    status, message = post({"items": one, "banks": ["scam-exemplars", "no-such-bank"]})
    assert status == 404 and "no-such-bank" in message
    assert post({"items": []})[0] == 400
    status, message = post({"items": [*one, {"id": "a", "text": "again"}]})
    assert status == 400 and "'a' appears more than once" in message
    status, message = post({"items": [{"id": "x"}, {"id": "y", "text": ""}]})
    assert status == 400 and "none of the 2 items" in message
    assert post({"items": one, "policy": "no-such-policy"})[0] == 400
    assert post({"items": one, "queue": "bad name!"})[0] == 400
    assert post({"items": one, "surprise": 1})[0] == 400
    after = sorted(p.name for p in jobs_dir.iterdir()) if jobs_dir.exists() else []
    assert after == before

    r = client.post("/v1/recall/jobs", json={"items": one}, headers=auth(keys, "mod"))
    job_id = r.json()["id"]
    assert client.get(f"/v1/recall/jobs/{job_id}", headers=auth(keys, "admin")).status_code == 200
    for who in ("other-mod", "reader"):  # another project's key; a key without the scopes
        r = client.get(f"/v1/recall/jobs/{job_id}", headers=auth(keys, who))
        assert r.status_code == (404 if who == "other-mod" else 403)
    for path in ("rj-" + "0" * 32, "../../etc", "rj-nope"):
        assert client.get(f"/v1/recall/jobs/{path}", headers=auth(keys, "mod")).status_code == 404
        r = client.get(f"/v1/recall/jobs/{path}/candidates", headers=auth(keys, "mod"))
        assert r.status_code == 404


def test_an_accepted_job_is_finished_by_the_next_server_on_the_same_home(
    tmp_path: Path, pool: ModeratorPool
) -> None:
    store = Store.open(tmp_path)
    _, key = store.create_key("mod", Role.moderator)
    headers = {"Authorization": f"Bearer {key}"}
    items = [{"id": "p", "text": PARAPHRASES[1]}, {"id": "b", "text": BENIGN[0]}]
    # Not started (no lifespan): the jobs are accepted to disk and nothing runs them.
    stopped = TestClient(create_app(_settings(tmp_path), store=store, pool=pool))
    ids = [
        stopped.post("/v1/recall/jobs", json={"items": items}, headers=headers).json()["id"]
        for _ in range(2)
    ]
    time.sleep(0.3)
    assert [stopped.get(f"/v1/recall/jobs/{i}", headers=headers).json()["status"] for i in ids] == [
        "queued",
        "queued",
    ]
    candidates = stopped.get(f"/v1/recall/jobs/{ids[0]}/candidates", headers=headers)
    assert candidates.status_code == 409 and "queued" in candidates.json()["error"]["message"]
    # The second as a server that died mid-run leaves it.
    status_file = tmp_path / "recall-jobs" / ids[1] / "status.json"
    status = json.loads(status_file.read_text())
    status_file.write_text(json.dumps({**status, "status": "running"}))

    with TestClient(create_app(_settings(tmp_path), store=store, pool=pool)) as restarted:
        jobs = [finished(restarted, i, headers) for i in ids]
    assert [j["status"] for j in jobs] == ["done", "done"]
    assert all(j["progress"] == {"done": 2, "total": 2} for j in jobs)
    store.close()
