"""How the HTTP service runs: `ServerSettings`, every field of which `bastion serve` sets by a
flag and an environment variable (`BASTION_...`).

Kept apart from `bastion.server.app`, which imports FastAPI and the moderator, so the command
line can read the defaults (and show them in `--help`) without loading the service.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

from pydantic import BaseModel, ConfigDict, Field

from bastion.cpus import available_cpus
from bastion.judge.settings import JudgeSettings
from bastion.media.limits import MediaLimits
from bastion.store.paths import bastion_home

MAX_JSON_DEPTH: Final = 64
"""How deeply a JSON body may nest, by default. A moderation request nests four levels before
an item's metadata; a body deeper than this is refused with a 400 naming the limit, before it
is parsed (deep nesting costs the parser recursion and can exhaust it)."""


class ServerSettings(BaseModel):
    """How the service runs; every field has a safe default."""

    model_config = ConfigDict(extra="forbid")

    home: Path = Field(default_factory=bastion_home, description="$BASTION_HOME or ./bastion-data")
    default_policy: str = "openai"
    default_model: str = "default"
    detectors: list[str] = Field(
        default_factory=list,
        description="detectors every model runs beside its own, by registered name",
    )
    require_auth: bool = True
    max_body_bytes: int = Field(20_000_000, gt=0)
    rate_limit_per_minute: int | None = Field(6_000, gt=0)
    cors_origins: list[str] = Field(default_factory=list)
    log_content: bool = Field(False, description="also store the text of each item in the log")
    preload: bool = Field(True, description="load the default model at start (readyz waits)")
    media_limits: MediaLimits = Field(default_factory=MediaLimits)
    runtime: str | None = Field(
        None, description="auto (int8 ONNX where checked), onnx or torch; None: $BASTION_RUNTIME"
    )
    batch_wait_ms: float = Field(
        0.0,
        ge=0,
        description="how long a lone request waits for others to share its batch (0: it does "
        "not wait; requests that queue while a batch runs still share the next one)",
    )
    batch_max_items: int = Field(128, gt=0, description="most items in one model call")
    key_cache_s: float = Field(
        5.0, ge=0, description="how long a key found live is trusted without a database read"
    )
    llm: JudgeSettings | None = Field(
        None, description="the LLM judge cascade on every model (off when None)"
    )
    web: bool = Field(True, description="serve the annotation and review web app under /ui")
    secure_cookies: bool = Field(
        False, description="mark the web app's session cookie Secure (set it behind HTTPS)"
    )
    docs: bool = Field(
        False,
        description="serve the interactive API docs at /docs and /redoc (their scripts come "
        "from a CDN, so a browser offline cannot show them; /openapi.json is always served)",
    )
    max_json_depth: int = Field(
        MAX_JSON_DEPTH, gt=0, le=500, description="deepest nesting a JSON body may have"
    )
    workers: int = Field(
        default_factory=available_cpus,
        gt=0,
        description="worker processes serving one port, each with its own model (default: one "
        "per CPU); rate limits, the log-in throttle and the decision log are shared through "
        "the store, so they hold across workers",
    )
    metrics_dir: Path | None = Field(
        None,
        description="with several workers, the directory where each writes its metrics for "
        "/metrics to sum (Prometheus multiprocess mode); None: a fresh temporary directory "
        "per start. With one worker it is not used",
    )
