"""Hash banks: known images and videos by PDQ, vPDQ and MD5, matched by Hamming distance or exactly.

A hash bank holds `Entry` rows whose signal is one of ThreatExchange's:

- `pdq`: an image's PDQ hash, 64 lowercase hex characters (256 bits). A query matches an entry
  when at most `pdq_threshold` bits differ (31 by default: ThreatExchange's
  PDQ_CONFIDENT_MATCH_THRESHOLD, the distance Meta's Hasher-Matcher-Actioner matches at).
- `vpdq`: a video, as ThreatExchange's vPDQ signal string: a JSON list of "hex,quality,timestamp"
  strings, one per sampled frame (`VPDQSignal`; `vpdq_value` makes one from the `MediaHash`es
  that `bastion.media` produces). A query video matches an entry video as
  `threatexchange.extensions.vpdq` decides: frames under quality 50 are dropped and repeated
  frame hashes counted once on both sides; a frame matches when some frame of the other video is
  within 31 bits; the query matches when at least 80% of its frames match (query match percent)
  and at least 0% of the entry's frames do (compared match percent). All four numbers are
  settings with ThreatExchange's defaults.
- `md5`: the MD5 of a file's bytes (32 hex characters), for exact copies of any file.

Allow-lists: an entry with `negative=True` is known *not* to violate (a news photo that is often
re-uploaded). When an item matches a negative entry, the bank reports none of its positive
matches: `match_*` return an empty list for that item, the same answer `EmbeddingBank.match`
gives, so a caller that treats any match as a hit cannot action allow-listed content. With
`include_negative=True` they return the negative matches instead (flagged `negative=True`), for
a reviewer who needs to see which allow-list entry suppressed what. Why a negative match wins
regardless of distance: within the threshold both hashes are the same picture, and an entry
someone marked as fine is the more specific statement (as `scoring.suppressed` for embeddings).

Indexes. PDQ hashes (and the frames of vPDQ entries) are kept in FAISS binary flat indexes in the
bank's version directory (`pdq.faiss`; `vpdq.faiss` with `vpdq_frames.npy`, the entry of each
frame), checksummed by the manifest like every other file. An `add` copies the previous
version's index and adds the new hashes; a `remove` rebuilds it from the hashes that remain.
Two ways to search them, both exact, both returning the same matches:

- "flat": FAISS's `IndexBinaryFlat` range search, a popcount scan of 32 bytes per hash.
- "multihash": multi-index hashing (`bastion.banks.mih`), built in memory from the saved codes
  when the bank opens and extended (not rebuilt) by `add`: 16 tables keyed by 16-bit chunks,
  probing each chunk's key with up to threshold // 16 bits flipped, exact by pigeonhole up to
  47 bits (see that module). Past 47 bits the probes cost more than a scan, so "multihash" is
  refused there and "auto" scans.

Which one: `index` "auto" (the default) uses multi-hash above `multihash_min` hashes (20,000). On
the development machine (2 cores, uniformly random hashes, threshold 31, batches of 1,000
queries) the flat scan was faster at 1,000 hashes (260,000 vs 140,000 queries/s), the multi-hash
from 10,000 on (60,000 vs 144,000 at 10,000; 9,500 vs 27,000 at 200,000), and at 1,000,000 the
scan manages 1,866 queries/s against the multi-hash's 11,832 (`bench/bank_scale.py`).
Single queries cross over between 10,000 and 50,000 hashes. `index` "flat" or "multihash"
forces the choice.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import Any, ClassVar, Literal, cast

import faiss
import numpy as np
from pydantic import Field, model_validator

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
from bastion.banks.mih import MAX_THRESHOLD, MultiIndexHash
from bastion.errors import ErrorCode
from bastion.media.hashing import PDQ_MATCH_THRESHOLD, MediaHash

KIND: Literal["hash"] = "hash"
HASH_SIGNALS = ("pdq", "vpdq", "md5")
IndexChoice = Literal["auto", "flat", "multihash"]
IndexKind = Literal["flat", "multihash"]

PDQ_BITS = 256
CODE_BYTES = PDQ_BITS // 8
MULTIHASH_MAX_THRESHOLD = MAX_THRESHOLD  # nflip <= 2; see bastion.banks.mih

#: ThreatExchange's vPDQ defaults (threatexchange.extensions.vpdq.vpdq_util; a test checks them).
VPDQ_QUALITY_THRESHOLD = 50
VPDQ_DISTANCE_THRESHOLD = 31
VPDQ_QUERY_MATCH_THRESHOLD_PERCENT = 80.0
VPDQ_INDEX_MATCH_THRESHOLD_PERCENT = 0.0
#: PDQ hashes of images under this quality (flat or blurred pictures) are not matched when they
#: come as `MediaHash`es, as ThreatExchange's PdqSignal does not hash them.
PDQ_QUALITY_THRESHOLD = 50

PDQ_INDEX = "pdq.faiss"
VPDQ_INDEX = "vpdq.faiss"
VPDQ_FRAMES = "vpdq_frames.npy"

_HEX = frozenset("0123456789abcdef")
_MD5 = re.compile(r"[0-9a-f]{32}")


class HashBankSettings(BankSettings):
    """A hash bank's settings, as kept in its manifest (see the module's docstring for each)."""

    kind_name: ClassVar[str] = "hash"

    pdq_threshold: int = Field(PDQ_MATCH_THRESHOLD, ge=0, le=PDQ_BITS)
    pdq_quality_threshold: int = Field(PDQ_QUALITY_THRESHOLD, ge=0, le=100)
    vpdq_distance_threshold: int = Field(VPDQ_DISTANCE_THRESHOLD, ge=0, le=PDQ_BITS)
    vpdq_quality_threshold: int = Field(VPDQ_QUALITY_THRESHOLD, ge=0, le=100)
    vpdq_query_match_percent: float = Field(VPDQ_QUERY_MATCH_THRESHOLD_PERCENT, ge=0, le=100)
    vpdq_compared_match_percent: float = Field(VPDQ_INDEX_MATCH_THRESHOLD_PERCENT, ge=0, le=100)
    index: IndexChoice = "auto"
    multihash_min: int = Field(20_000, ge=0)

    @model_validator(mode="after")
    def _multihash_reach(self) -> HashBankSettings:
        widest = max(self.pdq_threshold, self.vpdq_distance_threshold)
        if self.index == "multihash" and widest > MULTIHASH_MAX_THRESHOLD:
            raise ValueError(
                f"a multi-hash index is exact only with nflip = threshold // 16 bit flips, and "
                f"a threshold of {widest} would need {widest // 16} (more probes than a scan); "
                f"use index 'flat' or 'auto' for thresholds over {MULTIHASH_MAX_THRESHOLD}"
            )
        return self

    def index_kind(self, n: int, threshold: int) -> IndexKind:
        """The index for `n` hashes matched at `threshold` bits."""
        if self.index == "flat" or threshold > MULTIHASH_MAX_THRESHOLD:
            return "flat"
        if self.index == "multihash":
            return "multihash"
        return "multihash" if n > self.multihash_min else "flat"


@dataclass(frozen=True)
class VideoMatch(Match):
    """A vPDQ match, with ThreatExchange's two percentages as evidence: how much of the query
    video's (quality-filtered, distinct) frames matched the entry, and how much of the entry's
    matched the query. `distance` is the mean Hamming distance of the matching query frames to
    their nearest frame of the entry."""

    query_match_percent: float = 0.0
    compared_match_percent: float = 0.0


@dataclass(frozen=True)
class VpdqFrame:
    """One frame of a vPDQ signal: its PDQ hash, PDQ quality (0-100) and time in seconds."""

    hash: str
    quality: int
    timestamp: float


# -- validating hash strings -----------------------------------------------------------------


class InvalidHashError(BankError):
    """A hash value is not a PDQ, MD5 or vPDQ signal, or not a well-formed one; the message says
    what is wrong and where. The API answers a lookup's hash with it as `invalid_hash`."""

    code = ErrorCode.invalid_hash


def check_pdq(value: str) -> str:
    """`value` as a canonical PDQ hash (64 lowercase hex), or an InvalidHashError saying what is wrong
    (its length, or the first character that is not hex, and where). threatexchange's
    `PdqSignal.validate_signal_str` then has the last word, so a bank holds only what any
    ThreatExchange tool accepts."""
    text = _check_hex(value, 64, "PDQ hash")
    _threatexchange_check("pdq", text)
    return text


def check_md5(value: str) -> str:
    """`value` as a canonical MD5 digest (32 lowercase hex), or an InvalidHashError saying what is
    wrong; then threatexchange's `VideoMD5Signal.validate_signal_str`."""
    text = _check_hex(value, 32, "MD5 digest")
    _threatexchange_check("md5", text)
    return text


@lru_cache(maxsize=1)
def _signal_types() -> dict[str, Any]:
    """threatexchange's signal types, imported on first use (pdqhash and vpdq come with them)."""
    from threatexchange.extensions.vpdq.vpdq import VPDQSignal
    from threatexchange.signal_type.md5 import VideoMD5Signal
    from threatexchange.signal_type.pdq.signal import PdqSignal

    return {"pdq": PdqSignal, "md5": VideoMD5Signal, "vpdq": VPDQSignal}


def _threatexchange_check(signal: str, value: str) -> None:
    try:
        _signal_types()[signal].validate_signal_str(value)
    except ValueError as exc:
        raise InvalidHashError(
            f"threatexchange refuses the {signal} signal {value[:80]!r}: {exc}"
        ) from None


def _check_hex(value: object, length: int, what: str) -> str:
    if not isinstance(value, str):
        raise InvalidHashError(f"a {what} must be a string, got {type(value).__name__}")
    text = value.strip().lower()
    shown = f"{value.strip()[:80]!r}"
    if not text:
        raise InvalidHashError(f"a {what} is {length} hex characters; got an empty value")
    if len(text) != length:
        raise InvalidHashError(
            f"a {what} is {length} hex characters; {shown} has {len(text)} (wrong length)"
        )
    for i, ch in enumerate(text):
        if ch not in _HEX:
            raise InvalidHashError(
                f"a {what} is {length} hex characters (0-9, a-f); {shown} has {ch!r} at "
                f"position {i + 1}"
            )
    return text


def parse_vpdq(value: str) -> list[VpdqFrame]:
    """A vPDQ signal string (ThreatExchange's JSON list of "hex,quality,timestamp") as frames."""
    if not isinstance(value, str) or not value.strip():
        raise InvalidHashError(
            "a vPDQ signal is a JSON list of 'hex,quality,timestamp'; got nothing"
        )
    try:
        raw = json.loads(value)
    except json.JSONDecodeError as exc:
        raise InvalidHashError(
            f"a vPDQ signal is a JSON list of 'hex,quality,timestamp' strings; not JSON "
            f"({exc.msg} at character {exc.pos + 1})"
        ) from None
    if not isinstance(raw, list):
        raise InvalidHashError(
            f"a vPDQ signal is a JSON list of 'hex,quality,timestamp' strings, not a "
            f"{type(raw).__name__}"
        )
    if not raw:
        raise InvalidHashError("a vPDQ signal needs at least one frame; the list is empty")
    frames = []
    for n, item in enumerate(raw, 1):
        if not isinstance(item, str) or item.count(",") != 2:
            raise InvalidHashError(
                f"vPDQ frame {n}: expected 'hex,quality,timestamp', got {item!r:.100}"
            )
        digest, quality, timestamp = item.split(",")
        try:
            pdq = check_pdq(digest)
        except InvalidHashError as exc:
            raise InvalidHashError(f"vPDQ frame {n}: {exc}") from None
        try:
            q = int(quality)
            t = float(timestamp)
        except ValueError:
            raise InvalidHashError(
                f"vPDQ frame {n}: quality {quality!r} or timestamp {timestamp!r} is not a number"
            ) from None
        if not 0 <= q <= 100:
            raise InvalidHashError(f"vPDQ frame {n}: quality must be 0-100, got {q}")
        if not t >= 0 or t == float("inf"):
            raise InvalidHashError(
                f"vPDQ frame {n}: timestamp must be a finite number >= 0, got {t}"
            )
        frames.append(VpdqFrame(pdq, q, t))
    return frames


def vpdq_value(frames: Sequence[MediaHash | VpdqFrame]) -> str:
    """Frames (the `MediaHash`es of `bastion.media.hashing.vpdq_hashes`, or `VpdqFrame`s) as
    ThreatExchange's vPDQ signal string, written by threatexchange itself."""
    from threatexchange.extensions.vpdq.vpdq_util import VpdqCompactFeature, vpdq_to_json

    features = []
    for f in frames:
        if isinstance(f, MediaHash):
            stamp = f.timestamp_s if f.timestamp_s is not None else 0.0
            features.append(VpdqCompactFeature(check_pdq(f.hash), int(f.quality), float(stamp)))
        else:
            features.append(VpdqCompactFeature(check_pdq(f.hash), f.quality, f.timestamp))
    if not features:
        raise InvalidHashError("a vPDQ signal needs at least one frame")
    try:
        value = str(vpdq_to_json(features))
    except ValueError as exc:
        raise InvalidHashError(f"not a valid vPDQ signal: {exc}") from None
    _threatexchange_check("vpdq", value)
    return value


def infer_signal(value: str) -> str:
    """The hash signal a bare value most likely is: a JSON list is vPDQ, 32 hex characters MD5,
    anything else is taken for PDQ (and `check_pdq` says what is wrong with it)."""
    text = value.strip()
    if text.startswith("["):
        return "vpdq"
    if _MD5.fullmatch(text.lower()):
        return "md5"
    return "pdq"


def check_value(value: str, signal: str | None = None) -> tuple[str, str]:
    """(signal, canonical value) of a hash value, the signal told from the value when not given
    (`infer_signal`); an InvalidHashError says what is wrong with it."""
    if not isinstance(value, str):
        raise InvalidHashError(f"a hash value must be a string, got {type(value).__name__}")
    signal = signal or infer_signal(value)
    if signal == "pdq":
        return signal, check_pdq(value)
    if signal == "md5":
        return signal, check_md5(value)
    if signal == "vpdq":
        return signal, vpdq_value(parse_vpdq(value))
    raise InvalidHashError(f"a hash bank holds {', '.join(HASH_SIGNALS)} values, not {signal!r}")


def _codes(hexes: Sequence[str]) -> np.ndarray:
    """Canonical hex hashes as a (n, 32) uint8 array, most significant byte first (FAISS's and
    PDQ's bit order agree: the Hamming distance is the same either way)."""
    if not hexes:
        return np.zeros((0, CODE_BYTES), dtype=np.uint8)
    try:
        raw = bytes.fromhex("".join(hexes))
    except ValueError:
        bad = next(h for h in hexes if not (len(h) == 64 and set(h) <= _HEX))
        raise BankError(f"not a PDQ hash: {bad[:80]!r}") from None
    if len(raw) != CODE_BYTES * len(hexes):
        bad = next(h for h in hexes if len(h) != 64)
        raise BankError(f"not a PDQ hash: {bad[:80]!r}")
    return np.frombuffer(raw, dtype=np.uint8).reshape(-1, CODE_BYTES)


# -- the binary index ------------------------------------------------------------------------


class BinaryIndex:
    """256-bit codes answering "which codes are within t bits" exactly. Row i is the i-th code
    added. The codes always sit in a FAISS IndexBinaryFlat, which is what is saved (and what
    answers a "flat" index, by scan); a "multihash" index also holds a `MultiIndexHash` built
    from them in memory. Never changed once built: `extended` returns a new index, so a bank
    version's index can be shared by its readers."""

    def __init__(
        self, flat: Any, codes: np.ndarray, kind: IndexKind, mih: MultiIndexHash | None = None
    ) -> None:
        self._flat = flat
        self._mih = mih
        self.codes = codes
        self.kind = kind

    def __len__(self) -> int:
        return len(self.codes)

    @classmethod
    def build(cls, codes: np.ndarray, kind: IndexKind) -> BinaryIndex:
        codes = np.ascontiguousarray(codes, dtype=np.uint8).reshape(-1, CODE_BYTES)
        flat: Any = faiss.IndexBinaryFlat(PDQ_BITS)
        if len(codes):
            flat.add(codes)
        return cls._with(flat, codes, kind)

    @classmethod
    def _with(cls, flat: Any, codes: np.ndarray, kind: IndexKind) -> BinaryIndex:
        return cls(flat, codes, kind, MultiIndexHash.build(codes) if kind == "multihash" else None)

    def extended(self, new: np.ndarray, kind: IndexKind) -> BinaryIndex:
        """A copy of this index with `new` codes added after the existing ones (rebuilt when the
        kind changes, e.g. a bank growing past `multihash_min`)."""
        new = np.ascontiguousarray(new, dtype=np.uint8).reshape(-1, CODE_BYTES)
        codes = np.concatenate([self.codes, new])
        if kind != self.kind:
            return BinaryIndex.build(codes, kind)
        flat: Any = faiss.deserialize_index_binary(faiss.serialize_index_binary(self._flat))
        if len(new):
            flat.add(new)
        mih = self._mih.extended(new) if self._mih is not None else None
        return BinaryIndex(flat, codes, kind, mih)

    def search(self, queries: np.ndarray, threshold: int) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per query, (rows, distances) of the codes at most `threshold` bits away, nearest
        first. The multi-index hash reports exact distances; FAISS's range search keeps
        distances strictly under its radius, hence +1, and they are checked again."""
        queries = np.ascontiguousarray(queries, dtype=np.uint8).reshape(-1, CODE_BYTES)
        if not len(queries):
            return []
        if not len(self.codes):
            empty = np.zeros(0, dtype=np.int64)
            return [(empty, empty) for _ in range(len(queries))]
        if self._mih is not None:
            lims, ids, dists = self._mih.search(queries, threshold)
        else:
            lims, dists, ids = self._flat.range_search(queries, threshold + 1)
        ids = np.asarray(ids, dtype=np.int64)
        dists = np.asarray(dists, dtype=np.int64)
        out: list[tuple[np.ndarray, np.ndarray]] = []
        for q in range(len(queries)):
            rows, dist = ids[lims[q] : lims[q + 1]], dists[lims[q] : lims[q + 1]]
            keep = dist <= threshold
            rows, dist = rows[keep], dist[keep]
            order = np.lexsort((rows, dist))
            out.append((rows[order], dist[order]))
        return out

    def save(self, path: Path) -> None:
        faiss.write_index_binary(self._flat, str(path))

    @classmethod
    def load(cls, path: Path, codes: np.ndarray, kind: IndexKind) -> BinaryIndex:
        """Read an index and check that it holds exactly `codes` (from the bank's entries), so
        an index that does not belong to the entries is refused rather than trusted. A FAISS
        IndexBinaryMultiHash (what banks saved before the multi-index hash was Bastion's own)
        is read for its codes."""
        try:
            raw: Any = faiss.read_index_binary(str(path))
        except RuntimeError as exc:
            raise BankError(f"{path}: FAISS cannot read it ({str(exc).splitlines()[0]})") from None
        if isinstance(raw, faiss.IndexBinaryMultiHash):
            raw = faiss.downcast_IndexBinary(cast(Any, raw).storage)
        if not isinstance(raw, faiss.IndexBinaryFlat):
            raise BankError(f"{path} is a {type(raw).__name__}, not a PDQ index")
        if raw.d != PDQ_BITS or raw.ntotal != len(codes):
            raise BankError(
                f"{path} indexes {raw.ntotal} codes of {raw.d} bits, but the bank has "
                f"{len(codes)} {PDQ_BITS}-bit hashes; restore the bank or import it again"
            )
        stored = faiss.vector_to_array(cast(Any, raw).xb)
        if not np.array_equal(np.asarray(stored).reshape(-1, CODE_BYTES), codes):
            raise BankError(
                f"{path} does not hold the bank's hashes; restore the bank or import it again"
            )
        return cls._with(raw, codes, kind)


# -- the bank --------------------------------------------------------------------------------


class HashBank(VersionedBank):
    """One version of a hash bank (see the module's docstring). `add` and `remove` commit a new
    version and return the bank opened at it; this object keeps answering from its own."""

    kind: ClassVar[str] = KIND
    threshold_key: ClassVar[str] = "pdq_threshold"

    def __init__(
        self,
        path: Path,
        version: BankVersion,
        entries: Sequence[Entry],
        pdq_index: BinaryIndex | None,
        vpdq_index: BinaryIndex | None,
        frame_video: np.ndarray,
    ) -> None:
        self.path = path
        self._version = version
        self._entries = tuple(entries)
        self.settings = HashBankSettings.parse(version.manifest.settings, self.name)
        signals = np.array([e.signal for e in self._entries], dtype=object)
        self._pdq_rows = np.flatnonzero(signals == "pdq")
        self._video_rows = np.flatnonzero(signals == "vpdq")
        self._md5: dict[str, list[int]] = {}
        for i in np.flatnonzero(signals == "md5").tolist():
            self._md5.setdefault(self._entries[i].value, []).append(i)
        self._pdq_index = pdq_index
        self._vpdq_index = vpdq_index
        self._frame_video = frame_video
        self._frames_per_video = np.bincount(frame_video, minlength=len(self._video_rows))

    # -- opening --------------------------------------------------------------------------

    @classmethod
    def create(
        cls, path: Path, name: str, settings: dict[str, Any], description: str = ""
    ) -> HashBank:
        """Make a new, empty hash bank at `path` (version 1); `settings` are
        `HashBankSettings` fields, the rest take their defaults."""
        parsed = HashBankSettings.parse(dict(settings), name)
        create_first_version(
            path,
            name,
            KIND,
            parsed,
            description,
            lambda staging: _write_version(staging, [], None, None, np.zeros(0, dtype=np.int64)),
        )
        return cls.open(path)

    @classmethod
    def open(cls, path: Path) -> HashBank:
        """The bank's current version, every file checked against its manifest."""
        return cls._load(path, current_version(path))

    @classmethod
    def _load(cls, path: Path, version: BankVersion) -> HashBank:
        manifest = version.manifest
        if manifest.kind != KIND:
            raise BankError(f"bank {manifest.name!r} is a {manifest.kind} bank, not a hash bank")
        settings = HashBankSettings.parse(manifest.settings, manifest.name)
        entries = read_entries(version)
        odd = [e for e in entries if e.signal not in HASH_SIGNALS]
        if odd:
            raise BankError(
                f"bank {manifest.name!r}: entry {odd[0].id!r} has signal {odd[0].signal!r}, "
                "which a hash bank does not hold"
            )
        pdq = [e.value for e in entries if e.signal == "pdq"]
        pdq_index = None
        if pdq:
            kind = settings.index_kind(len(pdq), settings.pdq_threshold)
            pdq_index = BinaryIndex.load(version.file(PDQ_INDEX), _codes(pdq), kind)
        videos = [_video_frames(e.value, settings) for e in entries if e.signal == "vpdq"]
        vpdq_index = None
        frame_video = np.zeros(0, dtype=np.int64)
        if videos:
            frame_video = _read_frame_video(version)
            expected = np.repeat(np.arange(len(videos)), [len(v) for v in videos])
            if not np.array_equal(frame_video, expected):
                raise BankError(
                    f"{version.path / VPDQ_FRAMES} does not match the bank's vPDQ entries; "
                    "restore the bank or import it again"
                )
            frames = _codes([f.hash for v in videos for f in v])
            kind = settings.index_kind(len(frames), settings.vpdq_distance_threshold)
            vpdq_index = BinaryIndex.load(version.file(VPDQ_INDEX), frames, kind)
        return cls(path, version, entries, pdq_index, vpdq_index, frame_video)

    # -- what it is ------------------------------------------------------------------------

    @classmethod
    def default_signal(cls, value: str) -> str:
        """The hash signal a bare value is taken for (`infer_signal`)."""
        return infer_signal(value)

    @classmethod
    def threshold_setting(cls, value: float) -> tuple[str, float]:
        """`pdq_threshold`, in whole bits."""
        if value != int(value):
            raise BankError(f"a hash bank's threshold is whole PDQ bits, not {value}")
        return cls.threshold_key, int(value)

    @property
    def index_kinds(self) -> dict[str, str | None]:
        """Which index the PDQ hashes and the vPDQ frames use now (None when there are none)."""
        return {
            "pdq": self._pdq_index.kind if self._pdq_index else None,
            "vpdq": self._vpdq_index.kind if self._vpdq_index else None,
        }

    # -- changes ---------------------------------------------------------------------------

    def validate_entry(self, entry: Entry) -> Entry:
        """`entry` with its value in canonical form (lowercase hex; vPDQ as threatexchange
        writes it), or a BankError naming what is wrong with the value or signal. `add` calls
        it on every entry (and also wants a unique, non-empty id); batch tools (`exchange`)
        call it first to report bad rows and add the good ones."""
        if not isinstance(entry, Entry):
            raise BankError(f"a bank entry must be an Entry, got {type(entry).__name__}")
        if entry.signal == "pdq":
            return replace(entry, value=check_pdq(entry.value))
        if entry.signal == "md5":
            return replace(entry, value=check_md5(entry.value))
        if entry.signal == "vpdq":
            frames = parse_vpdq(entry.value)
            if not _usable(frames, self.settings):
                raise BankError(
                    f"the vPDQ signal has no frame of quality >= "
                    f"{self.settings.vpdq_quality_threshold} (vpdq_quality_threshold): it could "
                    "never match"
                )
            return replace(entry, value=vpdq_value(frames))
        raise BankError(
            f"a hash bank holds {', '.join(HASH_SIGNALS)} entries, not {entry.signal!r}"
        )

    def add(self, entries: Iterable[Entry]) -> HashBank:
        """Commit a version with `entries` added; returns the bank opened at it.

        All or nothing: every entry is checked first (`validate_entry`) and the first few
        problems are raised together, naming each entry's position and id. Ids must be new to
        the bank. The PDQ and vPDQ indexes of the current version are copied and extended.
        """
        new = _validated(self, list(entries))
        if not new:
            return self
        with locked(self.path):
            base = self._latest()
            base._check_new_ids(new)
            settings = base.settings
            all_entries = [*base._entries, *new]
            pdq_new = _codes([e.value for e in new if e.signal == "pdq"])
            pdq_index = _grow(
                base._pdq_index, pdq_new, settings, settings.pdq_threshold, len(base._pdq_rows)
            )
            videos = [e for e in new if e.signal == "vpdq"]
            frame_lists = [_video_frames(e.value, settings) for e in videos]
            frames_new = _codes([f.hash for fl in frame_lists for f in fl])
            first = len(base._video_rows)
            frame_video = np.concatenate(
                [base._frame_video]
                + [np.full(len(fl), first + i, dtype=np.int64) for i, fl in enumerate(frame_lists)]
            ).astype(np.int64)
            vpdq_index = _grow(
                base._vpdq_index,
                frames_new,
                settings,
                settings.vpdq_distance_threshold,
                len(base._frame_video),
            )
            manifest = next_manifest(base.manifest, len(all_entries))
            with new_version(self.path, manifest) as (staging, _):
                _write_version(staging, all_entries, pdq_index, vpdq_index, frame_video)
        return HashBank.open(self.path)

    def remove(self, ids: Iterable[str]) -> HashBank:
        """Commit a version without the entries of `ids`; returns the bank opened at it. An id
        the bank does not have is an error (nothing is removed). The indexes are rebuilt from
        the hashes that remain (FAISS's binary indexes cannot drop rows in place)."""
        gone = set(ids)
        if not gone:
            return self
        with locked(self.path):
            base = self._latest()
            base._check_known_ids(gone)
            keep = np.array([e.id not in gone for e in base._entries], dtype=bool)
            kept = [e for e, k in zip(base._entries, keep, strict=True) if k]
            settings = base.settings
            pdq_index = None
            if base._pdq_index is not None:
                codes = base._pdq_index.codes[keep[base._pdq_rows]]
                if len(codes):
                    kind = settings.index_kind(len(codes), settings.pdq_threshold)
                    pdq_index = BinaryIndex.build(codes, kind)
            vpdq_index = None
            frame_video = np.zeros(0, dtype=np.int64)
            if base._vpdq_index is not None:
                video_kept = keep[base._video_rows]
                frame_kept = video_kept[base._frame_video]
                renumber = np.cumsum(video_kept) - 1
                frame_video = renumber[base._frame_video[frame_kept]].astype(np.int64)
                codes = base._vpdq_index.codes[frame_kept]
                if len(codes):
                    threshold = settings.vpdq_distance_threshold
                    kind = settings.index_kind(len(codes), threshold)
                    vpdq_index = BinaryIndex.build(codes, kind)
            manifest = next_manifest(base.manifest, len(kept))
            with new_version(self.path, manifest) as (staging, _):
                _write_version(staging, kept, pdq_index, vpdq_index, frame_video)
        return HashBank.open(self.path)

    def _reload(self, version: BankVersion) -> HashBank:
        return HashBank._load(self.path, version)

    # -- queries ---------------------------------------------------------------------------

    def match_pdq(
        self, hashes: Sequence[str], *, include_negative: bool = False
    ) -> list[list[Match]]:
        """Per PDQ hash (64 hex), the PDQ entries within `pdq_threshold` bits, nearest first
        (distance in bits). Allow-list entries suppress, see the module's docstring. A
        malformed hash is a BankError naming its position; an empty bank matches nothing."""
        queries = _parse_queries(hashes, check_pdq, "PDQ hash")
        found = self._pdq_found(queries)
        return [settle_matches(f, include_negative) for f in found]

    def match_md5(
        self, digests: Sequence[str], *, include_negative: bool = False
    ) -> list[list[Match]]:
        """Per MD5 digest (32 hex), the MD5 entries with exactly that digest (distance 0)."""
        values = _parse_queries(digests, check_md5, "MD5 digest")
        found = [self._md5_found(v) for v in values]
        return [settle_matches(f, include_negative) for f in found]

    def match_video(
        self,
        videos: Sequence[str | Sequence[MediaHash | str]],
        *,
        include_negative: bool = False,
    ) -> list[list[Match]]:
        """Per video, the vPDQ entries it matches as ThreatExchange's vPDQ matcher decides (see
        the module's docstring), as `VideoMatch`es. A video is a vPDQ signal string, or its
        frame hashes: `MediaHash`es (their quality is used) or hex strings (taken as quality
        100). A video with no frame of sufficient quality matches nothing."""
        if isinstance(videos, str):
            raise BankError("match_video takes a sequence of videos, not one string")
        frames: list[list[str]] = []
        problems: list[str] = []
        for n, video in enumerate(videos, 1):
            try:
                frames.append(self._query_frames(video))
            except BankError as exc:
                problems.append(f"video {n}: {exc}")
                frames.append([])
        if problems:
            raise BankError(_problems(problems))
        found = self._video_found(frames)
        return [settle_matches(f, include_negative) for f in found]

    def match_media_hashes(
        self,
        items: Sequence[Sequence[MediaHash | tuple[str, MediaHash]]],
        md5s: Sequence[Sequence[str]] | None = None,
        *,
        include_negative: bool = False,
    ) -> list[list[Match]]:
        """Per item, its matches from the hashes `bastion.media` computed for it.

        Each item's hashes are `MediaHash`es, or (source, MediaHash) pairs as
        `MediaScores.hashes` holds them: every "pdq" hash (one per image) is matched on its own
        unless its quality is under `pdq_quality_threshold`, and all "vpdq" hashes of the item
        are its video. `md5s`, if given, are each item's file digests. An entry matched more
        than once keeps its nearest match; a negative match on any of them suppresses the rest.
        """
        if md5s is not None and len(md5s) != len(items):
            raise BankError(f"{len(items)} items but {len(md5s)} lists of MD5 digests")
        threshold = self.settings.pdq_quality_threshold
        pdq_hex: list[str] = []
        pdq_item: list[int] = []
        videos: list[list[MediaHash]] = []
        for i, hashes in enumerate(items):
            video: list[MediaHash] = []
            for h in hashes:
                media = h[1] if isinstance(h, tuple) else h
                if media.kind == "pdq":
                    if media.quality >= threshold:
                        pdq_hex.append(check_pdq(media.hash))
                        pdq_item.append(i)
                elif media.kind == "vpdq":
                    video.append(media)
                else:
                    raise BankError(f"item {i + 1}: unknown media hash kind {media.kind!r}")
            videos.append(video)
        found: list[dict[int, Match]] = [{} for _ in items]
        for i, hits in zip(pdq_item, self._pdq_found(_codes(pdq_hex)), strict=True):
            _merge(found[i], hits)
        with_video = [i for i, v in enumerate(videos) if v]
        video_hits = self._video_found([self._query_frames(videos[i]) for i in with_video])
        for i, hits in zip(with_video, video_hits, strict=True):
            _merge(found[i], hits)
        if md5s is not None:
            for i, digests in enumerate(md5s):
                for value in _parse_queries(digests, check_md5, "MD5 digest"):
                    _merge(found[i], self._md5_found(value))
        return [settle_matches(f, include_negative) for f in found]

    def match_values(
        self, values: Sequence[str], *, include_negative: bool = False
    ) -> list[list[Match]]:
        """Per value, its matches, the signal told from the value (`infer_signal`): a vPDQ
        signal string, an MD5 digest or a PDQ hash. What `bastion bank match` uses."""
        if isinstance(values, str):
            raise BankError("match_values takes a sequence of values, not one string")
        by_signal: dict[str, list[int]] = {"pdq": [], "md5": [], "vpdq": []}
        problems: list[str] = []
        for n, value in enumerate(values):
            try:
                signal, _ = check_value(value)
            except BankError as exc:
                problems.append(f"value {n + 1}: {exc}")
                continue
            by_signal[signal].append(n)
        if problems:
            raise BankError(_problems(problems))
        out: list[list[Match]] = [[] for _ in values]
        for signal, positions in by_signal.items():
            if not positions:
                continue
            batch = [values[n] for n in positions]
            if signal == "vpdq":
                found = self.match_video(batch, include_negative=include_negative)
            elif signal == "md5":
                found = self.match_md5(batch, include_negative=include_negative)
            else:
                found = self.match_pdq(batch, include_negative=include_negative)
            for n, matches in zip(positions, found, strict=True):
                out[n] = matches
        return out

    def recall_scores(self, batch: RecallBatch) -> RecallScores:
        """Per item, its nearest match by its media hashes and files' MD5s, 1 - bits / 256."""
        found = self.match_media_hashes(batch.media_hashes, batch.md5s)
        return match_scores(found, PDQ_BITS)

    # -- query internals -------------------------------------------------------------------

    def _match(self, row: int, distance: float) -> Match:
        entry = self._entries[row]
        return Match(
            bank=self.name,
            bank_version=self.version,
            entry_id=entry.id,
            signal=entry.signal,
            distance=float(distance),
            label=entry.label,
            negative=entry.negative,
        )

    def _pdq_found(self, queries: np.ndarray) -> list[dict[int, Match]]:
        if self._pdq_index is None:
            return [{} for _ in range(len(queries))]
        found = []
        for rows, dist in self._pdq_index.search(queries, self.settings.pdq_threshold):
            entry_rows = self._pdq_rows[rows]
            found.append(
                {
                    int(r): self._match(int(r), int(d))
                    for r, d in zip(entry_rows.tolist(), dist.tolist(), strict=True)
                }
            )
        return found

    def _md5_found(self, digest: str) -> dict[int, Match]:
        return {r: self._match(r, 0) for r in self._md5.get(digest, [])}

    def _query_frames(self, video: str | Sequence[MediaHash | str]) -> list[str]:
        """A query video's distinct frame hashes of sufficient quality, in order."""
        s = self.settings
        if isinstance(video, str):
            pairs = [(f.hash, f.quality) for f in parse_vpdq(video)]
        else:
            pairs = []
            for n, frame in enumerate(video, 1):
                if isinstance(frame, MediaHash):
                    pairs.append((_frame_hex(frame.hash, n), int(frame.quality)))
                else:
                    pairs.append((_frame_hex(frame, n), 100))
        kept = [h for h, q in pairs if q >= s.vpdq_quality_threshold]
        return list(dict.fromkeys(kept))

    def _video_found(self, videos: Sequence[list[str]]) -> list[dict[int, Match]]:
        """ThreatExchange's vPDQ match for each query video (distinct, quality-filtered frames)
        against every entry video, from one range search over all their frames."""
        found: list[dict[int, Match]] = [{} for _ in videos]
        if self._vpdq_index is None or not any(videos):
            return found
        s = self.settings
        flat = [h for v in videos for h in v]
        owner = np.repeat(np.arange(len(videos)), [len(v) for v in videos])
        results = self._vpdq_index.search(_codes(flat), s.vpdq_distance_threshold)
        # per (query video, entry video): {query frame: best distance} and matched entry frames
        query_hits: dict[tuple[int, int], dict[int, int]] = {}
        entry_hits: dict[tuple[int, int], set[int]] = {}
        for q, (rows, dist) in enumerate(results):
            for row, d in zip(rows.tolist(), dist.tolist(), strict=True):
                key = (int(owner[q]), int(self._frame_video[row]))
                best = query_hits.setdefault(key, {})
                best[q] = min(d, best.get(q, d))
                entry_hits.setdefault(key, set()).add(row)
        for (v, video), best in query_hits.items():
            query_pct = len(best) * 100 / len(videos[v])
            compared_pct = len(entry_hits[(v, video)]) * 100 / int(self._frames_per_video[video])
            if (
                query_pct >= s.vpdq_query_match_percent
                and compared_pct >= s.vpdq_compared_match_percent
            ):
                row = int(self._video_rows[video])
                entry = self._entries[row]
                found[v][row] = VideoMatch(
                    bank=self.name,
                    bank_version=self.version,
                    entry_id=entry.id,
                    signal="vpdq",
                    distance=float(np.mean(list(best.values()))),
                    label=entry.label,
                    negative=entry.negative,
                    query_match_percent=query_pct,
                    compared_match_percent=compared_pct,
                )
        return found


# -- helpers ---------------------------------------------------------------------------------


def settle_matches(found: dict[int, Match], include_negative: bool) -> list[Match]:
    """An item's matches (by entry row), nearest first; if any is on an allow-list entry,
    only those (with `include_negative`) or none. Shared by hash and text banks."""
    matches = sorted(found.values(), key=lambda m: (m.distance, m.entry_id))
    negatives = [m for m in matches if m.negative]
    if negatives:
        return negatives if include_negative else []
    return matches


def _usable(frames: Sequence[VpdqFrame], settings: HashBankSettings) -> list[VpdqFrame]:
    """The frames a vPDQ match counts: quality at least the threshold, each hash once (the
    order of threatexchange's `prepare_vpdq_feature`: quality filter, then dedupe)."""
    seen: dict[str, VpdqFrame] = {}
    for f in frames:
        if f.quality >= settings.vpdq_quality_threshold and f.hash not in seen:
            seen[f.hash] = f
    return list(seen.values())


def _video_frames(value: str, settings: HashBankSettings) -> list[VpdqFrame]:
    return _usable(parse_vpdq(value), settings)


def _frame_hex(value: object, n: int) -> str:
    try:
        return check_pdq(cast(str, value))
    except BankError as exc:
        raise BankError(f"frame {n}: {exc}") from None


def _parse_queries(values: Sequence[str], check: Any, what: str) -> Any:
    """Checked, canonical query values (as (n, 32) codes for PDQ, else strings); every bad one
    is named with its position."""
    if isinstance(values, str):
        raise BankError(f"pass a sequence of {what}es, not one string")
    good: list[str] = []
    problems: list[str] = []
    for n, value in enumerate(values, 1):
        try:
            good.append(check(value))
        except BankError as exc:
            problems.append(f"query {n}: {exc}")
    if problems:
        raise BankError(_problems(problems))
    return _codes(good) if check is check_pdq else good


def _problems(problems: list[str]) -> str:
    shown = "; ".join(problems[:5])
    return shown + (f"; and {len(problems) - 5} more" if len(problems) > 5 else "")


def _merge(into: dict[int, Match], hits: dict[int, Match]) -> None:
    for row, match in hits.items():
        if row not in into or match.distance < into[row].distance:
            into[row] = match


def _validated(bank: HashBank, entries: list[Entry]) -> list[Entry]:
    out: list[Entry] = []
    problems: list[str] = []
    for n, e in enumerate(entries, 1):
        try:
            if isinstance(e, Entry) and not e.id:
                raise BankError("an entry needs a non-empty id")
            out.append(bank.validate_entry(e))
        except BankError as exc:
            name = f" ({e.id!r})" if isinstance(e, Entry) and e.id else ""
            problems.append(f"entry {n}{name}: {exc}")
    if problems:
        raise BankError(f"bank {bank.name!r}: nothing added; " + _problems(problems))
    twice = sorted(i for i, k in Counter(e.id for e in out).items() if k > 1)
    if twice:
        raise BankError(f"entries {format_ids(twice)} are given more than once")
    return out


def _grow(
    index: BinaryIndex | None,
    new: np.ndarray,
    settings: HashBankSettings,
    threshold: int,
    existing: int,
) -> BinaryIndex | None:
    kind = settings.index_kind(existing + len(new), threshold)
    if index is None:
        return BinaryIndex.build(new, kind) if len(new) else None
    return index.extended(new, kind) if len(new) or kind != index.kind else index


def _write_version(
    staging: Path,
    entries: list[Entry],
    pdq_index: BinaryIndex | None,
    vpdq_index: BinaryIndex | None,
    frame_video: np.ndarray,
) -> None:
    write_jsonl(staging / ENTRIES, [e.to_json() for e in entries])
    if pdq_index is not None:
        pdq_index.save(staging / PDQ_INDEX)
    if vpdq_index is not None:
        vpdq_index.save(staging / VPDQ_INDEX)
        np.save(staging / VPDQ_FRAMES, np.ascontiguousarray(frame_video, dtype=np.int64))


def _read_frame_video(version: BankVersion) -> np.ndarray:
    path = version.file(VPDQ_FRAMES)
    try:
        frame_video: np.ndarray = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise BankError(f"{path}: not a readable array file ({exc})") from None
    if frame_video.dtype != np.int64 or frame_video.ndim != 1:
        raise BankError(f"{path} holds {frame_video.dtype} {frame_video.shape}, not int64 (n,)")
    return frame_video
