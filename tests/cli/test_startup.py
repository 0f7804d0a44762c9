"""`bastion --help` and `bastion policy validate` start without loading the heavy libraries.

Each command imports what it runs on (PyTorch, ONNX Runtime, FAISS, SQLAlchemy, FastAPI, ...)
inside its own body, so reading help or checking a policy file costs a second at most. These
tests check what was imported, never how long it took: a fresh interpreter runs the real entry
point and reports `sys.modules` at exit. The time itself is measured by `bench/startup.py`.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import bastion.policy

HEAVY = (
    "torch",
    "transformers",
    "sentence_transformers",
    "tokenizers",
    "huggingface_hub",
    "onnxruntime",
    "llama_cpp",
    "sklearn",
    "scipy",
    "pandas",
    "pyarrow",
    "faiss",
    "numba",
    "ray",
    "numpy",
    "sqlalchemy",
    "alembic",
    "fastapi",
    "starlette",
    "uvicorn",
    "httpx",
    "jinja2",
    "prometheus_client",
    "cv2",
    "PIL",
    "matplotlib",
    "nudenet",
)
"""Top-level packages no help screen and no policy check may import."""

PACKS = Path(bastion.policy.__file__).parent / "packs"

# Runs the `bastion` entry point (`bastion.cli:main`) with the given arguments, then writes the
# exit status and the names of the imported modules to the file named first.
_RUN_CLI = """
import json, sys
report, args = sys.argv[1], sys.argv[2:]
sys.argv = ["bastion", *args]
code = 0
try:
    from bastion.cli import main
    main()
except SystemExit as exc:
    code = exc.code
with open(report, "w") as fh:
    json.dump({"code": code, "modules": sorted(sys.modules)}, fh)
"""

# Renders the --help of every command and command group in one process, then reports as above.
_EVERY_HELP = """
import json, sys
from typer.main import get_command
from typer.testing import CliRunner
from bastion.cli import app

paths = []
def walk(command, prefix):
    paths.append(prefix)
    for name, sub in getattr(command, "commands", {}).items():
        walk(sub, [*prefix, name])
walk(get_command(app), [])
runner = CliRunner()
failed = [p for p in paths if runner.invoke(app, [*p, "--help"]).exit_code != 0]
with open(sys.argv[1], "w") as fh:
    json.dump({"code": len(failed), "failed": failed, "paths": len(paths),
               "modules": sorted(sys.modules)}, fh)
"""


def _run(tmp_path: Path, script: str, *args: str) -> dict[str, object]:
    report = tmp_path / "report.json"
    done = subprocess.run(
        [sys.executable, "-c", script, str(report), *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert report.exists(), done.stderr
    result: dict[str, object] = json.loads(report.read_text())
    result["stdout"] = done.stdout
    return result


def _heavy(modules: object) -> list[str]:
    assert isinstance(modules, list)
    return sorted({m.split(".")[0] for m in modules} & set(HEAVY))


def test_help_imports_no_heavy_library(tmp_path: Path) -> None:
    result = _run(tmp_path, _RUN_CLI, "--help")
    assert result["code"] == 0
    assert "moderate" in str(result["stdout"])
    assert _heavy(result["modules"]) == []


def test_policy_validate_imports_no_heavy_library(tmp_path: Path) -> None:
    starter = tmp_path / "policy.yaml"
    starter.write_text(bastion.policy.starter_policy_text(), encoding="utf-8")
    files = [str(PACKS / "openai.yaml"), str(PACKS / "mlcommons.yaml"), str(starter)]
    result = _run(tmp_path, _RUN_CLI, "policy", "validate", *files)
    assert result["code"] == 0, result["stdout"]
    assert str(result["stdout"]).count("✓") == 3
    assert _heavy(result["modules"]) == []


def test_every_commands_help_imports_no_heavy_library(tmp_path: Path) -> None:
    result = _run(tmp_path, _EVERY_HELP)
    assert result["code"] == 0, result["failed"]
    assert isinstance(result["paths"], int) and result["paths"] > 40
    assert _heavy(result["modules"]) == []


def test_the_lazy_names_still_resolve() -> None:
    """The packages that load their heavy parts on first use still export them by name."""
    import bastion
    import bastion.store
    import bastion.triage
    from bastion.store.store import Store
    from bastion.triage.queue import ReviewLabel, ReviewQueue
    from bastion.triage.recall import RecallSettings
    from bastion.triage.recall_settings import RecallSettings as Settings

    assert bastion.store.Store is Store
    assert bastion.triage.ReviewQueue is ReviewQueue
    assert bastion.triage.ReviewLabel is ReviewLabel
    assert RecallSettings is Settings
    assert callable(bastion.moderate) and bastion.Moderator.__name__ == "Moderator"
    for package in (bastion, bastion.store, bastion.triage):
        assert all(hasattr(package, name) for name in package.__all__)
