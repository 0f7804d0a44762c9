"""Items: one piece of content to moderate, and the text normalisation used for scoring it.

The original text is always kept; scoring sees a normalised copy in which the usual evasion
tricks are undone: compatibility forms (full-width letters, ligatures, styled maths letters) via
NFKC, invisible characters removed, and look-alike letters from other scripts or digits folded to
Latin *inside words that mix them* ("kіll" with a Cyrillic і, "h4te"). Words written wholly in
another script are left alone, so Russian or Greek text is not mangled.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from bastion.media.sources import MediaSource

if TYPE_CHECKING:
    from bastion.media.decode import DecodedAudio, DecodedImage, DecodedVideo

MAX_TEXT_BYTES = 1_000_000
"""Texts longer than this (UTF-8 bytes) are cut to this length for scoring and flagged `truncated`."""

# Invisible characters used to split words past keyword filters.
_INVISIBLE = dict.fromkeys(
    [
        *(0x00AD, 0x034F, 0x061C, 0x115F, 0x1160, 0x17B4, 0x17B5, 0x180E, 0x3164, 0xFEFF, 0xFFA0),
        *range(0x200B, 0x2010),
        *range(0x202A, 0x202F),
        *range(0x2060, 0x2070),
    ]
)

# Cyrillic and Greek letters that render like Latin ones (lower case after casefold).
_HOMOGLYPHS = {
    "а": "a", "в": "b", "е": "e", "ё": "e", "к": "k", "м": "m", "н": "h", "о": "o", "р": "p",
    "с": "c", "т": "t", "у": "y", "х": "x", "і": "i", "ї": "i", "ј": "j", "ѕ": "s", "ԁ": "d",
    "ӏ": "l", "һ": "h", "ԛ": "q", "ԝ": "w", "ɡ": "g", "α": "a", "β": "b", "ε": "e", "η": "n",
    "ι": "i", "κ": "k", "ν": "v", "ο": "o", "ρ": "p", "τ": "t", "υ": "u", "χ": "x", "γ": "y",
}  # fmt: skip
# Digits and symbols used as letters inside words ("h4te", "k1ll", "$cum").
_LEET = {"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "@": "a", "$": "s", "!": "i"}

_WORD = re.compile(r"[^\s]+")
_LEET_INSIDE = re.compile(r"(?<=[A-Za-z])[013457$!]+(?=[A-Za-z])")
_LEET_LEADING = re.compile(r"^[@$](?=[A-Za-z]{2})")
_REPEATS = re.compile(r"(\w)\1{2,}")


def normalize_text(text: str) -> str:
    """Return the text as scoring should see it (the caller keeps the original)."""
    text = unicodedata.normalize("NFKC", text).translate(_INVISIBLE)
    text = _WORD.sub(_fold_word, text)
    # Removing invisibles and folding can leave combining marks that compose now: NFKC again, so
    # that normalising twice changes nothing.
    text = unicodedata.normalize("NFKC", text)
    # "kiiiiill" -> "kiill": keep a double letter, drop the stretching.
    return _REPEATS.sub(r"\1\1", text)


def _fold_word(match: re.Match[str]) -> str:
    word = match.group(0)
    if not any("a" <= ch.lower() <= "z" for ch in word):
        return word
    # A word mixing Latin with look-alike Cyrillic/Greek letters is an evasion, not a language.
    if any(ch.lower() in _HOMOGLYPHS for ch in word):
        word = "".join(_HOMOGLYPHS.get(ch.lower(), ch) for ch in word)
    # Stand-ins between letters ("h4te", "b00bs") or leading a word ("@ss"); not "mp3" or "$50".
    word = _LEET_INSIDE.sub(_unleet, word)
    return _LEET_LEADING.sub(_unleet, word)


def _unleet(match: re.Match[str]) -> str:
    return "".join(_LEET.get(ch, ch) for ch in match.group(0))


def truncate_utf8(text: str, max_bytes: int = MAX_TEXT_BYTES) -> tuple[str, bool]:
    """Cut text to at most `max_bytes` of UTF-8 without splitting a character."""
    data = text.encode("utf-8", errors="replace")  # a lone surrogate becomes '?'
    if len(data) <= max_bytes:
        return data.decode("utf-8"), False
    return data[:max_bytes].decode("utf-8", errors="ignore"), True


@dataclass
class DecodedMedia:
    """An item's media after safe decoding (set by the Moderator; detectors read it)."""

    images: list[DecodedImage] = field(default_factory=list)
    video: DecodedVideo | None = None
    audio: DecodedAudio | None = None


@dataclass
class Item:
    """One piece of content: text, any number of images, at most one video and one audio track.

    Media may be given as file paths, bytes or base64 `data:` URIs (see `MediaSource.of`);
    nothing is read or decoded when the Item is built.
    """

    text: str = ""
    id: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    images: list[MediaSource] = field(default_factory=list)
    video: MediaSource | None = None
    audio: MediaSource | None = None

    decoded: DecodedMedia | None = field(default=None, init=False, repr=False)
    _scoring_text: str | None = field(default=None, init=False, repr=False)
    _truncated: bool = field(default=False, init=False, repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.text, str):
            raise TypeError(f"Item.text must be a string, got {type(self.text).__name__}")
        if not isinstance(self.images, list | tuple):
            self.images = [self.images]
        self.images = [MediaSource.of(v, "image") for v in self.images]
        if self.video is not None:
            self.video = MediaSource.of(self.video, "video")
        if self.audio is not None:
            self.audio = MediaSource.of(self.audio, "audio")

    @property
    def media(self) -> list[MediaSource]:
        """Every media source, images first."""
        extra = [m for m in (self.video, self.audio) if m is not None]
        return [*self.images, *extra]

    @property
    def has_media(self) -> bool:
        return bool(self.images) or self.video is not None or self.audio is not None

    @property
    def scoring_text(self) -> str:
        """Normalised, length-limited text that detectors score (computed once)."""
        if self._scoring_text is None:
            # Cut before normalising (bounded work) and after (NFKC can expand a character 18x).
            cut, before = truncate_utf8(self.text)
            self._scoring_text, after = truncate_utf8(normalize_text(cut))
            self._truncated = before or after
        return self._scoring_text

    @property
    def truncated(self) -> bool:
        _ = self.scoring_text
        return self._truncated

    @property
    def has_text(self) -> bool:
        return bool(self.scoring_text.strip())

    @property
    def is_blank(self) -> bool:
        """No visible text and no media: nothing to moderate."""
        return not self.has_text and not self.has_media


def as_item(value: Item | str) -> Item:
    return value if isinstance(value, Item) else Item(text=value)


def item_from_openai_input(value: str | list[Any], item_id: str | None = None) -> Item:
    """An Item from the OpenAI moderation API's `input` element: a string, or a list of parts.

    Parts are `{"type": "text", "text": ...}` and `{"type": "image_url", "image_url": {"url":
    ...}}` (a base64 data URI; remote URLs and file paths are refused: this is request input). Several text parts are joined by
    newlines. Raises InputError naming the part that is malformed.
    """
    from bastion.errors import InputError

    if isinstance(value, str):
        return Item(text=value, id=item_id)
    if not isinstance(value, list):
        raise InputError(f"input must be a string or a list of parts, got {type(value).__name__}")
    texts: list[str] = []
    images: list[MediaSource] = []
    for n, part in enumerate(value):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text" and isinstance(part.get("text"), str):
            texts.append(part["text"])
        elif kind == "image_url":
            image = part.get("image_url")
            url = image.get("url") if isinstance(image, dict) else image
            if not isinstance(url, str):
                raise InputError(f"input part {n}: image_url needs a 'url' string")
            images.append(MediaSource.from_request(url, "image"))
        else:
            raise InputError(
                f"input part {n}: expected {{'type': 'text', 'text': ...}} or "
                f"{{'type': 'image_url', 'image_url': {{'url': ...}}}}, got {str(part)[:80]}"
            )
    return Item(text="\n".join(texts), id=item_id, images=images)
