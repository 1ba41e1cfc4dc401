"""flowactors.ferric's public surface is what its `__all__` says; its errors are FlowErrors;
it reaches the engine only through the public `flowactors` package."""

from __future__ import annotations

import ast
from pathlib import Path

import flowactors as fa
import flowactors.ferric as ferric

PACKAGE = Path(ferric.__file__).parent


def test_public_surface() -> None:
    assert set(ferric.__all__) == {
        "AUTO_ANY", "COMMANDS", "AsyncExecutor", "CommandError", "Embedded", "EngineThread",
        "Executor", "auto_partition", "dispatch", "embedded",
    }  # fmt: skip
    for name in ferric.__all__:
        assert hasattr(ferric, name), name


def test_its_errors_are_flow_errors() -> None:
    assert issubclass(ferric.CommandError, fa.FlowError)


def test_modules_import_the_engine_only_through_the_public_package() -> None:
    for path in PACKAGE.glob("*.py"):
        tree = ast.parse(path.read_text())
        text = path.read_text()
        if path.name != "__init__.py":
            assert text.startswith("# Theory of operation"), path.name
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                assert not node.module.startswith("flowactors._"), (path.name, node.module)
            if isinstance(node, ast.ImportFrom) and node.level == 2:
                raise AssertionError(f"{path.name} imports from the engine's private modules")
            if isinstance(node, ast.Import):
                for alias in node.names:
                    assert not alias.name.startswith("flowactors._"), (path.name, alias.name)
