"""`bastion serve`: every server setting has a flag and a `BASTION_...` environment variable, both
reach the app's settings, and each is listed in `--help` and the README."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import bastion.server.app
import bastion.server.workers
from bastion.cli import app
from bastion.errors import InputError
from bastion.server.settings import ServerSettings

README = Path(__file__).parents[2] / "README.md"

# field: (flag arguments, environment variable and its value, the setting that should result)
# `home` and `media_limits` name files: their values are filled in per test (see `_cases`).
SETTINGS: dict[str, tuple[list[str], tuple[str, str], Any]] = {
    "default_policy": (["--policy", "mlcommons"], ("BASTION_POLICY", "mlcommons"), "mlcommons"),
    "default_model": (["--model", "zero-shot"], ("BASTION_MODEL", "zero-shot"), "zero-shot"),
    "detectors": (
        ["--detector", "zero-shot", "--detector", "ocr"],
        ("BASTION_DETECTORS", "zero-shot ocr"),
        ["zero-shot", "ocr"],
    ),
    "require_auth": (["--no-auth"], ("BASTION_AUTH", "false"), False),
    "max_body_bytes": (["--max-body-bytes", "1000"], ("BASTION_MAX_BODY_BYTES", "1000"), 1000),
    "max_json_depth": (["--max-json-depth", "8"], ("BASTION_MAX_JSON_DEPTH", "8"), 8),
    "rate_limit_per_minute": (["--rate-limit", "0"], ("BASTION_RATE_LIMIT", "0"), None),
    "cors_origins": (
        ["--cors-origin", "https://a.example", "--cors-origin", "https://b.example"],
        ("BASTION_CORS_ORIGINS", "https://a.example https://b.example"),
        ["https://a.example", "https://b.example"],
    ),
    "log_content": (["--log-content"], ("BASTION_LOG_CONTENT", "1"), True),
    "preload": (["--no-preload"], ("BASTION_PRELOAD", "0"), False),
    "runtime": (["--runtime", "torch"], ("BASTION_RUNTIME", "torch"), "torch"),
    "batch_wait_ms": (["--batch-wait-ms", "7.5"], ("BASTION_BATCH_WAIT_MS", "7.5"), 7.5),
    "batch_max_items": (["--batch-max-items", "16"], ("BASTION_BATCH_MAX_ITEMS", "16"), 16),
    "key_cache_s": (["--key-cache-s", "0"], ("BASTION_KEY_CACHE_S", "0"), 0.0),
    "web": (["--no-web"], ("BASTION_WEB", "false"), False),
    "secure_cookies": (["--secure-cookies"], ("BASTION_SECURE_COOKIES", "true"), True),
    "docs": (["--docs"], ("BASTION_DOCS", "true"), True),
    "workers": (["--workers", "3"], ("BASTION_WORKERS", "3"), 3),
    "metrics_dir": (
        ["--metrics-dir", "metrics"],
        ("BASTION_METRICS_DIR", "metrics"),
        Path("metrics"),
    ),
    "llm": (
        ["--llm", "http://127.0.0.1:9/v1", "--llm-model", "m"],
        ("BASTION_LLM", "http://127.0.0.1:9/v1"),
        "http://127.0.0.1:9/v1",
    ),
}
FILE_SETTINGS = {"home": "BASTION_HOME", "media_limits": "BASTION_MEDIA_LIMITS"}


class _Started(Exception):
    def __init__(self, settings: ServerSettings) -> None:
        self.settings = settings


@pytest.fixture
def settings_of(monkeypatch: pytest.MonkeyPatch) -> Any:
    """Run `bastion serve` with these arguments and environment up to building the app, and
    return the settings it was given (nothing listens)."""

    def fake_create_app(settings: ServerSettings, store: Any = None) -> Any:
        raise _Started(settings)

    def fake_serve_workers(settings: ServerSettings, *args: Any, **kwargs: Any) -> int:
        raise _Started(settings)

    monkeypatch.setattr(bastion.server.app, "create_app", fake_create_app)
    monkeypatch.setattr(bastion.server.workers, "serve_workers", fake_serve_workers)
    for name in [env for _, (env, _), _ in SETTINGS.values()] + list(FILE_SETTINGS.values()):
        monkeypatch.delenv(name, raising=False)

    def run(args: list[str], env: dict[str, str]) -> ServerSettings:
        result = CliRunner().invoke(app, ["serve", *args], env=env)
        assert isinstance(result.exception, _Started), result.output
        return result.exception.settings

    return run


def _value(settings: ServerSettings, field: str) -> Any:
    value = getattr(settings, field)
    return value.backend if field == "llm" else value


def test_every_server_setting_has_a_flag_and_an_environment_variable() -> None:
    assert set(SETTINGS) | set(FILE_SETTINGS) == set(ServerSettings.model_fields)


def test_each_flag_reaches_the_apps_settings(settings_of: Any, tmp_path: Path) -> None:
    limits = tmp_path / "limits.yaml"
    limits.write_text("max_pixels: 1000\n")
    args = [a for flags, _, _ in SETTINGS.values() for a in flags]
    settings = settings_of([*args, "--home", str(tmp_path), "--media-limits", str(limits)], {})
    for field, (_, _, expected) in SETTINGS.items():
        assert _value(settings, field) == expected, field
    assert settings.home == tmp_path and settings.media_limits.max_pixels == 1000
    assert settings.llm is not None and settings.llm.model == "m"


def test_each_environment_variable_reaches_the_apps_settings(
    settings_of: Any, tmp_path: Path
) -> None:
    limits = tmp_path / "limits.yaml"
    limits.write_text("max_pixels: 1000\n")
    env = dict(env_value for _, env_value, _ in SETTINGS.values())
    env |= {"BASTION_HOME": str(tmp_path), "BASTION_MEDIA_LIMITS": str(limits)}
    settings = settings_of([], env)
    for field, (_, _, expected) in SETTINGS.items():
        assert _value(settings, field) == expected, field
    assert settings.home == tmp_path and settings.media_limits.max_pixels == 1000


def test_without_flags_the_settings_are_the_defaults(settings_of: Any, tmp_path: Path) -> None:
    settings = settings_of(["--home", str(tmp_path)], {})
    assert settings == ServerSettings(home=tmp_path)


def test_an_unknown_detector_is_refused_before_the_service_starts(
    settings_of: Any, tmp_path: Path
) -> None:
    result = CliRunner().invoke(app, ["serve", "--home", str(tmp_path), "--detector", "nope"])
    assert isinstance(result.exception, InputError), result.output
    message = str(result.exception)
    assert "unknown detector 'nope'" in message and "zero-shot" in message


def test_help_and_readme_list_every_variable() -> None:
    result = CliRunner().invoke(app, ["serve", "--help"], env={"COLUMNS": "300"})
    readme = README.read_text()
    for name in [env for _, (env, _), _ in SETTINGS.values()] + list(FILE_SETTINGS.values()):
        assert name in result.output, name
        assert f"`{name}`" in readme, name
