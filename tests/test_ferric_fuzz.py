"""Any argv vector, however malformed, is either answered or refused with an `ERR ...`
CommandError (a FlowError); the engine goes on serving. Hypothesis builds vectors from the
real command names and option words mixed with arbitrary values."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import flowactors as fa
import flowactors.ferric as ferric
from flowactors.ferric import _argv

WORDS = sorted({*ferric.COMMANDS, *_argv.WIDTHS, "ITEMS", "ITEMS_EXT", "MIXED", "AUTO", "FQL1"})
VALUES = st.one_of(
    st.sampled_from(WORDS),
    st.sampled_from(["job", "a", "b", "queued", "running", "true", "false", "-", "__flow_auto__"]),
    st.text(max_size=8),
    st.binary(max_size=8),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.integers(min_value=0, max_value=5),
    st.floats(allow_nan=True),
    st.none(),
    st.booleans(),
)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ferric.Embedded]:
    with ferric.embedded(tmp_path / "data", shards=2) as embedded:
        yield embedded


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None)
@given(name=st.sampled_from(sorted(ferric.COMMANDS)), rest=st.lists(VALUES, max_size=14))
def test_any_argv_is_answered_or_refused(
    store: ferric.Embedded, name: str, rest: list[Any]
) -> None:
    try:
        store.execute_command(name, *rest)
    except fa.FlowError as exc:
        assert str(exc).startswith("ERR "), exc
        assert "internal error" not in str(exc), exc
    assert store.execute_command("FLOW.INFO", "job")["type"] == "job"


TEMPLATES: list[list[Any]] = [
    ["FLOW.CREATE", "a", "TYPE", "job", "STATE", "queued", "NOW", 5, "PAYLOAD", b"p", "RUN_AT", 5],
    ["FLOW.CREATE_MANY", "AUTO", "TYPE", "job", "NOW", 5, "ITEMS", "a", b"1", "b", b"2"],
    ["FLOW.CREATE_MANY", "MIXED", "TYPE", "job", "ITEMS_EXT", 1, "c", "p1", b"3", 1, "v", b"x", 0],
    ["FLOW.CLAIM_DUE", "job", "STATE", "queued", "WORKER", "w", "LIMIT", 5, "RETURN", "RECORDS"],
    [
        "FLOW.COMPLETE_MANY",
        "MIXED",
        "RESULT",
        b"r",
        "INDEPENDENT",
        "true",
        "ITEMS",
        "a",
        "p",
        b"l",
        1,
    ],
    ["FLOW.TRANSITION_MANY", "MIXED", "running", "x", "ITEMS", "a", "p", 1, b"l"],
    ["FLOW.CANCEL_MANY", "MIXED", "REASON", b"r", "ITEMS", "a", "p", 0],
    ["FLOW.SPAWN_CHILDREN", "a", "GROUP", "g", "FENCING", 0, "ITEMS", "MIXED", "c", "p", "t", b""],
    ["FLOW.SPAWN_CHILDREN", "a", "FENCING", 0, "ITEMS_EXT", 1, "c", "-", "t", b"", 0, 0],
    ["FLOW.SIGNAL", "a", "SIGNAL", "s", "IF_STATE", "queued", "TRANSITION_TO", "b", "RUN_AT", 9],
    ["FLOW.POLICY.SET", "job", "MAX_RETRIES", 2, "STATE", "s", "BACKOFF", "fixed", "STATE", "t"],
    ["FLOW.VALUE.PUT", b"v", "OWNER_FLOW_ID", "a", "NAME", "n", "OVERRIDE", "true"],
    ["FLOW.VALUE.MGET", 'fav1:["a",null,"n"]', "MAX_BYTES", 3],
    ["FLOW.HISTORY", "a", "COUNT", 3, "REV", "true", "FROM_VERSION", 1],
    ["FLOW.REWIND", "a", "TO_EVENT", "1-1", "EXPECT_STATE", "queued"],
    [
        "FLOW.QUERY",
        "FQL1",
        "FROM runs WHERE partition_key = @p AND type = @t AND state IN (@a, @b) "
        "ORDER BY updated_at_ms DESC LIMIT 5 RETURN RECORDS",
        "p",
        "__flow_auto__",
        "t",
        "job",
        "a",
        "queued",
        "b",
        "failed",
    ],
]


@st.composite
def mutated(draw: st.DrawFn) -> list[Any]:
    argv = list(draw(st.sampled_from(TEMPLATES)))
    for _ in range(draw(st.integers(0, 3))):
        kind = draw(st.sampled_from(["drop", "replace", "insert"]))
        at = draw(st.integers(1, max(1, len(argv) - 1))) if len(argv) > 1 else 1
        if kind == "drop" and len(argv) > 1:
            del argv[min(at, len(argv) - 1)]
        elif kind == "replace" and len(argv) > 1:
            argv[min(at, len(argv) - 1)] = draw(VALUES)
        else:
            argv.insert(at, draw(VALUES))
    return argv


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None)
@given(argv=mutated())
def test_mutated_commands_are_answered_or_refused(store: ferric.Embedded, argv: list[Any]) -> None:
    try:
        store.execute_command(*argv)
    except fa.FlowError as exc:
        assert str(exc).startswith("ERR "), exc
        assert "internal error" not in str(exc), exc
    assert store.execute_command("FLOW.INFO", "job")["type"] == "job"
