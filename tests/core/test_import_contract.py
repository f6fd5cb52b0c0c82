"""The import contract of the engine (``core/``, imported as ``segdeep``), checked from the source.

Every ``import`` between ``segdeep`` modules is read with :mod:`ast` (absolute and relative, at module
level and inside functions; imports under ``if TYPE_CHECKING:`` are left out because they never run).
The contract:

- no cycle between modules, and no cycle between subpackages;
- layers, each importing only from its own layer or those below (DESIGN.md, "Layout")::

      cli > distributed > predict, training, refine > crf, export, evaluate, models, sample > io
          > errors, classes, runtime, lazy

  ``testing`` may import anything but ``cli`` and nothing may import it; the top-level
  ``segdeep/__init__`` (a lazy name -> module map) is exempt;
- a name or module starting with ``_`` is not imported from another subpackage;
- no GUI toolkit (Qt bindings, magicgui, napari, vispy) and no QGIS anywhere in ``core/``.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

CORE = Path(__file__).resolve().parents[2] / "core"

#: Top to bottom; a module may import from its own layer and the layers after it.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("cli",),
    ("distributed",),
    ("predict", "training", "refine"),
    ("crf", "export", "evaluate", "models", "sample"),
    ("io",),
    ("errors", "classes", "runtime", "lazy", ""),  # "" is the top-level package itself (``__version__``)
)
#: May import any unit but these; nothing may import it.
TESTING = "testing"
TESTING_MAY_NOT_IMPORT = ("cli",)
FORBIDDEN_ROOTS = ("qtpy", "PyQt5", "PyQt6", "PySide2", "PySide6", "magicgui", "superqt", "napari", "vispy",
                   "qgis")


@dataclass(frozen=True)
class Edge:
    """``source`` imports ``target`` at ``path:line`` (``function`` when the import is inside a def)."""

    source: str
    target: str
    path: Path
    line: int
    function: bool
    names: tuple[str, ...] = ()  # the names taken from ``target`` by ``from target import ...``


@dataclass(frozen=True)
class Violation:
    rule: str
    module: str
    path: Path
    line: int
    detail: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.module}: [{self.rule}] {self.detail}"


def module_names(root: Path, package: str) -> dict[str, Path]:
    """Every module of the package under ``root`` (``__init__.py`` names its package)."""
    names = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names[".".join([package, *parts])] = path
    return names


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(tree: ast.AST):
    """``(node, inside_function)`` for every import statement, skipping ``if TYPE_CHECKING:`` bodies."""

    def walk(node, in_function):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child.test):
                for sub in child.orelse:
                    yield from walk(ast.Module(body=[sub], type_ignores=[]), in_function)
                continue
            if isinstance(child, ast.Import | ast.ImportFrom):
                yield child, in_function
            yield from walk(child, in_function or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef
                                                                     | ast.Lambda))

    yield from walk(tree, False)


def import_graph(root: Path, package: str) -> tuple[list[Edge], list[tuple[str, Path, int, str]]]:
    """Edges between the package's modules, and every imported top-level name outside it
    (``(module, path, line, imported name)``)."""
    modules = module_names(root, package)
    lazy = {name: lazy_map(path, name) for name, path in modules.items() if path.name == "__init__.py"}
    edges, external = [], []
    for name, path in modules.items():
        is_package = path.name == "__init__.py"
        base = name if is_package else name.rpartition(".")[0]
        for node, in_function in _imports(ast.parse(path.read_text(), str(path))):
            names = {}
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                if node.level:
                    parts = base.split(".")
                    parts = parts[:len(parts) - (node.level - 1)]
                    stem = ".".join(parts + ([node.module] if node.module else []))
                else:
                    stem = node.module or ""
                # ``from pkg import x`` imports the module pkg.x when there is one, else pkg itself
                # (or, for a name of the package's lazy map, the module that defines it)
                targets = []
                for alias in node.names:
                    sub = f"{stem}.{alias.name}"
                    target = sub if sub in modules else lazy.get(stem, {}).get(alias.name, stem)
                    if target not in targets:
                        targets.append(target)
                    if target != sub:
                        names.setdefault(target, []).append(alias.name)
            for target in targets:
                if target == package or target.startswith(package + "."):
                    while target not in modules and "." in target:  # ``import pkg.mod.attr`` style
                        target = target.rpartition(".")[0]
                    edges.append(Edge(name, target, path, node.lineno, in_function, tuple(names.get(target, ()))))
                else:
                    external.append((name, path, node.lineno, target))
    return edges, external


def lazy_map(init: Path, package: str) -> dict[str, str]:
    """A package's ``_LAZY = {"public name": "module", ...}`` (names imported on first use), as
    public name -> absolute module name."""
    for node in ast.parse(init.read_text(), str(init)).body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "_LAZY" for t in node.targets):
            return {key: f"{package}.{value}" for key, value in ast.literal_eval(node.value).items()}
    return {}


def unit(module: str, package: str) -> str:
    """The subpackage (or flat module) a module belongs to: ``segdeep.io.raster`` -> ``io``."""
    parts = module.split(".")[1:]
    return parts[0] if parts else ""


def _cycles(nodes, successors) -> list[list[str]]:
    """Strongly connected components with a cycle (Tarjan), each as a sorted list of nodes."""
    index, low, stack, on_stack, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in successors.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1 or v in successors.get(v, ()):
                out.append(sorted(component))

    for v in sorted(nodes):
        if v not in index:
            visit(v)
    return out


def _shortest_cycle(component: list[str], successors) -> list[str]:
    """One shortest cycle through the first node of a strongly connected component, as
    ``[n0, n1, ..., n0]`` (breadth-first, inside the component)."""
    start, members = component[0], set(component)
    parent, frontier = {}, [start]
    while frontier:
        following = []
        for v in frontier:
            for w in sorted(successors.get(v, ())):
                if w == start:
                    path = [v]
                    while path[-1] != start:
                        path.append(parent[path[-1]])
                    return [start, *reversed(path[:-1]), start] if v != start else [start, start]
                if w in members and w not in parent:
                    parent[w] = v
                    following.append(w)
        frontier = following
    return [start, start]


def check_contract(root: Path, package: str = "segdeep", layers=LAYERS) -> list[Violation]:
    """Every breach of the import contract in the package at ``root`` (a folder with ``__init__.py``)."""
    edges, external = import_graph(root, package)
    rank = {u: i for i, layer in enumerate(layers) for u in layer}
    found = []

    # 1. cycles between modules: one shortest cycle per tangle, each import on it named by its line
    def key(e):
        return str(e.path), e.line

    successors = {}
    for e in edges:
        if e.source != e.target:
            successors.setdefault(e.source, set()).add(e.target)
    for component in _cycles({e.source for e in edges} | {e.target for e in edges}, successors):
        loop = _shortest_cycle(component, successors)
        for a, b in zip(loop, loop[1:], strict=False):
            e = min((e for e in edges if (e.source, e.target) == (a, b)), key=key)
            found.append(Violation("module cycle", e.source, e.path, e.line,
                                   f"imports {e.target}; cycle: {' -> '.join(loop)}"))

    # 2. cycles between subpackages
    unit_successors = {}
    for e in edges:
        a, b = unit(e.source, package), unit(e.target, package)
        if a != b and "" not in (a, b):
            unit_successors.setdefault(a, set()).add(b)
    for component in _cycles(set(unit_successors) | {b for s in unit_successors.values() for b in s},
                             unit_successors):
        loop = _shortest_cycle(component, unit_successors)
        for a, b in zip(loop, loop[1:], strict=False):
            e = min((e for e in edges if (unit(e.source, package), unit(e.target, package)) == (a, b)), key=key)
            found.append(Violation("subpackage cycle", e.source, e.path, e.line,
                                   f"imports {e.target} ({a} -> {b}); cycle: {' -> '.join(loop)}"))

    # 3. layers
    for e in edges:
        a, b = unit(e.source, package), unit(e.target, package)
        if a == "" or a == b:
            continue  # the top-level lazy map is exempt; a unit may import itself
        if b == TESTING:
            found.append(Violation("layers", e.source, e.path, e.line,
                                   f"imports {e.target}: nothing in the engine may import {TESTING}"))
        elif a == TESTING:
            if b in TESTING_MAY_NOT_IMPORT:
                found.append(Violation("layers", e.source, e.path, e.line, f"imports {e.target}: "
                                       f"{TESTING} may import anything but {', '.join(TESTING_MAY_NOT_IMPORT)}"))
        elif a not in rank or b not in rank:
            unknown = a if a not in rank else b
            found.append(Violation("layers", e.source, e.path, e.line,
                                   f"imports {e.target}: {unknown!r} is in no layer; add it to LAYERS"))
        elif rank[b] < rank[a]:
            found.append(Violation("layers", e.source, e.path, e.line,
                                   f"imports {e.target}: {b} is in a layer above {a} "
                                   f"({' > '.join(', '.join(u or package for u in layer) for layer in layers)})"))

    # 4. private names and modules stay inside their subpackage
    for e in edges:
        a, b = unit(e.source, package), unit(e.target, package)
        if a == b:
            continue
        private_module = next((p for p in e.target.split(".")[1:] if p.startswith("_") and p != "__init__"), None)
        if private_module:
            found.append(Violation("private", e.source, e.path, e.line, f"imports {e.target}: a module whose "
                                   f"name starts with '_' is for its own subpackage ({b}) only"))
        for n in e.names:
            if n.startswith("_") and not n.startswith("__"):
                found.append(Violation("private", e.source, e.path, e.line, f"imports {n} from {e.target}: "
                                       f"give it a public name, or use a public function of {b}"))

    # 5. no GUI and no QGIS in the engine
    for module, path, line, target in external:
        if target.split(".")[0] in FORBIDDEN_ROOTS:
            found.append(Violation("no GUI", module, path, line, f"imports {target}; the engine never imports "
                                   f"{', '.join(FORBIDDEN_ROOTS)}"))
    return sorted(found, key=lambda v: (str(v.path), v.line, v.rule))


def _report(violations) -> str:
    return f"{len(violations)} breach(es) of the import contract:\n" + "\n".join(map(str, violations))


def test_engine_keeps_the_import_contract():
    violations = check_contract(CORE)
    assert not violations, _report(violations)


def test_the_graph_sees_every_kind_of_import():
    edges, _ = import_graph(CORE, "segdeep")
    assert len({e.source for e in edges}) > 40, "the checker found too few modules; is CORE right?"
    assert any(e.function for e in edges), "function-level imports are part of the graph"


def private_uses(folder: Path, package: str = "segdeep") -> list[str]:
    """``file:line`` of every use of a private part of ``package`` in the .py files under ``folder``:
    a module or a name starting with ``_`` imported from it, or a ``_name`` attribute of one of its
    modules (``tasks._MODELS``)."""
    found = []
    for path in sorted(folder.rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        local = set()  # names bound to package modules or objects
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == package:
                for alias in node.names:
                    if alias.name.startswith("_") or any(p.startswith("_") for p in node.module.split(".")):
                        found.append(f"{path}:{node.lineno}: from {node.module} import {alias.name}")
                    local.add(alias.asname or alias.name)
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.split(".")[0] == package:
                        if any(p.startswith("_") for p in alias.name.split(".")):
                            found.append(f"{path}:{node.lineno}: import {alias.name}")
                        local.add(alias.asname or package)
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in local \
                    and node.attr.startswith("_") and not node.attr.startswith("__"):
                found.append(f"{path}:{node.lineno}: {node.value.id}.{node.attr}")
    return found


@pytest.mark.parametrize("folder", ["napari_segdeep", "scripts", "benchmarks"])
def test_plugin_scripts_and_benchmarks_use_public_names_only(folder):
    uses = private_uses(CORE.parent / folder)
    assert not uses, "private parts of segdeep used outside it:\n" + "\n".join(uses)


def test_private_uses_are_found(tmp_path):
    (tmp_path / "a.py").write_text("from segdeep.io.raster import _open\nfrom segdeep.models import _align\n"
                                   "from segdeep.distributed import tasks\ntasks._MODELS\n"
                                   "from segdeep.io import open_raster\n")
    assert [u.split(": ", 1)[1] for u in private_uses(tmp_path)] == [
        "from segdeep.io.raster import _open", "from segdeep.models import _align", "tasks._MODELS"]


SUBPACKAGES = sorted({m for m, path in module_names(CORE, "segdeep").items()
                      if path.name == "__init__.py" and m != "segdeep"})


@pytest.mark.parametrize("name", SUBPACKAGES)
def test_subpackage_public_api(name):
    """Each subpackage says what it is for and what it exports, and every exported name resolves; a
    name imported on first use is never also a module of the package (the module would shadow it)."""
    import importlib

    package = importlib.import_module(name)
    assert (package.__doc__ or "").strip(), f"{name}/__init__.py has no docstring"
    assert package.__all__, f"{name} exports nothing (__all__)"
    submodules = {m.rpartition(".")[2] for m in module_names(CORE, "segdeep") if m.rpartition(".")[0] == name}
    lazy = lazy_map(module_names(CORE, "segdeep")[name], name)
    assert not set(lazy) & submodules, f"{name}: names that are also modules: {set(lazy) & submodules}"
    missing = [n for n in package.__all__ if not hasattr(package, n)]
    assert not missing, f"{name}.__all__ names that do not resolve: {missing}"


def _plant(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_checker_fails_on_a_planted_cycle_and_an_upward_import(tmp_path):
    pkg = _plant(tmp_path / "pkg", {
        "__init__.py": "",
        "errors.py": "",
        "io/__init__.py": "",
        "io/a.py": "from . import b\n",
        "io/b.py": "def f():\n    from .a import x\n",  # function level: still an edge
        "io/c.py": "from ..cli import main\n",  # io -> cli: upward
        "cli/__init__.py": "from ..errors import E\nfrom ..io import b\nfrom segdeep_like import y\n",
        "models/__init__.py": "import qtpy.QtWidgets\n",
        "sample/__init__.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ..cli import main\n",
    })
    violations = check_contract(pkg, package="pkg")
    text = _report(violations)
    by_rule = {}
    for v in violations:
        by_rule.setdefault(v.rule, []).append(v)
    cycle = {(v.module, v.line) for v in by_rule.get("module cycle", [])}
    assert cycle == {("pkg.io.a", 1), ("pkg.io.b", 2)}, text
    assert "cycle: pkg.io.a -> pkg.io.b -> pkg.io.a" in text
    assert [(v.module, v.line) for v in by_rule["layers"]] == [("pkg.io.c", 1)], text
    assert "cli is in a layer above io" in text and "io/c.py:1" in text
    subpackage = {(v.module, v.line) for v in by_rule["subpackage cycle"]}
    assert {("pkg.io.c", 1), ("pkg.cli", 2)} <= subpackage and ("pkg.cli", 1) not in subpackage, text
    assert [(v.module, v.line) for v in by_rule["no GUI"]] == [("pkg.models", 1)], text
    assert not any(v.module == "pkg.sample" for v in violations), "TYPE_CHECKING imports are left out"


def test_checker_reports_a_subpackage_cycle_and_testing_rules(tmp_path):
    pkg = _plant(tmp_path / "pkg", {
        "__init__.py": "",
        "testing.py": "from .cli import main\nfrom .io import raster\n",
        "io/__init__.py": "",
        "io/raster.py": "",
        "io/label_sources.py": "from ..testing import tiny\n",
        "crf/__init__.py": "", "crf/a.py": "from ..export import b\n",
        "export/__init__.py": "", "export/b.py": "from ..crf import c\n", "crf/c.py": "",
        "cli/__init__.py": "",
    })
    text = _report(violations := check_contract(pkg, package="pkg"))
    rules = {(v.rule, v.module) for v in violations}
    assert ("subpackage cycle", "pkg.crf.a") in rules and ("subpackage cycle", "pkg.export.b") in rules, text
    assert not any(v.rule == "module cycle" for v in violations), text  # crf.a -> export.b -> crf.c: no loop
    assert ("layers", "pkg.testing") in rules and "may import anything but cli" in text
    assert ("layers", "pkg.io.label_sources") in rules and "nothing in the engine may import testing" in text
    assert [v.line for v in violations if v.module == "pkg.testing" and v.rule == "layers"] == [1], text


@pytest.mark.parametrize("source, expected", [
    ("from . import raster\n", "pkg.io.raster"),
    ("from .raster import open_raster\n", "pkg.io.raster"),
    ("import pkg.io.raster\n", "pkg.io.raster"),
    ("from pkg.io import raster as r\n", "pkg.io.raster"),
    ("from .. import errors\n", "pkg.errors"),
    ("from .. import __version__\n", "pkg"),
    ("from ..io import open_raster\n", "pkg.io"),
])
def test_import_forms_resolve_to_modules(tmp_path, source, expected):
    pkg = _plant(tmp_path / "pkg", {"__init__.py": "", "errors.py": "", "io/__init__.py": "",
                                    "io/raster.py": "", "io/user.py": source})
    edges, _ = import_graph(pkg, "pkg")
    assert [e.target for e in edges if e.source == "pkg.io.user"] == [expected]
