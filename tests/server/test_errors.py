"""Errors that name the problem: bodies that are not UTF-8 or nest too deep, one documented set of
error codes, /docs off by default (and with the pages' security headers when on), the static
files' headers, and the key roles listed from one source."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from bastion.annotation.web import SECURITY_HEADERS
from bastion.cli import app as cli
from bastion.server.app import create_app
from bastion.server.schemas import ErrorCode
from bastion.server.security import json_body_problem
from bastion.server.settings import MAX_JSON_DEPTH, ServerSettings
from bastion.store import Role, Store

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
