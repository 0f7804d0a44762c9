"""What every benchmark records about where it ran."""

from __future__ import annotations

import json
import platform
from pathlib import Path
from typing import Any


def machine() -> str:
    return f"{platform.machine()}, {platform.system()}, python {platform.python_version()}"


def write_result(result: dict[str, Any], out: Path | str, markdown: str) -> tuple[Path, Path]:
    """Write a benchmark's JSON to `out` and its markdown tables next to it (same name, .md)."""
    target = Path(out)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(result, indent=2), encoding="utf-8")
    md = target.with_suffix(".md")
    md.write_text(markdown, encoding="utf-8")
    return target, md
