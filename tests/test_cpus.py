"""Threads per model: every CPU unless $BASTION_THREADS (or $OMP_NUM_THREADS) says otherwise."""

from __future__ import annotations

import os

import pytest

from bastion.cpus import configured_threads, model_threads
from bastion.errors import BastionError
from bastion.models.onnx_runtime import session_options


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    monkeypatch.delenv("BASTION_THREADS", raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    return monkeypatch


def test_every_cpu_by_default(env: pytest.MonkeyPatch) -> None:
    assert configured_threads() is None
    assert model_threads() == len(os.sched_getaffinity(0))


def test_bastion_threads_then_omp_num_threads(env: pytest.MonkeyPatch) -> None:
    env.setenv("OMP_NUM_THREADS", "3,1")  # one number per nesting level: the first counts
    assert model_threads() == 3
    env.setenv("BASTION_THREADS", "1")
    assert model_threads() == 1
    assert session_options().intra_op_num_threads == 1
    assert session_options(2).intra_op_num_threads == 2  # an explicit count wins


def test_a_bad_count_is_an_error_only_when_it_is_ours(env: pytest.MonkeyPatch) -> None:
    env.setenv("OMP_NUM_THREADS", "lots")
    assert configured_threads() is None  # OpenMP ignores it too
    for bad in ["0", "-2", "two"]:
        env.setenv("BASTION_THREADS", bad)
        with pytest.raises(BastionError, match="BASTION_THREADS must be a positive number"):
            model_threads()
