"""Whole-or-nothing file writes: what a crash leaves behind is the old file or the new one, never half."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, TextIO, cast


def write_atomic(path: Path, chunks: Iterable[bytes]) -> None:
    """`path` with the bytes of `chunks`, whole or not at all: written to a temporary file,
    fsynced, then moved over `path` (and the directory fsynced, so the move survives a crash)."""
    with _replacing(path, "wb") as fh:
        for chunk in chunks:
            fh.write(chunk)


@contextmanager
def open_atomic_text(path: Path, *, newline: str | None = None) -> Iterator[TextIO]:
    """A UTF-8 text stream that replaces `path` whole when the block ends, as `write_atomic`
    does, for writers that want a stream (csv, json lines); when the block raises, `path` is
    left as it was. `newline` is `open`'s."""
    with _replacing(path, "w", encoding="utf-8", newline=newline) as fh:
        yield cast(TextIO, fh)


def write_synced(path: Path, chunks: Iterable[bytes]) -> None:
    """`path` with the bytes of `chunks`, on disk before this returns: in place, so not atomic
    by itself; for files of a directory that is moved into place whole afterwards."""
    with _synced(path, "wb") as fh:
        for chunk in chunks:
            fh.write(chunk)


def fsync(path: Path) -> None:
    """Flush a file or directory to disk (directories only where the platform allows it)."""
    flags = os.O_RDONLY | (os.O_DIRECTORY if path.is_dir() else 0)
    try:
        fd = os.open(path, flags)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextmanager
def _replacing(path: Path, mode: str, **open_args: Any) -> Iterator[IO[Any]]:
    """A file open on `.NAME.tmp` beside `path`; when the block ends it is fsynced and moved
    over `path`, then the directory is fsynced; when the block (or the move) fails, it is
    removed."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with _synced(tmp, mode, **open_args) as fh:
            yield fh
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync(path.parent)


@contextmanager
def _synced(path: Path, mode: str, **open_args: Any) -> Iterator[IO[Any]]:
    """`path` open for writing, flushed and fsynced when the block ends without an error."""
    with path.open(mode, **open_args) as fh:
        yield fh
        fh.flush()
        os.fsync(fh.fileno())
