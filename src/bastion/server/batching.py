"""Dynamic micro-batching: concurrent requests' texts share one encoder call.

A request handler hands its items to the model's `MicroBatcher` and blocks on a future. One worker
thread per model takes the first waiting request, everything else already queued, and whatever
arrives within `max_wait_ms` more (up to `max_items`), runs them through the Moderator in one
call — which sorts texts by token count and pads each sub-batch to its own longest text — and
hands each request its own verdicts back. Under load the queue fills while a batch runs, so the
next batch is large without waiting; when idle, a lone request waits at most `max_wait_ms`.

One request's failure must not fail the requests batched with it: when a batch raises, each
request in it is run again on its own, and only the one that raises again gets the error.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field

from bastion.items import Item
from bastion.moderator import Moderator, Verdict


@dataclass
class _Job:
    items: Sequence[Item]
    future: Future[list[Verdict]] = field(default_factory=Future)


class MicroBatcher:
    """Batches `moderate` calls on one Moderator from many threads; `close()` drains and stops."""

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
        self.max_wait = max_wait_ms / 1000
        self.max_items = max_items
        self.on_batch = on_batch
        self._queue: queue.Queue[_Job | None] = queue.Queue()
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name=f"batcher-{name}", daemon=True)
        self._thread.start()

    def moderate(self, items: Sequence[Item]) -> list[Verdict]:
        """The verdicts for `items`, in order, from whichever batch they rode in."""
        if self._closed:
            raise RuntimeError("the model's batcher is closed")
        if not items:
            return []
        job = _Job(items)
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

    def _collect(self, first: _Job) -> tuple[list[_Job], bool]:
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

    def _run(self, jobs: list[_Job]) -> None:
        items = [item for job in jobs for item in job.items]
        try:
            verdicts = self.moderator.moderate(items)
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
            job.future.set_result(verdicts[start : start + len(job.items)])
            start += len(job.items)
