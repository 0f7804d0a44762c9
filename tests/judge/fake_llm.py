"""A fake OpenAI-compatible LLM server for the judge tests: real HTTP on 127.0.0.1, scripted replies.

Each test scripts what the server answers, in order (`fake.script(...)`), or how it answers any
request (`fake.answer_with(...)`), and afterwards reads what it was sent (`fake.requests`) and
how many requests it was serving at once (`fake.max_in_flight`). It speaks just enough of the
protocol for `OpenAIBackend`: `GET /v1/models` and `POST /v1/chat/completions`, with `usage`
token counts and, for one-token choice answers, `logprobs.content[0].top_logprobs`. The judgements
it is scripted with (`threat_judgement`, `benign_judgement`) are right for the starter policy.
"""

from __future__ import annotations

import json
import math
import threading
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from bastion.items import Item
from bastion.judge import JudgeResult, LLMJudge

PROMPT_TOKENS = 120
COMPLETION_TOKENS = 30
"""The `usage` the server reports for every completion."""

THREAT = "I know where you live. Tomorrow I will hurt you badly."
BENIGN = "The court heard that he had threatened to hurt his neighbour."


def threat_judgement(**overrides: Any) -> dict[str, Any]:
    """A judgement of THREAT that is right for the starter policy's threat category."""
    answer: dict[str, Any] = {
        "violation": True,
        "categories": ["harassment/threatening"],
        "severity": 4,
        "rule_ids": ["direct-threat"],
        "confidence": 0.9,
        "decision_path": [
            {"step": "target", "answer": "yes", "evidence": "where you live"},
            {"step": "harm", "answer": "yes", "evidence": "I will  HURT you"},
            {"step": "serious", "answer": "yes", "evidence": ""},
        ],
        "rationale": "A direct threat against the reader.",
    }
    return answer | overrides


def judge_one(judge: LLMJudge, item: Item | str = THREAT) -> JudgeResult:
    """The judge's one result for one item (the starter policy has one category)."""
    [[result]] = judge.judge([item])
    return result


def benign_judgement(**overrides: Any) -> dict[str, Any]:
    """A judgement that ends at the first step: nobody is targeted."""
    answer: dict[str, Any] = {
        "violation": False,
        "categories": [],
        "severity": 0,
        "rule_ids": [],
        "confidence": 0.8,
        "decision_path": [{"step": "target", "answer": "no", "evidence": ""}],
        "rationale": "Reporting, not a threat.",
    }
    return answer | overrides


@dataclass(frozen=True)
class Reply:
    """One scripted answer: a completion (`content`, or `top_logprobs` for a scored choice), or an
    HTTP error `status` with `headers`, sent after `delay_s` seconds."""

    content: str | None = None
    top_logprobs: tuple[tuple[str, float], ...] = ()
    status: int = 200
    headers: tuple[tuple[str, str], ...] = ()
    delay_s: float = 0.0


def completion(content: str, *, delay_s: float = 0.0) -> Reply:
    return Reply(content=content, delay_s=delay_s)


def judgement_reply(judgement: dict[str, Any], *, delay_s: float = 0.0) -> Reply:
    return Reply(content=json.dumps(judgement), delay_s=delay_s)


def choice(probabilities: dict[str, float]) -> Reply:
    """A one-token answer whose top tokens have these probabilities (given as probabilities, sent
    as log-probabilities, as a server does)."""
    return Reply(top_logprobs=tuple((t, math.log(p)) for t, p in probabilities.items()))


def http_error(status: int, *, retry_after: str | None = None) -> Reply:
    headers = (("Retry-After", retry_after),) if retry_after is not None else ()
    return Reply(status=status, headers=headers)


def too_slow(delay_s: float) -> Reply:
    """No answer before the client gives up (the delay is longer than its timeout)."""
    return Reply(content="{}", delay_s=delay_s)


Responder = Callable[[dict[str, Any]], Reply]
MakeJudge = Callable[..., LLMJudge]
"""The `make_judge` fixture: a judge on the fake server (see conftest.py)."""


@dataclass
class FakeLLM:
    """The server's state: what it will answer, and what it saw."""

    url: str = ""
    models: list[str] = field(default_factory=lambda: ["first-model", "second-model"])
    requests: list[dict[str, Any]] = field(default_factory=list)
    max_in_flight: int = 0
    _queue: deque[Reply] = field(default_factory=deque)
    _responder: Responder | None = None
    _in_flight: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _closing: threading.Event = field(default_factory=threading.Event)

    def script(self, *replies: Reply) -> None:
        """Answer the next requests with these replies, in order."""
        self._queue.extend(replies)

    def answer_with(self, responder: Responder) -> None:
        """Answer every request the script does not cover with `responder(request_body)`."""
        self._responder = responder

    def _next_reply(self, body: dict[str, Any]) -> Reply:
        with self._lock:
            self.requests.append(body)
            self._in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self._in_flight)
            if self._queue:
                return self._queue.popleft()
        if self._responder is not None:
            return self._responder(body)
        # Not retried by the client, so a test that under-scripts fails with this message.
        return Reply(content="the fake LLM's script is exhausted", status=418)

    def _done(self) -> None:
        with self._lock:
            self._in_flight -= 1


def _completion_body(body: dict[str, Any], reply: Reply) -> dict[str, Any]:
    choice_body: dict[str, Any] = {
        "index": 0,
        "message": {"role": "assistant", "content": reply.content},
        "finish_reason": "stop",
    }
    if reply.top_logprobs:
        top = [{"token": t, "logprob": lp} for t, lp in reply.top_logprobs]
        first = top[0]
        choice_body["message"]["content"] = first["token"]
        choice_body["logprobs"] = {"content": [{**first, "top_logprobs": top}]}
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "model": body.get("model"),
        "choices": [choice_body],
        "usage": {
            "prompt_tokens": PROMPT_TOKENS,
            "completion_tokens": COMPLETION_TOKENS,
            "total_tokens": PROMPT_TOKENS + COMPLETION_TOKENS,
        },
    }


def _handler(fake: FakeLLM) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # quiet
            pass

        def _send(self, status: int, payload: object, headers: tuple[tuple[str, str], ...] = ()):
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for name, value in headers:
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            if self.path != "/v1/models":
                self._send(404, {"error": {"message": f"no route {self.path}"}})
                return
            self._send(200, {"object": "list", "data": [{"id": m} for m in fake.models]})

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length) or b"{}")
            if self.path != "/v1/chat/completions":
                self._send(404, {"error": {"message": f"no route {self.path}"}})
                return
            reply = fake._next_reply(body)
            try:
                closing = bool(reply.delay_s) and fake._closing.wait(reply.delay_s)
            finally:
                # Out of flight before the answer is sent: once the client has its answer it may
                # send the next request, which must not find this one still counted.
                fake._done()
            if closing:
                return
            try:
                if reply.status != 200:
                    error = {"message": reply.content or f"scripted HTTP {reply.status}"}
                    self._send(reply.status, {"error": error}, reply.headers)
                else:
                    self._send(200, _completion_body(body, reply))
            except OSError:  # the client gave up first (a timeout test)
                pass

    return Handler


def serve() -> Iterator[FakeLLM]:
    """Run a fake LLM server on a free port until the generator is closed."""
    fake = FakeLLM()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(fake))
    server.daemon_threads = True
    server.block_on_close = False
    fake.url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.01}, name="fake-llm", daemon=True
    )
    thread.start()
    try:
        yield fake
    finally:
        fake._closing.set()
        server.shutdown()
        server.server_close()
        thread.join()
