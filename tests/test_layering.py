"""The import graph of ``kvern/``: no cycle, and no import from a lower layer to a higher one.

Layers, bottom to top (docs/architecture.md §12): the infrastructure floor, ingest, sim, the
domain packages that build on the simulator, report writers, commands, the CLI. Every import
counts, the lazy ones inside functions included: a lazy import hides a cycle, it does not
remove it.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "kvern"

LAYERS: list[set[str]] = [
    {"kvern", "kvern.infra"},
    {"kvern.ingest"},
    {"kvern.sim"},
    {"kvern.analysis", "kvern.live", "kvern.proxy", "kvern.cluster"},
    {"kvern.report"},
    {"kvern.commands", "kvern.dashboard"},
    {"kvern.cli", "kvern.__main__"},
]


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """kvern modules that ``name`` imports, resolved to the longest known module name."""
    is_pkg = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                pkg = name.split(".") if is_pkg else name.split(".")[:-1]
                pkg = pkg[: len(pkg) - node.level + 1]
                base = ".".join(pkg + ([base] if base else []))
            subs = [f"{base}.{a.name}" for a in node.names]
            # "from pkg import mod" needs pkg's __init__ only when something else is imported from it
            targets = subs + ([base] if any(t not in known for t in subs) else [])
        for t in targets:
            while t and t not in known:
                t = t.rpartition(".")[0]
            if t.startswith("kvern") and t != name:
                found.add(t)
    # Importing a.b.c first runs a/__init__ and a/b/__init__: an import from outside a package
    # depends on the package's __init__ too (a cycle through it breaks at import time).
    for t in list(found):
        parts = t.split(".")
        for i in range(2, len(parts)):
            pkg = ".".join(parts[:i])
            if pkg in known and not (name + ".").startswith(pkg + ".") and pkg != name:
                found.add(pkg)
    return found


def _layer(module: str) -> int:
    for i, layer in reversed(list(enumerate(LAYERS))):
        if any(module == p or module.startswith(p + ".") for p in layer if p != "kvern"):
            return i
    assert module == "kvern", f"{module} is in no layer: add its package to LAYERS"
    return 0


def _graph() -> dict[str, set[str]]:
    mods = _modules()
    known = set(mods)
    return {name: _imports(name, path, known) for name, path in mods.items()}


def test_every_module_has_a_layer() -> None:
    for module in _modules():
        _layer(module)


def test_no_import_goes_up_a_layer() -> None:
    upward = sorted(f"{a} (layer {_layer(a)}) imports {b} (layer {_layer(b)})"
                    for a, deps in _graph().items() for b in deps
                    if _layer(b) > _layer(a) and b != "kvern")
    assert upward == []


def test_the_domain_packages_of_one_layer_do_not_import_each_other() -> None:
    """analysis, live, proxy and cluster stand side by side on the simulator."""
    def package(m: str) -> str:
        return ".".join(m.split(".")[:2])

    across = sorted(f"{a} imports {b}" for a, deps in _graph().items() for b in deps
                    if _layer(a) == _layer(b) == 3 and package(a) != package(b))
    assert across == []


def test_no_import_cycle() -> None:
    graph = _graph()
    # Tarjan's strongly connected components; any with more than one module is a cycle.
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    assert cycles == []


def test_the_floor_imports_nothing_of_the_domain() -> None:
    floor = {m: deps for m, deps in _graph().items() if _layer(m) == 0}
    assert floor, "no infrastructure modules found"
    assert {m: sorted(d) for m, d in floor.items() if any(_layer(x) > 0 for x in d)} == {}
