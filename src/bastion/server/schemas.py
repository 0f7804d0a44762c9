"""Request and response models of the HTTP API: the OpenAI moderation shape, and Bastion's own.

One pydantic definition per body gives the validation, the error messages and the OpenAPI
document (which the schemathesis fuzz run reads) from the same source. `/v1/moderations`
mirrors OpenAI's request and response exactly, so an OpenAI client works by changing its base
URL; `/v1/moderate` returns Bastion's full Verdicts; `GET /v1/decisions` reads the decision log back.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic_core import PydanticCustomError

from bastion.errors import ErrorCode
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
