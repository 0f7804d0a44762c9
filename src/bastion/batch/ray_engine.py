"""The Ray engine: the same chunked scoring as a Ray Data pipeline, so it runs on a Ray cluster unchanged.

The pipeline is `from_items(chunks) -> map_batches(ChunkScorer, ActorPoolStrategy(size=N))`:
each actor builds one Moderator from a `ModeratorSpec`, takes a chunk, reads it with the same
reader the in-process engine uses and yields one Arrow table per batch, which Ray streams back
to the driver; the driver writes rows in input order to the one output file, atomically.

Why reading happens inside the actors rather than in a `read_parquet` / `read_json` stage of its
own: the model dominates the cost by orders of magnitude, and a separate read stage would
compete with the actors for CPUs (on a small machine, starve them) and move every input row
through the object store once more. Ray's own JSON reader would also fail a whole file on one
malformed line, where Bastion reports that line and goes on. A chunk is a few integers, so the
only thing the driver ships is the plan.

Ray is asked to preserve block order, and the driver also re-orders by the `row` column (and
checks that every row came back exactly once); chunks start on batch boundaries, so each row is
scored beside the same rows as in-process. The output then equals the in-process output, row
for row, for any model whose scores for a text do not depend on what else the process scored.
Started locally, Ray is kept to this machine: no dashboard, no usage reporting, a small object
store, every service bound to 127.0.0.1, and its logging turned down.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import socket
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pyarrow as pa

from bastion.batch.inputs import BatchInput, Chunk
from bastion.batch.local import ProgressCallback, batch_aligned
from bastion.batch.outputs import ScoreSummary, check_output, open_output, output_schema, score_rows
from bastion.batch.spec import ModeratorSpec
from bastion.errors import BastionError
from bastion.moderator import Moderator

# Chunks per actor that the plan aims for, so a slow chunk does not leave the others idle.
CHUNKS_PER_ACTOR = 4
MAX_CHUNK_ROWS = 20_000
LOCAL_OBJECT_STORE_BYTES = 256 * 1024 * 1024

_QUIET_ENV = {
    "RAY_USAGE_STATS_ENABLED": "0",  # never report usage over the network
    "RAY_DATA_LOG_LEVEL": "ERROR",
}
# Read when `ray` is imported: Ray on one machine then binds 127.0.0.1 rather than looking for
# an address other machines could reach (what Ray does on macOS and Windows by default).
_LOCAL_ONLY_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}


class ChunkScorer:
    """A Ray Data actor: holds one Moderator and turns a batch of chunk descriptions into scored rows."""

    def __init__(
        self, spec: ModeratorSpec, source: BatchInput, schema: pa.Schema, batch_size: int
    ) -> None:
        # A Moderator that cannot be built (a policy or model a worker cannot load) fails the
        # first chunk with its own error: an actor that dies in __init__ reaches the driver as
        # Ray's ActorDiedError, whose message holds a traceback but not the BastionError.
        self.moderator: Moderator | None = None
        self.failure: BastionError | None = None
        try:
            self.moderator = spec.build()
        except BastionError as exc:
            self.failure = exc
        self.source = source
        self.schema = schema
        self.batch_size = batch_size

    def __call__(self, chunks: pa.Table) -> Iterator[pa.Table]:
        if self.moderator is None:
            assert self.failure is not None
            raise self.failure
        for fields in chunks.to_pylist():
            for rows in self.source.read(Chunk(**fields), self.batch_size):
                yield pa.Table.from_pylist(score_rows(self.moderator, rows), schema=self.schema)


def score_ray(
    source: BatchInput,
    output: Path | str,
    spec: ModeratorSpec,
    *,
    actors: int = 2,
    address: str | None = None,
    num_cpus: int | None = None,
    chunk_rows: int | None = None,
    progress: ProgressCallback | None = None,
) -> ScoreSummary:
    """Score the input on Ray with `actors` actors and write the output as `score_local` would.

    `address` is a Ray cluster's address; without it Ray starts on this machine with `num_cpus`
    CPUs (default: all) and is shut down at the end. If Ray is already initialised in this
    process it is used as it is and left running. `chunk_rows` (rounded up to whole batches)
    overrides how many rows one actor call reads.
    """
    if actors < 1:
        raise BastionError("--actors must be at least 1")
    started = time.perf_counter()
    check_output(output, source.path)
    schema = output_schema(spec.load_policy().category_ids)
    total = source.count()
    rows_per_chunk = chunk_rows or plan_chunk_rows(total, actors, spec.batch_size)
    chunks = source.plan(batch_aligned(rows_per_chunk, spec.batch_size))
    done = 0
    with open_output(output, schema) as writer:
        if progress is not None:
            progress(done, total)
        if chunks:
            with ray_session(address, num_cpus) as cpus:
                for rows in in_input_order(
                    _scored_rows(chunks, source, spec, schema, actors, cpus), total
                ):
                    writer.write(rows)
                    done += len(rows)
                    if progress is not None:
                        progress(done, total)
    summary = writer.summary
    summary.seconds = time.perf_counter() - started
    return summary


def plan_chunk_rows(total: int, actors: int, batch_size: int) -> int:
    """Rows per chunk: about CHUNKS_PER_ACTOR chunks per actor, whole batches, at most MAX_CHUNK_ROWS."""
    target = math.ceil(total / (actors * CHUNKS_PER_ACTOR)) if total else batch_size
    cap = max(batch_size, MAX_CHUNK_ROWS // batch_size * batch_size)
    return min(batch_aligned(target, batch_size), cap)


def in_input_order(
    batches: Iterable[list[dict[str, Any]]], total: int
) -> Iterator[list[dict[str, Any]]]:
    """Rows released in `row` order as soon as they are contiguous; every row must come exactly once.

    With Ray preserving order this passes batches straight through; if blocks ever arrive out of
    order, only the rows ahead of a gap wait here.
    """
    pending: dict[int, dict[str, Any]] = {}
    expected = 0
    for batch in batches:
        for row in batch:
            k = row["row"]
            if k < expected or k in pending or not 0 <= k < total:
                raise BastionError(f"the Ray run returned input row {k} twice or out of range")
            pending[k] = row
        ready = []
        while expected in pending:
            ready.append(pending.pop(expected))
            expected += 1
        if ready:
            yield ready
    if expected != total:
        raise BastionError(
            f"the Ray run returned {expected + len(pending)} of {total} rows "
            f"(row {expected} is missing); the output was not written"
        )


def _scored_rows(
    chunks: list[Chunk],
    source: BatchInput,
    spec: ModeratorSpec,
    schema: pa.Schema,
    actors: int,
    cpus: float | None,
) -> Iterator[list[dict[str, Any]]]:
    import ray.data

    per_actor = 1.0 if cpus is None else min(1.0, cpus / actors)
    context = ray.data.DataContext.get_current()
    saved = (context.execution_options.preserve_order, context.enable_progress_bars)
    context.execution_options.preserve_order = True
    context.enable_progress_bars = False  # the CLI shows its own bar
    try:
        plan = ray.data.from_items(
            [dataclasses.asdict(c) for c in chunks], override_num_blocks=len(chunks)
        )
        scored = plan.map_batches(
            ChunkScorer,
            fn_constructor_kwargs={
                "spec": spec,
                "source": source,
                "schema": schema,
                "batch_size": spec.batch_size,
            },
            compute=ray.data.ActorPoolStrategy(size=actors),
            batch_size=1,
            batch_format="pyarrow",
            num_cpus=per_actor,
        )
        tables: Iterable[pa.Table] = scored.iter_batches(batch_format="pyarrow", batch_size=None)
        for table in tables:
            yield table.to_pylist()
    except Exception as exc:
        cause = _bastion_cause(exc)
        if cause is None:
            raise
        raise cause from None
    finally:
        context.execution_options.preserve_order, context.enable_progress_bars = saved


@contextmanager
def ray_session(address: str | None, num_cpus: int | None) -> Iterator[float | None]:
    """Ray for one run: started here (local, or connected to `address`) and shut down after.

    Yields the CPUs that local actors share, or None on a cluster (one CPU per actor there). A
    Ray already initialised in this process is used and left running.
    """
    env = _QUIET_ENV if address else {**_QUIET_ENV, **_LOCAL_ONLY_ENV}
    for key, value in env.items():
        os.environ.setdefault(key, value)
    try:
        import ray
    except ImportError:
        raise BastionError(
            "--engine ray needs Ray: pip install 'ray[data]' (or use --engine local)"
        ) from None
    if ray.is_initialized():
        yield _local_cpus(address)
        return
    quiet: dict[str, Any] = {"logging_level": logging.ERROR, "log_to_driver": False}
    try:
        if address:
            _check_reachable(address)
            ray.init(address=address, **quiet)
        else:
            cpus = num_cpus or os.cpu_count() or 1
            ray.init(
                address="local",
                num_cpus=cpus,
                include_dashboard=False,
                object_store_memory=LOCAL_OBJECT_STORE_BYTES,
                **quiet,
            )
    except ConnectionError as exc:
        raise BastionError(f"could not reach the Ray cluster at {address}: {exc}") from None
    try:
        yield _local_cpus(address)
    finally:
        ray.shutdown()


def _check_reachable(address: str) -> None:
    """Fail fast on a `host:port` nothing listens on (Ray itself retries for minutes)."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        return  # "auto" and the like: Ray finds the cluster itself
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=5).close()
    except OSError as exc:
        raise ConnectionError(f"nothing answers at {host}:{port} ({exc})") from None


def _local_cpus(address: str | None) -> float | None:
    """The CPUs that actors share on a local Ray; None on a cluster (one CPU per actor there)."""
    if address:
        return None
    import ray

    resources = ray.cluster_resources()  # type: ignore[no-untyped-call]
    return float(resources.get("CPU", 1.0))


def _bastion_cause(exc: BaseException) -> BastionError | None:
    """The BastionError an actor raised (a policy it could not load, say), under Ray's wrappers.

    Ray re-raises a task's exception as a `RayTaskError` subclass of the original's class, with
    Ray's traceback for a message; the original, with its own message, is its `cause`.
    """
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        current = todo.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, BastionError) and type(current).__module__.startswith("bastion."):
            return current
        todo += [current.__cause__, current.__context__, getattr(current, "cause", None)]
    return None
