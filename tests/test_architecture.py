"""The shape of the code: layers whose imports point one way, small modules, no lazy-import dodges.

The layers, lowest first (docs/architecture.md draws them): the vocabulary, the provider
contract, the wire, the agent, the providers, the state, GitHub, capacity, monitoring,
the actors, the app wiring, the operator tools. A module may import its own layer and the
layers below it, never above: so nothing below the actors imports them, and the
packages cannot form a cycle.
"""

from __future__ import annotations

import ast
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import ROOT

LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("vocabulary", ("runtime.errors", "runtime.version", "runtime.config", "runtime.messages")),
    ("contract", ("runtime.providers.base",)),
    ("wire", ("runtime.wire", "runtime")),
    ("agent", ("runtime.agent",)),
    ("providers", ("runtime.providers",)),
    ("state", ("runtime.state",)),
    ("github", ("runtime.github",)),
    ("capacity", ("runtime.capacity",)),
    ("monitoring", ("runtime.monitoring",)),
    ("mcp", ("runtime.mcp",)),
    ("http", ("runtime.http",)),
    ("actors", ("actors",)),
    ("app", ("runtime.app",)),
    ("tools", ("runtime.cli",)),
)
"""Each layer and the module prefixes in it (the most specific prefix decides)."""

MAX_LINES = 400
SENT_WHOLE = {"runtime.agent.program", "runtime.mcp.bridge_program"}
"""Modules allowed to be longer: the agent is one file sent whole into each workspace."""


@dataclass(frozen=True)
class Module:
    name: str
    path: Path
    tree: ast.Module

    @property
    def lines(self) -> int:
        return len(self.path.read_text().splitlines())


def _modules() -> list[Module]:
    found = []
    for package in ("runtime", "actors"):
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found.append(Module(".".join(parts), path, ast.parse(path.read_text(), str(path))))
    return found


MODULES = _modules()


def _project(name: str) -> bool:
    return name == "runtime" or name.startswith(("runtime.", "actors"))


def imports_of(module: Module) -> set[str]:
    """Every project module ``module`` imports, wherever the import stands (functions and
    ``TYPE_CHECKING`` blocks included: a deferred import is still a dependency)."""
    names: set[str] = set()
    package = module.name if module.path.name == "__init__.py" else module.name.rpartition(".")[0]
    for node in ast.walk(module.tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base]) if base else ".".join(anchor)
            names.add(base)
            # `from runtime.agent import files` imports the module runtime.agent.files.
            names.update(f"{base}.{alias.name}" for alias in node.names if _is_module(f"{base}.{alias.name}"))
    return {name for name in names if _project(name)}


def _is_module(name: str) -> bool:
    return any(module.name == name for module in MODULES)


def layer_of(name: str) -> int:
    """The index in ``LAYERS`` of the layer ``name`` belongs to."""
    best: tuple[int, int] | None = None  # (prefix length, layer)
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if (name == prefix or name.startswith(prefix + ".")) and (best is None or len(prefix) > best[0]):
                best = (len(prefix), index)
    assert best is not None, f"{name} is in no layer: add it to LAYERS (and to docs/architecture.md)"
    return best[1]


def test_every_module_belongs_to_a_layer() -> None:
    for module in MODULES:
        layer_of(module.name)


@pytest.mark.parametrize("module", MODULES, ids=lambda module: module.name)
def test_imports_point_down_the_layers_never_up(module: Module) -> None:
    own = layer_of(module.name)
    upward = {
        name: LAYERS[layer_of(name)][0] for name in imports_of(module) if layer_of(name) > own
    }  # fmt: skip
    assert not upward, f"{module.name} ({LAYERS[own][0]}) imports from layers above it: {upward}"


def test_nothing_in_runtime_imports_the_actors_but_the_app_wiring_and_the_tools_above_it() -> None:
    importers = sorted(
        module.name
        for module in MODULES
        if module.name.startswith("runtime") and any(name.startswith("actors") for name in imports_of(module))
    )
    assert importers == ["runtime.app"]


def test_no_package_dodges_an_import_cycle_with_a_module_getattr() -> None:
    for module in MODULES:
        functions = {node.name for node in module.tree.body if isinstance(node, ast.FunctionDef)}
        assert "__getattr__" not in functions, f"{module.name} defines a module __getattr__"


def test_the_package_graph_has_no_cycle() -> None:
    edges: dict[str, set[str]] = {}
    for module in MODULES:
        source = LAYERS[layer_of(module.name)][0]
        edges.setdefault(source, set()).update(
            LAYERS[layer_of(name)][0] for name in imports_of(module) if LAYERS[layer_of(name)][0] != source
        )
    visiting: set[str] = set()
    done: set[str] = set()

    def visit(node: str, path: list[str]) -> None:
        assert node not in visiting, f"import cycle between layers: {' -> '.join([*path, node])}"
        if node in done:
            return
        visiting.add(node)
        for target in sorted(edges.get(node, ())):
            visit(target, [*path, node])
        visiting.discard(node)
        done.add(node)

    for node in sorted(edges):
        visit(node, [])


@pytest.mark.parametrize("module", MODULES, ids=lambda module: module.name)
def test_modules_stay_small(module: Module) -> None:
    if module.name in SENT_WHOLE:
        return
    assert module.lines <= MAX_LINES, f"{module.path} has {module.lines} lines; split it by concept"


def test_the_agent_sent_into_workspaces_needs_only_the_standard_library() -> None:
    [agent] = [module for module in MODULES if module.name == "runtime.agent.program"]
    imported = set()
    for node in ast.walk(agent.tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name.partition(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.partition(".")[0])
    assert imported <= set(sys.stdlib_module_names) | {"__future__"}, imported - set(sys.stdlib_module_names)


def test_public_modules_declare_what_they_export() -> None:
    missing = []
    for module in MODULES:
        if module.name.rpartition(".")[2].startswith("_") or module.name in SENT_WHOLE:
            continue
        assigned = {
            target.id
            for node in module.tree.body
            if isinstance(node, ast.Assign)
            for target in node.targets
            if isinstance(target, ast.Name)
        }
        if "__all__" not in assigned:
            missing.append(module.name)
    assert missing == []


def test_the_layering_check_itself_sees_an_upward_import() -> None:
    bad = Module("runtime.messages.bad", ROOT / "runtime" / "messages" / "bad.py", ast.parse("import actors.routing"))
    assert imports_of(bad) == {"actors.routing"}
    assert layer_of("actors.routing") > layer_of(bad.name)
    relative = Module(
        "runtime.wire.client", ROOT / "runtime" / "wire" / "client.py", ast.parse("from ..state import statelog")
    )
    assert "runtime.state.statelog" in imports_of(relative)
