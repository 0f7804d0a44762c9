"""Decoder processes: untrusted media is decoded outside the serving process, under a time limit.

A codec that loops forever on a crafted file, or crashes on one, must not take the service with
it. So decoding runs in a small pool of worker processes, each with an address-space limit.
Workers are fresh interpreters (`python -m bastion.media.sandbox`, talking over a socket pair),
not forks or `multiprocessing` spawns: they inherit no model weights or threads, and unlike a
spawn they never re-import the caller's `__main__`, so a plain script without an
`if __name__ == "__main__"` guard can moderate media. A call waits at most the time it
is given; past that the worker is killed, a fresh one replaces it, and the caller gets a
`DecodeTimeoutError`. A worker that dies (a segfault, the memory limit) is replaced the same
way and the item gets a `CorruptMediaError`. Other calls in flight on other workers go on.
"""

from __future__ import annotations

import contextlib
import os
import queue
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path

from bastion.errors import (
    BastionError,
    CorruptMediaError,
    DecodeTimeoutError,
    EmptyMediaError,
    InputError,
    MediaError,
    MediaLimitError,
    UnsupportedMediaError,
)
from bastion.media.decode import DecodedAudio, DecodedImage, DecodedVideo, decode
from bastion.media.limits import MediaLimits
from bastion.media.sources import MediaSource

Decoded = DecodedImage | DecodedVideo | DecodedAudio

_ERRORS: dict[str, type[BastionError]] = {
    cls.__name__: cls
    for cls in (
        InputError,
        MediaError,
        EmptyMediaError,
        UnsupportedMediaError,
        CorruptMediaError,
        MediaLimitError,
    )
}


def _worker_main(conn: Connection, memory_mb: int | None) -> None:
    """Worker loop: receive (source, limits), send ("ok", decoded) or ("error", kind, msg, limit)."""
    if memory_mb is not None:
        import resource

        limit = memory_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    conn.send(("ready",))
    while True:
        try:
            job = conn.recv()
        except EOFError:
            return
        if job is None:
            return
        source, limits = job
        try:
            conn.send(("ok", decode(source, limits)))
        except MemoryError:
            conn.send(
                (
                    "error",
                    "MediaLimitError",
                    f"{source.name}: decoding needed more than the decoder's memory limit "
                    f"({memory_mb} MB, worker_memory_mb)",
                    "worker_memory_mb",
                )
            )
        except BastionError as exc:
            kind = type(exc).__name__ if type(exc).__name__ in _ERRORS else "MediaError"
            conn.send(("error", kind, str(exc), getattr(exc, "limit", None)))
        except Exception as exc:  # a decoder bug or an exotic codec failure: the item's error
            conn.send(("error", "CorruptMediaError", f"{source.name}: cannot decode ({exc})", None))


@dataclass
class _Worker:
    process: subprocess.Popen[bytes]
    conn: Connection


class DecoderPool:
    """`decode(source, timeout_s)` in one of `workers` processes; thread-safe.

    Workers start on first use (about half a second each: Pillow, PyAV and NumPy imports) and
    are kept for later calls. `close()` stops them; the pool is also a context manager.
    """

    def __init__(self, limits: MediaLimits | None = None, *, workers: int = 2) -> None:
        self.limits = limits or MediaLimits()
        self.workers = workers
        self._idle: queue.Queue[_Worker | None] = queue.Queue()
        for _ in range(workers):
            self._idle.put(None)  # a slot; the process starts when first needed
        self._closed = False
        self._lock = threading.Lock()
        self._all: list[_Worker] = []

    def decode(self, source: MediaSource, timeout_s: float | None = None) -> Decoded:
        """Decode in a worker; raises a MediaError (DecodeTimeoutError past `timeout_s`)."""
        if self._closed:
            raise RuntimeError("DecoderPool is closed")
        timeout = self.limits.decode_timeout_s if timeout_s is None else timeout_s
        if timeout <= 0:
            raise DecodeTimeoutError(
                f"{source.name}: no time left in the item's decode_timeout_s="
                f"{self.limits.decode_timeout_s:g} (its other media used it)"
            )
        worker = self._idle.get()
        try:
            if worker is None:
                worker = self._start()
            worker.conn.send((source, self.limits))
            start = time.monotonic()
            if not worker.conn.poll(timeout):
                self._kill(worker)
                worker = None
                raise DecodeTimeoutError(
                    f"{source.name}: decoding took over {timeout:g} s (decode_timeout_s) and was "
                    "stopped"
                )
            try:
                reply = worker.conn.recv()
            except (EOFError, OSError):
                self._kill(worker)
                worker = None
                raise CorruptMediaError(
                    f"{source.name}: the decoder process died after {time.monotonic() - start:.1f}"
                    " s on this file (a codec crash or the memory limit); nothing was decoded"
                ) from None
        finally:
            self._idle.put(worker)
        if reply[0] == "ok":
            decoded: Decoded = reply[1]
            return decoded
        _, kind, message, limit = reply
        cls = _ERRORS.get(kind, MediaError)
        if cls is MediaLimitError:
            raise MediaLimitError(message, limit or "unknown")
        raise cls(message)

    def _start(self) -> _Worker:
        parent, child = socket.socketpair()
        package_root = str(Path(__file__).resolve().parents[2])
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
        memory = str(self.limits.worker_memory_mb or 0)
        process = subprocess.Popen(  # noqa: S603 - our own interpreter and module, no shell
            [sys.executable, "-m", "bastion.media.sandbox", str(child.fileno()), memory],
            pass_fds=[child.fileno()],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            env=env,
        )
        child.close()
        conn = Connection(parent.detach())
        if not conn.poll(120) or conn.recv() != ("ready",):
            process.kill()
            process.wait()
            conn.close()
            raise RuntimeError("a media decoder process did not start")
        worker = _Worker(process, conn)
        with self._lock:
            self._all.append(worker)
        return worker

    def _kill(self, worker: _Worker) -> None:
        worker.process.kill()
        worker.process.wait(5)
        worker.conn.close()
        with self._lock:
            if worker in self._all:
                self._all.remove(worker)

    def close(self) -> None:
        self._closed = True
        with self._lock:
            workers = list(self._all)
            self._all.clear()
        for worker in workers:
            with contextlib.suppress(OSError):
                worker.conn.send(None)
            try:
                worker.process.wait(2)
            except subprocess.TimeoutExpired:
                worker.process.kill()
                worker.process.wait()
            worker.conn.close()

    def __enter__(self) -> DecoderPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


if __name__ == "__main__":  # a decoder worker: python -m bastion.media.sandbox FD MEMORY_MB
    _memory = int(sys.argv[2])
    _worker_main(Connection(int(sys.argv[1])), _memory or None)
