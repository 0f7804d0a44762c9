"""`bastion score --engine ray`: Ray run locally gives the in-process output, row for row."""

from __future__ import annotations

import dataclasses
import json
import pickle
import random
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from bastion.batch import ModeratorSpec, open_input, output_schema, score_local
from bastion.batch.ray_engine import ChunkScorer, in_input_order, plan_chunk_rows, score_ray
from bastion.errors import BastionError, ModelError

# Ray's DataContext warns about its own deprecated settings when it copies itself.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:ray.data.context")

# Scores are rounded to 6 decimals; an actor scores a text in other batches, on other threads,
# so a score may differ by one unit there (a float difference a hair over 1e-6).
SCORE_TOLERANCE = 1e-6 + 1e-9

# A small policy, scored zero-shot, keeps each actor's start to seconds; the pipeline does not
# depend on which policy or model the actors hold.
POLICY = """
id: forum
version: "1"
name: Forum comments
categories:
  - id: spam
    name: Spam
    severity: 1
    definition: Unsolicited advertising, links to deals and the same promotion posted again and again.
    examples:
      positive: [buy cheap watches now at my shop, click this link for free coins, best deals here visit now]
      negative: [has anyone tried the new cafe downtown, thanks for sharing the article]
  - id: abuse
    name: Abuse
    severity: 2
    definition: Insults and threats aimed at another user.
    examples:
      positive: [you are an idiot, shut up you worthless loser, I will hurt you if you post again]
      negative: [I disagree with you, that's a fair point, thanks for the help]
"""

OPENERS = ["honestly", "ok so", "fwiw", "lol", "hey all,", "update:", "", "well"]
BODIES = [
    "the library opens at nine on saturdays",
    "you are a pathetic idiot and nobody wants you here",
    "buy followers cheap, click my profile link for the best deals",
    "my cat knocked the plant off the shelf again",
    "I know where you park, watch yourself tonight",
    "does the 42 bus still stop by the stadium after the game",
    "limited offer!!! free gift cards at this link, visit now",
    "thanks, that fixed the build error on my laptop",
]


def _rows(n: int) -> list[object]:
    """n JSONL entries of varied texts written for this test, with bad lines mixed in."""
    rng = random.Random(7)
    out: list[object] = []
    for i in range(n):
        if i % 37 == 5:
            out.append(["missing", "empty", "number", "json"][(i // 37) % 4])
            continue
        text = f"{rng.choice(OPENERS)} {rng.choice(BODIES)} #{i}".strip()
        out.append({"id": f"c{i}", "text": text})
    bad = {
        "missing": {"id": "bad", "note": "no text"},
        "empty": {"id": "bad", "text": ""},
        "number": {"id": "bad", "text": 7},
        "json": '{"id": "bad", "text": ',
    }
    return [bad[x] if isinstance(x, str) else x for x in out]


def _read(path: Path) -> list[dict[str, Any]]:
    if path.suffix == ".parquet":
        rows: list[dict[str, Any]] = pq.read_table(path).to_pylist()
        return rows
    return [json.loads(line) for line in path.read_text().splitlines()]


def _assert_same_rows(ray_rows: list[dict[str, Any]], local_rows: list[dict[str, Any]]) -> None:
    assert len(ray_rows) == len(local_rows)
    for r, loc in zip(ray_rows, local_rows, strict=True):
        for key in ("row", "line", "id", "flagged", "categories", "action", "error"):
            assert r[key] == loc[key], (key, r, loc)
        assert r["policy_version"] == loc["policy_version"]
        assert r["model_version"] == loc["model_version"]
        if loc["category_scores"] is None:
            assert r["category_scores"] is None
            continue
        assert r["category_scores"].keys() == loc["category_scores"].keys()
        for cat, score in loc["category_scores"].items():
            assert abs(r["category_scores"][cat] - score) <= SCORE_TOLERANCE, (cat, r, loc)


@pytest.fixture(autouse=True)
def _torch_runtime(monkeypatch: pytest.MonkeyPatch) -> None:
    """Score on PyTorch in the driver and in every actor (Ray workers inherit the environment).

    What is under test is the pipeline: same rows, same order, same verdicts. The int8 ONNX
    encoder quantises activations per batch and caches embeddings, so there a text's scores can
    move with what was scored before it in the same process, which differs between one process
    and two actors whatever the pipeline does.
    """
    monkeypatch.setenv("BASTION_RUNTIME", "torch")


@pytest.fixture(scope="module")
def spec(tmp_path_factory: pytest.TempPathFactory) -> ModeratorSpec:
    path = tmp_path_factory.mktemp("policy") / "forum.yaml"
    path.write_text(POLICY)
    return ModeratorSpec.of(path, "zero-shot", batch_size=32)


def _ray_is_up() -> bool:
    import ray

    return bool(ray.is_initialized())


@pytest.mark.slow
def test_ray_jsonl_output_equals_the_in_process_output(tmp_path: Path, spec: ModeratorSpec) -> None:
    src = tmp_path / "comments.jsonl"
    src.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in _rows(300)))
    local_out, ray_out = tmp_path / "local.jsonl", tmp_path / "ray.jsonl"
    with spec.build() as moderator:
        local = score_local(open_input(src), local_out, moderator, batch_size=spec.batch_size)

    seen: list[tuple[int, int]] = []
    summary = score_ray(
        open_input(src),
        ray_out,
        spec,
        actors=2,
        num_cpus=2,
        progress=lambda done, total: seen.append((done, total)),
    )
    assert not _ray_is_up()  # Ray started for the run is shut down after it

    ray_rows, local_rows = _read(ray_out), _read(local_out)
    _assert_same_rows(ray_rows, local_rows)
    assert [r["row"] for r in ray_rows] == list(range(300))
    errors = [r for r in ray_rows if r["error"] is not None]
    assert len(errors) == 8  # every bad line is on its own row, and the run went on
    flagged = {r["flagged"] for r in ray_rows if r["error"] is None}
    assert flagged == {True, False}  # the comparison is between real, varied verdicts
    assert (summary.rows, summary.errors, summary.flagged) == (
        local.rows,
        local.errors,
        local.flagged,
    )
    assert seen[0] == (0, 300) and seen[-1] == (300, 300)
    assert len(seen) > 3  # rows were streamed back as chunks finished, not all at the end


@pytest.mark.slow
def test_the_actor_scores_parquet_chunks_as_the_local_engine_does(
    tmp_path: Path, spec: ModeratorSpec
) -> None:
    """The actor class without Ray: what Ray ships to it pickles, and its tables are the rows."""
    rng = random.Random(11)
    n = 150
    texts: list[str | None] = [
        f"{rng.choice(OPENERS)} {rng.choice(BODIES)} ({i})" for i in range(n)
    ]
    texts[17], texts[101] = None, "   "
    table = pa.table({"post": list(range(n)), "body": pa.array(texts, pa.string())})
    src = tmp_path / "backlog.parquet"
    pq.write_table(table, src, row_group_size=50)
    source = open_input(src, text_column="body", id_column="post")
    local_out = tmp_path / "local.parquet"
    with spec.build() as moderator:
        score_local(source, local_out, moderator, batch_size=spec.batch_size)
    schema = output_schema(spec.load_policy().category_ids)

    shipped = pickle.loads(pickle.dumps((spec, source, schema)))  # as Ray sends them
    actor = ChunkScorer(*shipped, batch_size=spec.batch_size)
    chunks = source.plan(64)
    plan = pa.Table.from_pylist([dataclasses.asdict(c) for c in chunks[::-1]])  # any order
    tables = list(actor(plan))
    assert all(t.schema == schema and t.num_rows <= spec.batch_size for t in tables)
    rows = sorted((r for t in tables for r in t.to_pylist()), key=lambda r: r["row"])
    local_rows = _read(local_out)
    _assert_same_rows(rows, local_rows)
    assert rows[17]["error"] is not None and rows[101]["error"] is not None
    assert {r["flagged"] for r in rows if r["error"] is None} == {True, False}


def test_a_model_that_cannot_load_is_refused_before_ray_starts(
    tmp_path: Path, spec: ModeratorSpec
) -> None:
    with pytest.raises(ModelError, match="not a Bastion model directory"):
        ModeratorSpec.of(spec.policy, tmp_path)


def test_an_unreachable_cluster_is_refused_quickly(tmp_path: Path, spec: ModeratorSpec) -> None:
    src = tmp_path / "in.jsonl"
    src.write_text('{"id": 1, "text": "hello"}\n')
    out = tmp_path / "out.jsonl"
    with pytest.raises(BastionError, match=r"could not reach the Ray cluster at 127\.0\.0\.1:1"):
        score_ray(open_input(src), out, spec, address="127.0.0.1:1")
    assert not out.exists() and list(tmp_path.iterdir()) == [src]
    assert not _ray_is_up()


def test_rows_are_released_in_input_order() -> None:
    rows = [{"row": i} for i in range(10)]
    batches = [rows[4:6], rows[0:2], rows[8:10], rows[2:4], rows[6:8]]
    released = list(in_input_order(batches, 10))
    assert [r["row"] for batch in released for r in batch] == list(range(10))
    # Rows 0-5 wait only for the gap before them; 6-9 go out as soon as 6-7 arrive.
    assert [[r["row"] for r in b] for b in released] == [[0, 1], [2, 3, 4, 5], [6, 7, 8, 9]]


def test_a_lost_or_repeated_row_fails_the_run() -> None:
    rows = [{"row": i} for i in range(4)]
    with pytest.raises(BastionError, match="row 2 is missing"):
        list(in_input_order([rows[:2], rows[3:]], 4))
    with pytest.raises(BastionError, match="row 1 twice"):
        list(in_input_order([rows[:2], rows[1:]], 4))
    with pytest.raises(BastionError, match="out of range"):
        list(in_input_order([[{"row": 9}]], 4))


def test_chunks_spread_the_work_over_the_actors() -> None:
    # About four chunks per actor, in whole batches.
    assert plan_chunk_rows(300, 2, 32) == 64
    assert plan_chunk_rows(10_000_000, 8, 128) == 19_968  # capped, still whole batches
    assert plan_chunk_rows(5, 4, 32) == 32  # never below one batch
    assert plan_chunk_rows(0, 2, 16) == 16
