"""The LLM policy judge: large models read the policy and judge content, with reasons."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from bastion.errors import InputError
from bastion.judge.schema import Judgement, StepAnswer, check_judgement, parse_judgement

if TYPE_CHECKING:
    from bastion.judge.backend import JudgeBackend
    from bastion.judge.judge import JudgementCache, JudgeResult, LabelledExample, LLMJudge

# Loaded on first use: they compute with NumPy, which `bastion --help` and the settings that
# name a judge (`bastion.judge.settings`) do not need.
_LAZY = {
    "JudgeBackend": "bastion.judge.backend",
    "JudgementCache": "bastion.judge.judge",
    "JudgeResult": "bastion.judge.judge",
    "LabelledExample": "bastion.judge.judge",
    "LLMJudge": "bastion.judge.judge",
}

__all__ = [
    "JudgeBackend",
    "JudgeResult",
    "Judgement",
    "JudgementCache",
    "LLMJudge",
    "LabelledExample",
    "StepAnswer",
    "backend_from_spec",
    "check_judgement",
    "parse_judgement",
]


def backend_from_spec(
    spec: str,
    *,
    model: str | None = None,
    api_key: str | None = None,
    timeout_s: float = 60.0,
    max_retries: int = 3,
    concurrency: int = 8,
    vision: bool = False,
) -> JudgeBackend:
    """ "local" (the packaged Gemma 3 270M), "local:DIR" (a transformers model directory), or the
    base URL of an OpenAI-compatible server ("http://localhost:8000/v1")."""
    if spec == "local" or spec.startswith("local:"):
        from bastion.judge.local_backend import LocalBackend

        path = spec.split(":", 1)[1] if ":" in spec else None
        return LocalBackend(Path(path) if path else None)
    if spec.startswith(("http://", "https://")):
        from bastion.judge.openai_backend import OpenAIBackend

        return OpenAIBackend(
            spec,
            model,
            api_key=api_key,
            timeout_s=timeout_s,
            max_retries=max_retries,
            concurrency=concurrency,
            vision=vision,
        )
    raise InputError(
        f"LLM backend '{spec}' is not 'local', 'local:MODEL_DIR' or an http(s) URL of an "
        "OpenAI-compatible server (e.g. http://localhost:8000/v1)"
    )


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'bastion.judge' has no attribute {name!r}")
