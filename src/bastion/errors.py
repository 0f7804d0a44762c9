"""One error hierarchy: every failure a user can cause ends in a BastionError with an actionable message."""

from __future__ import annotations


class BastionError(Exception):
    """Base of every error Bastion raises on purpose; the CLI prints the message without a traceback."""


class PolicyError(BastionError):
    """A policy file or pack could not be loaded: each problem names the file, the field path and what was expected."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        noun = "problem" if len(problems) == 1 else "problems"
        super().__init__(f"{source}: {len(problems)} {noun} in policy\n{lines}")


class InputError(BastionError):
    """An input item or file line could not be read or scored."""


class LabelMapError(BastionError):
    """A label map refers to something the policy or the dataset does not have."""


class DatasetError(BastionError):
    """A dataset is missing, unreadable or not in the format its adapter expects."""


class ModelError(BastionError):
    """A model could not be found or loaded (never downloaded at run time)."""


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
