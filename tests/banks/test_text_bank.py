"""Near-duplicate text banks: small edits match with exact Jaccard distances, unrelated and
reshuffled texts do not, the LSH finds what brute force finds, and bad input is named."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from bastion.banks import text as text_module
from bastion.banks.entries import Entry, Label
from bastion.banks.files import BankError, current_version
from bastion.banks.text import SIGNATURES, TextBank, lsh_params, shingles

SCAM = "Send me 50 dollars in gift cards or I will post your photos everywhere"


def entry(id: str, value: str, negative: bool = False, cat: str = "extortion") -> Entry:
    return Entry(id=id, signal="text", value=value, label=Label(cat, 3), negative=negative)


def make(tmp_path: Path, name: str = "scams", **settings: object) -> TextBank:
    return TextBank.create(tmp_path / name, name, dict(settings))


def reference_jaccard(a: str, b: str, n: int = 5) -> float:
    """An independent Jaccard for plain ASCII texts: lower-case words, 5-grams of characters."""

    def grams(t: str) -> set[str]:
        s = " ".join(re.findall(r"[a-z0-9]+", t.lower()))
        return {s[i : i + n] for i in range(len(s) - n + 1)}

    x, y = grams(a), grams(b)
    return len(x & y) / len(x | y)


def test_small_edits_match_with_exact_distances_and_other_texts_do_not(tmp_path: Path) -> None:
    bank = make(tmp_path).add([entry("scam", SCAM), entry("other", "Lovely weather in the park")])
    queries = {
        "SEND me 50 dollars, in gift cards -- or I will post your photos everywhere!!!": True,
        "Send me 50 dollars in gift cards or I will share your photos everywhere": True,  # swap
        "send me 50 dollars in gift cards or I will post your pictures everywhere": True,
        "Send  me 50 dollars in gift cards or i will post your photos everywhere  ": True,
        "I will send you the photos of the gift cards everywhere you post": False,  # reshuffled
        "The weather today is lovely and I will post photos of the park": False,
        "Completely unrelated message about a recipe for carrot cake": False,
    }
    found = bank.match_texts(list(queries))
    for (query, expected), matches in zip(queries.items(), found, strict=True):
        similarity = reference_jaccard(query, SCAM)
        assert ([m.entry_id for m in matches] == ["scam"]) == expected, (query, similarity)
        assert expected == (similarity >= 0.7)
        if expected:
            assert matches[0].distance == pytest.approx(1 - similarity)
            assert matches[0].signal == "text" and matches[0].label == Label("extortion", 3)


def test_normalisation_is_moderations(tmp_path: Path) -> None:
    bank = make(tmp_path).add([entry("threat", "I will find where you live and hurt you")])
    evasions = [
        "I will f1nd where y0u live and hurt y0u",
        "I wiiiiill find where you live and hurt you",
    ]
    assert [[m.entry_id for m in ms] for ms in bank.match_texts(evasions)] == [["threat"]] * 2


def test_the_threshold_is_a_setting(tmp_path: Path) -> None:
    swapped = "Send me 50 dollars in gift cards or I will share your photos everywhere"
    strict = make(tmp_path, "strict", threshold=0.9).add([entry("scam", SCAM)])
    loose = make(tmp_path, "loose", threshold=0.4).add([entry("scam", SCAM)])
    assert strict.match_texts([swapped]) == [[]]
    assert [m.entry_id for m in loose.match_texts([swapped])[0]] == ["scam"]
    assert strict.manifest.settings["threshold"] == 0.9
    with pytest.raises(BankError, match="setting threshold"):
        make(tmp_path, "bad", threshold=1.5)


def test_lsh_bands_are_chosen_for_recall_at_the_threshold() -> None:
    for threshold in (0.3, 0.5, 0.7, 0.8, 0.9, 1.0):
        bands, rows = lsh_params(threshold, 128)
        assert bands * rows <= 128

        def p(b: int, r: int, t: float = threshold) -> float:
            return float(1 - (1 - t**r) ** b)

        assert p(bands, rows) >= 0.99
        if rows < 64:  # one more row per band would fall short of the recall target
            assert p(128 // (rows + 1), rows + 1) < 0.99
    assert lsh_params(0.7, 128) == (32, 4)


def test_the_lsh_finds_what_brute_force_finds(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    words = [f"w{i}" for i in range(400)]
    base = [" ".join(rng.choice(words, 14)) for _ in range(150)]
    bank = make(tmp_path).add([entry(f"t{i}", t) for i, t in enumerate(base)])
    queries = []
    for t in base[:60]:
        toks = t.split()
        for _ in range(int(rng.integers(0, 3))):
            toks[int(rng.integers(len(toks)))] = str(rng.choice(words))
        queries.append(" ".join(toks))
    queries += [" ".join(rng.choice(words, 14)) for _ in range(20)]
    found = bank.match_texts(queries)
    sets = [shingles(t) for t in base]
    for q, matches in zip(queries, found, strict=True):
        qs = shingles(q)
        exact = {f"t{i}": 1 - len(qs & s) / len(qs | s) for i, s in enumerate(sets)}
        expected = {k: d for k, d in exact.items() if d <= 1 - 0.7 + 1e-12}
        assert {m.entry_id: m.distance for m in matches} == pytest.approx(expected)
    assert sum(map(len, found)) >= 40


def test_signatures_are_stored_and_only_new_entries_are_signed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bank = make(tmp_path).add([entry("a", SCAM)])
    signed: list[int] = []
    real = text_module.signatures

    def counting(sets: list[frozenset[str]], settings: text_module.TextBankSettings) -> np.ndarray:
        signed.append(len(sets))
        return real(sets, settings)

    monkeypatch.setattr(text_module, "signatures", counting)
    bank = bank.add([entry("b", "Another known scam script about crypto wallets")])
    assert signed == [1]
    version = current_version(bank.path)
    assert SIGNATURES in version.manifest.files
    stored = np.load(version.file(SIGNATURES))
    assert stored.dtype == np.uint64 and stored.shape == (2, 128)
    reopened = TextBank.open(bank.path)
    assert [m.entry_id for m in reopened.match_texts([SCAM.upper()])[0]] == ["a"]
    smaller = reopened.remove(["a"])
    assert np.load(current_version(bank.path).file(SIGNATURES)).shape == (1, 128)
    assert smaller.match_texts([SCAM]) == [[]]


def test_an_allow_list_entry_suppresses_the_match(tmp_path: Path) -> None:
    quoted = (
        "Our policy bans messages like: send me 50 dollars in gift cards or I will post. "
        "Report them to the safety team"
    )
    bank = make(tmp_path, threshold=0.4).add(
        [entry("scam", SCAM), entry("policy-doc", quoted, negative=True, cat="none")]
    )
    query = "policy bans messages like send me 50 dollars in gift cards or I will post. Report them"
    assert reference_jaccard(query, SCAM) >= 0.4  # it would match the scam ...
    assert reference_jaccard(query, quoted) >= 0.4  # ... but it is the allow-listed quote
    assert bank.match_texts([query, SCAM]) == [[], bank.match_texts([SCAM])[0]]
    assert reference_jaccard(SCAM, quoted) < 0.4
    assert [m.entry_id for m in bank.match_texts([SCAM])[0]] == ["scam"]
    flagged = bank.match_texts([query], include_negative=True)[0]
    assert [m.entry_id for m in flagged] == ["policy-doc"] and flagged[0].negative


def test_texts_too_short_to_shingle_are_named(tmp_path: Path) -> None:
    bank = make(tmp_path)
    with pytest.raises(BankError) as err:
        bank.add([entry("ok", SCAM), entry("short", "ok!!"), entry("blank", " ... ")])
    message = str(err.value)
    assert "nothing added" in message
    assert "entry 2 ('short'): text 'ok' is too short to shingle: 2 characters" in message
    assert "at least 5" in message
    assert "entry 3 ('blank'): text '...' has no words left after normalisation" in message
    assert TextBank.open(bank.path).version == 1
    bank = bank.add([entry("ok", SCAM)])
    assert bank.match_texts(["ok!!", "", SCAM]) == [[], [], bank.match_texts([SCAM])[0]]
    with pytest.raises(BankError, match="a text bank holds 'text' entries, not 'pdq'"):
        bank.add([Entry("h", "pdq", "0" * 64, Label("x"))])


def test_an_empty_bank_matches_nothing(tmp_path: Path) -> None:
    bank = make(tmp_path)
    assert bank.version == 1 and bank.entries == ()
    assert np.load(current_version(bank.path).file(SIGNATURES)).shape == (0, 128)
    assert bank.match_texts([SCAM]) == [[]]


def test_signatures_that_do_not_fit_the_entries_are_refused(tmp_path: Path) -> None:
    bank = make(tmp_path).add([entry("a", SCAM)])
    version = current_version(bank.path)
    with pytest.raises(BankError, match=r"minhash.npy holds 0 signatures .* for 1 entries"):
        TextBank(bank.path, version, bank.entries, np.zeros((0, 128), dtype=np.uint64))
    (version.path / SIGNATURES).write_bytes(b"\x93NUMPY garbage")
    with pytest.raises(BankError, match=r"minhash\.npy is (corrupt|truncated)"):
        TextBank.open(bank.path)
