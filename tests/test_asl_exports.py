"""The public surface of flowactors.asl, and its one-way dependency on the engine."""

from __future__ import annotations

import ast
from pathlib import Path

from flowactors import FlowError, asl

PACKAGE = Path(asl.__file__).parent


def test_all_names_exist_and_are_sorted_out() -> None:
    for name in asl.__all__:
        assert hasattr(asl, name), name
    public = {n for n in dir(asl) if not n.startswith("_")}
    assert public - set(asl.__all__) == set()


def test_errors_derive_from_flow_error() -> None:
    for cls in (
        asl.AslValidationError,
        asl.AslSyntaxError,
        asl.AslUsageError,
        asl.AslHistoryMismatch,
        asl.StatesError,
    ):
        assert issubclass(cls, FlowError)


def test_imports_only_the_error_root_from_the_engine() -> None:
    for source in PACKAGE.glob("*.py"):
        tree = ast.parse(source.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                if node.module.startswith("flowactors"):
                    assert node.module == "flowactors.engine._errors", (source.name, node.module)
            elif isinstance(node, ast.Import):
                assert not any(a.name.startswith("flowactors") for a in node.names), source.name
