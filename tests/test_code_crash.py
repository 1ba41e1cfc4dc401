"""A power loss at every disk call of a code workflow resumes it to the same result, and a
hypothesis property over random small programs does the same at random points.

The workflow `program` interprets its input, a list of steps: activities (some with a
compensation), timers, a signal kept in the mailbox, a signal that times out, a child run,
side effects, and finally `compensate_all`. Every activity and compensation logs its
idempotency key (run id and position: unique per effect) in a list that survives the
crash, like an outside service would. A run is cut by a power loss before disk call k; the
engine reopens on the same disk and a new worker runs it to the end. Checks:

- the result equals the uninterrupted run's;
- no journal holds two outcomes for one position (no result journaled twice, no
  compensation journaled twice);
- an activity or compensation whose outcome was durable at the crash never runs again, and
  any other ran at most once per session.
"""

from __future__ import annotations

import contextlib
import random
from collections import Counter
from collections.abc import Callable
from typing import Any, ClassVar

from hypothesis import given, settings
from hypothesis import strategies as st
from sim_sessions import SimSessions, new_fs

import flowactors as fa
from flowactors.code import CodeRunner, Context, Registry, activity_info, workflow
from wal.testing import SimulatedFileSystem


class World:
    """The outside services: they remember every call, across crashes."""

    calls: ClassVar[list[str]] = []


async def act(tag: int) -> int:
    World.calls.append(activity_info().idempotency_key)
    return tag * 2


async def undo(result: int) -> str:
    World.calls.append(activity_info().idempotency_key)
    return f"undo {result}"


REG = Registry()


@workflow(check=False, registry=REG)
async def kid(ctx: Context, n: int) -> int:
    return int(await ctx.activity(act, n)) + 1


@workflow(check=False, registry=REG)
async def program(ctx: Context, steps: list[list[Any]]) -> list[Any]:
    out: list[Any] = []
    for kind, arg in steps:
        if kind == "act":
            out.append(await ctx.activity(act, arg))
        elif kind == "comp":
            out.append((await ctx.activity(act, arg, compensate=undo)).result)
        elif kind == "timer":
            await ctx.timer(arg)
        elif kind == "signal":
            out.append(await ctx.signal("go"))
        elif kind == "timeout":
            out.append(repr(await ctx.signal("never", timeout=arg)))
        elif kind == "child":
            out.append(await ctx.child(kid, arg, id=f"k{len(out)}"))
        elif kind == "side":
            out.append(ctx.side_effect(lambda value=arg: value))
    out.append(await ctx.compensate_all())
    return out


FULL = [
    ["act", 1],
    ["comp", 2],
    ["timer", 1500],
    ["signal", None],
    ["child", 3],
    ["side", "s"],
    ["comp", 4],
    ["timeout", 700],
    ["act", 5],
]


class Session:
    """Engine sessions on one simulated disk (tests/sim_sessions.py), each body handed a
    CodeRunner."""

    def __init__(self, fs: SimulatedFileSystem) -> None:
        self.sim = SimSessions(fs)

    def run(self, body: Callable[[CodeRunner], Any]) -> BaseException | None:
        return self.sim.run(lambda e: body(CodeRunner(e, REG, lease_ms=10_000, recheck_ms=5_000)))


def run_to_end(steps: list[list[Any]], out: list[Any]) -> Callable[[CodeRunner], Any]:
    async def body(r: CodeRunner) -> None:
        await r.start(program, "p", steps)
        with contextlib.suppress(fa.FlowTerminal):
            await r.signal("p", "go", "signalled", delivery_id="go-1")
        async with r.running():
            out.append(await r.result("p"))

    return body


async def journals(r: CodeRunner) -> dict[str, list[dict[str, Any]]]:
    runs = await r.list()
    return {info.run_id: await r.history(info.run_id) for info in runs}


def outcomes(journal: list[dict[str, Any]]) -> Counter[int]:
    return Counter(e["pos"] for e in journal if e["type"] in ("completed", "failed"))


def durable_keys(found: dict[str, list[dict[str, Any]]]) -> set[str]:
    keys = set()
    for run_id, journal in found.items():
        kinds = {e["pos"]: e["kind"] for e in journal if e["type"] == "scheduled"}
        for pos in outcomes(journal):
            if kinds.get(pos) in ("activity", "compensate"):
                keys.add(f"{run_id}:{pos}")
    return keys


def baseline(steps: list[list[Any]]) -> tuple[Any, int, list[str]]:
    fs = new_fs(0)
    start = fs.statistics().ops
    World.calls = []
    out: list[Any] = []
    assert Session(fs).run(run_to_end(steps, out)) is None
    return out[0], fs.statistics().ops - start, list(World.calls)


def crash_and_resume(steps: list[list[Any]], expected: Any, k: int, torn: bool) -> bool:
    fs = new_fs(k)
    session = Session(fs)
    World.calls = []
    fs.crash_after(k, torn=torn, rng=random.Random(k))
    session.run(run_to_end(steps, []))
    if not fs.halted:
        return False
    fs.restart()
    first = list(World.calls)
    World.calls = []
    seen: dict[str, Any] = {}
    out: list[Any] = []

    async def resume(r: CodeRunner) -> None:
        seen["durable"] = durable_keys(await journals(r))
        await run_to_end(steps, out)(r)
        seen["final"] = await journals(r)

    error = session.run(resume)
    assert error is None, (k, torn, error)
    assert out == [expected], (k, out)
    for run_id, journal in seen["final"].items():
        twice = [p for p, n in outcomes(journal).items() if n > 1]
        assert not twice, (k, run_id, twice)
    second = list(World.calls)
    for key in set(first) | set(second):
        assert first.count(key) <= 1 and second.count(key) <= 1, (k, key, first, second)
        if key in seen["durable"]:
            assert key not in second, (k, key)
    assert durable_keys(seen["final"]) <= set(first) | set(second)
    return True


EXPECTED, TOTAL_OPS, CALLS = baseline(FULL)


def test_the_uninterrupted_run_calls_each_effect_once() -> None:
    assert len(CALLS) == len(set(CALLS)) == 7  # 4 activities, the child's, 2 compensations
    assert EXPECTED[-1] == ["undo 8", "undo 4"]
    assert EXPECTED[:-1] == [2, 4, "signalled", 7, "s", 8, "Timeout()", 10]


def test_a_power_loss_at_every_disk_call_resumes_to_the_same_result() -> None:
    fired = [crash_and_resume(FULL, EXPECTED, k, torn=False) for k in range(1, TOTAL_OPS + 1)]
    assert all(fired[: TOTAL_OPS * 9 // 10]), [k + 1 for k, f in enumerate(fired) if not f]
    print(f"\ncode workflow: {TOTAL_OPS} disk calls, {sum(fired)} crash points")


STEP = st.one_of(
    st.tuples(st.just("act"), st.integers(0, 9)),
    st.tuples(st.just("comp"), st.integers(0, 9)),
    st.tuples(st.just("timer"), st.integers(0, 3000)),
    st.tuples(st.just("timeout"), st.integers(1, 3000)),
    st.tuples(st.just("child"), st.integers(0, 9)),
    st.tuples(st.just("side"), st.integers(0, 9)),
    st.tuples(st.just("signal"), st.none()),
).map(list)


@settings(max_examples=25, deadline=None)
@given(
    steps=st.lists(STEP, min_size=1, max_size=5).filter(
        lambda s: sum(1 for k, _ in s if k == "signal") <= 1
    ),
    point=st.floats(0, 1),
    torn=st.booleans(),
)
def test_random_programs_survive_a_power_loss_anywhere(
    steps: list[list[Any]], point: float, torn: bool
) -> None:
    expected, total, calls = baseline(steps)
    assert len(calls) == len(set(calls))
    crash_and_resume(steps, expected, max(1, int(point * total)), torn)
