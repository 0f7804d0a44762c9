"""Batch inputs: Parquet metadata columns ride along into each Item, as JSONL's extra fields do."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from bastion.batch.inputs import Chunk, open_input
from bastion.errors import InputError


def _pool(tmp_path: Path) -> Path:
    path = tmp_path / "pool.parquet"
    table = pa.table(
        {
            "id": ["a", "b", "c"],
            "text": ["first post", None, "third post"],
            "author": ["u1", "u2", "u1"],
            "reach": [10, 2000, None],
        }
    )
    pq.write_table(table, path, row_group_size=2)
    return path


def test_named_metadata_columns_reach_the_items(tmp_path: Path) -> None:
    source = open_input(_pool(tmp_path), metadata_columns=["author", "reach", "author", "text"])
    rows = [r for batch in source.read(Chunk(0, 3), batch_size=2) for r in batch]
    records = [r.record for r in rows]
    assert [r.id for r in records] == ["a", "b", "c"]
    first, second, third = records
    assert first.item is not None and first.item.metadata == {"author": "u1", "reach": 10}
    assert second.item is None and second.error is not None and "'text' is null" in second.error
    assert third.item is not None and third.item.metadata == {"author": "u1", "reach": None}


def test_a_missing_metadata_column_is_refused_naming_it(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="has no column 'reports'"):
        open_input(_pool(tmp_path), metadata_columns=["author", "reports"])
