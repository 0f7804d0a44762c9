"""The Bank protocol: every registered kind implements it, what recall asks of a bank is one
method for every kind, and no code outside `banks/` branches on a bank's kind."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import get_args

import numpy as np
import pytest

import bastion
from bastion.banks.base import Bank, MediaBank, RecallBatch, match_scores
from bastion.banks.entries import Entry, Label, Match
from bastion.banks.files import BankError, BankKind
from bastion.banks.registry import KINDS, Banks, bank_class, default_signal

SPAM = "Win a free cruise today!!! Click the link in my profile to claim your prize now"
PDQ = "f" * 64


def test_the_registry_and_the_manifest_name_the_same_kinds() -> None:
    assert tuple(KINDS) == get_args(BankKind)


@pytest.mark.parametrize("kind", list(KINDS))
def test_every_registered_kind_implements_the_protocol(tmp_path: Path, kind: str) -> None:
    cls = bank_class(kind)
    assert cls.kind == kind
    bank = Banks(tmp_path).create(f"a-{kind}", kind)
    assert isinstance(bank, Bank) and type(bank) is cls and bank.kind == kind
    # A method the protocol declares is the class's own, not a stub inherited from elsewhere.
    members = [m for m in vars(Bank) if not m.startswith("_") and callable(getattr(Bank, m))]
    assert {"add", "remove", "match_values", "recall_scores", "default_signal"} <= set(members)
    for member in members:
        assert callable(getattr(cls, member)), f"{cls.__name__} has no {member}"
    assert isinstance(bank.default_signal("x" * 40), str)
    key, _ = cls.threshold_setting(1)
    assert key in bank.manifest.settings  # the setting `--threshold` sets is one of the kind's


def test_media_banks_match_media_and_the_others_hold_texts(tmp_path: Path) -> None:
    banks = Banks(tmp_path)
    media = {k for k in KINDS if isinstance(banks.create(f"m-{k}", k), MediaBank)}
    assert media == {"hash"}


def test_a_bare_value_gets_its_kinds_signal() -> None:
    assert default_signal("hash", PDQ) == "pdq"
    assert default_signal("hash", "0" * 32) == "md5"
    assert default_signal("text", SPAM) == "text"
    assert default_signal("embedding", SPAM) == "embedding"
    with pytest.raises(BankError, match="unknown bank kind 'sound'"):
        default_signal("sound", SPAM)


def test_an_embedding_bank_checks_entries_like_the_others(tmp_path: Path) -> None:
    bank = Banks(tmp_path).create("e", "embedding")
    label = Label("fraud")
    assert bank.validate_entry(Entry("a", "embedding", SPAM, label)).value == SPAM
    with pytest.raises(BankError, match="holds 'embedding' entries, not 'text'"):
        bank.validate_entry(Entry("a", "text", SPAM, label))
    with pytest.raises(BankError, match="has no text"):
        bank.validate_entry(Entry("a", "embedding", "  ", label))


def test_recall_scores_of_a_text_bank_are_its_nearest_live_match(tmp_path: Path) -> None:
    bank = Banks(tmp_path).create("spam", "text")
    bank = bank.add([Entry("cruise", "text", SPAM, Label("illicit"))])
    batch = RecallBatch([SPAM.upper(), "The bakery opens at seven tomorrow morning", ""], _no, _no)
    found = bank.recall_scores(batch)
    assert found.scores[0] == pytest.approx(1.0) and found.distances[0] == pytest.approx(0.0)
    assert np.isnan(found.scores[1:]).all() and np.isnan(found.distances[1:]).all()


def test_match_scores_skip_allow_list_matches() -> None:
    def match(distance: float, negative: bool = False) -> Match:
        return Match("b", 1, "e", "pdq", distance, Label("x"), negative)

    got = match_scores([[match(64), match(32)], [match(0, negative=True)], []], 256)
    np.testing.assert_allclose(got.scores, [0.875, np.nan, np.nan])
    np.testing.assert_allclose(got.distances, [32, np.nan, np.nan])


def test_a_batch_embeds_its_texts_once_per_encoder() -> None:
    calls: list[Sequence[str]] = []

    def embed(texts: Sequence[str]) -> np.ndarray:
        calls.append(list(texts))
        return np.ones((len(texts), 2))

    batch = RecallBatch(["one", " ", "two"], _no, _no)
    assert batch.vectors("enc", embed).shape == (2, 2)
    batch.vectors("enc", embed)
    assert calls == [["one", "two"]] and batch.has_text.tolist() == [True, False, True]


def _no() -> list[list[str]]:
    raise AssertionError("a text bank must not ask for media hashes or digests")


#: What a branch on a bank's kind looks like: a comparison with a kind's name (in modules that
#: mention banks: "text" is also a content part's type), a test of the manifest's kind, a
#: match statement on it, a dict of all kinds, or one parameter per kind.
_KIND = r"""["'](?:hash|text|embedding)["']"""
_KIND_NAMED = [
    re.compile(rf"kind\s*(?:==|!=)\s*{_KIND}"),
    re.compile(rf"{_KIND}\s*(?:==|!=)\s*[\w.]*kind\b"),
    re.compile(rf"kind\s+(?:not\s+)?in\s*[(\[{{][^)\]}}]*{_KIND}"),
    re.compile(rf"case\s+{_KIND}"),
]
_KIND_BRANCHES = [
    *_KIND_NAMED,
    re.compile(r"manifest\.kind\s*(?:==|!=|\bin\b|\bnot\s+in\b)"),
    re.compile(r"\bisinstance\([^)]*\b(?:HashBank|TextBank|EmbeddingBank)\b"),
    re.compile(r"""\{\s*["']hash["']\s*:[^{}]*["']text["']\s*:"""),
    re.compile(r"\b(?:hash|text|embedding)_banks\b|\bby_kind\b"),
    re.compile(rf"Literal\[\s*{_KIND}\s*,"),
]


def test_no_code_outside_banks_branches_on_a_bank_kind() -> None:
    src = Path(bastion.__file__).parent
    found = []
    for path in sorted(src.rglob("*.py")):
        if path.is_relative_to(src / "banks"):
            continue
        text = path.read_text("utf-8")
        patterns = _KIND_BRANCHES if "bank" in text.lower() else _KIND_BRANCHES[len(_KIND_NAMED) :]
        for n, line in enumerate(text.splitlines(), 1):
            if any(p.search(line) for p in patterns):
                found.append(f"{path.relative_to(src)}:{n}: {line.strip()}")
    assert found == [], "branch on a bank kind outside banks/ (ask the Bank protocol instead)"


def test_the_kind_branch_patterns_catch_what_they_are_for() -> None:
    caught = [
        'if kind == "hash":',
        'signal = "embedding" if bank.manifest.kind == "embedding" else "text"',
        'elif bank.manifest.kind in ("text", "embedding") and violation.text:',
        'by_kind: dict[str, list[Any]] = {"hash": [], "text": [], "embedding": []}',
        "hash_banks=by_kind['hash'],",
        'case "text":',
        "if isinstance(bank, TextBank):",
        'kind: Literal["hash", "text", "embedding"]',
    ]
    missed = [line for line in caught if not any(p.search(line) for p in _KIND_BRANCHES)]
    assert missed == []
    for fine in ('if kind == "image":', 'input: Literal["image", "hash"]', "if kind not in KINDS"):
        assert not any(p.search(fine) for p in _KIND_BRANCHES), fine
