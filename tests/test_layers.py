"""The package's layers, read from its import graph: no cycles, no upward imports, and the world
(driving/sim) imports nothing of models, serving, training or evaluation. Every import counts,
those inside functions too: a cycle hidden in a function body is still a cycle."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "driving"

# Lower layers never import higher ones. Entry points (command lines) are the top layer.
LAYERS = {
    "settings": ("driving", "driving.config", "driving.drive_config", "driving.options", "driving.run",
                 "driving.files", "driving.cli", "driving.tfsetup", "driving.versions"),
    "data": ("driving.data", "driving.preprocess", "driving.augment", "driving.pipeline"),
    "models and the world": ("driving.models", "driving.contrast", "driving.modelio", "driving.card",
                             "driving.sim"),
    "serving": ("driving.runtime", "driving.pilot", "driving.drive_server", "driving.socketio_compat",
                "driving.video"),
    "evaluation": ("driving.evaluation", "driving.evaluation.registry", "driving.evaluation.closed_loop",
                   "driving.evaluation.metrics", "driving.evaluation.suites", "driving.view"),
    "training": ("driving.train",),
    "analysis": ("driving.report", "driving.saliency", "driving.evaluation.seeds",
                 "driving.evaluation.seed_tables", "driving.evaluation.curve"),
    "apps": ("driving.demo", "driving.evaluate", "driving.study", "driving.drive"),
}  # fmt: skip
ORDER = list(LAYERS)
WORLD_MAY_NOT_IMPORT = ("driving.models", "driving.modelio", "driving.card") + tuple(
    prefix for layer in ORDER[3:] for prefix in LAYERS[layer]
)


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_entry_point(module: str) -> bool:
    return module.endswith((".__main__", ".cli")) or module == "driving.cli_main"


def layer_of(module: str) -> str:
    if is_entry_point(module) and module != "driving.cli":
        return "apps"
    best = None
    for layer, prefixes in LAYERS.items():
        for prefix in prefixes:
            inside = module == prefix or (prefix != "driving" and module.startswith(prefix + "."))
            if inside and (best is None or len(prefix) > len(best[1])):
                best = (layer, prefix)
    if best is None:
        raise AssertionError(f"{module} belongs to no layer: add it to LAYERS here and to README's map")
    return best[0]


def imports_of(path: Path) -> set[str]:
    """Every driving module `path` imports, anywhere in the file."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("driving")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("driving"):
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                found.add(sub if (PACKAGE.parent / (sub.replace(".", "/") + ".py")).exists()
                          or (PACKAGE.parent / sub.replace(".", "/")).is_dir() else node.module)  # fmt: skip
    return found


def graph() -> dict[str, set[str]]:
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    return {m: {i for i in imports_of(p) if i in modules and i != m} for m, p in modules.items()}


def test_every_module_has_a_layer():
    for module in graph():
        layer_of(module)


def test_no_module_imports_a_higher_layer():
    upward = [
        f"{m} ({layer_of(m)}) imports {i} ({layer_of(i)})"
        for m, imports in graph().items()
        for i in imports
        if ORDER.index(layer_of(i)) > ORDER.index(layer_of(m))
    ]
    assert not upward, "\n".join(upward)


def test_the_world_imports_no_models_serving_or_evaluation():
    world = {m: i for m, i in graph().items() if m.startswith("driving.sim") and m != "driving.sim.__main__"}
    bad = [
        f"{m} imports {i}"
        for m, imports in world.items()
        for i in imports
        if i.startswith(WORLD_MAY_NOT_IMPORT)
    ]
    assert not bad, "\n".join(bad)


def test_the_import_graph_has_no_cycle():
    edges, state, cycles = graph(), {}, []

    def visit(node: str, path: list[str]) -> None:
        state[node] = "open"
        for nxt in sorted(edges[node]):
            if state.get(nxt) == "open":
                cycles.append(
                    " -> ".join(path[path.index(nxt) :] + [node, nxt]) if nxt in path else f"{node} -> {nxt}"
                )
            elif nxt not in state:
                visit(nxt, [*path, node])
        state[node] = "done"

    for node in sorted(edges):
        if node not in state:
            visit(node, [])
    assert not cycles, "\n".join(cycles)


@pytest.mark.parametrize("module", ["driving.sim.track", "driving.evaluation.closed_loop"])
def test_the_graph_is_read_from_the_code(module):
    """The reader finds real imports (a guard against a test that checks an empty graph)."""
    assert graph()[module]
