"""Where an item's media comes from: a file path, raw bytes, or a base64 data URI.

A `MediaSource` only says where the bytes are; it never decodes them (that happens in a decoder
process, see `bastion.media.sandbox`). Building one does no I/O, except decoding a data URI's
base64, which is bounded by the size limit checked first. Remote URLs are refused: fetching
them would let a caller make Bastion reach into the platform's network (SSRF), and the content
should be sent, not pointed at.
"""

from __future__ import annotations

import base64
import binascii
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from bastion.errors import EmptyMediaError, InputError, MediaLimitError

MediaKind = Literal["image", "video", "audio"]


@dataclass(frozen=True)
class MediaSource:
    """One image, video or audio track. Exactly one of `path` and `data` is set."""

    kind: MediaKind
    name: str
    path: Path | None = None
    data: bytes | None = None
    mime: str | None = None

    @classmethod
    def of(
        cls, value: MediaSource | Path | str | bytes, kind: MediaKind, *, base: Path | None = None
    ) -> MediaSource:
        """A path (relative to `base` if given), bytes, or a `data:` URI; a MediaSource as is."""
        if isinstance(value, MediaSource):
            return value if value.kind == kind else cls(kind, value.name, value.path, value.data)
        if isinstance(value, bytes | bytearray | memoryview):
            data = bytes(value)
            return cls(kind, f"{kind} bytes ({len(data):,} B)", data=data)
        if isinstance(value, str) and value.startswith("data:"):
            return cls.from_data_uri(value, kind)
        if isinstance(value, str) and value.split(":", 1)[0].lower() in ("http", "https", "ftp"):
            raise InputError(
                f"{kind} {value[:80]!r}: remote URLs are not fetched; send the content itself "
                "as a base64 data URI (data:image/png;base64,...)"
            )
        if isinstance(value, str | Path):
            path = Path(value)
            if base is not None and not path.is_absolute():
                path = base / path
            return cls(kind, str(value), path=path)
        raise InputError(
            f"{kind} must be a file path, bytes or a data URI, got {type(value).__name__}"
        )

    @classmethod
    def from_request(cls, value: str, kind: MediaKind) -> MediaSource:
        """Media sent over the API: a base64 data URI and nothing else.

        A path would let a caller make the service read its own files (and echo their first
        bytes in an error message), a URL would make it fetch from the network: both refused.
        """
        if not isinstance(value, str) or not value.startswith("data:"):
            scheme = value.split(":", 1)[0].lower() if isinstance(value, str) else ""
            if scheme in ("http", "https", "ftp"):
                return cls.of(value, kind)  # raises the remote-URL error
            raise InputError(
                f"{kind} must be sent as a base64 data URI (data:<type>;base64,...); "
                "file paths are not read from requests"
            )
        return cls.from_data_uri(value, kind)

    @classmethod
    def from_data_uri(cls, uri: str, kind: MediaKind, max_bytes: int = 700_000_000) -> MediaSource:
        """`data:[mime][;base64],payload`; only base64 payloads (media is binary)."""
        head, sep, payload = uri.partition(",")
        if not sep:
            raise InputError(f"{kind} data URI has no ',' before its payload")
        params = head[len("data:") :].split(";")
        if "base64" not in params[1:]:
            raise InputError(f"{kind} data URI must be base64-encoded (data:<mime>;base64,...)")
        if len(payload) > max_bytes:
            raise MediaLimitError(
                f"{kind} data URI is {len(payload):,} characters, over {max_bytes:,}", "max_bytes"
            )
        try:
            data = base64.b64decode(payload, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise InputError(f"{kind} data URI has invalid base64 ({exc})") from exc
        mime = params[0] or None
        return cls(
            kind, f"{kind} data URI ({mime or 'no type'}, {len(data):,} B)", data=data, mime=mime
        )

    def size(self) -> int:
        """Bytes, from the data or the file's metadata (no read)."""
        if self.data is not None:
            return len(self.data)
        assert self.path is not None
        try:
            return os.stat(self.path).st_size
        except FileNotFoundError:
            raise InputError(f"{self.name}: no such file") from None
        except OSError as exc:
            raise InputError(f"{self.name}: cannot read ({exc.strerror})") from exc

    def check_size(self, max_bytes: int) -> int:
        """The size, after refusing empty and over-limit media by name."""
        size = self.size()
        if size == 0:
            raise EmptyMediaError(f"{self.name}: the {self.kind} is empty (0 bytes)")
        if size > max_bytes:
            raise MediaLimitError(
                f"{self.name}: {size:,} bytes is over the {self.kind} size limit of {max_bytes:,} "
                f"(max_{self.kind}_bytes)",
                f"max_{self.kind}_bytes",
            )
        return size

    def read(self, max_bytes: int) -> bytes:
        """All the bytes, after the size check (a file is read once, never past the limit)."""
        self.check_size(max_bytes)
        if self.data is not None:
            return self.data
        assert self.path is not None
        with open(self.path, "rb") as fh:
            data = fh.read(max_bytes + 1)
        if len(data) > max_bytes:  # the file grew after the check
            raise MediaLimitError(
                f"{self.name}: over the {self.kind} size limit of {max_bytes:,}",
                f"max_{self.kind}_bytes",
            )
        return data
