"""The import graph of ``helpers/`` (read from the source with ``ast``, every import statement, also the
ones inside functions): arrows point down only.

Layers, bottom to top: the mechanisms and their use (the modules directly in ``helpers/``), then the code
that uses them for one purpose (``lessons/``: one lesson's own code; ``bench/``: the benchmarks;
``experiments/``: the committed sweeps; ``viz/``: the pictures; ``exercises/``). A mechanism module never
imports any of those. Between ``bench/`` and ``lessons/`` the one arrow is bench → lessons: a benchmark may
time a lesson's object (``bench.capstone`` trains lesson 06's model); a lesson measures through
``helpers.timing``, never through a benchmark. Old names that moved up out of a mechanism module are
forwarded by ``helpers._moved``'s table, not by the module itself.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import helpers

ROOT = Path(helpers.__file__).parent
UPPER = ("helpers.lessons", "helpers.bench", "helpers.experiments", "helpers.viz", "helpers.exercises")


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(ROOT.rglob("*.py")):
        parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


MODULES = _modules()


def _imports(name: str, path: Path, *, top_level_only: bool = False) -> set[str]:
    """The ``helpers`` modules (and packages) ``name`` imports; ``from pkg import sub`` counts ``pkg.sub``
    when ``sub`` is a module. ``top_level_only``: the statements that run on import (not in a function)."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    tree = ast.parse(path.read_text(encoding="utf-8"))
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    found = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(base + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            found.add(base)
            found.update(f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in MODULES)
    return {m for m in found if m == "helpers" or m.startswith("helpers.")}


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def _under(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def test_the_graph_reader_resolves_relative_imports():
    """The reader itself can fail: these arrows are known to exist."""
    assert "helpers.lessons.capstone" in GRAPH["helpers.bench.capstone"]  # from ..lessons.capstone import ...
    assert "helpers.timing" in GRAPH["helpers.lessons.roofline"]
    assert "helpers.config" in GRAPH["helpers.model"]
    assert "helpers.interop.common" in GRAPH["helpers.interop"]  # from .common import ... (a package's own)
    assert "helpers.tasks.arith" in GRAPH["helpers.grpo"]


def test_lessons_never_import_a_benchmark():
    bad = sorted((m, d) for m, deps in GRAPH.items() if _under(m, "helpers.lessons")
                 for d in deps if _under(d, "helpers.bench"))
    assert not bad, f"lesson code imports a benchmark (measure through helpers.timing): {bad}"


def test_no_mechanism_module_imports_lesson_bench_sweep_or_picture_code():
    top = [m for m, p in MODULES.items() if p.parent == ROOT and m != "helpers" and m != "helpers._moved"]
    assert "helpers.moe" in top and "helpers.timing" in top and len(top) >= 20
    bad = sorted((m, d) for m in top for d in GRAPH[m] if any(_under(d, up) for up in UPPER))
    assert not bad, f"a mechanism module imports code above it: {bad}"


@pytest.mark.parametrize("package", ["helpers.lessons", "helpers.bench"])
def test_the_arrow_between_bench_and_lessons_points_one_way(package):
    """bench → lessons is allowed (a benchmark times a lesson's object); lessons → bench never."""
    other = "helpers.bench" if package == "helpers.lessons" else "helpers.lessons"
    arrows = {(m, d) for m, deps in GRAPH.items() if _under(m, package) for d in deps if _under(d, other)}
    if package == "helpers.lessons":
        assert not arrows
    else:
        assert arrows <= {("helpers.bench.capstone", "helpers.lessons.capstone")}, arrows


def test_no_import_circle_at_import_time():
    """Among the imports that run when a module is imported, no circle (a lazy import inside a function
    is not a circle Python can trip on, and is left to the layer tests above)."""
    graph = {name: _imports(name, path, top_level_only=True) & set(MODULES) for name, path in MODULES.items()}
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(node, path):
        state[node] = 1
        for dep in sorted(graph[node]):
            if state.get(dep) == 1 and dep not in (node,) and not _under(node, dep):
                raise AssertionError(f"import circle: {' -> '.join(path + [dep])}")
            if dep not in state:
                visit(dep, path + [dep])
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
