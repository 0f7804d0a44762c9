"""Dynamic micro-batching: concurrent requests share one model call, or one commit.

A request handler hands its items to a `Batcher` and blocks on a future. One worker thread per
batcher takes the first waiting job, everything else already queued, and whatever arrives within
`max_wait_ms` more (up to `max_items`), runs them through its function in one call, and hands
each job its own results back. Under load the queue fills while a batch runs, so the next batch
is large without waiting; when idle, a lone job waits at most `max_wait_ms`.

Two batchers serve each request. `MicroBatcher` puts texts from concurrent requests through the
Moderator in one call, which sorts them by token count and pads each sub-batch to its own
longest text. The decision log's batcher (`max_wait_ms=0`: it never waits, it only takes what
queued up while the last commit ran) writes concurrent requests' decisions in one transaction:
one fsync for many requests instead of one each (group commit), and each request is still
answered only once its decisions are durable.

One job's failure must not fail the jobs batched with it: when a batch raises, each job in it
is run again on its own, and only the one that raises again gets the error. A job's items are
always in one call, so a commit stays all-or-nothing per request.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from bastion.items import Item
from bastion.moderator import Moderator, Verdict

T = TypeVar("T")
R = TypeVar("R")


@dataclass
class _Job(Generic[T, R]):
    items: Sequence[T]
    future: Future[list[R]] = field(default_factory=Future)


class Batcher(Generic[T, R]):
    """Batches calls of `run` (a list of items in, one result per item out, in order) from many
    threads; `close()` drains and stops."""

    def __init__(
        self,
        run: Callable[[list[T]], Sequence[R]],
        *,
        max_wait_ms: float = 2.0,
        max_items: int = 128,
        on_batch: Callable[[int], None] | None = None,
        name: str = "model",
    ) -> None:
        self.run = run
        self.name = name
        self.max_wait = max_wait_ms / 1000
        self.max_items = max_items
        self.on_batch = on_batch
        self._queue: queue.Queue[_Job[T, R] | None] = queue.Queue()
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name=f"batcher-{name}", daemon=True)
        self._thread.start()

    def submit(self, items: Sequence[T]) -> list[R]:
        """The results for `items`, in order, from whichever batch they rode in."""
        if self._closed:
            raise RuntimeError(f"the {self.name} batcher is closed")
        if not items:
            return []
        job: _Job[T, R] = _Job(items)
        self._queue.put(job)
        return job.future.result()

    def close(self, timeout: float = 30.0) -> None:
        """Finish what is queued, then stop the worker."""
        if not self._closed:
            self._closed = True
            self._queue.put(None)
            self._thread.join(timeout)

    def _loop(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            jobs, stop = self._collect(first)
            self._run(jobs)
            if stop:
                return

    def _collect(self, first: _Job[T, R]) -> tuple[list[_Job[T, R]], bool]:
        jobs = [first]
        size = len(first.items)
        deadline = time.monotonic() + self.max_wait
        while size < self.max_items:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                wait = deadline - time.monotonic()
                if wait <= 0:
                    break
                try:
                    job = self._queue.get(timeout=wait)
                except queue.Empty:
                    break
            if job is None:
                return jobs, True
            jobs.append(job)
            size += len(job.items)
        return jobs, False

    def _run(self, jobs: list[_Job[T, R]]) -> None:
        items = [item for job in jobs for item in job.items]
        try:
            results = list(self.run(items))
            if len(results) != len(items):
                raise RuntimeError(f"{self.name}: {len(results)} results for {len(items)} items")
        except Exception as exc:
            if len(jobs) == 1:
                jobs[0].future.set_exception(exc)
            else:
                for job in jobs:
                    self._run([job])
            return
        if self.on_batch is not None:
            self.on_batch(len(items))
        start = 0
        for job in jobs:
            job.future.set_result(results[start : start + len(job.items)])
            start += len(job.items)


class MicroBatcher(Batcher[Item, Verdict]):
    """Batches `moderate` calls on one Moderator from many threads."""

    def __init__(
        self,
        moderator: Moderator,
        *,
        max_wait_ms: float = 2.0,
        max_items: int = 128,
        on_batch: Callable[[int], None] | None = None,
        name: str = "model",
    ) -> None:
        self.moderator = moderator
        super().__init__(
            moderator.moderate,
            max_wait_ms=max_wait_ms,
            max_items=max_items,
            on_batch=on_batch,
            name=name,
        )

    def moderate(self, items: Sequence[Item]) -> list[Verdict]:
        """The verdicts for `items`, in order, from whichever batch they rode in."""
        return self.submit(items)
