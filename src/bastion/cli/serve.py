"""`bastion serve` and `bastion keys`: run the HTTP service, and manage its API keys."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from bastion.cli.judge import BandOption, CacheOption, LLMModelOption, judge_settings, parse_bands
from bastion.cli.output import console
from bastion.errors import InputError

keys_app = typer.Typer(help="Create, list and revoke API keys.", no_args_is_help=True)

DRAIN_TIMEOUT_S = 30
"""How long a stop signal waits for requests in flight to finish before cancelling them."""

STARTUP_FAILURE = 3
"""Exit status, as uvicorn's, when the server could not start (port taken, model not loading)."""

HomeOption = Annotated[
    Path | None,
    typer.Option("--home", help="Data directory (default $BASTION_HOME or ./bastion-data)."),
]


def serve_command(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")] = 8000,
    home: HomeOption = None,
    policy: Annotated[
        str, typer.Option(help="Default policy for requests that name none.")
    ] = "openai",
    model: Annotated[str, typer.Option(help="Default model.")] = "default",
    no_auth: Annotated[
        bool, typer.Option("--no-auth", help="Serve without API keys (local experiments only).")
    ] = False,
    cors_origin: Annotated[
        list[str] | None, typer.Option(help="Allow browser calls from this origin (repeatable).")
    ] = None,
    log_content: Annotated[
        bool, typer.Option(help="Store each item's text in the decision log.")
    ] = False,
    runtime: Annotated[
        str | None,
        typer.Option(
            help="Encoder runtime: auto (int8 ONNX where the model's check passed), onnx, torch "
            "(default $BASTION_RUNTIME or auto)."
        ),
    ] = None,
    batch_wait_ms: Annotated[
        float,
        typer.Option(min=0, help="How long a lone request waits to share a model call."),
    ] = 2.0,
    llm: Annotated[
        str | None,
        typer.Option(
            "--llm",
            help="Turn on the LLM cascade for every model: 'local' or an OpenAI-compatible URL.",
        ),
    ] = None,
    llm_model: LLMModelOption = None,
    llm_band: BandOption = None,
    llm_cache: CacheOption = None,
) -> None:
    """Serve the moderation API: POST /v1/moderations (OpenAI-compatible) and /v1/moderate.

    On first start with no keys, an admin key is created and printed once:

      admin API key: bst_...

    Example: curl -H "Authorization: Bearer $KEY" -d '{"input": "some text"}'
    -H 'Content-Type: application/json' http://127.0.0.1:8000/v1/moderations

    SIGTERM or Ctrl-C stops it gracefully: new connections are refused at once, requests in
    flight finish and are logged (for up to 30 s), then it exits with status 0.
    """
    import uvicorn

    from bastion.models.onnx_runtime import SPINNING_ENV
    from bastion.server.app import ServerSettings, create_app
    from bastion.store import Role, Store, bastion_home

    # A service answers small requests between which ONNX Runtime's threads would spin idle on
    # cores the HTTP and batching threads need (see `session_options`); $BASTION_ORT_SPINNING=1
    # turns spinning back on.
    os.environ.setdefault(SPINNING_ENV, "0")
    root = home or bastion_home()
    store = Store.open(root)
    if not no_auth and store.count_keys() == 0:
        _, secret = store.create_key("admin (created at first start)", Role.admin)
        typer.echo(f"admin API key: {secret}")
        typer.echo("(shown once; create more with `bastion keys create`)")
    settings = ServerSettings(
        home=root,
        default_policy=policy,
        default_model=model,
        require_auth=not no_auth,
        cors_origins=list(cors_origin or []),
        log_content=log_content,
        runtime=runtime,
        batch_wait_ms=batch_wait_ms,
        llm=judge_settings(backend=llm, model=llm_model, **parse_bands(llm_band), cache=llm_cache)
        if llm
        else None,
    )
    app = create_app(settings, store)
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


@keys_app.command("create")
def create_key(
    name: Annotated[str, typer.Option(help="What the key is for.")],
    role: Annotated[str, typer.Option(help="admin, moderator or reader.")] = "moderator",
    project: Annotated[
        str, typer.Option(help="Project the key's decisions are logged under.")
    ] = "default",
    home: HomeOption = None,
) -> None:
    """Create an API key and print it once (only its hash is stored)."""
    from bastion.store import Role, Store

    try:
        chosen = Role(role)
    except ValueError:
        raise InputError(f"unknown role '{role}': use admin, moderator or reader") from None
    store = Store.open(home)
    key, secret = store.create_key(name, chosen, project)
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
