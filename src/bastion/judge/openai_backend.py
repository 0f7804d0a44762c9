"""An LLM judge backend for any OpenAI-compatible chat-completions server.

vLLM, llama.cpp's server, Ollama and hosted APIs all speak `POST {base_url}/chat/completions`.
Images go as `image_url` parts holding a data URI (nothing is fetched by URL). The JSON answer
is constrained with `response_format: {"type": "json_schema", ...}`, which vLLM (guided
decoding), llama.cpp (grammar from schema) and OpenAI enforce while decoding. Choice scores use
`logprobs` / `top_logprobs` of a one-token answer.

Calls run on a thread pool of `concurrency` workers; each retries timeouts, connection errors,
429 and 5xx with exponential backoff (honouring Retry-After), and gives up with an error after
`max_retries`. Client errors (400, 401, 404) are not retried: they will not get better.
"""

from __future__ import annotations

import base64
import contextlib
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import httpx
import numpy as np

from bastion.errors import ModelError
from bastion.judge.backend import (
    ChatReply,
    ChatRequest,
    ChoiceReply,
    ChoiceRequest,
    Usage,
    choice_prompt,
    normalise,
)

RETRY_STATUS = frozenset({408, 429, 500, 502, 503, 504})
TOP_LOGPROBS = 20
MISSING_LOGPROB = -30.0
"""Log-probability given to an answer that is not among the top tokens (effectively zero)."""

T = TypeVar("T")


class CallFailed(Exception):
    """A call that failed for good (after retries, or a client error)."""


class OpenAIBackend:
    """Chat completions and choice scores from an OpenAI-compatible server.

    `base_url` is the API root, e.g. "http://localhost:8000/v1". `model` defaults to the first
    model the server lists. `api_key` defaults to $BASTION_LLM_API_KEY, then $OPENAI_API_KEY.
    """

    constrained = True

    def __init__(
        self,
        base_url: str,
        model: str | None = None,
        *,
        api_key: str | None = None,
        timeout_s: float = 60.0,
        max_retries: int = 3,
        backoff_s: float = 1.0,
        concurrency: int = 8,
        vision: bool = False,
        temperature: float = 0.0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.concurrency = max(1, concurrency)
        self.vision = vision
        self.temperature = temperature
        key = api_key or os.environ.get("BASTION_LLM_API_KEY") or os.environ.get("OPENAI_API_KEY")
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self._client = httpx.Client(
            base_url=self.base_url,
            headers=headers,
            timeout=timeout_s,
            limits=httpx.Limits(max_connections=self.concurrency),
        )
        self.model = model or self._first_model()
        self.name = f"openai:{self.model}"

    def close(self) -> None:
        self._client.close()

    def _first_model(self) -> str:
        try:
            body = self._post_or_get("GET", "/models", None)
            return str(body["data"][0]["id"])
        except (CallFailed, KeyError, IndexError, TypeError) as exc:
            raise ModelError(
                f"could not list the models at {self.base_url}/models ({exc}); pass the model "
                "name (--llm-model)"
            ) from exc

    def chat(self, requests: Sequence[ChatRequest]) -> list[ChatReply]:
        return self._map(self._chat_one, requests)

    def choose(self, requests: Sequence[ChoiceRequest]) -> list[ChoiceReply]:
        return self._map(self._choose_one, requests)

    def _map(self, fn: Callable[[Any], T], requests: Sequence[Any]) -> list[T]:
        if len(requests) <= 1 or self.concurrency == 1:
            return [fn(r) for r in requests]
        with ThreadPoolExecutor(min(self.concurrency, len(requests))) as pool:
            return list(pool.map(fn, requests))

    def _messages(
        self, system: str, user: str, images: Sequence[bytes], turns: Sequence[tuple[str, str]]
    ) -> list[dict[str, Any]]:
        content: str | list[dict[str, Any]] = user
        if images:
            if not self.vision:
                raise CallFailed(
                    f"model {self.model} was not declared a vision model; images cannot be sent"
                )
            content = [{"type": "text", "text": user}] + [
                {"type": "image_url", "image_url": {"url": _data_uri(png)}} for png in images
            ]
        messages: list[dict[str, Any]] = [
            {"role": "system", "content": system},
            {"role": "user", "content": content},
        ]
        messages += [{"role": role, "content": text} for role, text in turns]
        return messages

    def _chat_one(self, request: ChatRequest) -> ChatReply:
        usage = Usage()
        try:
            payload: dict[str, Any] = {
                "model": self.model,
                "messages": self._messages(
                    request.system, request.user, request.images, request.turns
                ),
                "temperature": self.temperature,
                "max_tokens": request.max_tokens,
            }
            if request.json_schema is not None:
                payload["response_format"] = {
                    "type": "json_schema",
                    "json_schema": {"name": "judgement", "schema": request.json_schema},
                }
            body = self._call(payload, usage)
            text = body["choices"][0]["message"]["content"]
            if not isinstance(text, str):
                raise CallFailed("the reply has no message content")
            return ChatReply(text, usage)
        except (CallFailed, KeyError, IndexError, TypeError) as exc:
            return ChatReply(None, usage, _describe(exc))

    def _choose_one(self, request: ChoiceRequest) -> ChoiceReply:
        usage = Usage()
        scores: list[np.ndarray] = []
        try:
            for question, answers in request.questions:
                payload = {
                    "model": self.model,
                    "messages": self._messages(
                        request.system,
                        request.user + "\n\n" + choice_prompt(question, answers),
                        request.images,
                        (),
                    ),
                    "temperature": 0.0,
                    "max_tokens": 1,
                    "logprobs": True,
                    "top_logprobs": TOP_LOGPROBS,
                }
                body = self._call(payload, usage)
                top = body["choices"][0]["logprobs"]["content"][0]["top_logprobs"]
                scores.append(normalise(_answer_logprobs(top, answers)))
            return ChoiceReply(scores, usage)
        except (CallFailed, KeyError, IndexError, TypeError) as exc:
            return ChoiceReply([], usage, _describe(exc))

    def _call(self, payload: dict[str, Any], usage: Usage) -> dict[str, Any]:
        body = self._post_or_get("POST", "/chat/completions", payload, usage)
        counted = body.get("usage") or {}
        usage.prompt_tokens += int(counted.get("prompt_tokens") or 0)
        usage.completion_tokens += int(counted.get("completion_tokens") or 0)
        return body

    def _post_or_get(
        self, method: str, path: str, payload: dict[str, Any] | None, usage: Usage | None = None
    ) -> dict[str, Any]:
        """The reply's JSON body. Every attempt, failed or not, counts in `usage` as a call and
        its seconds as latency; attempts after the first also count as retries."""
        usage = usage if usage is not None else Usage()
        last = ""
        for attempt in range(self.max_retries + 1):
            usage.calls += 1
            usage.retries += attempt > 0
            start = time.perf_counter()
            try:
                response = self._client.request(method, path, json=payload)
            except (httpx.TimeoutException, httpx.TransportError) as exc:
                usage.latency_s += time.perf_counter() - start
                last = (
                    f"timed out after {self.timeout_s:g} s"
                    if isinstance(exc, httpx.TimeoutException)
                    else f"connection failed: {exc}"
                )
                self._sleep(attempt, None)
                continue
            usage.latency_s += time.perf_counter() - start
            if response.status_code in RETRY_STATUS:
                last = f"HTTP {response.status_code}: {response.text[:200]}"
                self._sleep(attempt, response.headers.get("retry-after"))
                continue
            if response.status_code >= 400:
                raise CallFailed(f"HTTP {response.status_code}: {response.text[:300]}")
            try:
                body = response.json()
            except ValueError as exc:
                raise CallFailed(f"the server's reply is not JSON: {response.text[:200]}") from exc
            if not isinstance(body, dict):
                raise CallFailed("the server's reply is not a JSON object")
            return body
        raise CallFailed(
            f"{method} {self.base_url}{path} failed after {self.max_retries + 1} tries: {last}"
        )

    def _sleep(self, attempt: int, retry_after: str | None) -> None:
        if attempt >= self.max_retries:
            return
        delay = self.backoff_s * 2**attempt
        if retry_after:
            with contextlib.suppress(ValueError):
                delay = max(delay, min(float(retry_after), 60.0))
        time.sleep(delay)


def _answer_logprobs(top: list[dict[str, Any]], answers: Sequence[str]) -> list[float]:
    """Each answer's log-probability: the best top token that starts it ("Yes", " no", "N")."""
    found = []
    for answer in answers:
        wanted = answer.strip().lower()
        matches = [
            float(t["logprob"])
            for t in top
            if (token := str(t["token"]).strip().lower()) and wanted.startswith(token)
        ]
        found.append(max(matches, default=MISSING_LOGPROB))
    return found


def _data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _describe(exc: Exception) -> str:
    if isinstance(exc, CallFailed):
        return str(exc)
    return f"the server's reply is not a chat completion ({type(exc).__name__}: {exc})"
