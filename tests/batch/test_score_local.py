"""`bastion score`, in-process: JSONL and Parquet in and out, bad rows on their own rows, atomic output."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from bastion.batch import InputRow, ModeratorSpec, open_input, score_local
from bastion.cli import app
from bastion.errors import InputError, PolicyError
from bastion.moderator import Moderator, Verdict
from bastion.records import read_records

runner = CliRunner()
# Scores are rounded to 6 decimals, so the same text scored in another batch may differ by one
# unit there (float noise across batch shapes); the float difference of one unit is a hair over 1e-6.
SCORE_TOLERANCE = 1e-6 + 1e-9

# Written for these tests: a mix of plainly fine posts and plainly violating ones.
TEXTS = [
    "Does anyone know a good recipe for sourdough starter?",
    "I will find out where you live and hurt your whole family",
    "The bus was late again this morning, third time this week",
    "you are worthless and everyone would be happier if you were gone",
    "Congrats on the new job, you totally earned it!",
    "people like you are vermin and should be exterminated",
    "Our team lost the final but the season was still great",
    "How do I reset the password on my router?",
]


def _write_jsonl(path: Path, lines: list[object]) -> Path:
    """Each entry is a JSON value to dump, or a str written as the raw line."""
    path.write_text("".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines))
    return path


def _read(path: Path) -> list[dict[str, Any]]:
    if path.suffix == ".parquet":
        rows: list[dict[str, Any]] = pq.read_table(path).to_pylist()
        return rows
    return [json.loads(line) for line in path.read_text().splitlines()]


def _assert_scored_like(row: dict[str, Any], verdict: Verdict) -> None:
    """An output row carries the verdict Moderator.moderate gives for the same text."""
    assert row["error"] is None, row["error"]
    assert row["flagged"] == verdict.flagged
    assert row["categories"] == verdict.categories
    assert row["action"] == verdict.action.value
    assert row["category_scores"].keys() == verdict.category_scores.keys()
    for cat, score in verdict.category_scores.items():
        assert row["category_scores"][cat] == pytest.approx(score, abs=SCORE_TOLERANCE)


def _assert_not_scored(row: dict[str, Any], moderator: Moderator, *phrases: str) -> None:
    assert row["error"] is not None and all(p in row["error"] for p in phrases), row["error"]
    assert row["flagged"] is None and row["categories"] is None
    assert row["category_scores"] is None
    assert row["action"] == "review"  # fails closed: never "allow", never null
    # A row that was not scored still says which policy and model the run used.
    assert row["policy_version"] == moderator.policy.version
    assert row["model_version"] == moderator.model_version


@pytest.fixture(scope="module")
def expected(default_moderator: Moderator) -> dict[str, Verdict]:
    """What Moderator.moderate says about each test text, scored all together."""
    return dict(zip(TEXTS, default_moderator.moderate(TEXTS), strict=True))


@pytest.mark.slow
def test_the_texts_are_not_all_alike(expected: dict[str, Verdict]) -> None:
    # Guards the comparisons below: they mean something only if flags and actions vary.
    assert {v.flagged for v in expected.values()} == {True, False}


@pytest.mark.slow
def test_jsonl_round_trip_scores_every_row_in_order(
    tmp_path: Path, default_moderator: Moderator, expected: dict[str, Verdict]
) -> None:
    lines: list[object] = [{"id": f"p{i}", "text": t, "lang": "en"} for i, t in enumerate(TEXTS)]
    lines.insert(3, "")  # a blank line: skipped, not a row, but it still counts for line numbers
    src = _write_jsonl(tmp_path / "posts.jsonl", lines)
    out = tmp_path / "scores.jsonl"
    seen: list[tuple[int, int]] = []
    summary = score_local(
        open_input(src),
        out,
        default_moderator,
        batch_size=3,
        progress=lambda done, total: seen.append((done, total)),
    )
    rows = _read(out)
    assert [r["row"] for r in rows] == list(range(len(TEXTS)))
    assert [r["id"] for r in rows] == [f"p{i}" for i in range(len(TEXTS))]
    assert [r["line"] for r in rows] == [1, 2, 3, 5, 6, 7, 8, 9]
    for row, text in zip(rows, TEXTS, strict=True):
        _assert_scored_like(row, expected[text])
        assert row["policy_version"] == default_moderator.policy.version
        assert row["model_version"] == default_moderator.model_version
    assert summary.rows == len(TEXTS) and summary.errors == 0
    assert summary.flagged == sum(v.flagged for v in expected.values())
    # Progress: the total first, then rows written after each batch of 3.
    assert seen == [(0, 8), (3, 8), (6, 8), (8, 8)]


BAD_JSONL_LINES = {
    "missing text": ({"id": "bad", "note": "no text field"}, "missing the 'text' field"),
    "empty text": ({"id": "bad", "text": ""}, "empty text"),
    "non-string text": ({"id": "bad", "text": 42}, "'text' must be a string, got int"),
    "malformed JSON": ('{"id": "bad", "text": "unterminated', "malformed JSON"),
}


@pytest.mark.slow
@pytest.mark.parametrize("kind", list(BAD_JSONL_LINES))
def test_a_bad_jsonl_line_gets_its_error_and_the_run_goes_on(
    kind: str, tmp_path: Path, default_moderator: Moderator, expected: dict[str, Verdict]
) -> None:
    bad, phrase = BAD_JSONL_LINES[kind]
    good = [{"id": f"g{i}", "text": t} for i, t in enumerate(TEXTS[:4])]
    src = _write_jsonl(tmp_path / "in.jsonl", [good[0], good[1], bad, good[2], good[3]])
    out = tmp_path / "out.jsonl"
    summary = score_local(open_input(src), out, default_moderator, batch_size=2)
    rows = _read(out)
    assert len(rows) == 5 and [r["row"] for r in rows] == [0, 1, 2, 3, 4]
    _assert_not_scored(rows[2], default_moderator, phrase)
    assert "3" in rows[2]["error"]  # names the line
    assert rows[2]["id"] == (None if kind == "malformed JSON" else "bad")
    for row, text in zip(rows[:2] + rows[3:], TEXTS[:4], strict=True):
        _assert_scored_like(row, expected[text])
    assert summary.errors == 1 and summary.rows == 5


def _write_parquet(path: Path, table: pa.Table, row_group_size: int | None = None) -> Path:
    pq.write_table(table, path, row_group_size=row_group_size)
    return path


@pytest.mark.slow
def test_parquet_round_trip_with_named_columns(
    tmp_path: Path, default_moderator: Moderator, expected: dict[str, Verdict]
) -> None:
    table = pa.table(
        {
            "post_id": pa.array(range(100, 100 + len(TEXTS)), pa.int64()),
            "body": TEXTS,
            "reach": [10] * len(TEXTS),
        }
    )
    src = _write_parquet(tmp_path / "backlog.parquet", table, row_group_size=3)
    out = tmp_path / "scores.parquet"
    source = open_input(src, text_column="body", id_column="post_id")
    summary = score_local(source, out, default_moderator, batch_size=5)
    result = pq.read_table(out)
    # Categories and scores are structs with one field per policy category, in policy order.
    cats = default_moderator.policy.category_ids
    assert [f.name for f in result.schema.field("category_scores").type] == cats
    assert result.schema.field("category_scores").type.field(0).type == pa.float64()
    rows = result.to_pylist()
    assert [r["id"] for r in rows] == [str(i) for i in range(100, 100 + len(TEXTS))]
    assert [r["line"] for r in rows] == list(range(1, len(TEXTS) + 1))
    for row, text in zip(rows, TEXTS, strict=True):
        _assert_scored_like(row, expected[text])
    assert summary.rows == len(TEXTS)


BAD_PARQUET_TEXTS: dict[str, tuple[Any, str]] = {
    "null text": (None, "'text' is null"),
    "empty text": ("", "empty text"),
    "blank text": (" \u200b\t ", "no visible characters"),
}


@pytest.mark.slow
@pytest.mark.parametrize("kind", list(BAD_PARQUET_TEXTS))
def test_a_bad_parquet_row_gets_its_error_and_the_run_goes_on(
    kind: str, tmp_path: Path, default_moderator: Moderator, expected: dict[str, Verdict]
) -> None:
    bad, phrase = BAD_PARQUET_TEXTS[kind]
    texts = [TEXTS[0], bad, TEXTS[1], TEXTS[2]]
    table = pa.table({"id": ["a", "b", "c", "d"], "text": pa.array(texts, pa.string())})
    src = _write_parquet(tmp_path / "in.parquet", table)
    rows = _read_after(src, tmp_path / "out.jsonl", default_moderator)
    _assert_not_scored(rows[1], default_moderator, phrase)
    assert rows[1]["id"] == "b" and rows[1]["line"] == 2
    for row, text in zip([rows[0], *rows[2:]], TEXTS[:3], strict=True):
        _assert_scored_like(row, expected[text])


@pytest.mark.slow
def test_a_binary_text_column_is_decoded_and_bad_utf8_reported(
    tmp_path: Path, default_moderator: Moderator, expected: dict[str, Verdict]
) -> None:
    texts = [TEXTS[1].encode(), b"caf\xe9 au lait", TEXTS[2].encode()]
    src = _write_parquet(tmp_path / "in.parquet", pa.table({"text": pa.array(texts, pa.binary())}))
    rows = _read_after(src, tmp_path / "out.parquet", default_moderator)
    _assert_not_scored(rows[1], default_moderator, "not UTF-8")
    assert [r["id"] for r in rows] == [None, None, None]  # no id column: rows known by position
    _assert_scored_like(rows[0], expected[TEXTS[1]])
    _assert_scored_like(rows[2], expected[TEXTS[2]])


def _read_after(src: Path, out: Path, moderator: Moderator) -> list[dict[str, Any]]:
    score_local(open_input(src), out, moderator, batch_size=2)
    return _read(out)


@pytest.mark.slow
def test_jsonl_and_parquet_outputs_hold_the_same_rows(
    tmp_path: Path, default_moderator: Moderator
) -> None:
    lines: list[object] = [{"id": i, "text": t} for i, t in enumerate(TEXTS)]
    lines += [{"id": "x", "text": None}, "not json"]
    src = _write_jsonl(tmp_path / "in.jsonl", lines)
    as_jsonl = _read_after(src, tmp_path / "a.jsonl", default_moderator)
    as_parquet = _read_after(src, tmp_path / "a.parquet", default_moderator)
    assert as_parquet == as_jsonl
    assert as_jsonl[0]["id"] == "0"  # ids are text, as `bastion moderate` writes them


class _FailingModerator:
    """Scores the first batch with the real moderator, then fails as a crash would."""

    def __init__(self, real: Moderator) -> None:
        self.real = real
        self.policy = real.policy
        self.model_version = real.model_version
        self.calls = 0

    def moderate(self, items: list[Any]) -> list[Verdict]:
        self.calls += 1
        if self.calls > 1:
            raise RuntimeError("worker lost")
        return self.real.moderate(items)


@pytest.mark.slow
@pytest.mark.parametrize("suffix", [".jsonl", ".parquet"])
def test_a_failed_run_leaves_the_old_output_and_no_partial_file(
    suffix: str, tmp_path: Path, default_moderator: Moderator
) -> None:
    src = _write_jsonl(tmp_path / "in.jsonl", [{"id": i, "text": t} for i, t in enumerate(TEXTS)])
    out = tmp_path / f"out{suffix}"
    out.write_bytes(b"previous complete output")
    fake: Any = _FailingModerator(default_moderator)
    with pytest.raises(RuntimeError, match="worker lost"):
        score_local(open_input(src), out, fake, batch_size=2)
    assert fake.calls == 2  # the first batch was written to the temporary file before the crash
    assert out.read_bytes() == b"previous complete output"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl", out.name]


@pytest.mark.slow
def test_the_output_appears_only_when_complete(
    tmp_path: Path, default_moderator: Moderator
) -> None:
    src = _write_jsonl(tmp_path / "in.jsonl", [{"id": i, "text": t} for i, t in enumerate(TEXTS)])
    out = tmp_path / "out.jsonl"
    during: list[tuple[bool, list[str]]] = []

    def watch(done: int, total: int) -> None:
        partial = [p.name for p in tmp_path.iterdir() if p.name.endswith(".partial")]
        during.append((out.exists(), partial))

    score_local(open_input(src), out, default_moderator, batch_size=3, progress=watch)
    assert len(during) == 4
    assert all(not exists for exists, _ in during)
    assert all(len(partial) == 1 and partial[0].startswith(".out.jsonl.") for _, partial in during)
    assert len(_read(out)) == len(TEXTS)
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".partial")]


# -- refusals before any scoring ------------------------------------------------------------


def test_a_missing_input_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file"):
        open_input(tmp_path / "nope.jsonl")


def test_an_unknown_input_suffix_is_refused(tmp_path: Path) -> None:
    src = tmp_path / "posts.csv"
    src.write_text("id,text\n1,hello\n")
    with pytest.raises(InputError, match=r"unknown input format '\.csv'.*\.jsonl.*\.parquet"):
        open_input(src)


def test_an_unusable_output_is_refused_before_scoring(tmp_path: Path) -> None:
    src = _write_jsonl(tmp_path / "in.jsonl", [{"id": 1, "text": "hello"}])
    unused: Any = object()  # refused before the moderator is touched
    with pytest.raises(InputError, match=r"unknown output format '\.txt'"):
        score_local(open_input(src), tmp_path / "out.txt", unused)
    with pytest.raises(InputError, match="does not exist"):
        score_local(open_input(src), tmp_path / "no" / "out.jsonl", unused)
    with pytest.raises(InputError, match="would overwrite the input"):
        score_local(open_input(src), src, unused)
    assert src.read_text() == '{"id": 1, "text": "hello"}\n'


def test_a_missing_text_column_is_refused_with_the_columns_there(tmp_path: Path) -> None:
    src = _write_parquet(tmp_path / "in.parquet", pa.table({"id": [1], "body": ["hi"]}))
    with pytest.raises(
        InputError, match=r"no column 'text' \(its columns: id, body\).*--text-column"
    ):
        open_input(src)
    with pytest.raises(InputError, match=r"no column 'post'.*--id-column"):
        open_input(src, text_column="body", id_column="post")
    assert open_input(src, text_column="body").count() == 1


def test_a_text_column_that_cannot_hold_text_is_refused(tmp_path: Path) -> None:
    src = _write_parquet(tmp_path / "in.parquet", pa.table({"text": [1, 2], "note": ["a", "b"]}))
    with pytest.raises(InputError, match="column 'text' holds int64, not text"):
        open_input(src)


def test_a_file_that_is_not_parquet_is_refused(tmp_path: Path) -> None:
    src = tmp_path / "in.parquet"
    src.write_text('{"text": "this is JSON"}\n')
    with pytest.raises(InputError, match="not a readable Parquet file"):
        open_input(src)


def test_columns_are_for_parquet_only(tmp_path: Path) -> None:
    src = _write_jsonl(tmp_path / "in.jsonl", [{"id": 1, "body": "hello"}])
    with pytest.raises(InputError, match="for Parquet input"):
        open_input(src, text_column="body")


def test_a_policy_file_travels_as_its_text(tmp_path: Path) -> None:
    policy = tmp_path / "p.yaml"
    policy.write_text(
        "id: t\nversion: '1'\nname: t\ncategories:\n"
        "  - {id: a, name: A, severity: 2, definition: insults}\n"
    )
    spec = ModeratorSpec.of(policy, "zero-shot")
    policy.unlink()  # a worker elsewhere never sees the file
    assert spec.load_policy().category_ids == ["a"]
    with pytest.raises(PolicyError):
        ModeratorSpec.of(tmp_path / "missing.yaml")


# -- chunk planning: reading chunk by chunk is reading the file ------------------------------

_LINE = st.one_of(
    st.builds(lambda i, t: json.dumps({"id": i, "text": t}), st.integers(0, 99), st.text()),
    st.sampled_from(["", "   ", "{not json", '{"id": 3}', '{"text": 5}', "[1, 2]"]),
)


@settings(max_examples=60, deadline=None)
@given(
    lines=st.lists(_LINE, max_size=30), rows_per_chunk=st.integers(1, 8), batch=st.integers(1, 5)
)
def test_jsonl_chunks_read_back_the_whole_file(
    lines: list[str], rows_per_chunk: int, batch: int
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "in.jsonl"
        path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
        source = open_input(path)
        chunks = source.plan(rows_per_chunk)
        got: list[InputRow] = []
        for chunk in chunks:
            assert 1 <= chunk.rows <= rows_per_chunk
            for rows in source.read(chunk, batch):
                assert 1 <= len(rows) <= batch
                got.extend(rows)
        want = list(read_records(path))
        assert [r.row for r in got] == list(range(len(want)))
        assert source.count() == len(want) == sum(c.rows for c in chunks)
        assert [(r.record.line, r.record.id, r.record.error) for r in got] == [
            (w.line, w.id, w.error) for w in want
        ]
        assert [r.record.item and r.record.item.text for r in got] == [
            w.item and w.item.text for w in want
        ]


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(0, 60),
    group=st.integers(1, 25),
    rows_per_chunk=st.integers(1, 30),
    batch=st.integers(1, 9),
)
def test_parquet_chunks_read_back_the_whole_file(
    n: int, group: int, rows_per_chunk: int, batch: int
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "in.parquet"
        texts = [None if i % 7 == 3 else f"text {i}" for i in range(n)]
        table = pa.table({"text": pa.array(texts, pa.string()), "id": list(range(n))})
        pq.write_table(table, path, row_group_size=group)
        source = open_input(path)
        got = [
            r
            for chunk in source.plan(rows_per_chunk)
            for rows in source.read(chunk, batch)
            for r in rows
        ]
        assert [r.row for r in got] == list(range(n))
        assert [r.record.id for r in got] == [str(i) for i in range(n)]
        assert [r.record.item.text if r.record.item else None for r in got] == texts


# -- the command ------------------------------------------------------------------------------


@pytest.mark.slow
def test_the_command_scores_the_sample_file(tmp_path: Path) -> None:
    sample = Path(__file__).resolve().parents[2] / "src" / "bastion" / "data" / "sample.jsonl"
    out = tmp_path / "sample.parquet"
    result = runner.invoke(app, ["score", "--input", str(sample), "--output", str(out)])
    assert result.exit_code == 0, result.output
    rows = _read(out)
    ids = [json.loads(line)["id"] for line in sample.read_text().splitlines() if line.strip()]
    assert [r["id"] for r in rows] == ids
    assert all(r["error"] is None for r in rows)
    assert any(r["flagged"] for r in rows) and not all(r["flagged"] for r in rows)


@pytest.mark.slow
@pytest.mark.parametrize("suffix", [".jsonl", ".parquet"])
def test_the_command_sends_rows_it_could_not_score_to_review(suffix: str, tmp_path: Path) -> None:
    bad = [{"id": "empty", "text": ""}, {"id": "number", "text": 7}, '{"id": "broken", "text']
    src = _write_jsonl(tmp_path / "in.jsonl", [{"id": "fine", "text": TEXTS[0]}, *bad])
    out = tmp_path / f"out{suffix}"
    result = runner.invoke(app, ["score", "--input", str(src), "--output", str(out)])
    assert result.exit_code == 0, result.output
    fine, *failed = _read(out)
    assert fine["action"] == "allow" and fine["flagged"] is False and fine["error"] is None
    for row in failed:
        assert row["error"] and row["action"] == "review" and row["flagged"] is None, row["line"]


def test_ray_options_need_the_ray_engine(tmp_path: Path) -> None:
    src = _write_jsonl(tmp_path / "in.jsonl", [{"id": 1, "text": "hello"}])
    args = ["score", "-i", str(src), "-o", str(tmp_path / "o.jsonl"), "--actors", "3"]
    result = runner.invoke(app, args)
    assert result.exit_code != 0
    assert "--engine ray" in str(result.exception)


def test_the_command_prints_input_errors_without_a_traceback(tmp_path: Path) -> None:
    src = _write_parquet(tmp_path / "in.parquet", pa.table({"body": ["hi"]}))
    out = tmp_path / "out.jsonl"
    env = {**os.environ, "COLUMNS": "200"}
    proc = subprocess.run(
        [sys.executable, "-m", "bastion.cli", "score", "-i", str(src), "-o", str(out)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "error:" in proc.stderr and "no column 'text'" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not out.exists()
