"""The one interface every LLM backend implements: chat completions, and scored choices.

`chat` asks for a free answer (the judge asks for JSON, constrained by a schema where the
backend can); `choose` asks a question about the content and returns the log-probability of
each allowed answer, from the next-token distribution. Choice scores give a usable probability
even from a small model that cannot write a valid JSON object, and they cost one output token.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np


@dataclass(frozen=True)
class ChatRequest:
    """A system prompt, the user's content (with PNG images for vision models), and optionally
    earlier turns (a repair retry sends the bad answer back with the problems)."""

    system: str
    user: str
    images: tuple[bytes, ...] = ()
    turns: tuple[tuple[str, str], ...] = ()
    json_schema: dict[str, Any] | None = None
    max_tokens: int = 512


@dataclass(frozen=True)
class ChoiceRequest:
    """Questions about one piece of content, each with the answers it allows."""

    system: str
    user: str
    questions: tuple[tuple[str, tuple[str, ...]], ...]
    images: tuple[bytes, ...] = ()


@dataclass
class Usage:
    """What calls cost: tokens in and out (as the server counts them), seconds, calls made."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_s: float = 0.0
    calls: int = 0
    retries: int = 0

    def add(self, other: Usage) -> Usage:
        self.prompt_tokens += other.prompt_tokens
        self.completion_tokens += other.completion_tokens
        self.latency_s += other.latency_s
        self.calls += other.calls
        self.retries += other.retries
        return self


@dataclass
class ChatReply:
    text: str | None
    usage: Usage = field(default_factory=Usage)
    error: str | None = None


@dataclass
class ChoiceReply:
    """Per question, log P(answer) normalised over that question's answers (empty on error)."""

    logprobs: list[np.ndarray]
    usage: Usage = field(default_factory=Usage)
    error: str | None = None


@runtime_checkable
class JudgeBackend(Protocol):
    """Anything that can complete chats and score choices, in batches, can back the judge.

    `name` identifies the model (it keys the judgement cache); `vision` says whether images may
    be sent; `constrained` whether `json_schema` is enforced while decoding.
    """

    name: str
    vision: bool
    constrained: bool

    def chat(self, requests: Sequence[ChatRequest]) -> list[ChatReply]: ...

    def choose(self, requests: Sequence[ChoiceRequest]) -> list[ChoiceReply]: ...


def normalise(logprobs: Sequence[float]) -> np.ndarray:
    """Log-probabilities renormalised over the allowed answers (a log-softmax)."""
    values = np.asarray(logprobs, dtype=float)
    top = np.max(values)
    out: np.ndarray = values - (top + np.log(np.exp(values - top).sum()))
    return out


def choice_prompt(question: str, answers: Sequence[str]) -> str:
    """How a decision step is asked when its answers are scored."""
    return f"Question: {question}\nAnswer with one of: {', '.join(answers)}.\nAnswer:"
