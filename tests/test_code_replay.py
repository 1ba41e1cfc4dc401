"""Replay, pure (no engine): for every effect kind a journal replays to the same outcome
with no new effect; drift (a changed name, arguments, order, a removed or added effect)
is a NonDeterminismError naming both effects; a swallowed suspension or a foreign await
is detected; the golden journals under tests/golden keep replaying."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import trio
from code_pure import replay, run_pure
from hypothesis import given, settings
from hypothesis import strategies as st

from flowactors.code import (
    ActivityError,
    Context,
    NonDeterminismError,
    SuspendLeakError,
    Timeout,
    workflow,
)
from flowactors.code._define import Registry

GOLDEN = Path(__file__).parent / "golden"


def inc(x: int) -> int:
    return x + 1


def dec(x: int) -> int:
    return x - 1


def boom(x: int) -> int:
    raise ValueError(f"boom {x}")


def undo(result: int) -> str:
    return f"undo {result}"


def wf(fn: Any) -> Any:
    return workflow(check=False, registry=Registry())(fn)


@wf
async def activities(ctx: Context, n: int) -> Any:
    a = await ctx.activity(inc, n)
    try:
        await ctx.activity(boom, a)
    except ActivityError as exc:
        return [a, exc.type, exc.message]
    return [a]


@wf
async def timers(ctx: Context, _: None) -> str:
    await ctx.timer(1000)
    await ctx.sleep(0)
    return "slept"


@wf
async def signals(ctx: Context, _: None) -> Any:
    first = await ctx.signal("go")
    second = await ctx.signal("late", timeout=5)
    return [first, isinstance(second, Timeout)]


@wf
async def primitives(ctx: Context, _: None) -> Any:
    return [
        ctx.now_ms(),
        str(ctx.uuid4()),
        ctx.random(),
        ctx.side_effect(lambda: 42),
        ctx.patched("fix"),
        ctx.now().year,
    ]


@wf
async def children(ctx: Context, _: None) -> Any:
    h = ctx.start_child("children", {"x": 1}, id="c")
    return [h.run_id, await ctx.await_child(h)]


@wf
async def sagas(ctx: Context, _: None) -> Any:
    ref = await ctx.activity(inc, 1, compensate=undo)
    await ctx.activity(inc, 2, compensate=undo)
    one = await ctx.compensate(ref)
    return [one, await ctx.compensate_all()]


@wf
async def continues(ctx: Context, n: int) -> Any:
    await ctx.activity(inc, n)
    return ctx.continue_as_new(n + 1)


CASES: dict[str, tuple[Any, Any, dict[str, Any]]] = {
    "activities": (activities, 1, {}),
    "timers": (timers, None, {}),
    "signals": (signals, None, {"signals": {"go": "yes"}}),
    "primitives": (primitives, None, {}),
    "children": (children, None, {"children": {"run/c": "child result"}}),
    "sagas": (sagas, None, {}),
    "continues": (continues, 1, {}),
}


@pytest.mark.parametrize("name", list(CASES))
def test_a_journal_replays_to_the_same_outcome_with_no_new_effect(name: str) -> None:
    fn, data, options = CASES[name]
    out, journal = run_pure(fn, data, **options)
    assert out.status == "returned", out
    again = replay(fn, journal, data)
    second = again.advance()
    assert second.status == "returned"
    assert second.value == out.value
    assert again.new_events == []
    assert again.cursor == again.stored  # (ctx.is_replaying: False at the end)


def test_effect_outcomes_are_as_recorded() -> None:
    assert run_pure(activities, 1)[0].value == [2, "ValueError", "boom 2"]
    assert run_pure(signals, None, signals={"go": "yes"})[0].value == ["yes", True]
    value = run_pure(primitives, None)[0].value
    assert value[3:5] == [42, True]
    assert run_pure(sagas, None)[0].value == ["undo 2", ["undo 3"]]


# -- drift ------------------------------------------------------------------------------


@wf
async def original(ctx: Context, n: int) -> Any:
    a = await ctx.activity(inc, n)
    b = await ctx.activity(dec, a)
    await ctx.timer(10)
    return b


@wf
async def renamed(ctx: Context, n: int) -> Any:
    a = await ctx.activity(dec, n)
    b = await ctx.activity(dec, a)
    await ctx.timer(10)
    return b


@wf
async def other_args(ctx: Context, n: int) -> Any:
    a = await ctx.activity(inc, n + 1)
    b = await ctx.activity(dec, a)
    await ctx.timer(10)
    return b


@wf
async def reordered(ctx: Context, n: int) -> Any:
    await ctx.timer(10)
    a = await ctx.activity(inc, n)
    return await ctx.activity(dec, a)


@wf
async def removed(ctx: Context, n: int) -> Any:
    a = await ctx.activity(inc, n)
    await ctx.timer(10)
    return a


@wf
async def removed_last(ctx: Context, n: int) -> Any:
    a = await ctx.activity(inc, n)
    return await ctx.activity(dec, a)


@wf
async def inserted(ctx: Context, n: int) -> Any:
    ctx.now_ms()
    a = await ctx.activity(inc, n)
    b = await ctx.activity(dec, a)
    await ctx.timer(10)
    return b


@pytest.mark.parametrize(
    ("changed", "position", "expected", "got"),
    [
        (renamed, 0, "activity 'inc'", "activity 'dec'"),
        (other_args, 0, "activity 'inc'", "activity 'inc'"),
        (reordered, 0, "activity 'inc'", "timer ''"),
        (removed, 1, "activity 'dec'", "timer ''"),
        (removed_last, 2, "timer ''", "end of the workflow"),
        (inserted, 0, "activity 'inc'", "now ''"),
    ],
)
def test_drift_is_a_non_determinism_error_naming_both_effects(
    changed: Any, position: int, expected: str, got: str
) -> None:
    _out, journal = run_pure(original, 1)
    r = replay(changed, journal, 1)
    out = r.advance()
    assert out.status == "drift"
    err = out.error
    assert isinstance(err, NonDeterminismError)
    assert err.position == position
    assert expected in err.expected and got in err.got
    assert expected in str(err) and r.new_events == []


def test_a_journal_that_is_a_prefix_is_not_drift() -> None:
    _out, journal = run_pure(original, 1)
    r = replay(original, journal[:3], 1)  # inc scheduled + completed, dec scheduled
    assert r.advance().status == "suspended"
    assert r.blocked is not None and r.blocked.name == "dec" and r.new_events == []


@wf
async def patched_v2(ctx: Context, n: int) -> Any:
    a = await ctx.activity(inc, n)
    if ctx.patched("double-dec"):
        a = await ctx.activity(dec, a)
    b = await ctx.activity(dec, a)
    await ctx.timer(10)
    return b


def test_patched_is_false_on_old_journals_and_true_on_new_runs() -> None:
    _out, old = run_pure(original, 1)
    r = replay(patched_v2, old, 1)
    assert r.advance().value == 1 and r.new_events == []
    assert run_pure(patched_v2, 1)[0].value == 0


# -- suspension leaks -------------------------------------------------------------------


@wf
async def swallows(ctx: Context, _: None) -> Any:
    try:
        await ctx.timer(1000)
    except BaseException:
        await ctx.activity(inc, 1)
    return "never"


@wf
async def awaits_trio(ctx: Context, _: None) -> Any:
    await trio.sleep(1)
    return "never"


def test_code_that_swallows_the_suspension_is_detected() -> None:
    r = replay(swallows, [])
    assert r.advance().status == "suspended"
    r.close()
    assert isinstance(r.drift, SuspendLeakError)


def test_awaiting_a_foreign_awaitable_is_detected() -> None:
    async def in_a_worker() -> Any:  # workers replay inside a Trio task
        return replay(awaits_trio, []).advance()

    out = trio.run(in_a_worker)
    assert out.status == "drift" and isinstance(out.error, SuspendLeakError)
    assert "not a ctx effect" in str(out.error)


# -- golden journals ----------------------------------------------------------------------


@pytest.mark.parametrize("name", list(CASES))
def test_golden_journals_keep_replaying(name: str) -> None:
    fn, data, _options = CASES[name]
    path = GOLDEN / f"code_{name}.json"
    doc = json.loads(path.read_text())
    r = replay(fn, doc["journal"], data)
    out = r.advance()
    assert out.status == "returned", out
    value = out.value.input if hasattr(out.value, "input") else out.value
    assert json.loads(json.dumps(value)) == doc["result"]
    assert r.new_events == []


def write_golden() -> None:  # pragma: no cover - run by hand to (re)create the files
    for name, (fn, data, options) in CASES.items():
        out, journal = run_pure(fn, data, **options)
        value = out.value.input if hasattr(out.value, "input") else out.value
        doc = {"workflow": name, "input": data, "result": value, "journal": journal}
        (GOLDEN / f"code_{name}.json").write_text(json.dumps(doc, indent=1) + "\n")


if __name__ == "__main__":  # pragma: no cover
    write_golden()


_SCALARS = (
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.text(max_size=8)
    | st.binary(max_size=8) | st.floats(allow_nan=False)
)  # fmt: skip
_VALUES = st.recursive(
    _SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text(max_size=4) | st.integers(-300, 300), inner, max_size=4)
    ),
    max_leaves=12,
)


@settings(max_examples=400, deadline=None)
@given(_VALUES)
def test_digest_is_the_hash_of_canonical_cbor_however_it_is_encoded(value: Any) -> None:
    """`digest` skips the canonical encoder when it would give the same bytes; it must
    never give another digest than the canonical one (journals store digests)."""
    import hashlib

    import cbor2

    from flowactors.code import _values

    canonical = hashlib.sha256(cbor2.dumps(value, canonical=True)).hexdigest()[:16]
    assert _values.digest(value) == canonical
    assert _values.decode(_values.encode_plain(value)) == _values.decode(_values.encode(value))


class _Str(str):
    pass


_ODD = st.sampled_from([set(), _Str("s"), (1, 2), frozenset(), object(), 1.5, True])
_KEYS = st.sampled_from([_Str("k"), (1, 2), frozenset(), 1.5, True, b"b"])
_ANY = st.recursive(
    _SCALARS | _ODD,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.tuples(inner, inner)
        | st.dictionaries(st.text(max_size=4) | st.integers(-9, 9) | _KEYS, inner, max_size=4)
    ),
    max_leaves=12,
)


@settings(max_examples=400, deadline=None)
@given(_ANY)
def test_the_fast_check_judges_as_the_walk_with_paths(value: Any) -> None:
    """`check` takes a path-free walk for plain values and falls back to the walk that
    names paths: both must accept, refuse and answer "canonical?" alike."""
    from flowactors.code import UnstorableValue, _values

    def judge(fn: Any) -> Any:
        try:
            return fn()
        except UnstorableValue as exc:
            return str(exc)

    assert judge(lambda: _values.check(value, "v")) == judge(lambda: _values._walk(value, "v", 0))
