"""Where Bastion keeps files it derives at run time (unpacked models), outside the data home."""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    """`$BASTION_CACHE`, else `~/.cache/bastion` (read at call time)."""
    root = os.environ.get("BASTION_CACHE")
    return Path(root) if root else Path.home() / ".cache" / "bastion"
