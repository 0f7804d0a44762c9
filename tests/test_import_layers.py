"""Packages import one way: no cycle between bastion's packages, function-level imports counted."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "bastion"


def _package(module: str) -> str:
    """`bastion.models.scoring` -> `models`; a top-level module is its own package."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def _imports(file: Path) -> set[str]:
    """Every bastion module `file` imports, at any depth (inside functions too)."""
    module = ".".join(file.relative_to(SRC.parent).with_suffix("").parts)
    here = module.split(".")[:-1]  # the package a relative import starts from
    found: set[str] = set()
    for node in ast.walk(ast.parse(file.read_text("utf-8"))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here[: len(here) - node.level + 1]
                found.add(".".join(base + ([node.module] if node.module else [])))
            elif node.module:
                found.add(node.module)
    return {m for m in found if m.startswith("bastion.")}


def package_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for file in SRC.rglob("*.py"):
        source = _package(".".join(file.relative_to(SRC.parent).with_suffix("").parts))
        for target in map(_package, _imports(file)):
            if target != source:
                graph.setdefault(source, set()).add(target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected sets of more than one package (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(set(graph) | {w for ws in graph.values() for w in ws}):
        if v not in index:
            visit(v)
    return found


def test_the_finder_sees_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": {"c"}}) == []


def test_no_package_imports_back_into_a_package_that_imports_it() -> None:
    graph = package_graph()
    assert "detectors" in graph["moderator"]  # the walk sees function-level imports too
    assert cycles(graph) == []


def test_models_and_policy_stay_below_training_eval_and_detectors() -> None:
    graph = package_graph()
    assert not graph.get("models", set()) & {"training", "eval", "detectors", "judge", "moderator"}
    assert not graph.get("policy", set()) - {"errors", "paths", "atomic"}
    assert {v for v, ws in graph.items() if "training" in ws} <= {"cli"}
