"""Bank exchange: CSV and JSONL round-trip every field, bad rows are reported by line while the
good ones are added, and the HMA export is what ThreatExchange's file exchange reads."""

from __future__ import annotations

import io
import json
import tempfile
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from threatexchange.exchanges.impl.file_api import (
    FileCollaborationConfig,
    LocalFileSignalExchangeAPI,
)
from threatexchange.extensions.vpdq.vpdq import VPDQSignal
from threatexchange.signal_type.pdq.signal import PdqSignal

from bastion.banks.entries import Entry, Label
from bastion.banks.exchange import (
    FIELDS,
    EntryDefaults,
    ExportResult,
    add_batch,
    entry_id,
    export_bank,
    import_file,
    read_entries,
)
from bastion.banks.files import BankError
from bastion.banks.hashes import HashBank, VpdqFrame, vpdq_value
from bastion.banks.text import TextBank

RNG = np.random.default_rng(99)
STAMP = datetime(2024, 5, 1, 12, 30, 15, 123456, tzinfo=UTC)


def pdq() -> str:
    return bytes(RNG.integers(0, 256, 32, dtype=np.uint8)).hex()


def hash_entries() -> list[Entry]:
    video = vpdq_value([VpdqFrame(pdq(), 100, float(t)) for t in range(3)])
    return [
        Entry("p1", "pdq", pdq(), Label("csam", 4, "ncmec", 'notes, with "quotes"'), False, STAMP),
        Entry("p2", "pdq", pdq(), Label("news", 0, "", "line one\nline two"), True, STAMP),
        Entry("v1", "vpdq", video, Label("terror", 3, "gifct", ""), False, STAMP),
        Entry(
            "m1",
            "md5",
            "d41d8cd98f00b204e9800998ecf8427e",
            Label("spam", 1, "é ü 漢字", "🙂"),
            False,
            STAMP + timedelta(hours=1),
        ),
    ]


@pytest.fixture
def hash_bank(tmp_path: Path) -> HashBank:
    return HashBank.create(tmp_path / "src", "src", {}).add(hash_entries())


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_export_then_import_round_trips_every_field(
    tmp_path: Path, hash_bank: HashBank, fmt: str
) -> None:
    out = tmp_path / f"bank.{fmt}"
    assert export_bank(hash_bank, out, fmt) == ExportResult(4)
    target = HashBank.create(tmp_path / "dst", "dst", {})
    target, result = import_file(target, out)
    assert result.ok and result.added == 4 and result.rows == 4 and result.version == 2
    assert target.entries == hash_bank.entries  # ids, values, labels, flags, timestamps


def test_text_banks_round_trip_too(tmp_path: Path) -> None:
    texts = ["Send me 50 dollars in gift cards, or else", 'He said "quote, unquote"\nand left']
    source = TextBank.create(tmp_path / "a", "a", {}).add(
        [Entry(f"t{i}", "text", t, Label("scam"), i == 1, STAMP) for i, t in enumerate(texts)]
    )
    export_bank(source, tmp_path / "t.csv", "csv")
    target, result = import_file(TextBank.create(tmp_path / "b", "b", {}), tmp_path / "t.csv")
    assert result.ok and target.entries == source.entries
    assert [m.entry_id for m in target.match_texts([texts[0].upper()])[0]] == ["t0"]


def test_the_csv_has_the_documented_columns(hash_bank: HashBank) -> None:
    stream = io.StringIO()
    export_bank(hash_bank, stream, "csv")
    lines = stream.getvalue().splitlines()
    assert lines[0] == ",".join(FIELDS)
    assert lines[1].startswith("p1,pdq,") and lines[1].endswith(
        ",false,2024-05-01T12:30:15.123456+00:00"
    )


def test_hma_export_is_what_threatexchanges_file_exchange_reads(
    tmp_path: Path, hash_bank: HashBank
) -> None:
    out = tmp_path / "signals.txt"
    result = export_bank(hash_bank, out, "hma")
    assert result.written == 2
    assert result.skipped == {
        "allow-list entries (HMA banks have none)": 1,
        "md5 entries (no ThreatExchange signal type for them)": 1,
    }
    by_id = {e.id: e.value for e in hash_bank.entries}
    assert out.read_text().splitlines() == [f"pdq {by_id['p1']}", f"vpdq {by_id['v1']}"]
    # python-threatexchange's LocalFileSignalExchangeAPI (HMA's and the CLI's file exchange)
    api = LocalFileSignalExchangeAPI(FileCollaborationConfig(filename=str(out), name="BASTION"))
    fetched = {key for delta in api.fetch_iter([], None) for key in delta.updates}
    assert fetched == {("pdq", by_id["p1"]), ("vpdq", by_id["v1"])}
    for signal_type, signal in fetched:
        cls = PdqSignal if signal_type == "pdq" else VPDQSignal
        assert cls.validate_signal_str(signal) == signal
    text_bank = TextBank.create(tmp_path / "t", "t", {})
    with pytest.raises(BankError, match="HMA format holds PDQ and vPDQ hashes"):
        export_bank(text_bank, tmp_path / "x.txt", "hma")


def test_hma_files_import_with_the_labels_given(tmp_path: Path) -> None:
    good, other = pdq(), pdq()
    lines = [
        "# exported from HMA",
        f"pdq {good}",
        "",
        f"video_md5 {'AB' * 16}",
        "tmk 12345",
        good,  # a bare signal: told apart by its shape
        other,
        f"pdq {other[:-1]}",
    ]
    path = tmp_path / "signals.txt"
    path.write_text("\n".join(lines) + "\n")
    bank = HashBank.create(tmp_path / "b", "b", {})
    with pytest.raises(BankError, match="carries no labels; give the category"):
        import_file(bank, path)
    bank, result = import_file(bank, path, defaults=EntryDefaults("csam", 4, "hma"))
    assert result.added == 3 and result.rows == 6
    assert [str(e) for e in result.errors] == [
        "line 5: signal type 'tmk' is not one a hash bank holds (md5, pdq, video_md5, vpdq)",
        "line 6: the same value as line 2",
        f"line 8: a PDQ hash is 64 hex characters; '{other[:-1]}' has 63 (wrong length)",
    ]
    assert [(e.signal, e.value, e.label) for e in bank.entries] == [
        ("pdq", good, Label("csam", 4, "hma")),
        ("md5", "ab" * 16, Label("csam", 4, "hma")),
        ("pdq", other, Label("csam", 4, "hma")),
    ]
    assert bank.entries[0].id == entry_id("pdq", good)


def test_bad_csv_rows_are_reported_by_line_and_good_rows_added(tmp_path: Path) -> None:
    good = [pdq() for _ in range(4)]
    bank = HashBank.create(tmp_path / "b", "b", {}).add(
        [Entry("taken", "md5", "0" * 32, Label("x"))]
    )
    rows = [
        "id,signal,value,category,severity,negative,notes",
        f"a,pdq,{good[0]},csam,4,false,fine",
        f'b,pdq,{good[1]},csam,2,no,"a note\nover two lines"',  # lines 3-4
        f"c,pdq,{good[2][:60]},csam,2,false,",  # line 5: too short
        f"d,pdq,{good[3]},csam,five,false,",  # line 6: bad severity
        f"e,pdq,{good[3]},csam,7,false,",  # line 7: severity out of range
        f"f,pdq,{good[3]},csam,1,maybe,",  # line 8: bad flag
        f"g,sha1,{good[3]},csam,1,false,",  # line 9: unknown signal
        f"a,pdq,{good[3]},csam,1,false,",  # line 10: id used on line 2
        f"taken,pdq,{good[3]},csam,1,false,",  # line 11: id in the bank
        f"h,pdq,{good[3]},,1,false,",  # line 12: no category
        "i,pdq",  # line 13: too few fields
        "",
        f"j,,{good[3].upper()},csam,,yes,",  # line 15: signal, severity from defaults
    ]
    path = tmp_path / "in.csv"
    path.write_bytes(
        "\n".join(rows).encode() + b"\n" + f"k,pdq,{good[3]},caf\xe9,1,no,\n".encode("latin-1")
    )
    bank, result = import_file(bank, path)
    assert [e.id for e in bank.entries] == ["taken", "a", "b", "j"]
    assert bank.entries[2].label.notes == "a note\nover two lines"
    assert bank.entries[3].negative and bank.entries[3].label.severity == 2
    assert bank.entries[3].value == good[3]
    messages = {e.position: e.message for e in result.errors}
    assert sorted(messages) == [5, 6, 7, 8, 9, 10, 11, 12, 13, 16]
    assert "has 60 (wrong length)" in messages[5]
    assert "severity must be an integer 0-4, not 'five'" in messages[6]
    assert "severity must be 0-4, got 7" in messages[7]
    assert "negative must be true or false, not 'maybe'" in messages[8]
    assert "unknown signal 'sha1'" in messages[9]
    assert messages[10] == "id 'a' is already used by line 2"
    assert messages[11] == "the bank already has an entry with id 'taken'"
    assert "has no category" in messages[12]
    assert messages[13] == "has 2 fields; the header has 7"
    assert messages[16] == "field 'category' is not valid UTF-8"
    assert result.added == 3 and result.rows == 13 and not result.ok


def test_bad_jsonl_lines_are_reported_by_line(tmp_path: Path) -> None:
    good = pdq()
    lines = [
        json.dumps({"id": "a", "signal": "pdq", "value": good, "category": "csam"}).encode(),
        b'{"id": "b", "value": ',
        b"[1, 2]",
        json.dumps({"id": "c", "value": good, "category": "csam", "negativ": True}).encode(),
        json.dumps({"id": 7, "value": 5, "category": "csam"}).encode(),
        b'{"id": "d", "value": "caf\xe9"}',
        json.dumps({"id": "e", "value": good, "category": "x", "added_at": "yesterday"}).encode(),
        json.dumps({"id": "f", "value": good, "category": "x", "negative": "true"}).encode(),
    ]
    path = tmp_path / "in.jsonl"
    path.write_bytes(b"\n".join(lines))
    bank, result = import_file(HashBank.create(tmp_path / "b", "b", {}), path)
    assert [e.id for e in bank.entries] == ["a", "f"] and bank.entries[1].negative
    assert [str(e) for e in result.errors] == [
        "line 2: malformed JSON (Expecting value at column 22)",
        "line 3: expected a JSON object, got list",
        "line 4: unknown field 'negativ' (fields: " + ", ".join(FIELDS) + ")",
        "line 5: value must be a string, not int",
        "line 6: not valid UTF-8 (byte 26)",
        "line 7: added_at 'yesterday' is not an ISO 8601 timestamp",
    ]


def test_whole_file_problems_are_one_error(tmp_path: Path) -> None:
    bank = HashBank.create(tmp_path / "b", "b", {})
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(BankError, match="has no entries"):
        import_file(bank, empty)
    header_only = tmp_path / "header.csv"
    header_only.write_text(",".join(FIELDS) + "\n")
    with pytest.raises(BankError, match="has no entries"):
        import_file(bank, header_only)
    typo = tmp_path / "typo.csv"
    typo.write_text(f"value,category,negativ\n{pdq()},csam,true\n")
    with pytest.raises(BankError, match="unknown column 'negativ'"):
        import_file(bank, typo)
    no_value = tmp_path / "novalue.csv"
    no_value.write_text("id,category\na,csam\n")
    with pytest.raises(BankError, match="has no 'value' column"):
        import_file(bank, no_value)
    with pytest.raises(BankError, match="cannot tell the format"):
        import_file(bank, tmp_path / "bank.xlsx")
    with pytest.raises(BankError, match="cannot read"):
        import_file(bank, tmp_path / "missing.csv")
    assert HashBank.open(bank.path).version == 1


def test_an_import_into_an_empty_bank_and_a_repeat_import(
    tmp_path: Path, hash_bank: HashBank
) -> None:
    path = tmp_path / "x.csv"
    path.write_text(f"value,category\n{pdq()}\t,csam\n{pdq()},csam\n".replace("\t", ""))
    bank = HashBank.create(tmp_path / "b", "b", {})
    bank, first = import_file(bank, path)
    assert first.added == 2 and bank.version == 2
    bank, again = import_file(bank, path)  # the same values get the same ids
    assert again.added == 0 and again.version == 2
    assert [e.message for e in again.errors] == [
        f"already in the bank (entry {bank.entries[0].id!r})",
        f"already in the bank (entry {bank.entries[1].id!r})",
    ]


def test_add_batch_names_positions_as_told(tmp_path: Path) -> None:
    bank = TextBank.create(tmp_path / "t", "t", {})
    rows = [
        (1, Entry("", "text", "a known scam script text", Label("scam"))),
        (2, Entry("", "text", "hi", Label("scam"))),
    ]
    bank, result = add_batch(bank, rows, where="value")
    assert result.added == 1
    assert str(result.errors[0]).startswith("value 2: text 'hi' is too short to shingle")


_field_text = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
    max_size=40,
)


@given(
    category=_field_text.filter(lambda s: s.strip() != "" and s == s.strip()),
    source=_field_text,
    notes=_field_text,
    severity=st.integers(0, 4),
    negative=st.booleans(),
    offset=st.integers(-12 * 60, 14 * 60),
    fmt=st.sampled_from(["csv", "jsonl"]),
)
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_any_label_survives_the_round_trip(
    category: str, source: str, notes: str, severity: int, negative: bool, offset: int, fmt: str
) -> None:
    stamp = datetime(2023, 1, 2, 3, 4, 5, tzinfo=timezone(timedelta(minutes=offset)))
    original = Entry(
        'id, with "quotes"\n',
        "pdq",
        "ab" * 32,
        Label(category, severity, source, notes),
        negative,
        stamp,
    )

    class _Bank:  # just what export_bank reads
        entries = (original,)

        class manifest:
            kind = "hash"
            name = "b"

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"x.{fmt}"
        export_bank(_Bank(), path, fmt)  # type: ignore[arg-type]
        rows, errors = read_entries(path, "hash")
    assert errors == []
    assert [e for _, e in rows] == [original]


@given(st.binary(max_size=300))
@settings(max_examples=200, deadline=None)
def test_garbage_never_escapes_as_anything_but_row_errors(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        for suffix in (".csv", ".jsonl", ".txt"):
            path = Path(tmp) / f"x{suffix}"
            path.write_bytes(data)
            try:
                rows, errors = read_entries(path, "hash", defaults=EntryDefaults("x"))
            except BankError:
                continue
            lines = data.count(b"\n") + 1
            assert all(1 <= e.position <= lines for e in errors)
            assert all(1 <= n <= lines for n, _ in rows)
