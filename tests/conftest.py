"""Shared fixtures: the real encoder and fitted moderators are built once per test process."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


def _share_the_cpus() -> None:
    """Each xdist worker's models get its share of the CPUs (`$BASTION_THREADS`, see bastion.cpus),
    set before PyTorch or FAISS start their OpenMP threads. With every worker running PyTorch and
    ONNX Runtime on all the CPUs, their threads spin waiting for each other: the fine-tuning and
    head tests took 110-145 s on 2 CPUs instead of 22-24 s. Subprocesses the tests start
    (servers, CLIs, Ray actors) inherit it."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers < 2 or "BASTION_THREADS" in os.environ:
        return
    share = str(max(1, len(os.sched_getaffinity(0)) // workers))
    os.environ["BASTION_THREADS"] = share
    os.environ.setdefault("OMP_NUM_THREADS", share)


_share_the_cpus()

from bastion.moderator import Moderator  # noqa: E402  (after the threads are set)

REPO = Path(__file__).resolve().parents[1]
DATASETS = Path(os.environ.get("BASTION_DATASETS", REPO.parent / "shared" / "datasets")).resolve()


@pytest.fixture(scope="session")
def default_moderator() -> Moderator:
    """The shipped default model (what `bastion moderate` uses)."""
    return Moderator("openai")


@pytest.fixture(scope="session")
def openai_moderator() -> Moderator:
    """The openai pack scored zero-shot."""
    return Moderator("openai", model="zero-shot")


@pytest.fixture(scope="session")
def datasets_root() -> Path:
    if not DATASETS.is_dir():
        pytest.skip(f"shared datasets not found at {DATASETS} (set BASTION_DATASETS)")
    return DATASETS
