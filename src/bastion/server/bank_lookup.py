"""A hash-bank lookup's input and the image's hashes: HMA's `/m/lookup` on Bastion's service.

A lookup sends an image or a hash. The image comes as multipart field `file`
(`curl -F file=@FILE`) or as the raw body with `Content-Type: image/...`
(`curl -H 'Content-Type: image/jpeg' --data-binary @FILE`); a hash comes as the `hash` query or
form field. The body is read by hand rather than declared with FastAPI's `File`/`Form`
parameters, so that the size limit is checked before anything is parsed and each way a request
can be wrong (both or neither given, an empty or oversized file, a body of another type) gets a
4xx naming it.

The image is decoded in a decoder process under the service's media limits and hashed as
moderation and `bastion bank add IMAGE` hash it: PDQ of the first decoded frame, MD5 of the
file's bytes. So a lookup finds what was banked from the same file, or from a resized or
recompressed copy within the bank's PDQ threshold.

(No `from __future__ import annotations`: FastAPI reads the reader's signature at run time.)
"""

import hashlib
import threading
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import parse_qs

from fastapi import Query, Request
from starlette.datastructures import UploadFile

from bastion.errors import (
    ErrorCode,
    InputError,
    InvalidRequestError,
    MediaError,
    TooLargeError,
    UnsupportedContentTypeError,
)
from bastion.media.decode import DecodedImage
from bastion.media.hashing import MediaHash, pdq_hash
from bastion.media.limits import MediaLimits
from bastion.media.sandbox import Decoded, DecoderPool
from bastion.media.sources import MediaSource

#: The longest hash a lookup takes: a vPDQ signal of a ten-minute video at one frame a second
#: is about 45,000 characters.
MAX_HASH_CHARS = 1_000_000
#: Room for a multipart form's boundaries and headers around the image.
_FORM_OVERHEAD = 64 * 1024


class InvalidImageError(InputError):
    """A lookup's upload could not be decoded as an image; the message says why."""

    code = ErrorCode.invalid_image


@dataclass(frozen=True)
class LookupInput:
    """What a lookup request sent: exactly one of an image's bytes and a hash."""

    image: bytes | None
    hash: str | None


#: The request body as the OpenAPI document describes it (the route reads it by hand).
LOOKUP_BODY: dict[str, Any] = {
    "required": False,
    "description": "an image (multipart field 'file', or the raw body as image/* or "
    "application/octet-stream), or a hash (the 'hash' form field or query parameter); not both",
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "properties": {
                    "file": {"type": "string", "format": "binary", "description": "the image"},
                    "hash": {"type": "string", "description": "a PDQ, MD5 or vPDQ value"},
                },
            }
        },
        "application/x-www-form-urlencoded": {
            "schema": {
                "type": "object",
                "properties": {"hash": {"type": "string"}},
                "required": ["hash"],
            }
        },
        "application/octet-stream": {
            "schema": {"type": "string", "format": "binary", "description": "the image"}
        },
    },
}


async def read_lookup(
    request: Request,
    hash_value: Annotated[
        str | None,
        Query(
            alias="hash",
            max_length=MAX_HASH_CHARS,
            description="a PDQ (64 hex), MD5 (32 hex) or vPDQ value to look up",
        ),
    ] = None,
) -> LookupInput:
    """The FastAPI dependency that reads a lookup's image or hash (images up to the service's
    `max_image_bytes`), or raises a domain error (a 4xx) naming what is wrong."""
    limits: MediaLimits = request.app.state.settings.media_limits
    cap = limits.max_image_bytes + _FORM_OVERHEAD
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > cap:
        raise _too_large(int(declared), limits.max_image_bytes)
    body = await request.body()
    if len(body) > cap:
        raise _too_large(len(body), limits.max_image_bytes)
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    image: bytes | None = None
    form_hash: str | None = None
    if media_type == "multipart/form-data":
        image, form_hash = await _read_multipart(request)
    elif media_type == "application/x-www-form-urlencoded":
        form_hash = _read_urlencoded(body) if body else None
    elif media_type.startswith("image/") or media_type == "application/octet-stream":
        image = body if body or hash_value is None else None  # no body: the query's hash
    elif body:
        raise UnsupportedContentTypeError(
            f"a lookup takes multipart/form-data (field 'file' or 'hash'), "
            f"application/x-www-form-urlencoded (field 'hash') or the image itself as "
            f"image/* or application/octet-stream; got {media_type or 'no Content-Type'}"
        )
    if hash_value is not None and form_hash is not None:
        raise _invalid("the hash was given twice (query and form); give it once")
    given_hash = hash_value if hash_value is not None else form_hash
    if image is not None and given_hash is not None:
        raise _invalid("give an image or a hash to look up, not both")
    if image is None and given_hash is None:
        raise _invalid(
            "nothing to look up: send an image (multipart field 'file', or the raw body with "
            "Content-Type image/...) or a hash (the 'hash' query or form field)",
        )
    if image is not None and not image:
        raise _invalid("the uploaded file is empty (0 bytes)")
    if image is not None and len(image) > limits.max_image_bytes:
        raise _too_large(len(image), limits.max_image_bytes)
    return LookupInput(image=image, hash=given_hash)


class ImageDecoders:
    """The decoder processes of lookups: started at the first image, stopped with the router (a
    later start makes fresh ones, as the app may be started again)."""

    def __init__(self, limits: MediaLimits) -> None:
        self.limits = limits
        self._pool: DecoderPool | None = None
        self._lock = threading.Lock()

    def decode(self, source: MediaSource) -> Decoded:
        with self._lock:
            if self._pool is None:
                self._pool = DecoderPool(self.limits, workers=1)
            pool = self._pool
        return pool.decode(source)

    def close(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.close()


def image_hashes(decoders: ImageDecoders, data: bytes) -> tuple[MediaHash, str]:
    """The image's PDQ (of its first frame, decoded in a decoder process as moderation decodes
    it) and the MD5 of its bytes; an InvalidImageError naming what is wrong with it."""
    try:
        decoded = decoders.decode(MediaSource("image", "the uploaded file", data=data))
    except MediaError as exc:
        raise InvalidImageError(f"invalid image: {exc}") from None
    if not isinstance(decoded, DecodedImage):
        raise InvalidImageError("invalid image: the uploaded file is not an image")
    return pdq_hash(decoded.frames[0]), hashlib.md5(data, usedforsecurity=False).hexdigest()


async def _read_multipart(request: Request) -> tuple[bytes | None, str | None]:
    """(the `file` field's bytes, the `hash` field) of a multipart form; other fields are a 400."""
    form = await request.form(max_files=1, max_fields=2, max_part_size=MAX_HASH_CHARS)
    try:
        unknown = sorted(set(form.keys()) - {"file", "hash"})
        if unknown:
            raise _invalid(f"unknown form field {unknown[0]!r}; use 'file' or 'hash'")
        upload = form.get("file")
        given = form.get("hash")
        if upload is not None and not isinstance(upload, UploadFile):
            raise _invalid("form field 'file' must be a file upload, not text")
        if given is not None and not isinstance(given, str):
            raise _invalid("form field 'hash' must be text, not a file")
        image = None if upload is None else await upload.read()
        return image, given
    finally:
        await form.close()


def _read_urlencoded(body: bytes) -> str:
    try:
        fields = parse_qs(body.decode("ascii"), keep_blank_values=True, strict_parsing=True)
    except (UnicodeDecodeError, ValueError):
        raise _invalid(
            "the body is not a URL-encoded form; send an image as the raw body with "
            "Content-Type image/... (curl: -H 'Content-Type: image/jpeg' --data-binary @FILE)",
        ) from None
    unknown = sorted(set(fields) - {"hash"})
    if unknown or len(fields.get("hash", [])) != 1:
        raise _invalid("a URL-encoded lookup form has one field, 'hash'")
    value = fields["hash"][0]
    if len(value) > MAX_HASH_CHARS:
        raise _invalid(f"the hash is over {MAX_HASH_CHARS:,} characters")
    return value


def _invalid(problem: str) -> InvalidRequestError:
    return InvalidRequestError(f"invalid request: {problem}")


def _too_large(size: int, limit: int) -> TooLargeError:
    return TooLargeError(
        f"the upload of {size:,} bytes is over the image size limit of {limit:,} (max_image_bytes)"
    )
