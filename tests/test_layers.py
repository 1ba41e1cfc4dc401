"""Imports go one way: wal <- engine <- every programming model and tool. Read from the
source (ast), so the rule holds for code no test imports: no module imports a layer above
its own, and no module-level import cycle exists anywhere in wal/ or flowactors/."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Each layer may import itself and the layers listed after it.
LAYERS: dict[str, set[str]] = {
    "wal": set(),
    "flowactors.engine": {"wal"},
    "flowactors.sdk": {"wal", "flowactors.engine"},
    "flowactors.asl": {"wal", "flowactors.engine", "flowactors.sdk"},
    "flowactors.code": {"wal", "flowactors.engine", "flowactors.sdk", "flowactors"},
    "flowactors.steps": {
        "wal",
        "flowactors.engine",
        "flowactors.sdk",
        "flowactors.code",
        "flowactors",
    },
    "flowactors.cron": {
        "wal",
        "flowactors.engine",
        "flowactors.sdk",
        "flowactors.code",
        "flowactors",
    },
    "flowactors.ferric": {"wal", "flowactors.engine", "flowactors.sdk", "flowactors"},
    "flowactors.ops": {
        "wal",
        "flowactors.engine",
        "flowactors.sdk",
        "flowactors.asl",
        "flowactors.code",  # (the journal layout, to show a code run's steps)
        "flowactors",
    },
}


def modules() -> dict[str, Path]:
    out = {}
    for top in ("wal", "flowactors"):
        for path in (ROOT / top).rglob("*.py"):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            out[".".join(parts)] = path
    return out


def layer_of(module: str) -> str:
    best = ""
    for layer in LAYERS:
        if (module == layer or module.startswith(layer + ".")) and len(layer) > len(best):
            best = layer
    return best or "flowactors"


def imports(module: str, path: Path, known: dict[str, Path]) -> set[str]:
    """Module-level imports of `module` (not under TYPE_CHECKING, not inside functions)."""
    tree = ast.parse(path.read_text())
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()

    def visit(body: list[ast.stmt]) -> None:
        for node in body:
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                continue
            if isinstance(node, ast.Import):
                found.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")
                    base = base[: len(base) - node.level + 1]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                found.add(target)
                for alias in node.names:  # `from pkg import submodule`
                    if f"{target}.{alias.name}" in known:
                        found.add(f"{target}.{alias.name}")
            elif isinstance(node, ast.If | ast.Try):
                visit(node.body)
                visit(getattr(node, "orelse", []))

    visit(tree.body)
    return {m for m in found if m in known or m.split(".")[0] in ("wal", "flowactors")}


def test_no_module_imports_a_layer_above_its_own() -> None:
    known = modules()
    wrong = []
    for module, path in known.items():
        mine = layer_of(module)
        if mine == "flowactors":  # the top-level package re-exports every layer
            continue
        for target in imports(module, path, known):
            theirs = layer_of(target)
            if theirs != mine and theirs not in LAYERS[mine]:
                wrong.append(f"{module} imports {target} ({mine} -> {theirs})")
    assert not wrong, "\n".join(wrong)


def test_there_is_no_module_level_import_cycle() -> None:
    known = modules()
    graph = {
        m: {t for t in imports(m, p, known) if t in known and t != m} for m, p in known.items()
    }
    # a package's __init__ importing its own submodules is how packages work, not a cycle
    for m in graph:
        graph[m] = {t for t in graph[m] if not t.startswith(m + ".")}
    state: dict[str, int] = {}
    stack: list[str] = []

    def walk(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for t in sorted(graph[m]):
            if state.get(t) == 1:
                cycle = [*stack[stack.index(t) :], t]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if t not in state:
                walk(t)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            walk(m)
