"""How many threads one model in this process may use.

By default every CPU the process may run on: one `bastion serve` or `bastion score` on a machine
should use all of it. Processes that share the CPUs (parallel test workers, several batch jobs
side by side) set `$BASTION_THREADS` to their share; `$OMP_NUM_THREADS` is honoured as well. That
share matters more than it looks: PyTorch's OpenMP threads and ONNX Runtime's spin while they
wait for each other. Two pytest workers running the fine-tuning and head tests on 2 CPUs (which
another job was also using) took 110-145 s with two threads each and 22-24 s with one each.
"""

from __future__ import annotations

import os

from bastion.errors import BastionError

THREADS_ENV = "BASTION_THREADS"


def configured_threads() -> int | None:
    """`$BASTION_THREADS`, else `$OMP_NUM_THREADS` (its first level), else None; read at call time.

    A `$BASTION_THREADS` that is not a positive integer is an error; such an `$OMP_NUM_THREADS` is
    ignored, as OpenMP ignores it.
    """
    raw = os.environ.get(THREADS_ENV, "").strip()
    if raw:
        threads = _positive(raw)
        if threads is None:
            raise BastionError(f"${THREADS_ENV} must be a positive number of threads, not {raw!r}")
        return threads
    return _positive(os.environ.get("OMP_NUM_THREADS", "").split(",")[0])


def _positive(raw: str) -> int | None:
    try:
        value = int(raw.strip())
    except ValueError:
        return None
    return value if value > 0 else None


def model_threads() -> int:
    """The configured threads, else every CPU this process may run on."""
    configured = configured_threads()
    if configured is not None:
        return configured
    return available_cpus()


def available_cpus() -> int:
    """How many CPUs this process may run on (its affinity where the OS says, else all)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)
