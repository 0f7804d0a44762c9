"""Fixtures for the judge tests: a fake OpenAI-compatible server, the starter policy, and judges
built on the real `OpenAIBackend` talking to that server."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
from fake_llm import FakeLLM, MakeJudge, serve

import bastion.policy
from bastion.judge import LLMJudge
from bastion.judge.openai_backend import OpenAIBackend
from bastion.policy import Category, LoadedPolicy, load_policy

STARTER = Path(bastion.policy.__file__).parent / "starter.yaml"
THREATS = "harassment/threatening"


@pytest.fixture
def fake_llm() -> Iterator[FakeLLM]:
    yield from serve()


@pytest.fixture(scope="session")
def starter() -> LoadedPolicy:
    return load_policy(STARTER)


@pytest.fixture(scope="session")
def threats(starter: LoadedPolicy) -> Category:
    """The starter policy's one category: decision steps target -> harm -> serious."""
    return starter.policy.category(THREATS)


@pytest.fixture
def make_backend(fake_llm: FakeLLM) -> Iterator[Callable[..., OpenAIBackend]]:
    """OpenAIBackends on the fake server: short timeouts, tiny backoff; keywords override."""
    made: list[OpenAIBackend] = []

    def build(**options: object) -> OpenAIBackend:
        settings: dict[str, object] = {
            "model": "test-model",
            "timeout_s": 2.0,
            "max_retries": 2,
            "backoff_s": 0.01,
            "concurrency": 4,
        } | options
        backend = OpenAIBackend(fake_llm.url, **settings)  # type: ignore[arg-type]
        made.append(backend)
        return backend

    yield build
    for backend in made:
        backend.close()


@pytest.fixture
def make_judge(starter: LoadedPolicy, make_backend: Callable[..., OpenAIBackend]) -> MakeJudge:
    """`make_judge(mode=..., cache=..., policy=..., **backend_options)`: a judge on the fake server."""

    def build(
        *, mode: str = "generate", policy: LoadedPolicy | None = None, **options: object
    ) -> LLMJudge:
        judge_options = {k: options.pop(k) for k in ("cache",) if k in options}
        return LLMJudge(
            policy or starter,
            make_backend(**options),
            mode=mode,  # type: ignore[arg-type]
            **judge_options,  # type: ignore[arg-type]
        )

    return build


@pytest.fixture
def backoff(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The backend's backoff sleeps, recorded instead of slept."""
    slept: list[float] = []
    clock = SimpleNamespace(perf_counter=time.perf_counter, sleep=slept.append)
    monkeypatch.setattr("bastion.judge.openai_backend.time", clock)
    return slept
