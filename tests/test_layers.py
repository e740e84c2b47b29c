"""The package's layers point one way (docs/architecture.md): read every module's imports
(module level and inside functions alike) and fail on an import cycle or an arrow that
points up. Lazy package facades (``robusthash``, ``robusthash.hashing``) import nothing
at module level; what they expose on first use is a front-end convenience."""

from __future__ import annotations

import ast
from pathlib import Path

import robusthash

ROOT = Path(robusthash.__file__).parent

# Lowest first. A module belongs to the longest prefix listed; it may import its own
# layer's modules (without cycles) and lower layers', never higher ones'.
LAYERS: list[tuple[str, ...]] = [
    # the ground floor: files and pixels, hash values, distances, model runtime
    ("robusthash.io", "robusthash.files", "robusthash.information", "robusthash.hashing.value",
     "robusthash.measure", "robusthash.runtime", "robusthash.imaging", "robusthash.cluster"),
    # attacks as plain image transforms (they import only io)
    ("robusthash.attacks",),
    ("robusthash.hashing",),
    ("robusthash.segments",),
    ("robusthash.compare",),
    ("robusthash.db",),
    # one verdict from every signal, over the database
    ("robusthash.identify",),
    # training and evaluation data
    ("robusthash.synth",),
    ("robusthash.models",),
    ("robusthash.attacks.adversarial", "robusthash.attacks.surrogates"),
    ("robusthash.evaluation",),
    # front ends
    ("robusthash.demo", "robusthash.service", "robusthash.cli", "robusthash"),
]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in ROOT.rglob("*.py")}


def layer_of(module: str) -> int:
    best, rank = -1, None
    for i, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best:
                best, rank = len(prefix), i
    assert rank is not None, f"{module} is in no layer: add it to LAYERS and docs/architecture.md"
    return rank


def resolve(name: str) -> str:
    while name not in MODULES:
        name = name.rpartition(".")[0]
    return name


def imports_of(module: str) -> set[str]:
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {resolve(a.name) for a in node.names if a.name.split(".")[0] == "robusthash"}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1])
                base += f".{node.module}" if node.module else ""
            else:
                base = node.module or ""
            if base.split(".")[0] != "robusthash":
                continue
            for alias in node.names:
                target = f"{base}.{alias.name}"
                found.add(target if target in MODULES else resolve(base))
    found.discard(module)
    return found


GRAPH = {m: imports_of(m) for m in MODULES}


def test_every_module_has_a_layer():
    for module in MODULES:
        layer_of(module)


def test_no_import_points_up():
    upward = sorted(f"{m} (layer {layer_of(m)}) imports {t} (layer {layer_of(t)})"
                    for m, targets in GRAPH.items() for t in targets if layer_of(t) > layer_of(m))
    assert not upward, "imports pointing up the layers:\n" + "\n".join(upward)


def test_no_import_cycle():
    cycles, state, stack = [], {}, []

    def visit(m: str) -> None:
        state[m] = "open"
        stack.append(m)
        for t in sorted(GRAPH[m]):
            if state.get(t) == "open":
                cycles.append(" -> ".join(stack[stack.index(t):] + [t]))
            elif t not in state:
                visit(t)
        stack.pop()
        state[m] = "done"

    for m in sorted(GRAPH):
        if m not in state:
            visit(m)
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_nothing_in_the_library_imports_evaluation():
    users = sorted(m for m, targets in GRAPH.items() if any(t.startswith("robusthash.evaluation") for t in targets)
                   and layer_of(m) < layer_of("robusthash.evaluation"))
    assert not users


def test_library_modules_do_not_import_the_facade():
    # `from robusthash import x` inside the library would load every front-end name.
    users = sorted(m for m, targets in GRAPH.items() if "robusthash" in targets
                   and layer_of(m) < layer_of("robusthash"))
    assert not users


def test_the_checker_sees_arrows():
    # The checker itself must notice an upward import and a cycle, or it proves nothing.
    assert "robusthash.hashing.base" in GRAPH["robusthash.hashing.forbild"]
    assert layer_of("robusthash.db.store") > layer_of("robusthash.hashing.base")
    assert layer_of("robusthash.attacks.adversarial") > layer_of("robusthash.models.cmaa")
