"""Errors that name the problem: bodies that are not UTF-8 or nest too deep, one documented set of
error codes, every domain error answered by one handler with its class's status (a page on the
web app's pages), /docs off by default (and with the pages' security headers when on), the
static files' headers, and the key roles listed from one source."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from bastion.annotation.web import SECURITY_HEADERS
from bastion.banks.files import BankExistsError, UnknownBankError, UnreadableBankError
from bastion.cli import app as cli
from bastion.errors import (
    BastionError,
    ErrorCode,
    ForbiddenError,
    InputError,
    InvalidRequestError,
    NotFoundError,
    RateLimitedError,
    TooLargeError,
    UnauthorizedError,
)
from bastion.server.app import create_app
from bastion.server.security import json_body_problem
from bastion.server.settings import MAX_JSON_DEPTH, ServerSettings
from bastion.store import Role, Store
from bastion.store.errors import StoreError
from bastion.triage.queue import ClaimError, UnknownItemError

ROOT = Path(__file__).parents[2]
README = (ROOT / "README.md").read_text()


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("home")


def _client(home: Path, **settings: object) -> TestClient:
    return TestClient(
        create_app(ServerSettings(home=home, preload=False, require_auth=False, **settings))  # type: ignore[arg-type]
    )


@pytest.fixture(scope="module")
def client(home: Path) -> Iterator[TestClient]:
    with _client(home) as c:
        yield c


def _error(response: object) -> dict[str, object]:
    body = response.json()  # type: ignore[attr-defined]
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}
    return body["error"]  # type: ignore[no-any-return]


def test_a_body_that_is_not_utf8_is_refused_naming_the_byte(client: TestClient) -> None:
    body = b'{"input": "caf\xe9"}'  # Latin-1, not UTF-8
    r = client.post("/v1/moderations", content=body, headers={"Content-Type": "application/json"})
    error = _error(r)
    assert r.status_code == 400 and error["code"] == "invalid_body"
    assert "body is not UTF-8 at byte 14" in str(error["message"])


def test_json_nested_10000_deep_is_refused_naming_the_limit(client: TestClient) -> None:
    body = '{"input": ' + "[" * 10_000 + "]" * 10_000 + "}"
    r = client.post("/v1/moderate", content=body, headers={"Content-Type": "application/json"})
    error = _error(r)
    assert r.status_code == 400 and error["code"] == "invalid_body"
    assert f"JSON nested deeper than {MAX_JSON_DEPTH} levels" in str(error["message"])


def test_the_depth_limit_is_a_setting_and_brackets_inside_strings_do_not_count(
    home: Path,
) -> None:
    assert json_body_problem(b'{"a": "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["}', 2) is None
    assert json_body_problem(b'{"a": "\\"[[[", "b": [[[]]]}', 4) is None
    assert json_body_problem(b'{"a": "\\"", "b": [[[]]]}', 3) is not None
    with _client(home, max_json_depth=3) as c:
        deep = c.post("/v1/moderate", json={"items": [{"text": "x", "metadata": {"a": [1]}}]})
        assert deep.status_code == 400 and "deeper than 3" in str(_error(deep)["message"])


@pytest.mark.parametrize(
    ("method", "path", "status", "code"),
    [
        ("get", "/v1/nothing-here", 404, "not_found"),
        ("get", "/v1/moderations", 405, "method_not_allowed"),
    ],
)
def test_starlettes_own_errors_carry_a_code_from_the_set(
    client: TestClient, method: str, path: str, status: int, code: str
) -> None:
    r = client.request(method, path)
    assert r.status_code == status and _error(r)["code"] == code


def test_a_domain_error_carries_a_code_not_a_class_name(client: TestClient) -> None:
    bad = {"type": "image_url", "image_url": {"url": "data:image/png;base64,@@@"}}
    r = client.post("/v1/moderations", json={"input": [bad]})
    assert r.status_code == 400 and _error(r)["code"] == "invalid_input"


def test_every_code_the_service_can_send_is_in_the_set_and_the_readme() -> None:
    """Every code literal in the server's source is an ErrorCode member (mypy also holds the
    call sites to ErrorCode), and the README's table lists each member once."""
    for path in (ROOT / "src/bastion/server").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and getattr(node.value, "id", "") == "ErrorCode":
                assert node.attr in ErrorCode.__members__, f"{path.name}: {node.attr}"
    documented = re.findall(r"^\| `([a-z_]+)` \|", README, re.MULTILINE)
    assert sorted(documented) == sorted(c.value for c in ErrorCode)


def test_the_openapi_document_lists_the_codes(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    assert set(schema["components"]["schemas"]["ErrorCode"]["enum"]) == {c.value for c in ErrorCode}


def test_docs_are_off_by_default_and_sent_with_the_pages_headers_when_on(
    client: TestClient, home: Path
) -> None:
    assert client.get("/docs").status_code == 404 and client.get("/redoc").status_code == 404
    assert client.get("/openapi.json").status_code == 200
    with _client(home, docs=True) as c:
        r = c.get("/docs")
    assert r.status_code == 200 and "swagger-ui" in r.text
    for name in SECURITY_HEADERS:
        assert name.lower() in r.headers, name
    policy = r.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in policy and "'sha256-" in policy
    assert "'unsafe-inline'" not in policy.split("script-src")[1].split(";")[0]


def test_static_files_are_sent_with_the_pages_security_headers(client: TestClient) -> None:
    for name in ("app.css", "task.js"):
        r = client.get(f"/ui/static/{name}")
        assert r.status_code == 200
        for header, value in SECURITY_HEADERS.items():
            assert r.headers[header] == value, (name, header)


def test_every_role_is_listed_in_keys_create_help_the_readme_and_the_error(
    tmp_path: Path,
) -> None:
    runner = CliRunner()
    shown = runner.invoke(cli, ["keys", "create", "--help"], env={"COLUMNS": "300"}).output
    refused = runner.invoke(
        cli, ["keys", "create", "--name", "x", "--role", "boss", "--home", str(tmp_path)]
    )
    assert refused.exit_code != 0
    [listed] = re.findall(r"--role moderator` \(roles: ([^;]+);", README)
    roles_line = " ".join(listed.split())
    for role in Role:
        assert role.value in shown and f"'{role.value}'" in refused.output, role
        assert role.value in roles_line, role
    made = runner.invoke(
        cli, ["keys", "create", "--name", "r", "--role", "reviewer", "--home", str(tmp_path)]
    )
    assert made.exit_code == 0 and made.output.startswith("reviewer API key")
    store = Store.open(tmp_path)
    try:
        assert [k.role for k in store.list_keys()] == [Role.reviewer]
    finally:
        store.close()


@pytest.mark.parametrize(
    ("error", "status", "code", "kind"),
    [
        (
            InvalidRequestError("invalid request: x"),
            400,
            "invalid_request",
            "invalid_request_error",
        ),
        (InputError("an item"), 400, "invalid_input", "invalid_request_error"),
        (UnauthorizedError("no key"), 401, "invalid_api_key", "authentication_error"),
        (ForbiddenError("not yours"), 403, "forbidden", "permission_error"),
        (NotFoundError("no such thing"), 404, "not_found", "invalid_request_error"),
        (UnknownItemError("q", "a"), 404, "not_found", "invalid_request_error"),
        (UnknownBankError("no bank named 'b'"), 404, "bank_not_found", "invalid_request_error"),
        (BankExistsError("bank 'b' exists"), 409, "bank_exists", "invalid_request_error"),
        (ClaimError("q", "a", "decided", "decided"), 409, "decided", "invalid_request_error"),
        (TooLargeError("too big"), 413, "request_too_large", "invalid_request_error"),
        (UnreadableBankError("bank 'b' is corrupt"), 500, "bank_error", "server_error"),
    ],
)
def test_a_domain_error_comes_back_in_openais_shape_with_its_class_status(
    home: Path, error: BastionError, status: int, code: str, kind: str
) -> None:
    app = create_app(ServerSettings(home=home, preload=False, require_auth=False))

    def fails() -> None:
        raise error

    app.add_api_route("/v1/fails", fails)
    r = TestClient(app).get("/v1/fails")
    assert r.status_code == status
    assert _error(r) == {"message": str(error), "type": kind, "param": None, "code": code}


def test_a_rate_limit_says_when_to_retry_and_a_store_failure_keeps_its_words_to_the_log(
    home: Path,
) -> None:
    app = create_app(ServerSettings(home=home, preload=False, require_auth=False))

    def limited() -> None:
        raise RateLimitedError("slow down", retry_after_s=2.4)

    def store_down() -> None:
        raise StoreError("psycopg: connection to 10.0.0.7 refused")

    app.add_api_route("/v1/limited", limited)
    app.add_api_route("/v1/store-down", store_down)
    client = TestClient(app)
    r = client.get("/v1/limited")
    assert r.status_code == 429 and r.headers["retry-after"] == "2"
    assert _error(r)["code"] == "rate_limit_exceeded"
    r = client.get("/v1/store-down")
    assert r.status_code == 503 and _error(r)["code"] == "service_unavailable"
    assert "10.0.0.7" not in r.text and "retry" in str(_error(r)["message"])


def test_an_unexpected_exception_is_a_500_that_names_nothing_inside(home: Path) -> None:
    app = create_app(ServerSettings(home=home, preload=False, require_auth=False))

    def breaks() -> None:
        raise RuntimeError("secret at /srv/bastion/home/keys.db")

    app.add_api_route("/v1/breaks", breaks)
    r = TestClient(app, raise_server_exceptions=False).get("/v1/breaks")
    assert r.status_code == 500 and _error(r)["code"] == "internal_error"
    assert "secret" not in r.text and "RuntimeError" not in r.text


def test_a_domain_error_on_a_page_is_a_page_not_json(client: TestClient) -> None:
    r = client.get("/ui/static/nothing.js")
    assert r.status_code == 404 and r.headers["content-type"].startswith("text/html")
    assert "Not found" in r.text and "no static file &#39;nothing.js&#39;" in r.text
