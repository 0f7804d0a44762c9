"""The OpenAI-compatible backend against a fake server: the request it sends, retries, timeouts,
concurrency, images and model discovery, seen through the judge that uses it."""

from __future__ import annotations

import base64
import io
from collections.abc import Callable
from typing import Any

import pytest
from fake_llm import (
    BENIGN,
    COMPLETION_TOKENS,
    PROMPT_TOKENS,
    THREAT,
    FakeLLM,
    MakeJudge,
    Reply,
    benign_judgement,
    http_error,
    judge_one,
    judgement_reply,
    threat_judgement,
    too_slow,
)
from PIL import Image

from bastion.errors import InputError, ModelError
from bastion.items import Item
from bastion.judge import backend_from_spec
from bastion.judge.openai_backend import OpenAIBackend
from bastion.judge.schema import answer_schema

# -- the request ------------------------------------------------------------------------------


def test_a_chat_request_carries_the_prompt_and_the_answer_schema(
    fake_llm: FakeLLM, make_judge: MakeJudge
) -> None:
    fake_llm.script(judgement_reply(threat_judgement()))
    judge = make_judge()
    [[result]] = judge.judge([THREAT])

    assert result.error is None
    [sent] = fake_llm.requests
    assert sent["model"] == "test-model"
    assert sent["temperature"] == 0.0
    assert [m["role"] for m in sent["messages"]] == ["system", "user"]
    assert sent["messages"][0]["content"] == judge.system_prompt("harassment/threatening")
    assert f"<content>\n{THREAT}\n</content>" in sent["messages"][1]["content"]
    assert sent["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "judgement", "schema": answer_schema()},
    }


def test_usage_counts_the_servers_tokens_and_the_calls(
    fake_llm: FakeLLM, make_judge: MakeJudge
) -> None:
    fake_llm.script(judgement_reply(threat_judgement()))
    usage = judge_one(make_judge()).usage
    assert (usage.prompt_tokens, usage.completion_tokens) == (PROMPT_TOKENS, COMPLETION_TOKENS)
    assert (usage.calls, usage.retries) == (1, 0)


# -- retries ----------------------------------------------------------------------------------


def test_a_server_error_is_retried_after_a_backoff(
    fake_llm: FakeLLM, make_judge: MakeJudge, backoff: list[float]
) -> None:
    fake_llm.script(http_error(500), judgement_reply(threat_judgement()))
    result = judge_one(make_judge())
    assert result.error is None
    assert result.judgement is not None and result.judgement.violation
    assert (result.usage.calls, result.usage.retries) == (2, 1)  # every attempt is a call
    assert len(fake_llm.requests) == 2
    assert backoff == [0.01]


def test_a_server_that_keeps_failing_gives_an_error_after_every_try(
    fake_llm: FakeLLM, make_judge: MakeJudge, backoff: list[float]
) -> None:
    fake_llm.script(*[http_error(503)] * 3)
    result = judge_one(make_judge(max_retries=2))
    assert result.judgement is None
    assert result.error is not None
    assert "failed after 3 tries: HTTP 503" in result.error
    assert len(fake_llm.requests) == 3
    assert backoff == [0.01, 0.02]  # doubling, and no wait after the last try
    assert result.usage.retries == 2


@pytest.mark.parametrize("status", [400, 401, 404])
def test_a_client_error_is_not_retried(
    fake_llm: FakeLLM, make_judge: MakeJudge, backoff: list[float], status: int
) -> None:
    fake_llm.script(http_error(status))
    result = judge_one(make_judge())
    assert result.error is not None and f"HTTP {status}" in result.error
    assert len(fake_llm.requests) == 1
    assert backoff == []


def test_too_many_requests_waits_as_long_as_retry_after_says(
    fake_llm: FakeLLM, make_judge: MakeJudge, backoff: list[float]
) -> None:
    fake_llm.script(http_error(429, retry_after="3"), judgement_reply(threat_judgement()))
    result = judge_one(make_judge())
    assert result.error is None
    assert result.usage.retries == 1
    assert backoff == [3.0]


def test_a_timeout_is_retried_then_named_in_the_error(
    fake_llm: FakeLLM, make_judge: MakeJudge
) -> None:
    fake_llm.script(too_slow(2.0), too_slow(2.0))
    result = judge_one(make_judge(timeout_s=0.1, max_retries=1))
    assert result.judgement is None
    assert result.error is not None
    assert "failed after 2 tries: timed out after 0.1 s" in result.error
    assert len(fake_llm.requests) == 2


def test_a_timeout_then_an_answer_is_a_judgement(fake_llm: FakeLLM, make_judge: MakeJudge) -> None:
    fake_llm.script(too_slow(2.0), judgement_reply(threat_judgement()))
    result = judge_one(make_judge(timeout_s=0.1, max_retries=1))
    assert result.error is None
    assert result.usage.retries == 1


def test_a_reply_that_is_not_a_chat_completion_is_an_error(
    fake_llm: FakeLLM, make_judge: MakeJudge
) -> None:
    fake_llm.script(Reply(content=None))  # "content": null, as a refusal may come back
    result = judge_one(make_judge())
    assert result.judgement is None
    assert result.error is not None and "no message content" in result.error


# -- concurrency ------------------------------------------------------------------------------


def answer_by_content(delay_s: float) -> Callable[[dict[str, Any]], Reply]:
    """Judge THREAT violating and anything else not, so each answer shows which item it was for."""

    def respond(body: dict[str, Any]) -> Reply:
        user = body["messages"][1]["content"]
        answer = threat_judgement() if THREAT in user else benign_judgement()
        return judgement_reply(answer, delay_s=delay_s)

    return respond


def test_requests_run_concurrently_up_to_the_limit_and_results_stay_in_order(
    fake_llm: FakeLLM, make_judge: MakeJudge
) -> None:
    fake_llm.answer_with(answer_by_content(delay_s=0.2))
    items = [THREAT, BENIGN] * 4
    results = make_judge(concurrency=4).judge(items)

    assert len(fake_llm.requests) == 8
    assert 2 <= fake_llm.max_in_flight <= 4
    verdicts = [r.judgement.violation if r.judgement else None for [r] in results]
    assert verdicts == [True, False] * 4


def test_concurrency_one_sends_one_request_at_a_time(
    fake_llm: FakeLLM, make_judge: MakeJudge
) -> None:
    fake_llm.answer_with(answer_by_content(delay_s=0.02))
    make_judge(concurrency=1).judge([THREAT, BENIGN, THREAT])
    assert len(fake_llm.requests) == 3
    assert fake_llm.max_in_flight == 1


# -- images -----------------------------------------------------------------------------------


def png(width: int, height: int, colour: tuple[int, int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(buffer, format="PNG")
    return buffer.getvalue()


def sent_images(request: dict[str, Any]) -> list[Image.Image]:
    parts = request["messages"][1]["content"]
    images = []
    for part in parts:
        if part["type"] == "image_url":
            prefix, data = part["image_url"]["url"].split(",", 1)
            assert prefix == "data:image/png;base64"
            images.append(Image.open(io.BytesIO(base64.b64decode(data))).convert("RGB"))
    return images


@pytest.mark.parametrize(
    ("text", "shown"),
    [("look at this", "look at this"), ("", "(no text; judge the attached image)")],
)
def test_a_vision_backend_is_sent_the_image_as_a_data_uri(
    fake_llm: FakeLLM, make_judge: MakeJudge, text: str, shown: str
) -> None:
    fake_llm.script(judgement_reply(benign_judgement()))
    result = judge_one(make_judge(vision=True), Item(text=text, images=[png(8, 6, (200, 10, 30))]))

    assert result.error is None
    [sent] = fake_llm.requests
    text_part = sent["messages"][1]["content"][0]
    assert text_part["type"] == "text"
    assert f"<content>\n{shown}\n</content>" in text_part["text"]
    [image] = sent_images(sent)
    assert image.size == (8, 6)
    assert image.getpixel((3, 3)) == (200, 10, 30)


def test_large_images_are_shrunk_to_1024_pixels_a_side(
    fake_llm: FakeLLM, make_judge: MakeJudge
) -> None:
    fake_llm.script(judgement_reply(benign_judgement()))
    judge_one(make_judge(vision=True), Item(images=[png(2048, 512, (0, 0, 255))]))
    [image] = sent_images(fake_llm.requests[0])
    assert image.size == (1024, 256)


def test_a_backend_that_cannot_see_gets_no_image(fake_llm: FakeLLM, make_judge: MakeJudge) -> None:
    result = judge_one(make_judge(vision=False), Item(text="look", images=[png(4, 4, (0, 0, 0))]))
    assert result.judgement is None
    assert result.error is not None and "cannot see images" in result.error
    assert fake_llm.requests == []


def test_an_unreadable_image_fails_only_its_item(fake_llm: FakeLLM, make_judge: MakeJudge) -> None:
    fake_llm.script(judgement_reply(threat_judgement()))
    bad = Item(text="look", images=[b"this is not an image"])
    [[refused], [judged]] = make_judge(vision=True).judge([bad, THREAT])
    assert refused.error is not None and refused.error.startswith("image refused")
    assert judged.error is None
    assert len(fake_llm.requests) == 1


# -- the model and the spec -------------------------------------------------------------------


def test_without_a_model_the_first_listed_one_is_used(fake_llm: FakeLLM) -> None:
    backend = OpenAIBackend(fake_llm.url)
    try:
        assert backend.model == "first-model"
        assert backend.name == "openai:first-model"
    finally:
        backend.close()


def test_a_server_that_lists_no_model_asks_for_one(fake_llm: FakeLLM) -> None:
    fake_llm.models = []
    with pytest.raises(ModelError, match="--llm-model"):
        OpenAIBackend(fake_llm.url)


def test_a_url_spec_is_an_openai_backend(fake_llm: FakeLLM) -> None:
    backend = backend_from_spec(fake_llm.url + "/", timeout_s=5.0, vision=True)
    try:
        assert isinstance(backend, OpenAIBackend)
        assert backend.name == "openai:first-model"
        assert backend.vision is True
        assert backend.timeout_s == 5.0
    finally:
        backend.close()


@pytest.mark.parametrize("spec", ["localhost:8000/v1", "ftp://example.com/v1", "gpt-4o", ""])
def test_a_spec_that_is_no_backend_is_an_input_error(spec: str) -> None:
    with pytest.raises(InputError, match="is not 'local'"):
        backend_from_spec(spec)
