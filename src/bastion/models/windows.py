"""Splitting a text into the windows an encoder scores: the whole text plus sentence chunks."""

from __future__ import annotations

import re

# Sentence ends: punctuation then space, a newline, or "end.Next" typed without a space.
SENTENCE_END = re.compile(r"(?<=[.!?。！？…])\s+|\n+|(?<=[a-z][.!?])(?=[A-Z])")


def text_windows(
    text: str, chunk_words: int = 40, min_chunk_words: int = 6, max_windows: int = 48
) -> tuple[list[str], bool]:
    """Texts to embed for one item; True when the item was too long to score completely.

    A text of up to `chunk_words` words is one window. A longer one is scored as a whole (its opening, as far as the
    encoder reads) *and* in chunks of whole sentences, because mean pooling dilutes one
    threatening sentence among a hundred harmless ones. Chunks are as small as the window
    budget allows (one sentence each, short ones merged up to `min_chunk_words`) and grow up
    to `chunk_words` for long texts, so the whole text is covered; identical chunks are
    scored once.
    """
    words = text.split()
    if len(words) <= chunk_words:
        return [text], False  # short posts: dilution is small, one window is enough
    pieces: list[list[str]] = []
    for sentence in SENTENCE_END.split(text):
        sw = sentence.split()
        pieces.extend(sw[i : i + chunk_words] for i in range(0, len(sw), chunk_words))
    budget = max_windows - 1
    target = min(chunk_words, max(min_chunk_words, -(-len(words) // budget)))
    chunks: list[str] = []
    current: list[str] = []
    for piece in pieces:
        if current and len(current) + len(piece) > max(target, min_chunk_words * 2):
            chunks.append(" ".join(current))
            current = []
        current.extend(piece)
        if len(current) >= target:
            chunks.append(" ".join(current))
            current = []
    if current:
        chunks.append(" ".join(current))
    unique = list(dict.fromkeys(c for c in chunks if c != text))
    return [text, *unique[:budget]], len(unique) > budget
