"""Batch scoring at scale: a backlog file (JSONL or Parquet) in, one scored row per input row out.

Both engines share everything but the scheduling. The input is planned into chunks (contiguous
row ranges; a JSONL chunk also knows its byte range), each chunk is read in batches and never the
whole file at once, each batch goes through a Moderator, and the rows are written in input order
to a temporary file that replaces the output only when the run is complete. The in-process engine
(`score_local`) walks the chunks through one Moderator; the Ray engine
(`bastion.batch.ray_engine.score_ray`) hands the same chunks to a pool of actors holding one
Moderator each, so a platform can run the same job on a Ray cluster.
"""

from __future__ import annotations

from bastion.batch.inputs import BatchInput, Chunk, InputRow, open_input
from bastion.batch.local import score_local
from bastion.batch.outputs import (
    OutputFormat,
    ScoreSummary,
    check_output,
    open_output,
    output_schema,
    score_rows,
)
from bastion.batch.spec import ModeratorSpec

__all__ = [
    "BatchInput",
    "Chunk",
    "InputRow",
    "ModeratorSpec",
    "OutputFormat",
    "ScoreSummary",
    "check_output",
    "open_input",
    "open_output",
    "output_schema",
    "score_local",
    "score_rows",
]
