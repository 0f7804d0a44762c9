"""The package's licence and dependencies as declared: a licence anyone can reuse it under, and
no copyleft model in the core install (NudeNet is the optional `bastion[nudity]` extra)."""

from __future__ import annotations

import ast
import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]


def _name(requirement: str) -> str:
    return re.split(r"[\s\[<>=!~;]", requirement, maxsplit=1)[0].lower()


def test_the_project_is_apache_2_0_with_the_licence_text_alongside() -> None:
    assert PROJECT["license"] == "Apache-2.0"
    assert PROJECT["license-files"] == ["LICENSE"]
    text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    assert "TERMS AND CONDITIONS FOR USE, REPRODUCTION, AND DISTRIBUTION" in text


def test_nudenet_is_an_optional_extra_that_the_lock_file_still_installs() -> None:
    core = {_name(r) for r in PROJECT["dependencies"]}
    assert "nudenet" not in core
    assert PROJECT["optional-dependencies"]["nudity"] == ["nudenet==3.4.2"]
    lock = (ROOT / "requirements.lock").read_text(encoding="utf-8").splitlines()
    assert "nudenet==3.4.2" in lock  # `make install` (and so CI) keeps it
    # OpenCV came in with nudenet; the OCR code needs it whether or not nudenet is there.
    assert "opencv-python-headless" in core


def test_no_module_imports_nudenet_the_weights_are_found_without_it() -> None:
    """Bastion must import and run without `nudenet`: nothing under src/ imports it."""
    found = []
    for path in (ROOT / "src" / "bastion").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module or ""]
            found += [f"{path.name}: {n}" for n in names if n.split(".")[0] == "nudenet"]
    assert found == []
