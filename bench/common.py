"""What every benchmark records about where it ran."""

from __future__ import annotations

import platform


def machine() -> str:
    return f"{platform.machine()}, {platform.system()}, python {platform.python_version()}"
