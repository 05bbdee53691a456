"""The dependency rule of docs/architecture.md, checked on the source.

Each module of `pipeline/` belongs to a layer; it may import its own layer's modules and the
layers below it, never a layer above nor a sibling edge (sources and store do not know each
other). Every import counts, including those inside functions and under TYPE_CHECKING: a
cycle hidden in a function body is still a cycle for a reader.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PIPELINE = ROOT / "pipeline"

# Layer of each top-level name under pipeline/ (a sub-package or a module).
LAYER = {
    "__init__": 0,  # the version
    "model": 0,
    "settings": 0,
    "common": 0,
    "call": 1,
    "protect": 2,
    "sources": 3,
    "store": 3,
    "ingest": 4,
    "kpi": 5,
    "export": 6,
    "compliance": 6,
    "cli": 7,
    "runtime": 7,
    "__main__": 8,
}
# Same layer, still not allowed to import each other: the two edges of the pipeline.
SEPARATE = {frozenset({"sources", "store"})}


def _part(module: str) -> str:
    """The top-level name under pipeline/ of a dotted module name."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__" and len(parts) > 1:
        parts = parts[:-1]
    return ".".join(parts)


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, imported module) for every pipeline import in a file, relative ones resolved."""
    tree = ast.parse(path.read_text(), filename=str(path))
    here = _module_name(path)
    package = here if path.name == "__init__.py" else here.rpartition(".")[0]
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.startswith("pipeline")]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            if not module.startswith("pipeline"):
                continue
            # `from pipeline.call import tokens` imports the module pipeline.call.tokens.
            for alias in node.names:
                sub = f"{module}.{alias.name}"
                found.append(
                    (
                        node.lineno,
                        sub
                        if (PIPELINE.parent / sub.replace(".", "/")).with_suffix(".py").exists()
                        else module,
                    )
                )
    return found


def _edges() -> list[tuple[str, int, str]]:
    edges = []
    for path in sorted(PIPELINE.rglob("*.py")):
        source = _module_name(path)
        edges += [(source, line, target) for line, target in _imports(path)]
    return edges


def test_every_pipeline_module_has_a_layer() -> None:
    names = {p.stem if p.suffix else p.name for p in PIPELINE.iterdir()}
    names = {n for n in names if not n.startswith(("_", ".")) or n in ("__init__", "__main__")}
    names -= {"__pycache__"}
    assert names <= set(LAYER), f"not in the dependency rule: {sorted(names - set(LAYER))}"


def test_imports_point_down_the_layers() -> None:
    wrong = []
    for source, line, target in _edges():
        a, b = _part(source), _part(target)
        if a == b:
            continue
        if LAYER[b] > LAYER[a] or frozenset({a, b}) in SEPARATE:
            wrong.append(f"{source}:{line} imports {target} ({a} → {b})")
    assert not wrong, "imports against the dependency rule:\n" + "\n".join(wrong)


def test_no_import_cycles() -> None:
    graph: dict[str, set[str]] = {}
    for source, _, target in _edges():
        if source != target:
            graph.setdefault(source, set()).add(target)
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            # A package's __init__ importing nothing, importing the package is harmless.
            if state.get(nxt) == 1:
                cycle = [*stack[stack.index(nxt) :], nxt]
                pytest.fail("import cycle: " + " → ".join(cycle))
            if nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)


@pytest.mark.parametrize(
    ("source", "target", "allowed"),
    [
        ("pipeline.call.exchange", "pipeline.sources.envelope", False),
        ("pipeline.settings", "pipeline.protect.capture", False),
        ("pipeline.sources.inputs", "pipeline.store.account", False),
        ("pipeline.store.account", "pipeline.sources.eventhub", False),
        ("pipeline.kpi.daily", "pipeline.store.account", True),
        ("pipeline.sources.gateway", "pipeline.call.exchange", True),
    ],
)
def test_the_rule_itself(source: str, target: str, allowed: bool) -> None:
    """The rule says what docs/architecture.md says (so the checks above can fail)."""
    a, b = _part(source), _part(target)
    ok = a == b or (LAYER[b] <= LAYER[a] and frozenset({a, b}) not in SEPARATE)
    assert ok is allowed
