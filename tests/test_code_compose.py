"""Children, sagas and continue-as-new, end to end on the engine in virtual time."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing
from code_helpers import code_runner, registry

from flowactors.code import (
    ActivityError,
    ChildCancelled,
    ChildFailed,
    ChildIdCollision,
    Context,
    RunCancelled,
    Timeout,
    workflow,
)

LOG: list[str] = []


async def record(what: str) -> str:
    LOG.append(what)
    return what


async def refund(charge: str) -> str:
    LOG.append(f"refund {charge}")
    return f"refunded {charge}"


async def release(item: str) -> str:
    LOG.append(f"release {item}")
    raise RuntimeError("warehouse down")


async def explode(_: str) -> None:
    raise RuntimeError("shipping failed")


@workflow(check=False)
async def leaf(ctx: Context, n: int) -> int:
    if n < 0:
        raise ValueError("negative")
    await ctx.timer(n)
    return n * 10


@workflow(check=False)
async def parent(ctx: Context, ns: list[int]) -> dict[str, Any]:
    handles = [ctx.start_child(leaf, n, id=f"leaf-{i}") for i, n in enumerate(ns)]
    await ctx.activity(record, "parent works meanwhile")
    results: list[Any] = []
    for h in handles:
        try:
            results.append(await ctx.await_child(h))
        except ChildFailed as exc:
            results.append(exc.type)
    direct = await ctx.child(leaf, 1)
    return {"results": results, "direct": direct, "ids": [h.run_id for h in handles]}


@workflow(check=False)
async def waits_forever(ctx: Context, _: None) -> None:
    await ctx.signal("never")


@workflow(check=False)
async def grand(ctx: Context, _: None) -> Any:
    try:
        return await ctx.child(waits_forever, None, id="kid")
    except ChildCancelled:
        return "kid cancelled"


@workflow(check=False)
async def collide(ctx: Context, _: None) -> Any:
    a = ctx.start_child(leaf, 1, id="same")
    b = ctx.start_child(leaf, 2, id="same")
    first = await ctx.await_child(a)
    try:
        await ctx.await_child(b)
    except ChildIdCollision:
        return [first, "collision"]
    return [first]


@workflow(check=False)
async def saga(ctx: Context, fail_ship: bool) -> Any:
    charge = await ctx.activity(record, "charge", compensate=refund)
    await ctx.activity(record, "reserve", compensate=release)
    try:
        await ctx.activity(explode if fail_ship else record, "ship")
    except ActivityError:
        undone = await ctx.compensate_all()
        return {"compensated": [str(u) for u in undone], "charge": charge.result}
    return "shipped"


@workflow(check=False)
async def single_comp(ctx: Context, _: None) -> Any:
    ref = await ctx.activity(record, "c1", compensate=refund)
    first = await ctx.compensate(ref)
    again = await ctx.compensate(ref)  # already compensated: nothing runs
    rest = await ctx.compensate_all()
    return [first, again, rest]


@workflow(check=False)
async def billing(ctx: Context, state: dict[str, int]) -> Any:
    await ctx.activity(record, f"charge cycle {state['n']}")
    await ctx.timer(1000)
    if state["n"] >= 3:
        return {"done": state["n"], "note": await ctx.signal("note", timeout=10)}
    return ctx.continue_as_new({"n": state["n"] + 1})


REG = registry(leaf, parent, waits_forever, grand, collide, saga, single_comp, billing)


async def test_children_start_deterministically_and_report_outcomes(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    async with code_runner(tmp_path, REG) as r:
        out = await r.execute(parent, "p1", [5, -1, 7])
        assert out["results"] == [50, "ValueError", 70]
        assert out["direct"] == 10
        assert out["ids"] == ["p1/leaf-0", "p1/leaf-1", "p1/leaf-2"]
        child = await r.describe("p1/leaf-0")
        assert child.parent_id == "p1" and child.status == "completed"


async def test_a_parent_takes_a_child_result_from_the_runner_that_completed_it(
    tmp_path: Path, autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A child started and then joined is created by the command that stores its parent's
    wait, so it is known to run (no read before the parent waits) and wakes the parent
    itself (no check after); the result it completed with is handed to the parent's
    join (no read after): the child is never read, nor the parent by the child."""
    async with code_runner(tmp_path, REG) as r:
        reads: list[str] = []
        get = r.engine.get

        async def counting(flow_id: str, *args: Any, **kwargs: Any) -> Any:
            reads.append(flow_id)
            return await get(flow_id, *args, **kwargs)

        monkeypatch.setattr(r.engine, "get", counting)
        out = await r.execute(parent, "p9", [])
        assert out["direct"] == 10
        assert [i for i in reads if i.startswith("p9/")] == [], reads
        child = (await r.engine.by_parent("p9")).items[0]
        assert (await r.describe(child.id)).result == 10
        assert r.counts["wakes"] == 0  # the engine woke the parent, in the child's commit


async def test_a_child_id_collision_is_a_typed_error(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    async with code_runner(tmp_path, REG) as r:
        assert await r.execute(collide, "c1", None) == [10, "collision"]


@workflow(check=False)
async def joins_one(ctx: Context, _: None) -> Any:
    try:
        return await ctx.child(leaf, 1, id="kid")
    except ChildIdCollision:
        return "collision"


async def test_a_child_id_taken_by_another_flow_is_a_typed_error(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """The command that would store the parent's wait and create the child is refused
    (the id is taken) and changes nothing; the claim ends, and the next one creates the
    child on its own, which journals the collision."""
    async with code_runner(tmp_path, registry(leaf, joins_one)) as r:
        await r.engine.create("j1/kid", "someone-else")
        assert await r.execute(joins_one, "j1", None) == "collision"
        assert (await r.engine.get("j1/kid")).type == "someone-else"


async def test_cancelling_a_parent_cascades_to_live_descendants(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    async with code_runner(tmp_path, REG) as r, r.running():
        await r.start(grand, "g1", None)
        while (await r.engine.get("g1/kid")) is None or (await r.describe("g1/kid")).status != (
            "running"
        ):
            await trio.sleep(0.1)
        await trio.sleep(1)
        await r.cancel("g1")
        assert (await r.describe("g1")).status == "cancelled"
        assert (await r.describe("g1/kid")).status == "cancelled"
        with pytest.raises(RunCancelled):
            await r.result("g1")


async def test_a_cancelled_child_raises_in_its_parent(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    async with code_runner(tmp_path, REG) as r, r.running():
        await r.start(grand, "g2", None)
        while (await r.engine.get("g2/kid")) is None:
            await trio.sleep(0.1)
        await r.cancel("g2/kid")
        assert await r.result("g2") == "kid cancelled"


async def test_compensate_all_runs_each_compensation_once_newest_first(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    LOG.clear()
    async with code_runner(tmp_path, REG) as r:
        out = await r.execute(saga, "s1", True)
        assert LOG == ["charge", "reserve", "release reserve", "refund charge"]
        assert out["charge"] == "charge"
        assert out["compensated"][1] == "refunded charge"
        assert "warehouse down" in out["compensated"][0]  # a failed one is journaled, run goes on
        LOG.clear()
        assert await r.execute(saga, "s2", False) == "shipped"
        assert LOG == ["charge", "reserve", "ship"]
        history = await r.history("s1")
        comps = [e for e in history if e["type"] == "scheduled" and e["kind"] == "compensate"]
        assert [e["name"] for e in comps] == ["release", "refund"]


async def test_compensate_one_removes_it_from_the_pending_set(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    LOG.clear()
    async with code_runner(tmp_path, REG) as r:
        assert await r.execute(single_comp, "s3", None) == ["refunded c1", None, []]
        assert LOG == ["c1", "refund c1"]


async def test_continue_as_new_chains_runs_and_moves_signals(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    LOG.clear()
    async with code_runner(tmp_path, REG) as r:
        await r.start(billing, "bill", {"n": 1})
        await r.signal("bill", "note", "kept across runs")
        async with r.running():
            assert await r.result("bill") == {"done": 3, "note": "kept across runs"}
        assert LOG == ["charge cycle 1", "charge cycle 2", "charge cycle 3"]
        first = await r.describe("bill")
        assert first.result == {"continued": "bill~2"} and first.continued_as == "bill~2"
        chain = [f.id for f in (await r.engine.by_correlation("bill")).items]
        assert chain == ["bill", "bill~2", "bill~3"]
        assert await r.result("bill", follow=False) == {"continued": "bill~2"}


@workflow(check=False)
async def patient(ctx: Context, wait_ms: int) -> Any:
    slow = ctx.start_child(leaf, 3_600_000, id="slow")
    got = await ctx.await_child(slow, timeout=wait_ms)
    if isinstance(got, Timeout):
        return "gave up"
    return got


@workflow(check=False)
async def first_of(ctx: Context, timeout: int | None) -> Any:
    got = await ctx.signal_any(["approve", "reject"], timeout=timeout)
    if isinstance(got, Timeout):
        return "nobody answered"
    name, value = got
    again = await ctx.signal_any(["approve", "reject"], timeout=0)
    return [name, value, None if isinstance(again, Timeout) else list(again)]


async def test_await_child_with_a_timeout_races_the_child_once(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    reg = registry(leaf, patient)
    async with code_runner(tmp_path, reg) as r, r.running():
        await r.start(patient, "p1", 60_000)  # the child needs an hour
        await r.start(patient, "p2", 7_200_000)
        assert await r.result("p1") == "gave up"
        assert (await r.describe("p1/slow")).status == "running"  # it goes on
        assert await r.result("p2") == 36_000_000  # (leaf returns n * 10)
    with pytest.raises(ValueError, match="timeout"):
        await ctx_call(lambda ctx: ctx.await_child(ctx.start_child(leaf, 1), timeout=-1))


async def ctx_call(fn: Any) -> Any:
    from flowactors.code import Replay

    async def body(ctx: Context, _: Any) -> Any:
        return await fn(ctx)

    wf = workflow(check=False)(body)
    r = Replay(wf, "x", None, [], 0, lambda w: leaf)
    out = r.advance()
    if out.error is not None:
        raise out.error
    return out.value


async def test_signal_any_takes_the_first_to_arrive_kept_or_not(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    reg = registry(first_of)
    async with code_runner(tmp_path, reg) as r:
        await r.start(first_of, "f1", None)
        await r.signal("f1", "reject", "too pricey", delivery_id="d1")
        await r.signal("f1", "approve", "fine", delivery_id="d2")
        await r.start(first_of, "f2", None)
        await r.start(first_of, "f3", 5_000)
        async with r.running():
            assert await r.result("f1") == ["reject", "too pricey", ["approve", "fine"]]
            await trio.sleep(1)
            await r.signal("f2", "approve", {"by": "ann"})
            assert await r.result("f2") == ["approve", {"by": "ann"}, None]
            assert await r.result("f3") == "nobody answered"
    for bad in ([], ["a", "a"], ["a|b"], "approve", ["x:y"]):
        with pytest.raises(ValueError):
            await ctx_call(lambda ctx, b=bad: ctx.signal_any(b))


@workflow(check=False)
async def race(ctx: Context, ns: list[int]) -> Any:
    handles = [ctx.start_child(leaf, n, id=f"r{i}") for i, n in enumerate(ns)]
    index, first = await ctx.await_any_child(handles)
    for i, h in enumerate(handles):
        if i != index:
            await ctx.cancel_child(h, "lost the race")
    return [index, first if not isinstance(first, Exception) else type(first).__name__]


async def test_await_any_child_takes_the_first_to_end_and_cancel_child_stops_the_rest(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    reg = registry(leaf, race)
    async with code_runner(tmp_path, reg) as r, r.running():
        await r.start(race, "a", [3_600_000, 5, 7_200_000])
        await r.start(race, "b", [3_600_000, -1])  # a failure ends first: it is returned
        assert await r.result("a") == [1, 50]
        assert [(await r.describe(f"a/r{i}")).status for i in range(3)] == [
            "cancelled", "completed", "cancelled",
        ]  # fmt: skip
        assert await r.result("b") == [1, "ChildFailed"]
        reasons = (await r.describe("a/r0")).error
        assert reasons is not None and "lost the race" in str(reasons)
    with pytest.raises(ValueError, match="non-empty"):
        await ctx_call(lambda ctx: ctx.await_any_child([]))


class _HoldsEverything:
    """A `held` that claims to hold every run: each claim comes without payload or code."""

    def __contains__(self, _run_id: object) -> bool:
        return True


async def test_a_run_claimed_as_held_but_no_longer_kept_reads_what_it_needs(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """The worker claims the runs its runner keeps without their payload and "code"; a
    run evicted in between (here: every run, none is kept) reads them itself."""
    async with code_runner(tmp_path, REG) as r:
        await r.start(parent, "p1", [5, -1])
        async with r.running(held=_HoldsEverything()):
            out = await r.result("p1")
        assert out["results"] == [50, "ValueError"] and out["direct"] == 10
