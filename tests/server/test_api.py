"""The HTTP API in-process (FastAPI TestClient): shapes, auth, bad requests, decision log, metrics."""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image, ImageDraw, ImageFont

from bastion.media.limits import MediaLimits
from bastion.server.app import ServerSettings, create_app
from bastion.store import Role, Store

pytestmark = pytest.mark.slow

THREAT = "I will find where you live and hurt you"
OPENAI_CATEGORIES = {
    "harassment", "harassment/threatening", "hate", "hate/threatening", "illicit",
    "illicit/violent", "self-harm", "self-harm/intent", "self-harm/instructions", "sexual",
    "sexual/minors", "violence", "violence/graphic",
}  # fmt: skip


def png_uri(text: str | None = None, size: tuple[int, int] = (900, 120)) -> str:
    image = Image.new("RGB", size, "white")
    if text:
        font = ImageFont.truetype("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf", 44)
        ImageDraw.Draw(image).text((20, 30), text, font=font, fill="black")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("home")


@pytest.fixture(scope="module")
def keys(home: Path) -> dict[str, str]:
    store = Store.open(home)
    out = {role.value: store.create_key(f"test {role.value}", role)[1] for role in Role}
    revoked, secret = store.create_key("revoked", Role.moderator)
    store.revoke_key(revoked.id)
    out["revoked"] = secret
    store.close()
    return out


@pytest.fixture(scope="module")
def client(home: Path, keys: dict[str, str]) -> Iterator[TestClient]:
    settings = ServerSettings(
        home=home,
        max_body_bytes=2_000_000,
        media_limits=MediaLimits(decode_timeout_s=5.0),
    )
    with TestClient(create_app(settings)) as c:
        c.headers["Authorization"] = f"Bearer {keys['moderator']}"
        yield c


def test_openai_shape_for_one_text(client: TestClient) -> None:
    r = client.post("/v1/moderations", json={"input": THREAT})
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {"id", "model", "results"} and body["id"].startswith("modr-")
    (result,) = body["results"]
    assert set(result) == {
        "flagged",
        "categories",
        "category_scores",
        "category_applied_input_types",
    }
    assert set(result["categories"]) == OPENAI_CATEGORIES
    assert result["flagged"] is True and result["categories"]["harassment/threatening"] is True
    assert result["category_applied_input_types"]["harassment/threatening"] == ["text"]
    assert r.headers["x-request-id"] == body["id"]


def test_list_of_texts_gives_results_in_order(client: TestClient) -> None:
    texts = ["what a lovely morning", THREAT, "how do I kill a stuck python process"]
    r = client.post("/v1/moderations", json={"input": texts, "model": "omni-moderation-latest"})
    assert r.status_code == 200, r.text
    assert [x["flagged"] for x in r.json()["results"]] == [False, True, False]
    assert r.json()["model"] == "omni-moderation-latest"


def test_multimodal_parts_are_one_item(client: TestClient) -> None:
    parts = [
        {"type": "text", "text": "look at this"},
        {"type": "image_url", "image_url": {"url": png_uri("I will kill you tomorrow")}},
    ]
    r = client.post("/v1/moderations", json={"input": parts})
    assert r.status_code == 200, r.text
    (result,) = r.json()["results"]
    assert result["flagged"] is True
    assert result["category_applied_input_types"]["harassment/threatening"] == ["image"]


def test_bastion_route_gives_verdicts_and_per_item_errors(client: TestClient) -> None:
    body = {
        "items": [
            {"id": "a", "text": THREAT},
            {"id": "b", "text": "hi", "images": ["data:image/png;base64,@@@"]},
            {"id": "c", "images": [png_uri()]},
        ],
        "policy": "openai",
    }
    r = client.post("/v1/moderate", json=body)
    assert r.status_code == 200, r.text
    a, b, c = r.json()["verdicts"]
    assert a["id"] == "a" and a["flagged"] and a["action"] in ("review", "block") and a["evidence"]
    assert b["error"].startswith("items[1]: image data URI has invalid base64")
    assert c["error"] is None and c["flagged"] is False and c["hashes"][0]["kind"] == "pdq"
    assert c["action"] == "allow"


def test_an_item_that_could_not_be_read_goes_to_review_not_allow(
    client: TestClient, home: Path
) -> None:
    not_an_image = "data:image/png;base64," + base64.b64encode(b"not a png" * 20).decode()
    body = {
        "items": [
            {"id": "unreadable", "text": "hello", "images": [not_an_image]},
            {"id": "refused", "images": ["/etc/passwd"]},
            {"id": "empty", "text": "   "},
            {"id": "fine", "text": "what a lovely morning"},
        ]
    }
    r = client.post("/v1/moderate", json=body)
    assert r.status_code == 200, r.text
    *failed, fine = r.json()["verdicts"]
    for v in failed:
        assert v["error"], v["id"]
        assert v["action"] == "review" and v["flagged"] is None, v["id"]
        assert v["category_scores"] == {}
    assert fine["error"] is None and fine["action"] == "allow" and fine["flagged"] is False
    store = Store.open(home)
    logged = sorted(store.decisions(request_id=r.json()["id"]), key=lambda d: d.item_index)
    store.close()
    # The decision log says what the response said (an item refused before scoring is not in it).
    said = {v["id"]: (v["flagged"], v["action"]) for v in r.json()["verdicts"]}
    assert [d.item_id for d in logged] == ["unreadable", "empty", "fine"]
    assert all((d.flagged, d.action) == said[d.item_id] for d in logged)


@pytest.mark.parametrize(
    ("who", "status", "code"),
    [
        (None, 401, "invalid_api_key"),
        ("bogus", 401, "invalid_api_key"),
        ("revoked", 401, "invalid_api_key"),
        ("reader", 403, "forbidden"),
    ],
)
def test_keys_are_required_and_scoped(
    client: TestClient, keys: dict[str, str], who: str | None, status: int, code: str
) -> None:
    headers = {} if who is None else {"Authorization": f"Bearer {keys.get(who, 'bst_bogus')}"}
    r = client.post(
        "/v1/moderations", json={"input": "x"}, headers=headers or {"Authorization": ""}
    )
    assert r.status_code == status, r.text
    assert r.json()["error"]["code"] == code


def test_no_inputs_is_a_400_naming_input_like_no_items(client: TestClient) -> None:
    r = client.post("/v1/moderations", json={"input": []})
    assert r.status_code == 400, r.text
    message = r.json()["error"]["message"]
    assert "input: List should have at least 1 item" in message
    items = client.post("/v1/moderate", json={"items": []}).json()["error"]["message"]
    assert message == items.replace("items:", "input:")  # one problem, named the same way


@pytest.mark.parametrize(
    ("payload", "status", "needle"),
    [
        (b"{not json", 400, "JSON"),
        (json.dumps({"input": 42}).encode(), 400, "input"),
        (json.dumps({"inputs": "x"}).encode(), 400, "input"),
        (
            json.dumps(
                {"input": [{"type": "image_url", "image_url": {"url": "data:image/png;base64,@@"}}]}
            ).encode(),
            400,
            "invalid base64",
        ),
        (
            json.dumps(
                {
                    "input": [
                        {
                            "type": "image_url",
                            "image_url": {
                                "url": "data:image/jpeg;base64,"
                                + base64.b64encode(b"hello, not an image" * 10).decode()
                            },
                        }
                    ]
                }
            ).encode(),
            400,
            "not an image format",
        ),
        (
            json.dumps(
                {
                    "input": [
                        {"type": "image_url", "image_url": {"url": "https://example.com/x.png"}}
                    ]
                }
            ).encode(),
            400,
            "remote URLs are not fetched",
        ),
        (json.dumps({"input": "x", "model": "no-such-policy"}).encode(), 400, "unknown model"),
    ],
)
def test_bad_requests_get_a_named_4xx_and_the_next_request_is_served(
    client: TestClient, payload: bytes, status: int, needle: str
) -> None:
    r = client.post(
        "/v1/moderations", content=payload, headers={"Content-Type": "application/json"}
    )
    assert r.status_code == status, r.text
    assert needle in r.json()["error"]["message"]
    assert client.post("/v1/moderations", json={"input": "hello"}).status_code == 200


def test_oversized_body_is_refused_by_header_and_while_streaming(client: TestClient) -> None:
    big = b'{"input": "' + b"a" * 3_000_000 + b'"}'
    r = client.post("/v1/moderations", content=big, headers={"Content-Type": "application/json"})
    assert r.status_code == 413 and "over the limit" in r.json()["error"]["message"]

    def chunks() -> Iterator[bytes]:
        yield b'{"input": "'
        for _ in range(30):
            yield b"a" * 100_000
        yield b'"}'

    r = client.post(
        "/v1/moderations", content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert r.status_code == 413
    assert client.post("/v1/moderations", json={"input": "hello"}).status_code == 200


def test_every_verdict_is_in_the_decision_log(client: TestClient, home: Path) -> None:
    r = client.post("/v1/moderations", json={"input": ["fine text", THREAT]})
    request_id = r.json()["id"]
    store = Store.open(home)
    logged = sorted(store.decisions(request_id=request_id), key=lambda d: d.item_index)
    store.close()
    assert [d.flagged for d in logged] == [False, True]
    results = r.json()["results"]
    for d, res in zip(logged, results, strict=True):
        assert d.scores == res["category_scores"]
        assert d.content is None  # text is not stored unless configured
        assert len(d.content_hash) == 64 and d.route == "/v1/moderations"


def test_probes_and_metrics(client: TestClient) -> None:
    client.post("/v1/moderations", json={"input": THREAT})
    assert client.get("/healthz").json()["status"] == "ok"
    ready = client.get("/readyz")
    assert ready.status_code == 200 and "openai:default" in ready.json()["models"]
    text = client.get("/metrics").text
    assert 'bastion_flags_total{category="harassment/threatening"}' in text
    assert 'bastion_requests_total{route="/v1/moderations",status="200"}' in text
    assert "bastion_request_seconds_bucket" in text and "bastion_batch_items_bucket" in text


def test_rate_limit_per_key(home: Path, keys: dict[str, str]) -> None:
    settings = ServerSettings(home=home, rate_limit_per_minute=2, preload=False)
    with TestClient(create_app(settings)) as c:
        c.headers["Authorization"] = f"Bearer {keys['moderator']}"
        codes = [c.post("/v1/moderations", json={"input": "hi"}).status_code for _ in range(3)]
        assert codes == [200, 200, 429]
        last = c.post("/v1/moderations", json={"input": "hi"})
        assert last.json()["error"]["code"] == "rate_limit_exceeded"
        assert int(last.headers["retry-after"]) >= 1


def test_decode_over_its_time_limit_is_a_4xx(home: Path, keys: dict[str, str]) -> None:
    noise = np.random.default_rng(0).integers(0, 255, (2500, 2500, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(noise).save(buffer, format="PNG")
    uri = "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()
    settings = ServerSettings(
        home=home,
        max_body_bytes=50_000_000,
        media_limits=MediaLimits(decode_timeout_s=0.01),
    )
    with TestClient(create_app(settings)) as c:
        c.headers["Authorization"] = f"Bearer {keys['moderator']}"
        r = c.post(
            "/v1/moderations", json={"input": [{"type": "image_url", "image_url": {"url": uri}}]}
        )
        assert r.status_code == 400 and "decode_timeout_s" in r.json()["error"]["message"]
        assert c.post("/v1/moderations", json={"input": "hello"}).status_code == 200


def test_requests_cannot_make_the_server_read_its_own_files(client: TestClient) -> None:
    parts = [{"type": "image_url", "image_url": {"url": "/etc/passwd"}}]
    r = client.post("/v1/moderations", json={"input": parts})
    assert r.status_code == 400
    message = r.json()["error"]["message"]
    assert "file paths are not read from requests" in message and "root" not in message
    r = client.post("/v1/moderate", json={"items": [{"images": ["/etc/passwd"]}, {"text": "ok"}]})
    bad, ok = r.json()["verdicts"]
    assert "file paths are not read" in bad["error"] and ok["error"] is None


def test_blank_input_is_answered_like_openai_not_flagged(client: TestClient) -> None:
    r = client.post("/v1/moderations", json={"input": ["", "   "]})
    assert r.status_code == 200
    assert [x["flagged"] for x in r.json()["results"]] == [False, False]
