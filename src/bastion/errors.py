"""One error hierarchy: every failure a user can cause ends in a BastionError with an actionable message.

Each class carries the HTTP status and the `ErrorCode` the API answers it with, so the service
maps every domain error in one exception handler (`bastion.server.app`) and no route picks a
status by hand; the CLI prints the same errors without a traceback.
"""

from __future__ import annotations

from enum import StrEnum


class ErrorCode(StrEnum):
    """Every `code` an API error response carries: one set, listed in the README's error table.
    A client branches on `code`; `message` is for people and names the problem."""

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


class BastionError(Exception):
    """Base of every error Bastion raises on purpose; the CLI prints the message without a traceback.

    `status` and `code` are what the API answers with: a 400 `invalid_request` unless a subclass
    says otherwise (a subclass may also set `code` per instance, as `ClaimError` does).
    `client_message`, when set, is what an API client is told instead of the message, which may
    name the server's internals and goes to the server's log.
    """

    status: int = 400
    code: ErrorCode = ErrorCode.invalid_request
    client_message: str | None = None

    @property
    def headers(self) -> dict[str, str]:
        """HTTP headers the answer carries (`Retry-After` for a rate limit)."""
        return {}


class InvalidRequestError(BastionError):
    """The request itself is wrong: a field, a query parameter or a form (HTTP 400)."""


class UnauthorizedError(BastionError):
    """No API key, or not a live one (HTTP 401)."""

    status = 401
    code = ErrorCode.invalid_api_key


class ForbiddenError(BastionError):
    """Who asked may not do this: a key's scopes or project, a person's role or membership (HTTP 403)."""

    status = 403
    code = ErrorCode.forbidden


class NotFoundError(BastionError):
    """No such thing: a person, project, task, queue item, job or bank (HTTP 404)."""

    status = 404
    code = ErrorCode.not_found


class ConflictError(BastionError):
    """The thing is not in a state that allows this (HTTP 409); each subclass names its code."""

    status = 409


class TooLargeError(BastionError):
    """A body or an upload is over its size limit (HTTP 413)."""

    status = 413
    code = ErrorCode.request_too_large


class UnsupportedContentTypeError(BastionError):
    """A body of a type the route does not take (HTTP 415)."""

    status = 415
    code = ErrorCode.unsupported_media_type


class RateLimitedError(BastionError):
    """The key's rate limit is reached; it may try again after `retry_after_s` (HTTP 429)."""

    status = 429
    code = ErrorCode.rate_limit_exceeded

    def __init__(self, message: str, retry_after_s: float) -> None:
        self.retry_after_s = retry_after_s
        super().__init__(message)

    @property
    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(max(1, round(self.retry_after_s)))}


class PolicyError(BastionError):
    """A policy file or pack could not be loaded: each problem names the file, the field path and what was expected."""

    code = ErrorCode.invalid_policy

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        noun = "problem" if len(problems) == 1 else "problems"
        super().__init__(f"{source}: {len(problems)} {noun} in policy\n{lines}")


class InputError(BastionError):
    """An input item or file line could not be read or scored."""

    code = ErrorCode.invalid_input


class LabelMapError(BastionError):
    """A label map refers to something the policy or the dataset does not have."""


class DatasetError(BastionError):
    """A dataset is missing, unreadable or not in the format its adapter expects."""


class ModelError(BastionError):
    """A model could not be found or loaded (never downloaded at run time)."""

    code = ErrorCode.invalid_model


class MediaError(InputError):
    """Media bytes were refused or could not be decoded; the message names the media and the limit or fault.

    Subclasses say which kind of refusal it was, so a caller (the API, a batch job) can count them
    and a test can assert on them; the item is reported with this message and the rest of the
    batch goes on.
    """


class EmptyMediaError(MediaError):
    """The file or data is zero bytes long."""


class UnsupportedMediaError(MediaError):
    """The bytes are not in any format the decoder reads (a text file named .jpg, say)."""


class CorruptMediaError(MediaError):
    """The format was recognised but the data is broken (a truncated JPEG, a video with no frames)."""


class MediaLimitError(MediaError):
    """A configured limit was hit: file size, pixels, frames or duration. `limit` names it."""

    def __init__(self, message: str, limit: str) -> None:
        self.limit = limit
        super().__init__(message)


class DecodeTimeoutError(MediaLimitError):
    """Decoding took longer than the per-item time limit and the decoder process was stopped."""

    def __init__(self, message: str) -> None:
        super().__init__(message, "decode_timeout_s")
