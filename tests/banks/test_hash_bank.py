"""Hash banks: PDQ at exactly the threshold with either index, vPDQ as ThreatExchange matches,
MD5, allow-lists, incremental indexes, and bad input named."""

from __future__ import annotations

import json
import multiprocessing
import os
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from threatexchange.extensions.vpdq import vpdq_util
from threatexchange.extensions.vpdq.vpdq import VPDQSignal
from threatexchange.signal_type.pdq.pdq_utils import simple_distance
from threatexchange.signal_type.pdq.signal import PdqSignal

from bastion.banks import hashes
from bastion.banks.entries import Entry, Label
from bastion.banks.files import MANIFEST, BankError, current_version, file_sum
from bastion.banks.hashes import (
    PDQ_INDEX,
    BinaryIndex,
    HashBank,
    VideoMatch,
    VpdqFrame,
    check_md5,
    check_pdq,
    vpdq_value,
)
from bastion.media.hashing import MediaHash, pdq_distance_matrix

RNG = np.random.default_rng(20240611)


def random_hash(rng: np.random.Generator = RNG) -> str:
    return bytes(rng.integers(0, 256, 32, dtype=np.uint8)).hex()


def flip(value: str, bits: int, rng: np.random.Generator = RNG) -> str:
    """`value` with exactly `bits` of its 256 bits flipped."""
    as_bits = np.unpackbits(np.frombuffer(bytes.fromhex(value), dtype=np.uint8))
    as_bits[rng.choice(256, bits, replace=False)] ^= 1
    return np.packbits(as_bits).tobytes().hex()


def entry(id: str, signal: str, value: str, negative: bool = False, cat: str = "csam") -> Entry:
    return Entry(id=id, signal=signal, value=value, label=Label(cat, 4), negative=negative)


def make(tmp_path: Path, name: str = "pics", **settings: object) -> HashBank:
    return HashBank.create(tmp_path / name, name, dict(settings))


def ids(matches: list[list[hashes.Match]]) -> list[list[str]]:
    return [[m.entry_id for m in ms] for ms in matches]


# -- PDQ ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("index", ["flat", "multihash"])
def test_pdq_matches_at_31_bits_and_not_at_32(tmp_path: Path, index: str) -> None:
    planted = random_hash()
    noise = [entry(f"n{i}", "pdq", random_hash()) for i in range(200)]
    bank = make(tmp_path, index=index).add([entry("planted", "pdq", planted), *noise])
    assert bank.index_kinds["pdq"] == index
    queries = [planted, flip(planted, 1), flip(planted, 31), flip(planted, 32), flip(planted, 60)]
    found = bank.match_pdq(queries)
    assert ids(found) == [["planted"], ["planted"], ["planted"], [], []]
    assert [m.distance for m in found[2]] == [31.0]
    assert found[0][0].signal == "pdq" and found[0][0].label == Label("csam", 4)
    assert found[0][0].bank == "pics" and found[0][0].bank_version == 2


@pytest.mark.parametrize("index", ["flat", "multihash"])
def test_a_lower_threshold_is_exact_too(tmp_path: Path, index: str) -> None:
    # Under 16 bits the multi-hash index probes no flipped keys at all (nflip = 10 // 16 = 0):
    # pigeonhole still puts one of the 16 chunks at 0 differing bits.
    planted = random_hash()
    bank = make(tmp_path, index=index, pdq_threshold=10).add([entry("p", "pdq", planted)])
    assert ids(bank.match_pdq([flip(planted, 10), flip(planted, 11)])) == [["p"], []]


def test_multihash_returns_exactly_what_flat_returns(tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    seeds = [random_hash(rng) for _ in range(60)]
    values = [random_hash(rng) for _ in range(1500)]
    # near-duplicates of the seeds at every distance around the threshold
    values += [flip(s, int(rng.integers(0, 45)), rng) for s in seeds for _ in range(5)]
    entries = [entry(f"e{i}", "pdq", v) for i, v in enumerate(values)]
    flat = make(tmp_path, "flat", index="flat").add(entries)
    multi = make(tmp_path, "multi", index="multihash").add(entries)
    queries = [flip(s, int(rng.integers(0, 40)), rng) for s in seeds] + [
        random_hash(rng) for _ in range(40)
    ]
    by_flat = flat.match_pdq(queries)
    by_multi = multi.match_pdq(queries)
    as_pairs = [[(m.entry_id, m.distance) for m in ms] for ms in by_flat]
    assert as_pairs == [[(m.entry_id, m.distance) for m in ms] for ms in by_multi]
    # ... and both are what a brute-force distance matrix says
    matrix = pdq_distance_matrix(queries, values)
    for q, row in enumerate(matrix):
        expected = sorted((int(d), f"e{i}") for i, d in enumerate(row) if d <= 31)
        assert [(int(d), e) for e, d in as_pairs[q]] == expected
    assert sum(len(p) for p in as_pairs) > len(seeds)  # the test did plant matches


def test_pdq_agrees_with_threatexchange(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    base = PdqSignal.get_examples()
    bank = make(tmp_path).add([entry(f"x{i}", "pdq", v) for i, v in enumerate(base)])
    queries = [flip(base[i % len(base)], int(rng.integers(20, 45)), rng) for i in range(60)]
    queries += base  # the bridge-mods examples are within 31 bits of each other
    found = bank.match_pdq(queries)
    for q, matches in zip(queries, found, strict=True):
        got = {m.entry_id: m.distance for m in matches}
        for i, v in enumerate(base):
            te = PdqSignal.compare_hash(q, v)
            assert (f"x{i}" in got) == te.match
            if te.match:
                assert got[f"x{i}"] == simple_distance(q, v)


def test_the_index_follows_the_banks_size_and_add_extends_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    values = [random_hash() for _ in range(12)]
    bank = make(tmp_path, multihash_min=8).add(
        [entry(f"a{i}", "pdq", v) for i, v in enumerate(values[:5])]
    )
    assert bank.index_kinds == {"pdq": "flat", "vpdq": None}
    builds: list[int] = []
    real_build = BinaryIndex.build.__func__  # type: ignore[attr-defined]

    def counting_build(cls: type[BinaryIndex], codes: np.ndarray, *args: object) -> BinaryIndex:
        builds.append(len(codes))
        return real_build(cls, codes, *args)  # type: ignore[no-any-return]

    monkeypatch.setattr(BinaryIndex, "build", classmethod(counting_build))
    bank = bank.add([entry("a5", "pdq", values[5])])
    assert builds == [] and bank.index_kinds["pdq"] == "flat"  # copied and extended
    bank = bank.add([entry(f"a{i}", "pdq", values[i]) for i in range(6, 12)])
    assert builds == [12] and bank.index_kinds["pdq"] == "multihash"  # past multihash_min
    bank = bank.remove([f"a{i}" for i in range(8)])
    assert builds == [12, 4] and bank.index_kinds["pdq"] == "flat"  # rebuilt from what is left
    assert ids(bank.match_pdq([values[0], values[9]])) == [[], ["a9"]]
    # the saved index holds the remaining hashes, in entry order
    version = current_version(bank.path)
    index = BinaryIndex.load(version.file(PDQ_INDEX), hashes._codes(values[8:]), "flat")
    assert len(index) == 4


@pytest.mark.parametrize("size", [1, 2])
def test_a_multihash_index_of_one_hash_survives_saving_and_copying(
    tmp_path: Path, size: int
) -> None:
    # FAISS loses a one-code IndexBinaryMultiHash's tables when writing or copying it (why the
    # multi-index hash is built from the saved flat codes instead); one or two codes survive.
    values = [random_hash() for _ in range(size + 1)]
    bank = make(tmp_path, index="multihash").add(
        [entry(f"a{i}", "pdq", v) for i, v in enumerate(values[:size])]
    )
    reopened = HashBank.open(bank.path)
    assert ids(reopened.match_pdq([flip(values[0], 20)])) == [["a0"]]
    grown = reopened.add([entry("last", "pdq", values[-1])])
    assert ids(grown.match_pdq([values[0], values[-1]])) == [["a0"], ["last"]]


def test_entries_read_back_share_their_labels(tmp_path: Path) -> None:
    # a million-hash bank holds a handful of labels: one Label object each, not one per entry
    bank = make(tmp_path).add(
        [entry(f"a{i}", "pdq", random_hash(), cat="csam" if i % 2 else "gore") for i in range(40)]
    )
    reopened = HashBank.open(bank.path)
    labels = {id(e.label) for e in reopened.entries}
    assert len(labels) == 2
    assert {e.label.category for e in reopened.entries} == {"csam", "gore"}


def test_settings_are_checked(tmp_path: Path) -> None:
    with pytest.raises(BankError, match="setting pdq_threshold"):
        make(tmp_path, pdq_threshold=-1)
    with pytest.raises(BankError, match="setting foo: Extra inputs"):
        make(tmp_path, foo=1)
    with pytest.raises(BankError, match="multi-hash index is exact only"):
        make(tmp_path, index="multihash", pdq_threshold=48)
    wide = make(tmp_path, "wide", pdq_threshold=60, multihash_min=0)
    planted = random_hash()
    wide = wide.add([entry("p", "pdq", planted)])
    assert wide.index_kinds["pdq"] == "flat"  # too wide for multi-hash: a scan it is
    assert ids(wide.match_pdq([flip(planted, 60), flip(planted, 61)])) == [["p"], []]


# -- MD5 ---------------------------------------------------------------------------------------


def test_md5_matches_exactly_any_case(tmp_path: Path) -> None:
    digest = "d41d8cd98f00b204e9800998ecf8427e"
    bank = make(tmp_path).add([entry("m", "md5", digest.upper())])
    assert bank.entries[0].value == digest  # stored canonical
    found = bank.match_md5([digest.upper(), "d41d8cd98f00b204e9800998ecf8427f"])
    assert ids(found) == [["m"], []] and found[0][0].distance == 0.0


# -- vPDQ --------------------------------------------------------------------------------------


def test_vpdq_defaults_are_threatexchanges() -> None:
    s = hashes.HashBankSettings()
    assert s.vpdq_quality_threshold == vpdq_util.VPDQ_QUALITY_THRESHOLD
    assert s.vpdq_distance_threshold == vpdq_util.VPDQ_DISTANCE_THRESHOLD
    assert s.vpdq_query_match_percent == vpdq_util.VPDQ_QUERY_MATCH_THRESHOLD_PERCENT
    assert s.vpdq_compared_match_percent == vpdq_util.VPDQ_INDEX_MATCH_THRESHOLD_PERCENT
    assert s.pdq_threshold == 31 == PdqSignal.compare_hash.__defaults__[0]  # type: ignore[index]


def _video(frames: list[tuple[str, int]]) -> str:
    return vpdq_value([VpdqFrame(h, q, float(t)) for t, (h, q) in enumerate(frames)])


def test_vpdq_matches_as_threatexchange_decides(tmp_path: Path) -> None:
    rng = np.random.default_rng(11)
    videos = []
    for _ in range(6):
        n = int(rng.integers(3, 12))
        videos.append([(random_hash(rng), int(rng.choice([100, 90, 30]))) for _ in range(n)])
    bank = make(tmp_path).add(
        [
            entry(f"v{i}", "vpdq", _video(v))
            for i, v in enumerate(videos)
            if any(q >= 50 for _, q in v)
        ]
    )
    stored = {e.id: e.value for e in bank.entries}
    queries = []
    for v in videos:
        for keep in (1.0, 0.85, 0.75, 0.5):
            frames = [
                (flip(h, int(rng.integers(0, 40)), rng) if rng.random() < 0.3 else h, q)
                if rng.random() < keep
                else (random_hash(rng), 100)
                for h, q in v
            ]
            frames += [(random_hash(rng), 100)] * int(rng.integers(0, 2))
            queries.append(_video(frames))
    found = bank.match_video(queries)
    matched_any = 0
    for q, matches in zip(queries, found, strict=True):
        got = {m.entry_id: m for m in matches}
        for entry_id, value in stored.items():
            te = VPDQSignal.compare_hash(q, value)
            assert (entry_id in got) == te.match, (entry_id, te)
            if te.match:
                matched_any += 1
                m = got[entry_id]
                assert isinstance(m, VideoMatch)
                info = te.distance
                assert m.query_match_percent == pytest.approx(info.query_match_percent)
                assert m.compared_match_percent == pytest.approx(info.compared_match_percent)
                assert 0 <= m.distance <= 31
    assert matched_any >= len(stored)  # the unchanged copies at least


def test_vpdq_from_media_hashes_and_low_quality_frames(tmp_path: Path) -> None:
    frames = [random_hash() for _ in range(5)]
    bank = make(tmp_path).add([entry("v", "vpdq", _video([(h, 100) for h in frames]))])
    as_media = [MediaHash("vpdq", h, 100, float(i), i) for i, h in enumerate(frames)]
    # the query match percent counts the query's frames: a clip of the video matches ...
    assert ids(bank.match_video([as_media, frames[:2]])) == [["v"], ["v"]]
    clip = bank.match_video([frames[:2]])[0][0]
    assert isinstance(clip, VideoMatch) and clip.compared_match_percent == 40.0
    # ... a video of which the entry is under 80% does not (4 of 5 is 80%, 3 of 5 is not)
    padded = [*frames[:4], random_hash()], [*frames[:3], random_hash(), random_hash()]
    assert ids(bank.match_video(list(padded))) == [["v"], []]
    # frames under quality 50 are not counted: 4 good of 4 counted frames match
    blurred = [*as_media[:4], MediaHash("vpdq", random_hash(), 10, 5.0, 5)]
    assert ids(bank.match_video([blurred])) == [["v"]]
    assert ids(bank.match_video([[MediaHash("vpdq", frames[0], 20)]])) == [[]]


def test_vpdq_entries_are_checked(tmp_path: Path) -> None:
    bank = make(tmp_path)
    good = random_hash()
    cases = {
        "not JSON": "[oops",
        "not a 'list'|JSON list": '{"a": 1}',
        "at least one frame": "[]",
        "frame 2: expected 'hex,quality,timestamp'": json.dumps([f"{good},100,0", "abc"]),
        "frame 1: a PDQ hash is 64 hex characters; 'abc' has 3": '["abc,100,0"]',
        "frame 1: quality must be 0-100": json.dumps([f"{good},101,0"]),
        "no frame of quality >= 50": json.dumps([f"{good},20,0"]),
    }
    for message, value in cases.items():
        with pytest.raises(BankError, match=message.split("|")[-1]):
            bank.add([entry("v", "vpdq", value)])
    assert HashBank.open(bank.path).entries == ()


# -- several signals, allow-lists ----------------------------------------------------------------


def test_media_hashes_of_items_are_matched_together(tmp_path: Path) -> None:
    photo, clip = random_hash(), [random_hash() for _ in range(3)]
    digest = "0123456789abcdef0123456789abcdef"
    bank = make(tmp_path).add(
        [
            entry("photo", "pdq", photo),
            entry("clip", "vpdq", _video([(h, 100) for h in clip])),
            entry("file", "md5", digest),
        ]
    )
    items = [
        [("images[0]", MediaHash("pdq", flip(photo, 5), 90))],
        [MediaHash("vpdq", h, 100, float(i)) for i, h in enumerate(clip)],
        [MediaHash("pdq", photo, 10)],  # too flat a picture to match on
        [MediaHash("pdq", random_hash(), 100)],
    ]
    found = bank.match_media_hashes(items, md5s=[[], [], [], [digest.upper()]])
    assert ids(found) == [["photo"], ["clip"], [], ["file"]]
    assert found[0][0].distance == 5.0


def test_an_allow_list_match_suppresses_the_items_other_matches(tmp_path: Path) -> None:
    banned, allowed = random_hash(), random_hash()
    # an allow-listed picture 40 bits from the banned one, and a query 20 bits from each
    between = np.unpackbits(np.frombuffer(bytes.fromhex(banned), dtype=np.uint8))
    news_bits, query_bits = between.copy(), between.copy()
    news_bits[:40] ^= 1
    query_bits[:20] ^= 1
    news, query = (np.packbits(b).tobytes().hex() for b in (news_bits, query_bits))
    bank = make(tmp_path).add(
        [
            entry("banned", "pdq", banned),
            entry("banned-too", "pdq", flip(banned, 4)),
            entry("news-photo", "pdq", news, negative=True, cat="news"),
            entry("allowed-file", "md5", "a" * 32, negative=True, cat="news"),
            entry("other", "pdq", allowed),
        ]
    )
    found = bank.match_pdq([query, banned, allowed])
    # the query matches "banned" and the allow-listed photo: suppressed, not reported at all
    assert ids(found) == [[], ["banned", "banned-too"], ["other"]]
    flagged = bank.match_pdq([query], include_negative=True)
    assert ids(flagged) == [["news-photo"]] and flagged[0][0].negative
    assert flagged[0][0].distance == 20.0 and flagged[0][0].label.category == "news"
    # a negative on one signal suppresses the item's matches on the others
    items = [[MediaHash("pdq", banned, 100)], [MediaHash("pdq", banned, 100)]]
    found = bank.match_media_hashes(items, md5s=[["a" * 32], []])
    assert ids(found) == [[], ["banned", "banned-too"]]


# -- changes and files ---------------------------------------------------------------------------


def test_an_empty_bank_matches_nothing(tmp_path: Path) -> None:
    bank = make(tmp_path)
    assert bank.version == 1 and bank.entries == () and bank.manifest.entries == 0
    assert set(bank.manifest.files) == {"entries.jsonl"}
    assert bank.match_pdq([random_hash()]) == [[]]
    assert bank.match_md5(["a" * 32]) == [[]]
    assert bank.match_video([[random_hash()]]) == [[]]
    assert bank.match_media_hashes([[MediaHash("pdq", random_hash(), 100)]]) == [[]]
    assert bank.match_pdq([]) == []


def test_remove_and_stale_objects(tmp_path: Path) -> None:
    a, b = random_hash(), random_hash()
    bank = make(tmp_path)
    first = bank.add([entry("a", "pdq", a)])
    second = bank.add([entry("b", "pdq", b)])  # `bank` is still version 1
    assert second.version == 3 and [e.id for e in second.entries] == ["a", "b"]
    assert ids(first.match_pdq([b])) == [[]]  # an old version keeps its own answers
    with pytest.raises(BankError, match="already has entries 'a'"):
        first.add([entry("a", "pdq", b)])
    with pytest.raises(BankError, match="has no entries 'zzz'"):
        second.remove(["a", "zzz"])
    smaller = second.remove(["a"])
    assert ids(smaller.match_pdq([a, b])) == [[], ["b"]]
    assert [e.id for e in HashBank.open(bank.path).entries] == ["b"]


_hex64 = st.from_regex(r"[0-9a-fA-F]{64}", fullmatch=True)
_pdq_like = st.one_of(
    st.text(max_size=80),
    _hex64,  # valid, any case
    _hex64.map(lambda h: f"  {h}\n"),  # valid, with surrounding whitespace
    st.from_regex(r"[0-9a-f]{0,63}|[0-9a-f]{65,70}", fullmatch=True),  # wrong length
    st.tuples(
        _hex64, st.integers(0, 63), st.characters(blacklist_characters="0123456789abcdefABCDEF")
    ).map(lambda t: t[0][: t[1]] + t[2] + t[0][t[1] + 1 :]),  # one character outside the alphabet
)


@given(_pdq_like)
@settings(max_examples=400, deadline=None)
def test_pdq_strings_of_the_wrong_length_or_alphabet_are_named(text: str) -> None:
    stripped = text.strip().lower()
    valid = len(stripped) == 64 and all(c in "0123456789abcdef" for c in stripped)
    if valid:
        assert check_pdq(text) == stripped
        PdqSignal.validate_signal_str(check_pdq(text))
        return
    with pytest.raises(BankError) as err:
        check_pdq(text)
    message = str(err.value)
    assert "64 hex characters" in message
    if len(stripped) != 64:
        assert f"has {len(stripped)} (wrong length)" in message or "empty" in message
    else:
        bad = next(i for i, c in enumerate(stripped) if c not in "0123456789abcdef")
        assert f"at position {bad + 1}" in message


@given(st.from_regex(r"[0-9a-fA-F]{32}", fullmatch=True))
def test_md5_digests_are_canonicalised(digest: str) -> None:
    assert check_md5(f" {digest} ") == digest.lower()


def test_a_batch_with_bad_hashes_names_each_and_adds_nothing(tmp_path: Path) -> None:
    bank = make(tmp_path)
    good = random_hash()
    batch = [
        entry("ok", "pdq", good),
        entry("short", "pdq", good[:63]),
        entry("alpha", "pdq", "g" + good[1:]),
        entry("text", "text", "hello there"),
    ]
    with pytest.raises(BankError) as err:
        bank.add(batch)
    message = str(err.value)
    assert "nothing added" in message
    assert "entry 2 ('short'): a PDQ hash is 64 hex characters" in message and "has 63" in message
    assert "entry 3 ('alpha')" in message and "'g' at position 1" in message
    assert "entry 4 ('text'): a hash bank holds pdq, vpdq, md5 entries, not 'text'" in message
    assert HashBank.open(bank.path).version == 1
    with pytest.raises(BankError, match="query 2: a PDQ hash"):
        bank.match_pdq([good, "xyz"])


def test_a_corrupt_or_foreign_index_is_named(tmp_path: Path) -> None:
    values = [random_hash() for _ in range(4)]
    bank = make(tmp_path).add([entry(f"a{i}", "pdq", v) for i, v in enumerate(values)])
    version = current_version(bank.path)
    index_file = version.path / PDQ_INDEX
    good = index_file.read_bytes()
    index_file.write_bytes(good[: len(good) // 2])
    with pytest.raises(BankError, match=r"pdq.faiss is truncated or padded"):
        HashBank.open(bank.path)
    # an index of other hashes, with a manifest that vouches for it, is still refused
    BinaryIndex.build(hashes._codes([random_hash() for _ in values]), "flat").save(index_file)
    manifest_file = version.path / MANIFEST
    manifest = json.loads(manifest_file.read_text())
    manifest["files"][PDQ_INDEX] = file_sum(index_file).model_dump()
    manifest_file.write_text(json.dumps(manifest))
    with pytest.raises(BankError, match="does not hold the bank's hashes"):
        HashBank.open(bank.path)


def _crash_while_adding(path: Path, value: str) -> None:
    def crash(self: BinaryIndex, target: Path) -> None:
        target.write_bytes(b"half an index")
        os._exit(9)  # killed mid-change

    BinaryIndex.save = crash  # type: ignore[method-assign]
    HashBank.open(path).add([entry("b", "pdq", value)])


def test_a_crash_in_the_middle_of_add_leaves_the_bank_as_it_was(tmp_path: Path) -> None:
    a = random_hash()
    bank = make(tmp_path).add([entry("a", "pdq", a)])
    # spawn, not fork: a child forked after FAISS ran OpenMP threads can hang in libgomp
    child = multiprocessing.get_context("spawn").Process(
        target=_crash_while_adding, args=(bank.path, random_hash())
    )
    child.start()
    child.join()
    assert child.exitcode == 9
    again = HashBank.open(bank.path)
    assert again.version == 2 and [e.id for e in again.entries] == ["a"]
    assert ids(again.match_pdq([a])) == [["a"]]
    again.add([entry("c", "md5", "b" * 32)])  # the next change sweeps the leftover
    assert not list(bank.path.glob(".staging-*"))
