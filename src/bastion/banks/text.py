"""Near-duplicate text banks: known texts found again after small edits, by MinHash LSH over shingles.

A text bank holds known texts (a scam script, a copypasta, a manifesto's paragraphs) and finds
the items that are the same text with small edits: re-cased, re-punctuated, a word swapped, a
line added. Similarity is the Jaccard index of the two texts' shingle sets; an item matches an
entry at Jaccard >= `threshold` (0.7 by default), and `Match.distance` is 1 - Jaccard, exact.

Normalisation: a text is read as moderation reads it (`Item(text).scoring_text`: NFKC,
invisible characters removed, look-alike letters and leetspeak folded, stretched letters
shortened), then case-folded, and reduced to its words (`\\w+` runs) joined by single spaces,
so punctuation, case and spacing do not count.

Shingles: character 5-grams of that normalised string, word boundaries included. Why characters
and not words (measured on a 70-character extortion message while choosing): swapping one word
for another keeps a Jaccard of 0.77 with character 5-grams but only 0.6 with word 3-grams
(every word sits in three of them), so word n-grams lose a lightly edited copy at 0.7; word
unigrams go the other way and cannot tell a text from its own words in another order (Jaccard
1.0). A different sentence built from many of the same words ("I will send you the photos of the
gift cards everywhere you post") scores 0.25 with 5-grams. Character n-grams also survive a
misspelt word (a few n-grams change, not the whole word) and work for scripts written without
spaces. Why 5: 3- and 4-grams are common to so many texts that unrelated ones share them (that
same sentence scores 0.48 with 3-grams), while longer ones make every edit cost more. Short texts
are the weak spot: in a 35-character text one swapped word is already a large share of its
shingles (Jaccard about 0.55-0.7), so short phrases match only when nearly verbatim; give such a
bank a lower threshold. A text shorter than 5 characters after normalisation has no shingle:
`add` refuses it with a message saying so, and as a query it matches nothing.

Index: each entry's shingle set is summarised by a MinHash signature (datasketch, 128
permutations, the "affine64" scheme and seed 1, recorded in the settings so a later datasketch
default cannot silently change them), stored as `minhash.npy` (uint64, one row per entry, in
entries.jsonl's order) in the version directory; `add` computes signatures only for the new
entries. The LSH (banding) index is rebuilt from the signatures when a version is opened: about
0.7 s per 10,000 entries on the development machine, so a bank of millions of texts would want
its band tables stored too. The LSH only proposes candidates; each is then
verified by the exact Jaccard of the shingle sets, so the reported matches and distances are
exact and only recall depends on the LSH. Its bands are chosen for recall (`lsh_params`): r rows
per band, as many bands as fit, with the largest r that still proposes a pair at exactly the
threshold with probability >= 0.99 (at 0.7: 32 bands of 4 rows, 0.9998; pairs at Jaccard 0.2
are proposed with probability 0.05 and then rejected). datasketch's own choice balances false
positives against false negatives and would miss half the pairs that sit at the threshold.

Allow-lists work as in hash banks: an item that matches a negative entry gets no matches (or,
with `include_negative=True`, only the negative ones).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import Field

from bastion.banks.base import (
    BankSettings,
    RecallBatch,
    RecallScores,
    VersionedBank,
    create_first_version,
    format_ids,
    match_scores,
    read_entries,
)
from bastion.banks.entries import Entry, Match
from bastion.banks.files import (
    ENTRIES,
    BankError,
    BankVersion,
    current_version,
    locked,
    new_version,
    next_manifest,
    write_jsonl,
)
from bastion.banks.hashes import settle_matches

KIND: Literal["text"] = "text"
SIGNAL = "text"
SIGNATURES = "minhash.npy"
#: Probability with which the LSH must propose a pair whose Jaccard is exactly the threshold.
LSH_RECALL = 0.99

_WORD = re.compile(r"\w+")
_SHINGLE_CACHE = 4096


class TextBankSettings(BankSettings):
    """A text bank's settings, as kept in its manifest (see the module's docstring)."""

    kind_name: ClassVar[str] = "text"

    threshold: float = Field(0.7, gt=0.0, le=1.0)
    shingle_size: int = Field(5, ge=2, le=32)
    num_perm: int = Field(128, ge=16, le=1024)
    seed: int = Field(1, ge=0)
    scheme: Literal["affine64"] = "affine64"


def normalise(text: str) -> str:
    """The text as a text bank compares it: moderation's normalisation, case-folded, words only,
    single-spaced (see the module's docstring)."""
    from bastion.items import Item

    if not isinstance(text, str):
        raise BankError(f"a text must be a string, got {type(text).__name__}")
    return " ".join(_WORD.findall(Item(text=text).scoring_text.casefold()))


def shingles(text: str, size: int = 5) -> frozenset[str]:
    """The character `size`-grams of the normalised text; a BankError if it has none."""
    norm = normalise(text)
    if not norm:
        raise BankError(f"text {text.strip()[:60]!r} has no words left after normalisation")
    if len(norm) < size:
        raise BankError(
            f"text {norm!r} is too short to shingle: {len(norm)} characters after normalisation, "
            f"a text bank needs at least {size} (its shingle_size)"
        )
    return frozenset(norm[i : i + size] for i in range(len(norm) - size + 1))


def jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    """|a & b| / |a | b| (0 for two empty sets)."""
    union = len(a | b)
    return len(a & b) / union if union else 0.0


def lsh_params(threshold: float, num_perm: int, recall: float = LSH_RECALL) -> tuple[int, int]:
    """(bands, rows per band) for the LSH: the most rows per band (fewest false candidates)
    with which a pair at exactly `threshold` is still proposed with probability >= `recall`.
    A pair is proposed when all rows of some band agree: 1 - (1 - J^r)^b."""
    for rows in range(num_perm // 2, 0, -1):
        bands = num_perm // rows
        if 1.0 - (1.0 - threshold**rows) ** bands >= recall:
            return bands, rows
    return num_perm, 1


def signatures(sets: Sequence[frozenset[str]], settings: TextBankSettings) -> np.ndarray:
    """MinHash signatures of shingle sets, uint64 (len(sets), num_perm)."""
    from datasketch import MinHash  # type: ignore[import-untyped]

    if not sets:
        return np.zeros((0, settings.num_perm), dtype=np.uint64)
    hashes = MinHash.bulk(
        [[s.encode("utf-8") for s in sorted(shingle_set)] for shingle_set in sets],
        num_perm=settings.num_perm,
        seed=settings.seed,
        scheme=settings.scheme,
    )
    return np.stack([np.asarray(m.hashvalues, dtype=np.uint64) for m in hashes])


class TextBank(VersionedBank):
    """One version of a near-duplicate text bank (see the module's docstring). `add` and
    `remove` commit a new version and return the bank opened at it; this object keeps answering
    from its own."""

    kind: ClassVar[str] = KIND
    signal: ClassVar[str] = SIGNAL
    threshold_key: ClassVar[str] = "threshold"  # a Jaccard similarity

    def __init__(
        self, path: Path, version: BankVersion, entries: Sequence[Entry], sigs: np.ndarray
    ) -> None:
        from datasketch import LeanMinHash, MinHashLSH

        self.path = path
        self._version = version
        self._entries = tuple(entries)
        self.settings = TextBankSettings.parse(version.manifest.settings, self.name)
        s = self.settings
        if sigs.shape != (len(self._entries), s.num_perm):
            raise BankError(
                f"bank {self.name!r}: {SIGNATURES} holds {sigs.shape[0]} signatures of "
                f"{sigs.shape[1] if sigs.ndim == 2 else '?'} values for {len(self._entries)} "
                f"entries of {s.num_perm}; restore the bank or import it again"
            )
        self._signatures = sigs
        self._lsh = MinHashLSH(
            threshold=s.threshold,
            num_perm=s.num_perm,
            params=lsh_params(s.threshold, s.num_perm),
        )
        with self._lsh.insertion_session() as session:
            for i, row in enumerate(sigs):
                session.insert(i, LeanMinHash(seed=s.seed, hashvalues=row, scheme=s.scheme))
        self._shingles: dict[int, frozenset[str]] = {}

    # -- opening --------------------------------------------------------------------------

    @classmethod
    def create(
        cls, path: Path, name: str, settings: dict[str, Any], description: str = ""
    ) -> TextBank:
        """Make a new, empty text bank at `path` (version 1); `settings` are
        `TextBankSettings` fields, the rest take their defaults."""
        parsed = TextBankSettings.parse(dict(settings), name)
        create_first_version(
            path,
            name,
            KIND,
            parsed,
            description,
            lambda staging: _write_version(staging, [], signatures([], parsed)),
        )
        return cls.open(path)

    @classmethod
    def open(cls, path: Path) -> TextBank:
        """The bank's current version, every file checked against its manifest."""
        return cls._load(path, current_version(path))

    @classmethod
    def _load(cls, path: Path, version: BankVersion) -> TextBank:
        manifest = version.manifest
        if manifest.kind != KIND:
            raise BankError(f"bank {manifest.name!r} is a {manifest.kind} bank, not a text bank")
        entries = read_entries(version)
        odd = [e for e in entries if e.signal != SIGNAL]
        if odd:
            raise BankError(
                f"bank {manifest.name!r}: entry {odd[0].id!r} has signal {odd[0].signal!r}, "
                "which a text bank does not hold"
            )
        file = version.file(SIGNATURES)
        try:
            sigs: np.ndarray = np.load(file, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise BankError(f"{file}: not a readable signature file ({exc})") from None
        if sigs.dtype != np.uint64 or sigs.ndim != 2:
            raise BankError(f"{file} holds {sigs.dtype} {sigs.shape}, not uint64 signatures")
        return cls(path, version, entries, sigs)

    # -- what it is ------------------------------------------------------------------------

    @property
    def lsh_bands(self) -> tuple[int, int]:
        """(bands, rows per band) of this bank's LSH."""
        return lsh_params(self.settings.threshold, self.settings.num_perm)

    # -- changes ---------------------------------------------------------------------------

    def validate_entry(self, entry: Entry) -> Entry:
        """`entry` if a text bank can hold it (signal "text", a text with at least one
        shingle), else a BankError naming the problem. The text is kept as given."""
        if not isinstance(entry, Entry):
            raise BankError(f"a bank entry must be an Entry, got {type(entry).__name__}")
        if entry.signal != SIGNAL:
            raise BankError(f"a text bank holds {SIGNAL!r} entries, not {entry.signal!r}")
        shingles(entry.value, self.settings.shingle_size)
        return entry

    def add(self, entries: Iterable[Entry]) -> TextBank:
        """Commit a version with `entries` added; returns the bank opened at it. All or
        nothing: every entry is checked first and the problems are raised together, naming
        each entry's position. Only the new entries' signatures are computed."""
        new = list(entries)
        problems: list[str] = []
        sets: list[frozenset[str]] = []
        for n, e in enumerate(new, 1):
            try:
                if isinstance(e, Entry) and not e.id:
                    raise BankError("an entry needs a non-empty id")
                self.validate_entry(e)
                sets.append(shingles(e.value, self.settings.shingle_size))
            except BankError as exc:
                name = f" ({e.id!r})" if isinstance(e, Entry) and e.id else ""
                problems.append(f"entry {n}{name}: {exc}")
        if problems:
            shown = "; ".join(problems[:5])
            more = f"; and {len(problems) - 5} more" if len(problems) > 5 else ""
            raise BankError(f"bank {self.name!r}: nothing added; {shown}{more}")
        twice = sorted(i for i, k in Counter(e.id for e in new).items() if k > 1)
        if twice:
            raise BankError(f"entries {format_ids(twice)} are given more than once")
        if not new:
            return self
        with locked(self.path):
            base = self._latest()
            base._check_new_ids(new)
            sigs = np.concatenate([base._signatures, signatures(sets, base.settings)])
            all_entries = [*base._entries, *new]
            manifest = next_manifest(base.manifest, len(all_entries))
            with new_version(self.path, manifest) as (staging, _):
                _write_version(staging, all_entries, sigs)
        return TextBank.open(self.path)

    def remove(self, ids: Iterable[str]) -> TextBank:
        """Commit a version without the entries of `ids`; returns the bank opened at it. An id
        the bank does not have is an error (nothing is removed)."""
        gone = set(ids)
        if not gone:
            return self
        with locked(self.path):
            base = self._latest()
            base._check_known_ids(gone)
            keep = np.array([e.id not in gone for e in base._entries], dtype=bool)
            kept = [e for e, k in zip(base._entries, keep, strict=True) if k]
            manifest = next_manifest(base.manifest, len(kept))
            with new_version(self.path, manifest) as (staging, _):
                _write_version(staging, kept, base._signatures[keep])
        return TextBank.open(self.path)

    def _reload(self, version: BankVersion) -> TextBank:
        return TextBank._load(self.path, version)

    # -- queries ---------------------------------------------------------------------------

    def match_texts(
        self, texts: Sequence[str], *, include_negative: bool = False
    ) -> list[list[Match]]:
        """Per text, the entries with Jaccard >= `threshold`, nearest first (distance =
        1 - Jaccard, exact). A text too short to shingle matches nothing (one short comment
        must not fail a batch); an empty bank matches nothing."""
        if isinstance(texts, str):
            raise BankError("match_texts takes a sequence of texts, not one string")
        s = self.settings
        sets: list[frozenset[str] | None] = []
        for text in texts:
            try:
                sets.append(shingles(text, s.shingle_size))
            except BankError:
                if not isinstance(text, str):
                    raise
                sets.append(None)
        out: list[list[Match]] = [[] for _ in texts]
        if not self._entries:
            return out
        usable = [(i, x) for i, x in enumerate(sets) if x is not None]
        sigs = signatures([x for _, x in usable], s)
        from datasketch import LeanMinHash

        for (i, query), row in zip(usable, sigs, strict=True):
            candidates = self._lsh.query(LeanMinHash(seed=s.seed, hashvalues=row, scheme=s.scheme))
            found: dict[int, Match] = {}
            for r in candidates:
                similarity = jaccard(query, self._entry_shingles(int(r)))
                if similarity >= s.threshold:
                    found[int(r)] = self._match(int(r), 1.0 - similarity)
            out[i] = settle_matches(found, include_negative)
        return out

    def match_values(
        self, values: Sequence[str], *, include_negative: bool = False
    ) -> list[list[Match]]:
        """`match_texts` (what `bastion bank match` calls for every kind of bank)."""
        return self.match_texts(values, include_negative=include_negative)

    def recall_scores(self, batch: RecallBatch) -> RecallScores:
        """Per item, its nearest match by its text, scored by Jaccard similarity."""
        return match_scores(self.match_texts(batch.texts), 1.0)

    def _entry_shingles(self, row: int) -> frozenset[str]:
        """An entry's shingles, recomputed from its text (tens of microseconds) and kept for
        the most recently verified candidates only, so a big bank's memory stays bounded."""
        cached = self._shingles.get(row)
        if cached is None:
            cached = shingles(self._entries[row].value, self.settings.shingle_size)
            if len(self._shingles) >= _SHINGLE_CACHE:
                self._shingles.clear()
            self._shingles[row] = cached
        return cached

    def _match(self, row: int, distance: float) -> Match:
        entry = self._entries[row]
        return Match(
            bank=self.name,
            bank_version=self.version,
            entry_id=entry.id,
            signal=SIGNAL,
            distance=max(0.0, float(distance)),
            label=entry.label,
            negative=entry.negative,
        )


def _write_version(staging: Path, entries: list[Entry], sigs: np.ndarray) -> None:
    write_jsonl(staging / ENTRIES, [e.to_json() for e in entries])
    np.save(staging / SIGNATURES, np.ascontiguousarray(sigs, dtype=np.uint64))
