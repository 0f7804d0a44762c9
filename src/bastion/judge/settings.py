"""The LLM judge and its cascade as configuration: `JudgeSettings`, and the backends it loads.

Kept apart from `bastion.judge.cascade` and `bastion.judge.judge`, which compute with NumPy, so
the command line and the server's settings can read and check the options without them.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from bastion.errors import InputError

if TYPE_CHECKING:
    from bastion.judge.backend import JudgeBackend
    from bastion.judge.cascade import LLMCascade
    from bastion.judge.judge import LLMJudge
    from bastion.policy import LoadedPolicy

DEFAULT_BAND = (0.2, 0.8)


class JudgeSettings(BaseModel):
    """The LLM judge and its cascade as configuration (the CLI's --llm options, the server's
    `llm` setting): `backend` is "local", "local:MODEL_DIR" or an OpenAI-compatible base URL."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    backend: str
    model: str | None = None
    mode: Literal["auto", "generate", "score"] = "auto"
    few_shot: int = Field(0, ge=0)
    band: tuple[float, float] = DEFAULT_BAND
    bands: dict[str, tuple[float, float]] = Field(
        default_factory=dict, description="per-category uncertain bands"
    )
    weight: float = Field(1.0, ge=0)
    untrained: bool = False
    cache: Path | None = Field(None, description="SQLite file of judgements")
    timeout_s: float = Field(60.0, gt=0)
    max_retries: int = Field(3, ge=0)
    concurrency: int = Field(8, ge=1)
    vision: bool = False

    @model_validator(mode="after")
    def _band_ordered(self) -> JudgeSettings:
        for name, (low, high) in {"default": self.band, **self.bands}.items():
            if not 0.0 <= low <= high <= 1.0:
                raise ValueError(
                    f"band for {name} ({low}, {high}) must satisfy 0 <= low <= high <= 1"
                )
        return self

    def build_backend(self) -> JudgeBackend:
        """The backend, loaded once per process for the same settings (a local model takes
        seconds to load and a gigabyte of memory; every policy's judge shares it)."""
        from bastion.judge import backend_from_spec

        key = (
            self.backend,
            self.model,
            self.timeout_s,
            self.max_retries,
            self.concurrency,
            self.vision,
        )
        with _BACKENDS_LOCK:
            if key not in _BACKENDS:
                _BACKENDS[key] = backend_from_spec(
                    self.backend,
                    model=self.model,
                    timeout_s=self.timeout_s,
                    max_retries=self.max_retries,
                    concurrency=self.concurrency,
                    vision=self.vision,
                )
            return _BACKENDS[key]

    def judge(self, policy: LoadedPolicy) -> LLMJudge:
        from bastion.judge.judge import JudgementCache, LLMJudge

        return LLMJudge(
            policy,
            self.build_backend(),
            mode=self.mode,
            few_shot=self.few_shot,
            cache=JudgementCache(self.cache) if self.cache is not None else None,
        )

    def cascade(self, policy: LoadedPolicy) -> LLMCascade:
        from bastion.judge.cascade import LLMCascade

        unknown = [c for c in self.bands if c not in policy.category_ids]
        if unknown:
            raise InputError(
                f"LLM band for unknown categor{'y' if len(unknown) == 1 else 'ies'} "
                f"{', '.join(unknown)}; policy {policy.version} has {', '.join(policy.category_ids)}"
            )
        return LLMCascade(
            self.judge(policy),
            band=self.band,
            bands=self.bands,
            weight=self.weight,
            untrained=self.untrained,
        )


_BACKENDS: dict[tuple[object, ...], JudgeBackend] = {}
_BACKENDS_LOCK = threading.Lock()
