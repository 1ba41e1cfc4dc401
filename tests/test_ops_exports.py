"""flowactors.ops: its public surface is pinned, it reaches the engine only through the
public `flowactors` API (no engine or wal internals), and its helpers behave."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from flowactors import InvalidArgument, ops
from flowactors.ops._html import Html, escape, html, relative, url
from flowactors.ops._read import parse_time_ms, preview

PACKAGE = Path(ops.__file__).parent


def test_public_surface() -> None:
    assert sorted(ops.__all__) == [
        "DEFAULT_PORT", "EngineCollector", "FlowDetail", "FlowList", "ListFilter", "Overview",
        "cancel", "dashboard_app", "flow_detail", "is_loopback", "list_flows", "overview",
        "registry_for", "retry", "rewind", "serve_dashboard", "signal",
    ]  # fmt: skip
    for name in ops.__all__:
        assert hasattr(ops, name), name


def test_imports_only_the_public_engine_api() -> None:
    # The dashboard, metrics, actions and operator CLI; the demo and the inspector
    # (_demo, _inspect) are older neighbours with their own rules.
    for module in PACKAGE.glob("*.py"):
        if module.name in ("_demo.py", "_inspect.py"):
            continue
        tree = ast.parse(module.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level == 2:
                assert node.module is None, f"{module.name} imports flowactors.{node.module}"
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                assert not node.module.startswith(("wal", "flowactors._")), module.name
            if isinstance(node, ast.Import):
                for alias in node.names:
                    assert not alias.name.startswith(("wal", "flowactors._")), module.name


def test_html_escapes_unless_markup() -> None:
    assert html("<b>{}</b>", "<script>") == "<b>&lt;script&gt;</b>"
    assert html("<b>{}</b>", Html("<i>x</i>")) == "<b><i>x</i></b>"
    assert escape("\"'&") == "&quot;&#x27;&amp;"
    assert html('<a href="{}">', url("/flow", {"id": 'a"b<c>&d', "pk": None})) == (
        '<a href="/flow?id=a%22b%3Cc%3E%26d">'
    )
    assert html("{}", None) == ""


def test_relative_times() -> None:
    assert relative(1_000, 1_500) == "now"
    assert relative(0, 5_000) == "5 s ago"
    assert relative(0, 7_200_000) == "2 h ago"
    assert relative(90_000, 0) == "in 1 min"


def test_preview_never_trusts_bytes() -> None:
    assert preview(b"hello\nworld").kind == "text"
    assert preview(b"\x00\x01\xff").kind == "hex"
    cbor = preview(bytes.fromhex("a1616101"))  # {"a": 1}
    assert cbor.kind == "cbor" and '"a": 1' in cbor.text
    cut = preview("é".encode() * 10, cap=5)  # a cut inside a character
    assert cut.kind == "text" and cut.truncated and cut.text == "éé"
    assert preview(None).kind == "none"
    odd = preview(bytes.fromhex("a1820102f5"))  # {[1, 2]: true}: no JSON form
    assert odd.kind == "cbor" and "(1, 2)" in odd.text
    big = preview(b"x" * 10_000)
    assert big.truncated and big.size == 10_000 and len(big.text) == 4096


def test_time_bounds_are_ms_or_iso() -> None:
    assert parse_time_ms("1500", "t") == 1500
    assert parse_time_ms("1970-01-01T00:00:02", "t") == 2000  # naive: UTC
    assert parse_time_ms("1970-01-01T01:00:02+01:00", "t") == 2000
    assert parse_time_ms("  ", "t") is None and parse_time_ms(None, "t") is None
    with pytest.raises(InvalidArgument, match="ISO time"):
        parse_time_ms("yesterday", "t")
