"""The package layers hold (docs/ARCHITECTURE.md, "Layers"), read from the source with ``ast``.

Every ``import`` counts, at module level or inside a function: a lazy import still decides what a
call pulls in, and a lazy cycle is still a cycle a reader has to untangle.  The static checks are
backed by one subprocess that imports the embeddable runtime and looks at ``sys.modules``.

``python -m tests.runtime.test_layers`` prints the package graph (which layer imports which).
"""
from __future__ import annotations

import ast
import subprocess
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import pytest

PACKAGE_ROOT = Path(__file__).resolve().parents[2] / "corese_edge"

#: Modules directly under corese_edge/ that wire everything together and may import any layer.
APPLICATION_MODULES = {"demo", "env_report", "__main__"}
#: Subpackages that are applications in the same sense (the click commands).
APPLICATION_PACKAGES = {"cli"}
#: Modules directly under corese_edge/ that are a layer of their own (not base): the Triton client,
#: which returns the runtime's Prediction objects.
MODULE_LAYERS = {"client": "client"}

BASE = "base"
APP = "app"

#: Which layer may import which (besides itself).  ``base`` is every module directly under
#: corese_edge/ (corese_edge/__init__ included) that is not an application module.
ALLOWED = {
    BASE: set(),
    "runtime": {BASE},
    "data": {BASE},
    "model": {BASE, "data"},
    "train": {BASE, "data", "model", "runtime"},
    "export": {BASE, "data", "model", "runtime"},
    "bench": {BASE, "model", "runtime", "export"},  # model: the suite exports untrained models
    "serve": {BASE, "runtime", "export"},  # the Triton / DeepStream packaging: reads artifacts, embeds preprocessing
    "client": {BASE, "runtime"},  # ExpressionClient: torch-free like the runtime it mirrors
}

#: The one sanctioned exception: the runtime's torch runner loads a checkpoint through the model
#: package, lazily, so that importing the runtime never imports torch.
LAZY_EXCEPTIONS = {("corese_edge.runtime.torch_runner", "model")}


@dataclass(frozen=True)
class Edge:
    """One import of a corese_edge module by a corese_edge module."""

    source: str  # importing module, e.g. corese_edge.runtime.inputs
    target: str  # imported module, e.g. corese_edge.images
    line: int
    lazy: bool  # inside a function body
    path: Path

    @property
    def where(self) -> str:
        rel = self.path.relative_to(PACKAGE_ROOT.parent)
        return f"{rel}:{self.line} ({'lazy' if self.lazy else 'module level'}) imports {self.target}"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE_ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def layer_of(module: str) -> str:
    """``base``, ``app`` or the subpackage name of a corese_edge module."""
    parts = module.split(".")
    if len(parts) == 1:
        return BASE  # corese_edge/__init__.py
    head = parts[1]
    if (PACKAGE_ROOT / head).is_dir():
        return APP if head in APPLICATION_PACKAGES else head
    if head in MODULE_LAYERS:
        return MODULE_LAYERS[head]
    return APP if head in APPLICATION_MODULES else BASE


def _resolve(name: str) -> str:
    """The deepest prefix of ``name`` that is a module or package on disk (``from corese_edge
    import __version__`` targets the package itself; ``from corese_edge import images``, the module)."""
    parts = name.split(".")
    while len(parts) > 1:
        rel = Path(*parts[1:])
        if (PACKAGE_ROOT / rel).with_suffix(".py").is_file() or (PACKAGE_ROOT / rel / "__init__.py").is_file():
            break
        parts.pop()
    return ".".join(parts)


class _ImportCollector(ast.NodeVisitor):
    def __init__(self, module: str, path: Path) -> None:
        self.module, self.path = module, path
        self.is_package = path.name == "__init__.py"
        self.depth = 0
        self.edges: list[Edge] = []

    def _add(self, name: str, line: int) -> None:
        if name == "corese_edge" or name.startswith("corese_edge."):
            self.edges.append(Edge(self.module, _resolve(name), line, self.depth > 0, self.path))

    def _function(self, node: ast.AST) -> None:
        self.depth += 1
        self.generic_visit(node)
        self.depth -= 1

    visit_FunctionDef = visit_AsyncFunctionDef = visit_Lambda = _function

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self._add(alias.name, node.lineno)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level:
            base = self.module.split(".")
            if not self.is_package:
                base.pop()
            base = base[: len(base) - (node.level - 1)]
            parent = ".".join(base + ([node.module] if node.module else []))
        else:
            parent = node.module or ""
        for alias in node.names:
            # ``from pkg import sub`` imports the submodule when there is one, else pkg itself
            self._add(f"{parent}.{alias.name}" if alias.name != "*" else parent, node.lineno)

    def visit_Call(self, node: ast.Call) -> None:
        func = node.func
        named = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
        if named in ("import_module", "__import__") and node.args and isinstance(node.args[0], ast.Constant) \
                and isinstance(node.args[0].value, str):
            self._add(node.args[0].value, node.lineno)
        self.generic_visit(node)


def collect_edges() -> list[Edge]:
    edges: list[Edge] = []
    for path in sorted(PACKAGE_ROOT.rglob("*.py")):
        module = module_name(path)
        collector = _ImportCollector(module, path)
        collector.visit(ast.parse(path.read_text(encoding="utf-8"), filename=str(path)))
        # ``from x import a, b`` is one import of x: keep one edge per (target, line)
        edges.extend(e for e in dict.fromkeys(collector.edges) if e.target != module)
    return edges


def is_facade(e: Edge) -> bool:
    """corese_edge/__init__'s lazy ``__getattr__`` (``corese_edge.load_model``,
    ``corese_edge.ExpressionClassifier``): the package's public entry points, resolved on first
    use, not a dependency of the base layer."""
    return e.source == "corese_edge" and e.lazy


def layer_graph(edges: list[Edge] | None = None) -> dict[tuple[str, str], list[Edge]]:
    """``{(importing layer, imported layer): [edges]}`` for imports that cross a layer boundary."""
    graph: dict[tuple[str, str], list[Edge]] = defaultdict(list)
    for e in collect_edges() if edges is None else edges:
        a, b = layer_of(e.source), layer_of(e.target)
        if a != b and not is_facade(e):
            graph[(a, b)].append(e)
    return dict(graph)


def find_cycles(pairs: set[tuple[str, str]]) -> list[list[str]]:
    """Every strongly connected group of layers (more than one layer), each as a closed path
    ``[a, b, ..., a]`` through its members."""
    nodes = sorted({n for p in pairs for n in p})
    succ = {n: sorted(b for a, b in pairs if a == n) for n in nodes}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(n: str) -> None:  # Tarjan's algorithm; the graph has a handful of nodes
        index[n] = low[n] = len(index)
        stack.append(n)
        on_stack.add(n)
        for m in succ[n]:
            if m not in index:
                visit(m)
                low[n] = min(low[n], low[m])
            elif m in on_stack:
                low[n] = min(low[n], index[m])
        if low[n] == index[n]:
            group = []
            while True:
                m = stack.pop()
                on_stack.discard(m)
                group.append(m)
                if m == n:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for n in nodes:
        if n not in index:
            visit(n)
    return [_closed_path(g, pairs) for g in groups]


def _closed_path(group: list[str], pairs: set[tuple[str, str]]) -> list[str]:
    """A shortest cycle through the group's first member (breadth-first inside the group)."""
    start, members = group[0], set(group)
    previous = {start: None}
    frontier = [start]
    while frontier:
        nxt = []
        for a in frontier:
            for b in sorted(b for x, b in pairs if x == a and b in members):
                if b == start:
                    path = [a]
                    while previous[path[-1]] is not None:
                        path.append(previous[path[-1]])
                    return list(reversed(path)) + [start]
                if b not in previous:
                    previous[b] = a
                    nxt.append(b)
        frontier = nxt
    raise AssertionError(f"{group} is not strongly connected")  # pragma: no cover


def format_graph(graph: dict[tuple[str, str], list[Edge]]) -> str:
    """One line per importing layer: ``export -> base, data, model, runtime``."""
    out = defaultdict(set)
    for a, b in graph:
        out[a].add(b)
    return "\n".join(f"{a:8} -> {', '.join(sorted(out[a]))}" for a in sorted(out))


# --------------------------------------------------------------------------- the checks


@pytest.fixture(scope="module")
def edges() -> list[Edge]:
    return collect_edges()


def _violations(edges: list[Edge], layer: str, forbidden) -> list[str]:
    return [e.where for e in edges if layer_of(e.source) == layer and forbidden(e)]


def test_the_collector_sees_lazy_relative_and_from_imports(tmp_path):
    """The parser itself: a lazy import, a relative import and ``from pkg import submodule``."""
    src = ("from . import errors\nfrom ..data import layouts\n"
           "def f():\n    from corese_edge.bench.timing import SCHEMA\n    import corese_edge.export\n")
    collector = _ImportCollector("corese_edge.runtime.fake", PACKAGE_ROOT / "runtime" / "fake.py")
    collector.visit(ast.parse(src))
    got = {(e.target, e.lazy) for e in collector.edges}
    assert got == {("corese_edge.runtime", False), ("corese_edge.data.layouts", False),
                   ("corese_edge.bench.timing", True), ("corese_edge.export", True)}
    assert layer_of("corese_edge.images") == BASE and layer_of("corese_edge.demo") == APP
    assert layer_of("corese_edge") == BASE and layer_of("corese_edge.cli.train") == APP
    assert find_cycles({("a", "b"), ("b", "c"), ("c", "a"), ("c", "d")}) == [["a", "b", "c", "a"]]
    assert find_cycles({("a", "b"), ("b", "c")}) == []


def test_base_modules_import_no_subpackage(edges):
    """The base layer sits under everything, so it imports no subpackage, not even lazily
    (corese_edge/__init__'s lazy ``__getattr__`` is the package's public entry, not a layer)."""
    bad = [e.where for e in edges if layer_of(e.source) == BASE and layer_of(e.target) != BASE and not is_facade(e)]
    assert not bad, "base modules import subpackages:\n" + "\n".join(bad)


def test_runtime_imports_no_data_train_export_bench(edges):
    """The embeddable runtime is torch-free and data-free: nothing from data, train, export, bench
    or the application modules; model only lazily, from the torch runner."""
    def forbidden(e: Edge) -> bool:
        target = layer_of(e.target)
        if target in (BASE, "runtime"):
            return False
        return not (e.lazy and (e.source, target) in LAZY_EXCEPTIONS)

    bad = _violations(edges, "runtime", forbidden)
    assert not bad, "the runtime imports layers it must not:\n" + "\n".join(bad)


def test_export_never_imports_bench(edges):
    bad = _violations(edges, "export", lambda e: layer_of(e.target) == "bench")
    assert not bad, "export imports bench (bench sits above export):\n" + "\n".join(bad)


def test_every_layer_imports_only_what_it_may(edges):
    """The whole table of docs/ARCHITECTURE.md, "Layers"; an application module may import anything,
    and no library layer imports an application module."""
    bad = []
    for (a, b), es in sorted(layer_graph(edges).items()):
        if a == APP:
            continue
        allowed = ALLOWED.get(a, set())
        for e in es:
            if b not in allowed and (e.source, b) not in LAZY_EXCEPTIONS:
                bad.append(f"{a} -> {b}: {e.where}")
    assert not bad, "imports across layers that the layer table does not allow:\n" + "\n".join(bad)


def test_no_import_cycle_between_layers(edges):
    graph = layer_graph(edges)
    cycles = find_cycles(set(graph))
    lines = []
    for cycle in cycles:
        lines.append(" -> ".join(cycle))
        for a, b in zip(cycle, cycle[1:]):
            lines.extend(f"    {a} -> {b}: {e.where}" for e in graph[(a, b)][:3])
    assert not cycles, "import cycles between layers:\n" + "\n".join(lines)


def loaded_after(imports: str, heavy: tuple[str, ...], layers: tuple[str, ...]) -> list[str]:
    """The modules of ``heavy`` packages and corese_edge ``layers`` in ``sys.modules`` after a fresh
    interpreter runs ``imports``."""
    code = f"""
import sys
{imports}
heavy = {heavy!r}
layers = {layers!r}
print("LOADED", sorted(m for m in sys.modules if m.split(".")[0] in heavy or m.startswith(layers)))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         cwd=PACKAGE_ROOT.parent)
    assert out.returncode == 0, out.stderr
    [line] = [l for l in out.stdout.splitlines() if l.startswith("LOADED ")]
    return ast.literal_eval(line[len("LOADED "):])


def test_importing_the_runtime_loads_no_data_package_and_no_torch():
    """What an app that embeds the runtime pays: every runtime module imported, and afterwards no
    corese_edge.data / train / export / bench and no torch in ``sys.modules``."""
    imports = """
import pkgutil
import corese_edge.runtime
import corese_edge.runtime.classifier, corese_edge.runtime.inputs, corese_edge.runtime.preprocess
for info in pkgutil.iter_modules(corese_edge.runtime.__path__, "corese_edge.runtime."):
    __import__(info.name)
"""
    assert loaded_after(imports, ("torch", "torchvision", "timm", "albumentations"),
                        ("corese_edge.data", "corese_edge.train", "corese_edge.export", "corese_edge.bench",
                         "corese_edge.model")) == []


def test_importing_the_client_loads_no_torch_and_no_export():
    """ExpressionClient is for apps that talk to a server: importing it loads no torch, no
    data / train / export / bench / serve package."""
    assert loaded_after("import corese_edge.client", ("torch", "torchvision", "timm", "albumentations", "onnx", "pytriton"),
                        ("corese_edge.data", "corese_edge.train", "corese_edge.export", "corese_edge.bench",
                         "corese_edge.model", "corese_edge.serve")) == []


def test_every_architecture_citation_names_a_section():
    """Comments cite docs/ARCHITECTURE.md by section name; each name must be a heading there, and
    nothing cites the numbered decisions of a document the repository does not hold."""
    import re

    doc = PACKAGE_ROOT.parent / "docs" / "ARCHITECTURE.md"
    headings = set(re.findall(r"^#{2,3} (.+?)\s*$", doc.read_text(encoding="utf-8"), flags=re.M))
    cited, stale = [], []
    for root in (PACKAGE_ROOT, PACKAGE_ROOT.parent / "tests"):
        for path in sorted(root.rglob("*.py")):
            text = path.read_text(encoding="utf-8")
            rel = path.relative_to(PACKAGE_ROOT.parent)
            cited += [(rel, name) for name in re.findall(r'ARCHITECTURE\.md, "([^"]+)"', text)]
            stale += [str(rel) for _ in re.findall(r"DESIGN decision \d", text)]
    assert cited, "no module cites docs/ARCHITECTURE.md"
    missing = sorted({f"{rel}: {name!r}" for rel, name in cited if name not in headings})
    assert not missing, "citations of sections docs/ARCHITECTURE.md does not have:\n" + "\n".join(missing)
    assert not stale, "'DESIGN decision N' citations left in: " + ", ".join(stale)


if __name__ == "__main__":
    print(format_graph(layer_graph()))
