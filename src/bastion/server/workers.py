"""Several worker processes on one port: `bastion serve --workers N`.

One Python process holds the GIL, and about a quarter of a busy server's CPU goes to uvicorn and
FastAPI; N processes use N cores. uvicorn's supervisor (`uvicorn.supervisors.Multiprocess`)
does the process work: it binds the port once, spawns N workers that share the listening
socket (the kernel hands each new connection to one of them), health-checks them, replaces one
that dies, and on SIGTERM or Ctrl-C stops them all, each draining the requests it took.

Each worker is a fresh interpreter (spawned, not forked) that builds the app by calling
`WorkerApp` and so loads its own model. What Bastion adds around uvicorn's supervisor:

- The CPUs are shared out: unless $BASTION_THREADS (or $OMP_NUM_THREADS) says otherwise, each
  worker's models, OpenMP and BLAS use `CPUs // N` threads, so N workers do not each start a
  thread per CPU and spin against one another.
- /metrics sums every worker: prometheus_client's multiprocess mode, in a fresh directory per
  start (or `metrics_dir`, emptied of old metric files first); the supervisor marks each worker
  that exits dead there, and removes a directory it made when it stops.
- A stop refuses new connections at once: the supervisor closes its copy of the listening
  socket before signalling the workers, which close theirs as they begin to drain; a load
  balancer sees the port closed and sends the next request elsewhere.
- A worker whose supervisor is gone (killed with SIGKILL, say) stops by itself, draining, so
  the port is free for the next start instead of held by orphans.
- A worker that cannot start (the database unreachable, the model not loading) exits with
  uvicorn's start-up failure status, and the supervisor stops rather than restarting it in a
  loop; `serve_workers` then returns that status.

Nothing else in the service depends on which worker answers: API keys, rate limits, the log-in
throttle, review queues and the decision log all live in the store, and each worker's decision
log commits before it answers, as one process's does.
"""

from __future__ import annotations

import gc
import logging
import os
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Final

import uvicorn
from uvicorn.supervisors.multiprocess import Multiprocess

from bastion.cpus import THREADS_ENV, available_cpus, configured_threads
from bastion.server.settings import ServerSettings

log = logging.getLogger("bastion.server")

PROMETHEUS_MULTIPROC_ENV: Final = "PROMETHEUS_MULTIPROC_DIR"
"""Where prometheus_client's multiprocess mode keeps each process's metric files; it must be
set before a worker imports prometheus_client, so the supervisor sets it before spawning."""

STARTUP_FAILURE: Final = 3
"""uvicorn's exit status for a server that could not start; its supervisor stops on it."""

HEALTHCHECK_TIMEOUT_S: Final = 60
"""How long a worker may take to answer the supervisor's health check before it is killed and
replaced. uvicorn's default (5 s) is short for a worker importing the service and loading a
model on a busy machine (a thread in the worker answers, but it needs the CPU to), and killing
a slow but healthy worker would drop the requests it holds."""

PARENT_CHECK_S: Final = 1.0
"""How often a worker looks whether its supervisor is still there."""

_THREAD_ENVS: Final = (THREADS_ENV, "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS")

_METRIC_FILES: Final = ("counter_*.db", "gauge_*.db", "histogram_*.db", "summary_*.db")


class FreezeAfterStartup:
    """The app, with every object alive once start-up is done moved out of the garbage
    collector's sight (`gc.freeze`), for a serving process.

    A loaded model is about a quarter of a million Python objects that live as long as the
    process, and every full collection walked them all: 100-200 ms on these cores, a stall
    that each request in flight waited out. Frozen, a full collection walks only what requests
    made. Only for a process that serves until it exits: frozen objects that later become
    cyclic garbage are never collected, which is why tests building many apps do not use it.
    """

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return

        async def send_frozen(message: Any) -> None:
            if message["type"] == "lifespan.startup.complete":
                gc.collect()
                gc.freeze()
            await send(message)

        await self.app(scope, receive, send_frozen)


class WorkerApp:
    """The app factory each worker calls: `create_app(settings)` in the worker's own process,
    with its own store connections and model. Picklable (it is sent to each spawned worker)."""

    def __init__(self, settings: ServerSettings) -> None:
        self.settings = settings

    def __call__(self) -> FreezeAfterStartup:
        _stop_when_orphaned(os.getppid())
        try:
            from bastion.server.app import create_app

            return FreezeAfterStartup(create_app(self.settings))
        except Exception:
            log.exception("worker %d could not start", os.getpid())
            sys.exit(STARTUP_FAILURE)


def serve_workers(settings: ServerSettings, host: str, port: int, *, drain_timeout_s: float) -> int:
    """Serve `settings` on host:port with `settings.workers` processes until a stop signal;
    returns the exit status (0, or STARTUP_FAILURE when the port or a worker failed)."""
    metrics_dir, made = _metrics_dir(settings.metrics_dir)
    saved = {name: os.environ.get(name) for name in (PROMETHEUS_MULTIPROC_ENV, *_THREAD_ENVS)}
    os.environ[PROMETHEUS_MULTIPROC_ENV] = str(metrics_dir)  # the workers inherit these
    if configured_threads() is None:
        share = str(worker_threads(settings.workers))
        for name in _THREAD_ENVS:  # Bastion's models, OpenMP and NumPy's BLAS alike
            os.environ.setdefault(name, share)
    config = uvicorn.Config(
        WorkerApp(settings.model_copy(update={"metrics_dir": metrics_dir})),
        factory=True,
        host=host,
        port=port,
        workers=settings.workers,
        log_level="warning",
        timeout_graceful_shutdown=int(drain_timeout_s),
        timeout_worker_healthcheck=HEALTHCHECK_TIMEOUT_S,
    )
    try:
        try:
            sock = tcp_listening_socket(config.bind_socket())
        except SystemExit:  # uvicorn has logged why (the port is taken, say)
            return STARTUP_FAILURE
        supervisor = _Supervisor(config, [sock], metrics_dir)
        supervisor.run()
        failed = any(p.exitcode == STARTUP_FAILURE for p in supervisor.processes)
        return STARTUP_FAILURE if failed else 0
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        if made:
            shutil.rmtree(metrics_dir, ignore_errors=True)


def tcp_listening_socket(sock: socket.socket) -> socket.socket:
    """`sock` again, as a socket object that says it is TCP, so that asyncio in each worker sets
    TCP_NODELAY on the connections it accepts.

    uvicorn's `bind_socket` creates the socket with protocol 0, and asyncio sets TCP_NODELAY only
    on sockets whose `proto` is IPPROTO_TCP; every accepted connection inherits the listening
    socket's. Without it, a small response waited for the client's delayed ACK (Nagle's
    algorithm): with 2 workers a `/healthz` took 48 ms instead of 1 ms, and a moderation 68 ms
    instead of 19. One process serving alone is unaffected: asyncio makes its socket itself.
    The workers receive the socket through multiprocessing, which keeps the protocol.
    """
    if sock.family not in (socket.AF_INET, socket.AF_INET6) or sock.proto == socket.IPPROTO_TCP:
        return sock  # a Unix socket has no Nagle delay; a TCP one is already right
    return socket.socket(sock.family, sock.type, socket.IPPROTO_TCP, fileno=sock.detach())


def worker_threads(workers: int, cpus: int | None = None) -> int:
    """Threads for each worker's models: the CPUs shared out, at least one."""
    return max(1, (cpus or available_cpus()) // workers)


def _metrics_dir(given: Path | None) -> tuple[Path, bool]:
    """The directory for this start's metric files, and whether it was made here (and so is
    removed at the end). A given one is emptied of metric files a previous start left, which
    /metrics would otherwise add to this start's."""
    if given is None:
        return Path(tempfile.mkdtemp(prefix="bastion-metrics-")), True
    given.mkdir(parents=True, exist_ok=True)
    for pattern in _METRIC_FILES:
        for stale in given.glob(pattern):
            stale.unlink()
    return given, False


def _stop_when_orphaned(parent: int) -> None:
    """Stop this worker, gracefully (SIGTERM: drain, then exit), once `parent` is gone."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(PARENT_CHECK_S)
        log.warning("worker %d: its supervisor %d is gone; stopping", os.getpid(), parent)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


class _Supervisor(Multiprocess):
    """uvicorn's supervisor, which also closes the port as soon as it is told to stop and
    marks each worker that is gone as dead for the metrics."""

    def __init__(
        self, config: uvicorn.Config, sockets: list[socket.socket], metrics_dir: Path
    ) -> None:
        super().__init__(config, sockets=sockets)
        self.metrics_dir = metrics_dir

    def terminate_all(self) -> None:
        for sock in self.sockets:
            sock.close()  # the workers' copies close as they start draining
        super().terminate_all()

    def join_all(self) -> None:
        super().join_all()
        self._mark_dead({p.pid for p in self.processes})

    def keep_subprocess_alive(self) -> None:
        before = {p.pid for p in self.processes}
        super().keep_subprocess_alive()
        self._mark_dead(before - {p.pid for p in self.processes})

    def handle_signals(self) -> None:  # SIGHUP restarts, SIGTTOU removes workers
        before = {p.pid for p in self.processes}
        super().handle_signals()
        self._mark_dead(before - {p.pid for p in self.processes})

    def _mark_dead(self, pids: set[int | None]) -> None:
        from prometheus_client import multiprocess

        for pid in pids:
            if pid is not None:
                multiprocess.mark_process_dead(pid, str(self.metrics_dir))  # type: ignore[no-untyped-call]
