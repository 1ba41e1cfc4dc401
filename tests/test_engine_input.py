"""Engine: wrong-typed input raises `InvalidArgument` and changes nothing (issue 14, items
5 and 6), from explicit regression cases and from every public coroutine's signature."""

from __future__ import annotations

import collections.abc
import inspect
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import trio
from engine_helpers import START_MS, FakeClock, open_checked, written
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sizing import examples

import flowactors as fa

TYPE = "t"


async def _setup(e: Any) -> fa.Flow:
    """Flows of every kind a call may need: "a" claimed (with a value), "q" queued and not
    due, "k" in a partition, "c" completed (with a result)."""
    await e.create("a", TYPE, values={"v": b"1"}, payload=b"pa", correlation_id="corr")
    [f] = await e.claim_due(TYPE, "w")
    await e.create("c", TYPE)
    [done] = await e.claim_due(TYPE, "w")
    await e.complete("c", done.lease_token, done.fencing_token, result=b"r")
    await e.create("q", TYPE, run_at_ms=START_MS + 10**6, attributes={"k": "v"})
    await e.create("k", TYPE, partition_key="part", run_at_ms=START_MS + 10**6)
    return f  # type: ignore[no-any-return]


async def snapshot(e: Any) -> tuple[Any, ...]:
    """Everything a caller can read: counts, every flow (found through list_flows) with its
    payload, outcome and values, every history, and the records written so far."""
    counts = await e.counts()
    flows: dict[str, Any] = {}
    for flow_type, per_state in counts.items():
        for state in per_state:
            cursor = None
            while True:
                page = await e.list_flows(flow_type, state, cursor=cursor, limit=50)
                for flow in page.items:
                    flows[flow.id] = flow
                cursor = page.cursor
                if cursor is None:
                    break
    full = {}
    for fid, flow in sorted(flows.items()):
        part = flow.partition_key
        got = await e.get(fid, partition_key=part, payload=True, values=sorted(flow.value_sizes))
        full[fid] = (got, await e.history(fid, partition_key=part))
    return counts, full, written(e)


# -- explicit cases -----------------------------------------------------------------------

Call = Callable[[Any, fa.Flow], Any]


def _ack(f: fa.Flow, **fields: Any) -> fa.Ack:
    return fa.Ack(f.id, f.lease_token, f.fencing_token)._replace(**fields)


CASES: dict[str, Call] = {
    # item 5: wrong containers and item types
    "create values as a list": lambda e, f: e.create("n", TYPE, values=[("v", b"x")]),
    "create attributes as a list": lambda e, f: e.create("n", TYPE, attributes=[("k", "v")]),
    "create values as a str": lambda e, f: e.create("n", TYPE, values="abc"),
    "create value name an int": lambda e, f: e.create("n", TYPE, values={5: b"x"}),
    "create attribute value an int": lambda e, f: e.create("n", TYPE, attributes={"k": 5}),
    "create_many items None": lambda e, f: e.create_many(TYPE, None),
    "create_many items a str": lambda e, f: e.create_many(TYPE, "abc"),
    "create_many item not a CreateSpec": lambda e, f: e.create_many(TYPE, [("n",)]),
    "create_many item values a list": lambda e, f: e.create_many(
        TYPE, [fa.CreateSpec("n", values=[("v", b"x")])]
    ),
    "complete values as a list": lambda e, f: e.complete(
        "a", f.lease_token, f.fencing_token, values=[("v", b"x")]
    ),
    "transition attributes as a list": lambda e, f: e.transition(
        "q", "queued", "x", 0, attributes=[("k", "v")]
    ),
    "signal values as a list": lambda e, f: e.signal("q", "s", values=[("v", b"x")]),
    "complete_many None": lambda e, f: e.complete_many(None),
    "complete_many not Acks": lambda e, f: e.complete_many([("a", f.lease_token, 1)]),
    "complete_many partition_key 5": lambda e, f: e.complete_many([_ack(f, partition_key=5)]),
    "fail_many id an int": lambda e, f: e.fail_many([_ack(f, id=5)]),
    "retry_many partition_key 5": lambda e, f: e.retry_many([_ack(f, partition_key=5)]),
    "retry_many not Acks": lambda e, f: e.retry_many(["a"]),
    "transition_many fencing a str": lambda e, f: e.transition_many(
        [_ack(f, fencing_token="1")], "running", "x"
    ),
    "transition_many lease token an int": lambda e, f: e.transition_many(
        [_ack(f, lease_token=5)], "running", "x"
    ),
    "complete_many data a str": lambda e, f: e.complete_many([_ack(f, data="text")]),
    "get_values names an int": lambda e, f: e.get_values("a", 5),
    "get_values name an int": lambda e, f: e.get_values("a", [5]),
    "get partition_key 5": lambda e, f: e.get("a", partition_key=5),
    "history partition_key 5": lambda e, f: e.history("a", partition_key=5),
    "complete partition_key 5": lambda e, f: e.complete(
        "a", f.lease_token, f.fencing_token, partition_key=5
    ),
    "spawn children None": lambda e, f: e.spawn_children(
        "q", None, 0, group_id="g", children=None, success_state="s", failure_state="x"
    ),
    "install_policy expected_generation a str": lambda e, f: e.install_policy(
        TYPE, fa.FlowPolicy(), expected_generation="1"
    ),
    # item 6: a string where a list is meant, a non-bool where a bool is meant
    "claim states a str": lambda e, f: e.claim_due(TYPE, "w", states="queued"),
    "claim values a str": lambda e, f: e.claim_due(TYPE, "w", values="abc"),
    "get values a str": lambda e, f: e.get("a", values="abc"),
    "get_values names a str": lambda e, f: e.get_values("a", "abc"),
    "reclaim values a str": lambda e, f: e.reclaim(TYPE, "w", values="v"),
    "create idempotent a str": lambda e, f: e.create("n", TYPE, idempotent="yes"),
    "create_many idempotent 1": lambda e, f: e.create_many(
        TYPE, [fa.CreateSpec("n")], idempotent=1
    ),
    "claim reclaim a str": lambda e, f: e.claim_due(TYPE, "w", reclaim="no"),
    "put_value override a str": lambda e, f: e.put_value("q", "v", b"x", override="yes"),
    "cancel force 1": lambda e, f: e.cancel("q", force=1),
    "install_policy replace a str": lambda e, f: e.install_policy(
        TYPE, fa.FlowPolicy(), replace="yes"
    ),
}


@pytest.mark.parametrize("case", list(CASES))
async def test_wrong_typed_input_is_invalid_and_changes_nothing(tmp_path: Path, case: str) -> None:
    async with open_checked(tmp_path, FakeClock(), shards=2, maintenance_interval_ms=None) as e:
        f = await _setup(e)
        before = await snapshot(e)
        with pytest.raises(fa.InvalidArgument):
            await CASES[case](e, f)
        assert await snapshot(e) == before
        await e.create("after", TYPE)  # the engine goes on


async def test_a_string_for_a_list_says_a_list_is_expected(tmp_path: Path) -> None:
    async with open_checked(tmp_path, FakeClock(), shards=1) as e:
        await e.create("a", TYPE, values={"v": b"1"})
        for call in (
            e.claim_due(TYPE, "w", states="queued"),
            e.get_values("a", "v"),
            e.get("a", values="v"),
        ):
            with pytest.raises(fa.InvalidArgument, match="a list"):
                await call
        with pytest.raises(fa.InvalidArgument, match="True or False"):
            await e.create("n", TYPE, idempotent="yes")


async def test_lists_and_tuples_of_names_are_accepted(tmp_path: Path) -> None:
    async with open_checked(tmp_path, FakeClock(), shards=1) as e:
        await e.create("a", TYPE, values={"v": b"1", "w": b"2"})
        assert await e.get_values("a", ("v",)) == {"v": b"1"}
        assert await e.get_values("a", ["v", "w"]) == {"v": b"1", "w": b"2"}
        [f] = await e.claim_due(TYPE, "w", states=("queued",), values=("w",))
        assert f.values == {"w": b"2"}
        # signal's if_state takes one state as a plain string (documented)
        await e.signal("a", "s", if_state="running", transition_to="x")


# -- generated from the signatures --------------------------------------------------------

# Wrong values to try; each parameter gets those its annotation does not admit.
POOL: tuple[object, ...] = (
    5,
    1.5,
    True,
    "abc",
    b"x",
    None,
    object(),
    ["a"],
    [5],
    ("a",),
    {"a"},
    {"a": b"x"},
    {"a": "x"},
    {5: b"x"},
    [("a", b"x")],
    [("a", None, 0)],
    [object()],
)


def admits(hint: Any, value: object) -> bool:
    """Whether `value` has a type `hint` allows (bool is not an int here; a str is not a
    sequence of str)."""
    origin = typing.get_origin(hint)
    if origin is typing.Union or origin is types.UnionType:
        return any(admits(arg, value) for arg in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if origin is typing.Literal:
        return type(value) is str and value in typing.get_args(hint)
    if hint in (bool, int, str, bytes):
        return type(value) is hint
    if origin is collections.abc.Sequence:
        (item,) = typing.get_args(hint)
        return isinstance(value, list | tuple) and all(admits(item, v) for v in value)
    if origin is collections.abc.Mapping:
        key, val = typing.get_args(hint)
        return isinstance(value, dict) and all(
            admits(key, k) and admits(val, v) for k, v in value.items()
        )
    if origin is collections.abc.Container:  # (looked up in, never iterated)
        return isinstance(value, collections.abc.Container) and not isinstance(
            value, str | bytes | bytearray
        )
    assert isinstance(hint, type), hint
    return isinstance(value, hint)


def valid_args(name: str, f: fa.Flow) -> dict[str, Any]:
    """Arguments that make `name` a valid call on the `_setup` engine."""
    ack = [fa.Ack("a", f.lease_token, f.fencing_token)]
    claimed = {"flow_id": "a", "lease_token": f.lease_token, "fencing_token": f.fencing_token}
    table: dict[str, dict[str, Any]] = {
        "by_correlation": {"correlation_id": "corr"},
        "by_parent": {"parent_id": "q"},
        "by_root": {"root_id": "q"},
        "cancel": {"flow_id": "q"},
        "children": {"parent_id": "q"},
        "claim_due": {"type": TYPE, "worker": "w"},
        "complete": claimed,
        "complete_many": {"items": ack},
        "create": {"flow_id": "n", "type": TYPE},
        "create_many": {"type": TYPE, "items": [fa.CreateSpec("n")]},
        "extend_lease": {**claimed},
        "fail": claimed,
        "fail_many": {"items": ack},
        "get": {"flow_id": "a"},
        "get_policy": {"type": TYPE},
        "get_values": {"flow_id": "a", "names": ["v"]},
        "history": {"flow_id": "a"},
        "info": {"type": TYPE},
        "install_policy": {"type": TYPE, "policy": fa.FlowPolicy(max_retries=2)},
        "list_flows": {"type": TYPE, "state": "queued"},
        "put_value": {"flow_id": "q", "name": "v", "data": b"x"},
        "reclaim": {"type": TYPE, "worker": "w"},
        "reclaim_expired": {"type": TYPE, "worker": "w"},
        "retention_cleanup": {},
        "retry": claimed,
        "retry_many": {"items": ack},
        "rewind": {"flow_id": "c", "to_version": 1},
        "signal": {"flow_id": "q", "name": "s"},
        "spawn_children": {
            "parent_id": "q",
            "lease_token": None,
            "fencing_token": 0,
            "group_id": "g",
            "children": [fa.ChildSpec("ch", "kid")],
            "success_state": "joined",
            "failure_state": "broken",
        },
        "step_continue": {**claimed},
        "step_continue_many": {"items": [fa.ContinueSpec("a", f.lease_token, f.fencing_token)]},
        "stuck": {"type": TYPE},
        "terminals": {"type": TYPE},
        "transition": {"flow_id": "q", "from_state": "queued", "to_state": "x", "fencing_token": 0},
        "transition_claiming": {
            **claimed,
            "from_state": "running",
            "to_state": "x",
            "children": [fa.ChildSpec("ch", "kid", lease_ms=1_000)],
        },
        "transition_many": {"items": ack, "from_state": "running", "to_state": "x"},
    }
    return dict(table[name])


PUBLIC = sorted(
    name
    for name, fn in inspect.getmembers(fa.Engine, inspect.iscoroutinefunction)
    if not name.startswith("_")
)
# No parameters, nothing to get wrong (aclose, compact, counts, settle).
CALLS = [name for name in PUBLIC if len(inspect.signature(getattr(fa.Engine, name)).parameters) > 1]


def parameters(name: str) -> dict[str, Any]:
    """Parameter -> annotation of `Engine.<name>` (self left out)."""
    method = getattr(fa.Engine, name)
    hints = typing.get_type_hints(method)
    return {p: hints[p] for p in inspect.signature(method).parameters if p != "self"}


def wrong_values(hint: Any) -> list[object]:
    return [v for v in POOL if not admits(hint, v)]


def test_every_public_coroutine_has_valid_arguments() -> None:
    f = fa.Flow(*["x"] * 21)
    assert set(CALLS) <= {n for n in PUBLIC}
    for name in CALLS:
        valid_args(name, f)  # KeyError if a new method has no entry
        for param, hint in parameters(name).items():
            assert wrong_values(hint), (name, param)


async def _refused(e: Any, name: str, args: dict[str, Any], before: Any) -> None:
    try:
        await getattr(e, name)(**args)
    except fa.InvalidArgument:
        pass
    else:  # pragma: no cover - the failure message
        raise AssertionError(f"{name}({args!r}) was accepted")
    assert await snapshot(e) == before, (name, args)


@pytest.mark.parametrize("name", CALLS)
async def test_wrong_types_from_the_signature_change_nothing(tmp_path: Path, name: str) -> None:
    """Each parameter of `Engine.<name>` in turn gets every wrong-typed value of the pool
    (the others valid, for real flows): InvalidArgument, and the engine is unchanged."""
    async with open_checked(tmp_path, FakeClock(), shards=2, maintenance_interval_ms=None) as e:
        f = await _setup(e)
        before = await snapshot(e)
        for param, hint in parameters(name).items():
            for wrong in wrong_values(hint):
                args = valid_args(name, f)
                args[param] = wrong
                await _refused(e, name, args, before)
        # The valid arguments are valid: what was refused was the wrong value.
        await getattr(e, name)(**valid_args(name, f))


@settings(
    max_examples=examples(50, 200),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(data=st.data())
def test_wrong_types_anywhere_change_nothing(tmp_path_factory: Any, data: Any) -> None:
    """Hypothesis picks a method, some of its parameters and their wrong values."""
    name = data.draw(st.sampled_from(CALLS), label="method")
    params = parameters(name)
    chosen = data.draw(
        st.lists(st.sampled_from(sorted(params)), min_size=1, max_size=3, unique=True),
        label="params",
    )
    wrong = {p: data.draw(st.sampled_from(wrong_values(params[p])), label=p) for p in chosen}
    path = tmp_path_factory.mktemp("engine")

    async def main() -> None:
        async with open_checked(
            path, FakeClock(), shards=2, maintenance_interval_ms=None, sync="never"
        ) as e:
            f = await _setup(e)
            before = await snapshot(e)
            await _refused(e, name, {**valid_args(name, f), **wrong}, before)

    trio.run(main)
