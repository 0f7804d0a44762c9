"""`bastion serve` and `bastion keys`: run the HTTP service, and manage its API keys."""

from __future__ import annotations

import copy
import os
import signal
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from bastion.cli.judge import BandOption, CacheOption, LLMModelOption, judge_settings, parse_bands
from bastion.cli.output import DetectorOption, console
from bastion.errors import InputError
from bastion.media.limits import MediaLimits, load_media_limits
from bastion.server.settings import ServerSettings
from bastion.store.keys import SCOPES_BY_ROLE, Role

keys_app = typer.Typer(help="Create, list and revoke API keys.", no_args_is_help=True)

DRAIN_TIMEOUT_S = 30
"""How long a stop signal waits for requests in flight to finish before cancelling them."""

STARTUP_FAILURE = 3
"""Exit status, as uvicorn's, when the server could not start (port taken, model not loading)."""

HomeOption = Annotated[
    Path | None,
    typer.Option("--home", help="Data directory (default $BASTION_HOME or ./bastion-data)."),
]


def _env(option: Any, name: str) -> Any:
    """A shared option (an `Annotated[type, typer.Option(...)]`) that `bastion serve` also reads
    from the environment variable `name`, listed in its --help."""
    info = copy.copy(option.__metadata__[0])
    info.envvar, info.show_envvar = name, True
    return Annotated[option.__origin__, info]


def _default(field: str) -> Any:
    """The default of one ServerSettings field: the settings hold it, the flags show it."""
    return ServerSettings.model_fields[field].get_default(call_default_factory=True)


def _setting(*flags: str, env: str, help: str, **more: Any) -> Any:
    return typer.Option(*flags, envvar=env, show_envvar=True, help=help, **more)


def serve_command(
    host: Annotated[
        str, _setting("--host", env="BASTION_HOST", help="Address to listen on.")
    ] = "127.0.0.1",
    port: Annotated[
        int, _setting("--port", env="BASTION_PORT", min=1, max=65535, help="Port to listen on.")
    ] = 8000,
    home: _env(HomeOption, "BASTION_HOME") = None,  # type: ignore[valid-type]
    policy: Annotated[
        str,
        _setting("--policy", env="BASTION_POLICY", help="Default policy for requests naming none."),
    ] = _default("default_policy"),
    model: Annotated[
        str, _setting("--model", env="BASTION_MODEL", help="Default model.")
    ] = _default("default_model"),
    detector: _env(DetectorOption, "BASTION_DETECTORS") = None,  # type: ignore[valid-type]
    auth: Annotated[
        bool,
        _setting(
            "--auth/--no-auth",
            env="BASTION_AUTH",
            help="Require API keys; --no-auth serves without them (local experiments only).",
        ),
    ] = _default("require_auth"),
    max_body_bytes: Annotated[
        int,
        _setting(
            "--max-body-bytes",
            env="BASTION_MAX_BODY_BYTES",
            min=1,
            help="Largest request body; a larger one gets 413.",
        ),
    ] = _default("max_body_bytes"),
    max_json_depth: Annotated[
        int,
        _setting(
            "--max-json-depth",
            env="BASTION_MAX_JSON_DEPTH",
            min=1,
            max=500,
            help="Deepest nesting a JSON body may have; a deeper one gets 400.",
        ),
    ] = _default("max_json_depth"),
    rate_limit: Annotated[
        int,
        _setting(
            "--rate-limit",
            env="BASTION_RATE_LIMIT",
            min=0,
            help="Requests a minute per API key (bursts up to that many); 0 turns it off.",
        ),
    ] = _default("rate_limit_per_minute") or 0,
    cors_origin: Annotated[
        list[str] | None,
        _setting(
            "--cors-origin",
            env="BASTION_CORS_ORIGINS",
            help="Allow browser calls from this origin (repeat the flag; in the variable, "
            "separate origins by spaces).",
        ),
    ] = None,
    log_content: Annotated[
        bool,
        _setting(
            "--log-content/--no-log-content",
            env="BASTION_LOG_CONTENT",
            help="Store each item's text in the decision log.",
        ),
    ] = _default("log_content"),
    preload: Annotated[
        bool,
        _setting(
            "--preload/--no-preload",
            env="BASTION_PRELOAD",
            help="Load the default model at start (/readyz answers 503 until it is loaded).",
        ),
    ] = _default("preload"),
    media_limits: Annotated[
        Path | None,
        _setting(
            "--media-limits",
            env="BASTION_MEDIA_LIMITS",
            exists=True,
            dir_okay=False,
            help="YAML file of media limits (max_pixels, max_video_seconds, decode_timeout_s, "
            "...); unset: the built-in limits.",
        ),
    ] = None,
    runtime: Annotated[
        str | None,
        _setting(
            "--runtime",
            env="BASTION_RUNTIME",
            help="Encoder runtime: auto (int8 ONNX where the model's check passed), onnx, torch "
            "(default auto).",
        ),
    ] = None,
    batch_wait_ms: Annotated[
        float,
        _setting(
            "--batch-wait-ms",
            env="BASTION_BATCH_WAIT_MS",
            min=0,
            help="How long a lone request waits to share a model call.",
        ),
    ] = _default("batch_wait_ms"),
    batch_max_items: Annotated[
        int,
        _setting(
            "--batch-max-items",
            env="BASTION_BATCH_MAX_ITEMS",
            min=1,
            help="Most items in one model call.",
        ),
    ] = _default("batch_max_items"),
    key_cache_s: Annotated[
        float,
        _setting(
            "--key-cache-s",
            env="BASTION_KEY_CACHE_S",
            min=0,
            help="Seconds a key found live is trusted without a database read (a key revoked "
            "by another process works that long here); 0 reads the database every time.",
        ),
    ] = _default("key_cache_s"),
    web: Annotated[
        bool,
        _setting(
            "--web/--no-web",
            env="BASTION_WEB",
            help="Serve the annotation and review web app under /ui and /login.",
        ),
    ] = _default("web"),
    secure_cookies: Annotated[
        bool,
        _setting(
            "--secure-cookies/--no-secure-cookies",
            env="BASTION_SECURE_COOKIES",
            help="Mark the web app's session cookie Secure (turn it on behind HTTPS).",
        ),
    ] = _default("secure_cookies"),
    docs: Annotated[
        bool,
        _setting(
            "--docs/--no-docs",
            env="BASTION_DOCS",
            help="Serve interactive API docs at /docs and /redoc; their scripts load from a "
            "CDN, so a browser offline cannot show them (/openapi.json is always served).",
        ),
    ] = _default("docs"),
    workers: Annotated[
        int,
        _setting(
            "--workers",
            env="BASTION_WORKERS",
            min=1,
            help="Worker processes serving the port, each with its own model (default: one per "
            "CPU). Rate limits, the log-in throttle and the decision log are shared through the "
            "database, so they hold across workers.",
        ),
    ] = _default("workers"),
    metrics_dir: Annotated[
        Path | None,
        _setting(
            "--metrics-dir",
            env="BASTION_METRICS_DIR",
            file_okay=False,
            help="With several workers: where each writes its metrics for /metrics to sum "
            "(emptied of old metric files at start; default: a fresh temporary directory).",
        ),
    ] = None,
    llm: Annotated[
        str | None,
        _setting(
            "--llm",
            env="BASTION_LLM",
            help="Turn on the LLM cascade for every model: 'local' or an OpenAI-compatible URL.",
        ),
    ] = None,
    llm_model: _env(LLMModelOption, "BASTION_LLM_MODEL") = None,  # type: ignore[valid-type]
    llm_band: _env(BandOption, "BASTION_LLM_BAND") = None,  # type: ignore[valid-type]
    llm_cache: _env(CacheOption, "BASTION_LLM_CACHE") = None,  # type: ignore[valid-type]
) -> None:
    """Serve the moderation API: POST /v1/moderations (OpenAI-compatible) and /v1/moderate.

    On first start with no keys, an admin key is created and printed once:

      admin API key: bst_...

    Example: curl -H "Authorization: Bearer $KEY" -d '{"input": "some text"}'
    -H 'Content-Type: application/json' http://127.0.0.1:8000/v1/moderations

    SIGTERM or Ctrl-C stops it gracefully: new connections are refused at once, requests in
    flight finish and are logged (for up to 30 s), then it exits with status 0.

    With --workers N above 1, N processes serve the port, each with its own model; the
    command's process supervises them (replaces one that dies; stops them all on SIGTERM).
    """
    import uvicorn

    from bastion.detectors import registry
    from bastion.models.onnx_runtime import SPINNING_ENV
    from bastion.server.app import create_app
    from bastion.server.workers import FreezeAfterStartup
    from bastion.store import Store, bastion_home

    # A service answers small requests between which ONNX Runtime's threads would spin idle on
    # cores the HTTP and batching threads need (see `session_options`); $BASTION_ORT_SPINNING=1
    # turns spinning back on.
    os.environ.setdefault(SPINNING_ENV, "0")
    registry.check(detector or [])  # a misspelt name fails here, not at the first request
    root = home or bastion_home()
    settings = ServerSettings(
        home=root,
        default_policy=policy,
        default_model=model,
        detectors=list(detector or []),
        require_auth=auth,
        max_body_bytes=max_body_bytes,
        max_json_depth=max_json_depth,
        rate_limit_per_minute=rate_limit or None,
        cors_origins=list(cors_origin or []),
        log_content=log_content,
        preload=preload,
        media_limits=load_media_limits(media_limits) if media_limits else MediaLimits(),
        runtime=runtime,
        batch_wait_ms=batch_wait_ms,
        batch_max_items=batch_max_items,
        key_cache_s=key_cache_s,
        llm=judge_settings(backend=llm, model=llm_model, **parse_bands(llm_band), cache=llm_cache)
        if llm
        else None,
        web=web,
        secure_cookies=secure_cookies,
        docs=docs,
        workers=workers,
        metrics_dir=metrics_dir,
    )
    store = Store.open(root)
    if auth and store.count_keys() == 0:
        _, secret = store.create_key("admin (created at first start)", Role.admin)
        typer.echo(f"admin API key: {secret}")
        typer.echo("(shown once; create more with `bastion keys create`)")
    if workers > 1:
        store.close()  # each worker opens its own
        _serve_workers(settings, host, port)
        return
    app = FreezeAfterStartup(create_app(settings, store))
    config = uvicorn.Config(
        app, host=host, port=port, log_level="warning", timeout_graceful_shutdown=DRAIN_TIMEOUT_S
    )
    server = uvicorn.Server(config)
    # After draining, uvicorn re-raises the stop signal under the handler it found installed,
    # so with the default one the process would die of the SIGTERM it already handled (status
    # -15 / 143) however cleanly it drained. Installing uvicorn's own handler first makes that
    # second delivery a no-op: `serve` returns, closes the store, and exits 0. (It also covers a
    # SIGTERM that lands before uvicorn takes the signals: the server then stops right away.)
    previous = signal.signal(signal.SIGTERM, server.handle_exit)
    typer.echo(f"Bastion serving on http://{host}:{port} (data in {root})")
    try:
        server.run()
    except KeyboardInterrupt:  # Ctrl-C: uvicorn re-raises SIGINT once it has drained
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        store.close()
    if not server.started:  # e.g. the port is taken; uvicorn has logged why
        raise typer.Exit(STARTUP_FAILURE)


def _serve_workers(settings: ServerSettings, host: str, port: int) -> None:
    from bastion.server.workers import serve_workers

    typer.echo(
        f"Bastion serving on http://{host}:{port} with {settings.workers} workers "
        f"(data in {settings.home})"
    )
    status = serve_workers(settings, host, port, drain_timeout_s=DRAIN_TIMEOUT_S)
    if status:
        raise typer.Exit(status)


_ROLE_SCOPES = "; ".join(
    f"{role.value}: {', '.join(sorted(scopes))}" for role, scopes in SCOPES_BY_ROLE.items()
)


@keys_app.command("create")
def create_key(
    name: Annotated[str, typer.Option(help="What the key is for.")],
    role: Annotated[
        Role, typer.Option(help=f"What the key may do; the scopes of each role: {_ROLE_SCOPES}.")
    ] = Role.moderator,
    project: Annotated[
        str, typer.Option(help="Project the key's decisions are logged under.")
    ] = "default",
    home: HomeOption = None,
) -> None:
    """Create an API key and print it once (only its hash is stored)."""
    from bastion.store import Store

    store = Store.open(home)
    key, secret = store.create_key(name, role, project)
    typer.echo(f"{key.role.value} API key {key.id}: {secret}")
    store.close()


@keys_app.command("list")
def list_keys(
    home: HomeOption = None,
    all_keys: Annotated[bool, typer.Option("--all", help="Include revoked keys.")] = False,
) -> None:
    """List API keys (prefixes only; secrets are never stored)."""
    from bastion.store import Store

    store = Store.open(home)
    table = Table("id", "name", "prefix", "role", "project", "created", "revoked")
    for k in store.list_keys(include_revoked=all_keys):
        table.add_row(
            k.id,
            k.name,
            k.prefix + "…",
            k.role.value,
            k.project,
            k.created_at.strftime("%Y-%m-%d %H:%M"),
            k.revoked_at.strftime("%Y-%m-%d %H:%M") if k.revoked_at else "",
        )
    console.print(table)
    store.close()


@keys_app.command("revoke")
def revoke_key(
    key_id: Annotated[str, typer.Argument(help="The key's id (from `bastion keys list`).")],
    home: HomeOption = None,
) -> None:
    """Revoke an API key; requests with it are refused from now on."""
    from bastion.store import Store

    store = Store.open(home)
    if not store.revoke_key(key_id):
        raise InputError(f"no active key with id '{key_id}'")
    typer.echo(f"revoked {key_id}")
    store.close()
