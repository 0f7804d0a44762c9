"""Items and the scoring-text normalisation that undoes common evasion tricks."""

from __future__ import annotations

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from bastion.items import MAX_TEXT_BYTES, Item, as_item, normalize_text, truncate_utf8

# --- normalisation ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("ｈａｔｅ", "hate"),
        ("ＨＡＴＥ speech", "HATE speech"),
        ("𝐡𝐚𝐭𝐞", "hate"),
        ("ﬁne", "fine"),
    ],
)
def test_nfkc_folds_compatibility_forms(text: str, expected: str) -> None:
    assert normalize_text(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "ki\u200bll",
        "k\u200di\u200cll",
        "ki\u00adll",
        "k\u2060ill",
        "\ufeffkill",
        "ki\u200e\u202all",
    ],
)
def test_zero_width_characters_inside_a_word_are_removed(text: str) -> None:
    assert normalize_text(text) == "kill"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("k\u0456ll", "kill"),  # Cyrillic і
        ("\u0440ay up", "pay up"),  # Cyrillic р
        ("h\u03bfpe", "hope"),  # Greek ο
        ("\u0410pple", "apple"),  # capital Cyrillic А folds to its lower-case Latin look-alike
    ],
)
def test_mixed_script_words_fold_to_latin(text: str, expected: str) -> None:
    assert normalize_text(text) == expected


@pytest.mark.parametrize("text", ["Привет", "Привет мир", "hello Привет", "καλημέρα", "Ωμέγα"])
def test_words_wholly_in_another_script_are_unchanged(text: str) -> None:
    assert normalize_text(text) == text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("h4te", "hate"),
        ("k1ll", "kill"),
        ("b00bs", "boobs"),
        ("I h4te you", "I hate you"),
        ("@ss", "ass"),
        ("$cum", "scum"),
    ],
)
def test_leet_inside_words_folds(text: str, expected: str) -> None:
    assert normalize_text(text) == expected


@pytest.mark.parametrize(
    "text", ["mp3", "$50", "2024", "bob@example.com", "4chan", "win10", "hello!", "$5 off"]
)
def test_digits_and_symbols_that_are_not_leet_are_unchanged(text: str) -> None:
    assert normalize_text(text) == text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("kiiiiill", "kiill"),
        ("sooooo good", "soo good"),
        ("good", "good"),
        ("nooo!!!", "noo!!!"),
    ],
)
def test_stretched_letters_collapse_to_two(text: str, expected: str) -> None:
    assert normalize_text(text) == expected


def test_item_keeps_original_text_and_normalises_scoring_text() -> None:
    original = "I h4\u200bte ｙｏｕ, k\u0456lllll"
    item = Item(text=original, id="x")
    assert item.text == original
    assert item.scoring_text == "I hate you, kill"
    assert item.truncated is False
    assert item.text == original  # computing the scoring text does not touch the original


@settings(max_examples=500, deadline=None)
@given(st.text())
def test_normalize_text_never_raises_and_returns_str(text: str) -> None:
    assert isinstance(normalize_text(text), str)


@settings(max_examples=500, deadline=None)
@given(st.text())
@example("e\u200b\u0301")  # zero-width space between a letter and a combining accent
@example("a\u0441\u0327")  # Latin a, Cyrillic с, combining cedilla
def test_normalize_text_is_idempotent(text: str) -> None:
    once = normalize_text(text)
    assert normalize_text(once) == once


# --- truncation -------------------------------------------------------------------------------


@settings(max_examples=500, deadline=None)
@given(text=st.text(), max_bytes=st.integers(min_value=0, max_value=64))
def test_truncate_utf8_never_splits_a_character(text: str, max_bytes: int) -> None:
    cut, truncated = truncate_utf8(text, max_bytes)
    encoded = cut.encode("utf-8")
    assert len(encoded) <= max_bytes
    assert text.startswith(cut)
    assert truncated == (len(text.encode("utf-8")) > max_bytes)
    if truncated:
        # The longest prefix that fits: one more character would not.
        assert len(text[: len(cut) + 1].encode("utf-8")) > max_bytes
    else:
        assert cut == text


def test_truncate_utf8_cuts_before_a_multibyte_character() -> None:
    assert truncate_utf8("ab€", 4) == ("ab", True)
    assert truncate_utf8("ab€", 5) == ("ab€", False)
    assert truncate_utf8("😀", 3) == ("", True)


def test_item_over_max_bytes_is_truncated_and_scoring_text_fits() -> None:
    # 2 + 3 * 333_333 = 1_000_001 bytes: the cut falls inside the last three-byte character.
    text = "xy" + "€" * 333_333
    assert len(text.encode("utf-8")) == MAX_TEXT_BYTES + 1
    item = Item(text=text)
    assert item.truncated is True
    assert item.text == text
    scoring = item.scoring_text.encode("utf-8")
    assert len(scoring) <= MAX_TEXT_BYTES
    assert len(scoring) == MAX_TEXT_BYTES - 2
    assert text.startswith(item.scoring_text)


def test_item_at_exactly_max_bytes_is_not_truncated() -> None:
    text = "ab €" * (MAX_TEXT_BYTES // 6) + "wxyz"[: MAX_TEXT_BYTES % 6]
    assert len(text.encode("utf-8")) == MAX_TEXT_BYTES
    item = Item(text=text)
    assert item.truncated is False
    assert item.scoring_text == text


def test_scoring_text_stays_within_limit_when_normalisation_expands_it() -> None:
    # U+FDFA is 3 bytes in UTF-8 but NFKC expands it to 18 characters (33 bytes).
    item = Item(text="\ufdfa" * 333_334)  # 1_000_002 bytes
    assert item.truncated is True
    size = len(item.scoring_text.encode("utf-8"))
    assert size <= MAX_TEXT_BYTES, f"scoring text is {size} bytes"


# --- blank and type checks --------------------------------------------------------------------


@pytest.mark.parametrize("text", ["", "   ", "\n\t ", "\u200b\u200b", " \u200b\ufeff\u2060 "])
def test_is_blank_for_empty_whitespace_and_invisible_text(text: str) -> None:
    assert Item(text=text).is_blank


@pytest.mark.parametrize("text", ["a", "\u200ba\u200b", ".", "Привет"])
def test_is_not_blank_for_visible_text(text: str) -> None:
    assert not Item(text=text).is_blank


@pytest.mark.parametrize("bad", [None, b"bytes", 5, ["a"]])
def test_item_text_must_be_a_string(bad: object) -> None:
    with pytest.raises(TypeError, match=r"Item\.text must be a string"):
        Item(text=bad)  # type: ignore[arg-type]


def test_as_item_wraps_strings_and_passes_items_through() -> None:
    item = Item(text="x", id="1")
    assert as_item(item) is item
    wrapped = as_item("h4te")
    assert isinstance(wrapped, Item)
    assert wrapped.text == "h4te"
    assert wrapped.scoring_text == "hate"
