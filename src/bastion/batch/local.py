"""The in-process batch engine: one Moderator walks the input's chunks in order, a batch at a time."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from bastion.batch.inputs import BatchInput
from bastion.batch.outputs import ScoreSummary, check_output, open_output, output_schema, score_rows
from bastion.moderator import Moderator

ProgressCallback = Callable[[int, int], None]
"""Called with (rows written so far, total rows): once with 0 before scoring, then after each batch."""

# In-process, chunks only bound how far one read seeks; large ones mean fewer seeks.
LOCAL_CHUNK_ROWS = 65_536


def batch_aligned(rows_per_chunk: int, batch_size: int) -> int:
    """Rows per chunk rounded up to whole batches.

    With every chunk starting on a batch boundary, batch k is rows k*B .. k*B+B-1 whatever the
    engine, the chunk size or the number of actors, so each row is scored beside the same rows
    everywhere; that matters where a model's numbers depend on the batch (an int8 encoder whose
    activation scale is taken per batch, padding).
    """
    return max(1, -(-rows_per_chunk // batch_size)) * batch_size


def score_local(
    source: BatchInput,
    output: Path | str,
    moderator: Moderator,
    *,
    batch_size: int = 1024,
    progress: ProgressCallback | None = None,
) -> ScoreSummary:
    """Score every input row with `moderator` and write one output row each, in input order.

    Memory holds one batch of rows at a time; bad rows are written with their `error` and the
    run goes on. The output appears only once it is complete.
    """
    started = time.perf_counter()
    check_output(output, source.path)
    chunks = source.plan(batch_aligned(LOCAL_CHUNK_ROWS, batch_size))
    total = sum(c.rows for c in chunks)
    done = 0
    with open_output(output, output_schema(moderator.policy.category_ids)) as writer:
        if progress is not None:
            progress(done, total)
        for chunk in chunks:
            for rows in source.read(chunk, batch_size):
                writer.write(score_rows(moderator, rows))
                done += len(rows)
                if progress is not None:
                    progress(done, total)
    summary = writer.summary
    summary.seconds = time.perf_counter() - started
    return summary
