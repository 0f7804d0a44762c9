"""Request and response models of the HTTP API: the OpenAI moderation shape, and Bastion's own.

One pydantic definition per body gives the validation, the error messages and the OpenAPI
document (which the schemathesis fuzz run reads) from the same source. `/v1/moderations`
mirrors OpenAI's request and response exactly, so an OpenAI client works by changing its base
URL; `/v1/moderate` returns Bastion's full Verdicts; `GET /v1/decisions` reads the decision log back.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic_core import PydanticCustomError

from bastion.moderator import Verdict
from bastion.store.records import DecisionRecord

MAX_ITEMS = 256
"""Items per request; bigger backlogs go through `bastion score` (batch), not the online API."""


class ImageURL(BaseModel):
    url: Annotated[
        str, Field(min_length=1, description="a base64 data URI (remote URLs are refused)")
    ]


class TextPart(BaseModel):
    type: Literal["text"]
    text: str


class ImagePart(BaseModel):
    type: Literal["image_url"]
    image_url: ImageURL


Part = Annotated[TextPart | ImagePart, Field(discriminator="type")]


class ModerationRequest(BaseModel):
    """OpenAI's `POST /v1/moderations` body.

    `input` is one text, a list of texts (one result each), or a list of text and image parts
    that together make one item. `model` names a Bastion policy and model ("openai",
    "mlcommons:zero-shot") or an OpenAI model name, which means the default policy and model.
    """

    input: (
        str
        | Annotated[list[str], Field(min_length=1, max_length=MAX_ITEMS)]
        | Annotated[list[Part], Field(min_length=1, max_length=64)]
    )
    model: str | None = None

    @field_validator("input", mode="before")
    @classmethod
    def _not_empty(cls, value: Any) -> Any:
        """`[]` is named once, as `/v1/moderate` names `items: []`, not once per list type."""
        if value == []:
            raise PydanticCustomError(
                "too_short", "List should have at least 1 item after validation, not 0"
            )
        return value


class ModerationResult(BaseModel):
    flagged: bool
    categories: dict[str, bool]
    category_scores: dict[str, float]
    category_applied_input_types: dict[str, list[str]]


class ModerationResponse(BaseModel):
    id: str
    model: str
    results: list[ModerationResult]


class ItemIn(BaseModel):
    """One item for `/v1/moderate`: text and media as base64 data URIs."""

    model_config = ConfigDict(extra="forbid")

    id: str | None = None
    text: str = ""
    images: Annotated[list[str], Field(max_length=16)] = Field(default_factory=list)
    video: str | None = None
    audio: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)


class ModerateRequest(BaseModel):
    """Bastion's `POST /v1/moderate` body: items, and which policy and model judge them."""

    model_config = ConfigDict(extra="forbid")

    items: Annotated[list[ItemIn], Field(min_length=1, max_length=MAX_ITEMS)]
    policy: str | None = Field(None, description="a built-in pack (openai, mlcommons)")
    model: str | None = Field(None, description='"default", "zero-shot" or a trained model name')


class ModerateResponse(BaseModel):
    """Verdicts in input order; an item that could not be scored has `error` set, `flagged`
    null and `action` "review" (never "allow")."""

    id: str
    policy_version: str
    model_version: str
    verdicts: list[Verdict]


class ErrorCode(StrEnum):
    """Every `code` an error response carries: one set, listed in the README's error table. A
    client branches on `code`; `message` is for people and names the problem."""

    invalid_request = "invalid_request"  # a field, query parameter or the JSON itself is wrong
    invalid_body = "invalid_body"  # the body is not UTF-8, or nests deeper than the limit
    invalid_input = "invalid_input"  # an item could not be read or scored
    invalid_policy = "invalid_policy"  # the policy named or sent could not be loaded
    invalid_model = "invalid_model"  # the model named could not be found or loaded
    invalid_image = "invalid_image"  # a bank lookup's image could not be decoded
    invalid_hash = "invalid_hash"  # a bank lookup's hash is not a hash of that bank's kind
    wrong_bank_kind = "wrong_bank_kind"  # the bank holds another kind of content
    invalid_api_key = "invalid_api_key"  # 401: no key, or not a live one
    forbidden = "forbidden"  # 403: the key lacks the route's scope, or reads another project
    not_found = "not_found"  # 404: no such route, queue item or job
    bank_not_found = "bank_not_found"  # 404: no bank by that name
    method_not_allowed = "method_not_allowed"  # 405: the route takes other methods (see Allow)
    bank_exists = "bank_exists"  # 409: a bank by that name exists already
    not_claimed = "not_claimed"  # 409: claim the queue item before deciding it
    claimed_by_other = "claimed_by_other"  # 409: another reviewer holds the item
    decided = "decided"  # 409: the item was decided already
    job_not_done = "job_not_done"  # 409: the recall job has not finished
    request_too_large = "request_too_large"  # 413: the body is over the size limit
    unsupported_media_type = "unsupported_media_type"  # 415: a body type the route does not take
    rate_limit_exceeded = "rate_limit_exceeded"  # 429: the key's rate limit (see Retry-After)
    internal_error = "internal_error"  # 500: a fault in Bastion; nothing was scored
    bank_error = "bank_error"  # 500: a bank's files could not be read
    service_unavailable = "service_unavailable"  # 503: the store failed; retry


class ErrorBody(BaseModel):
    message: str
    type: str
    code: ErrorCode
    param: str | None = None


class ErrorResponse(BaseModel):
    """The OpenAI error shape, so OpenAI clients raise their usual exceptions."""

    error: ErrorBody


class Health(BaseModel):
    status: Literal["ok", "loading"]
    models: list[str] = Field(default_factory=list)


class DecisionList(BaseModel):
    """`GET /v1/decisions`: logged decisions, newest first, in OpenAI's list shape."""

    object: Literal["list"] = "list"
    data: list[DecisionRecord]
