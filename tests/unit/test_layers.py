"""Imports point down the layers of ``docs/architecture.md``: no module of taskloom
imports, even lazily inside a function, a module that imports it back, and the client,
the waiting helpers, the storage and the replay core know nothing of the host, the
HTTP API, the runtime, the CLI or the test kit.

Imports under ``if TYPE_CHECKING:`` are left out (annotations only); so are the imports
of ``taskloom/__init__.py``, which re-exports the author API from every layer.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2] / "taskloom"

# Re-exporting at the top: ``taskloom`` may import anything, so its edges are not counted.
UNCOUNTED = {"taskloom"}

# The layers table of docs/architecture.md, top to bottom: a module imports only from its
# own layer and the ones below. A name stands for the module and, if a package, all in it.
LAYERS = [
    (
        "adapters",
        (
            "taskloom.__main__",
            "taskloom.cli",
            "taskloom.cli_events",
            "taskloom.cli_host",
            "taskloom.cli_topics",
            "taskloom.cli_dashboard",
        ),
    ),
    ("entry points", ("taskloom", "taskloom.app", "taskloom.testing")),
    ("host", ("taskloom.host", "taskloom.http", "taskloom.grpc", "taskloom.dashboard")),
    (
        "runtime",
        (
            "taskloom.runtime",
            "taskloom.events.runner",
            "taskloom.topics.runner",
            "taskloom.topics.webhook",
            "taskloom.entities.episodes",
        ),
    ),
    (
        "client",
        (
            "taskloom.client",
            "taskloom.waiting",
            "taskloom.manage",
            "taskloom.payloads",
            "taskloom.security",
            "taskloom.cron",
            "taskloom.events",
            "taskloom.topics",
            "taskloom.entities.client",
            "taskloom.dashboard.bulk_job",
            "taskloom.dashboard.bulk_request",
        ),
    ),
    (
        "replay core",
        (
            "taskloom.core",
            "taskloom.context",
            "taskloom.tasks",
            "taskloom.retry",
            "taskloom.activity_context",
            "taskloom.entities",
        ),
    ),
    ("storage", ("taskloom.storage",)),
    ("observability", ("taskloom.observability",)),
    (
        "foundation",
        (
            "taskloom.history",
            "taskloom.converter",
            "taskloom.models",
            "taskloom.errors",
            "taskloom.versioning",
            "taskloom.clock",
            "taskloom._version",
            "taskloom.events.records",
            "taskloom.cloudevents",
            "taskloom.entities.records",
            "taskloom.entities.protocol",
        ),
    ),
]

# The brief of the layering, said directly: these never reach (even indirectly) those.
LOWER = ("taskloom.client", "taskloom.waiting", "taskloom.storage", "taskloom.core")
UPPER = (
    "taskloom.host",
    "taskloom.http",
    "taskloom.runtime",
    "taskloom.cli",
    "taskloom.cli_host",
    "taskloom.__main__",
    "taskloom.testing",
)


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {_module_name(p): p for p in sorted(ROOT.rglob("*.py"))}
PACKAGES = {name for name, p in MODULES.items() if p.name == "__init__.py"}


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _runtime_nodes(nodes: list[ast.stmt]) -> Iterator[ast.AST]:
    """Every node that runs at some time (imports in functions too), skipping the bodies
    of ``if TYPE_CHECKING:``."""
    for node in nodes:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            yield from _runtime_nodes(node.orelse)
            continue
        yield node
        for field in ("body", "orelse", "finalbody", "handlers", "cases"):
            children = getattr(node, field, None)
            if isinstance(children, list):
                stmts = [c for c in children if isinstance(c, ast.stmt)]
                stmts += [s for c in children if not isinstance(c, ast.stmt) for s in c.body]
                yield from _runtime_nodes(stmts)


def _resolve(target: str) -> str:
    """The module an imported dotted name lives in (``a.b.Name`` -> ``a.b``)."""
    while target not in MODULES:
        target = target.rpartition(".")[0]
    return target


def _imports(name: str) -> set[str]:
    path = MODULES[name]
    tree = ast.parse(path.read_text(), str(path))
    package = name if name in PACKAGES else name.rpartition(".")[0]
    found: set[str] = set()
    for node in _runtime_nodes(tree.body):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "taskloom")
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            if base.split(".")[0] != "taskloom":
                continue
            for alias in node.names:
                # ``from pkg import mod`` imports the submodule; ``from mod import Name``, mod.
                sub = f"{base}.{alias.name}"
                found.add(sub if sub in MODULES else base)
    return {_resolve(t) for t in found} - {name}


GRAPH = {name: set() if name in UNCOUNTED else _imports(name) for name in MODULES}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle through each group of modules that import each other (each strongly
    connected component of more than one module), found by Tarjan's algorithm."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    groups: list[set[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                connect(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = set()
            while True:
                member = stack.pop()
                group.add(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(group)

    for start in sorted(graph):
        if start not in index:
            connect(start)
    return [_cycle_in(graph, group) for group in groups]


def _cycle_in(graph: dict[str, set[str]], group: set[str]) -> list[str]:
    """A shortest cycle from the group's first module back to it, inside the group."""
    start = min(group)
    came_from: dict[str, str] = {}
    todo = [start]
    while todo:
        node = todo.pop(0)
        for nxt in sorted(graph[node] & group):
            if nxt == start:
                path = [node]
                while path[-1] != start:
                    path.append(came_from[path[-1]])
                return [*reversed(path), start]
            if nxt not in came_from:
                came_from[nxt] = node
                todo.append(nxt)
    raise AssertionError(f"no cycle in {group}")


def _reachable(start: str) -> dict[str, str]:
    """Every module ``start`` imports, directly or not, with the module importing it."""
    seen: dict[str, str] = {}
    todo = [start]
    while todo:
        node = todo.pop()
        for nxt in GRAPH[node]:
            if nxt not in seen and nxt != start:
                seen[nxt] = node
                todo.append(nxt)
    return seen


def _within(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def test_the_graph_was_read() -> None:
    assert "taskloom.client" in GRAPH and "taskloom.storage.base" in GRAPH
    assert "taskloom.storage.base" in _reachable("taskloom.client")


def test_no_import_cycles() -> None:
    cycles = [" -> ".join(c) for c in _cycles(GRAPH)]
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_the_cycle_finder_finds_cycles() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": set(), "e": {"e"}}
    assert _cycles(graph) == [["a", "b", "c", "a"]]  # self-imports are not counted


def _layer(name: str) -> int:
    found = [i for i, (_, prefixes) in enumerate(LAYERS) if _within(name, prefixes)]
    assert found, f"{name} is in no layer: add it to LAYERS and to docs/architecture.md"
    # The longest matching name wins, so a package's module may sit apart from it.
    return max(found, key=lambda i: max(len(p) for p in LAYERS[i][1] if _within(name, (p,))))


def test_imports_point_down_the_layers() -> None:
    layer = {name: _layer(name) for name in GRAPH}
    upward = [
        f"{name} ({LAYERS[layer[name]][0]}) imports {target} ({LAYERS[layer[target]][0]})"
        for name in sorted(GRAPH)
        for target in sorted(GRAPH[name])
        if layer[target] < layer[name]
    ]
    assert not upward, "imports pointing up:\n" + "\n".join(upward)


@pytest.mark.parametrize("name", sorted(n for n in MODULES if _within(n, LOWER)))
def test_lower_layers_do_not_import_upper_ones(name: str) -> None:
    via = _reachable(name)
    wrong = sorted(n for n in via if _within(n, UPPER))
    chains = []
    for target in wrong:
        chain = [target]
        while chain[-1] != name:
            chain.append(via[chain[-1]])
        chains.append(" -> ".join(reversed(chain)))
    assert not wrong, f"{name} imports an upper layer: " + "; ".join(chains)
