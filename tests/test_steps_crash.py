"""A power loss at every disk call of a step pipeline's run (wal.testing.SimulatedFileSystem,
the engine crash suites' disk): after recovery the run finishes with the same result, a
step whose result was durable is never run again, and no step runs more than once per
engine session (at least once overall, as documented)."""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from typing import Any

from sim_sessions import SimSessions, new_fs

import flowactors as fa
from flowactors.steps import Pipelines, StepContext, StepRetry, steps
from wal.testing import SimulatedFileSystem

RAN: list[str] = []

crashy = steps("crashy")


@crashy.step
async def first(ctx: StepContext, data: dict[str, Any]) -> dict[str, Any]:
    RAN.append("first")
    return {**data, "a": 1}


@crashy.step(retry=StepRetry(max_attempts=2, backoff="constant", base_ms=1_000))
async def second(ctx: StepContext, data: dict[str, Any]) -> dict[str, Any]:
    RAN.append(f"second {ctx.attempt}")
    if ctx.attempt == 1:
        raise RuntimeError("first attempt fails")
    return {**data, "b": data["a"] + 1}


@crashy.step
async def third(ctx: StepContext, data: dict[str, Any]) -> dict[str, Any]:
    RAN.append("third")
    return {**data, "c": data["b"] * 10}


def sessions_of(fs: SimulatedFileSystem, pipelines: list[Any] | None = None) -> Any:
    """Simulated-disk sessions whose bodies get the pipelines' client."""
    sim = SimSessions(fs)
    hosted = pipelines or [crashy]

    class Sessions:
        def run(self, body: Callable[[Pipelines], Awaitable[Any]]) -> BaseException | None:
            return sim.run(lambda e: body(Pipelines(e, hosted, lease_ms=10_000, recheck_ms=5_000)))

    return Sessions()


def crash_everywhere(
    sessions: Callable[[SimulatedFileSystem], Any],
    run: Callable[[Pipelines, list[Any]], Awaitable[None]],
    run_id: str,
    ops: int,
    expected: Any,
    *,
    every: int = 1,
    never_again: Callable[[str], bool] = lambda _step: True,
) -> int:
    """Crash (clean and torn) at every `every`-th of `ops` disk calls, recover, finish:
    the same result each time, nothing run twice in one session, and no saved step for
    which `never_again` holds run again. Returns how many sessions crashed."""
    crashed = 0
    for k in range(1, ops + 1, every):
        for torn in (False, True):
            fs = new_fs(k)
            sess = sessions(fs)
            RAN.clear()
            fs.crash_after(k, torn=torn, rng=random.Random(k))
            sess.run(lambda r: run(r, []))
            if not fs.halted:
                continue
            crashed += 1
            fs.restart()
            before = list(RAN)
            RAN.clear()
            seen: dict[str, Any] = {}

            async def resume(runs: Pipelines, seen: dict[str, Any] = seen) -> None:
                try:
                    seen["done"] = (await runs.describe(run_id)).done
                except fa.FlowNotFound:
                    seen["done"] = ()  # the start itself was not durable
                finished: list[Any] = []
                await run(runs, finished)
                seen["out"] = finished[0]

            assert sess.run(resume) is None, (k, torn)
            assert seen["out"] == expected, (k, torn)
            after = list(RAN)
            for name in seen["done"]:  # saved before the power loss: never run again
                if never_again(name):
                    assert not any(r.startswith(name) for r in after), (k, torn, name, after)
            for ran in (before, after):
                assert len(ran) == len(set(ran)), (k, torn, ran)
    return crashed


def clean_run(
    sessions: Callable[[SimulatedFileSystem], Any],
    drive: Callable[[Pipelines, list[Any]], Awaitable[None]],
) -> tuple[Any, int]:
    """One session with no power loss: its result, and how many disk calls it made (the
    crash points to try)."""
    fs = new_fs(0)
    RAN.clear()
    out: list[Any] = []
    start = fs.statistics().ops
    assert sessions(fs).run(lambda r: drive(r, out)) is None
    return out[0], fs.statistics().ops - start


async def run_to_end(runs: Pipelines, out: list[Any]) -> None:
    await runs.start(crashy, "r", {})
    async with runs.running():
        out.append(await runs.result("r"))


def test_a_power_loss_at_any_disk_call_loses_no_saved_step(report: Any) -> None:
    expected, ops = clean_run(sessions_of, run_to_end)
    assert expected == {"a": 1, "b": 2, "c": 20}
    assert RAN == ["first", "second 1", "second 2", "third"]
    crashed = crash_everywhere(sessions_of, run_to_end, "r", ops, expected)
    assert crashed > 20
    report(f"steps: {ops} disk calls, {crashed} crash points, no saved step run again")


sub = steps("crash_sub")


@sub.step
async def sub_work(ctx: StepContext, data: int) -> int:
    RAN.append(f"sub {ctx.run_id}")
    return data * 3


blocks = steps("crash_blocks")


@blocks.step
async def prep(ctx: StepContext, data: dict[str, Any]) -> dict[str, Any]:
    RAN.append("prep")
    return {**data, "n": 2}


kind = blocks.branch("kind", on=lambda data: data["kind"])


@kind.case("a")
async def route_a(ctx: StepContext, data: dict[str, Any]) -> dict[str, Any]:
    RAN.append("route_a")
    return {**data, "route": "a"}


@kind.otherwise
async def route_other(ctx: StepContext, data: dict[str, Any]) -> dict[str, Any]:
    RAN.append("route_other")
    return {**data, "route": "other"}


fan = blocks.parallel("fan", on_error="complete_all")


@fan.step
async def left(ctx: StepContext, data: dict[str, Any]) -> int:
    RAN.append(f"left {ctx.run_id}")
    return int(data["n"]) + 1


@fan.step
async def right(ctx: StepContext, data: dict[str, Any]) -> int:
    RAN.append(f"right {ctx.run_id}")
    return int(data["n"]) + 2


@blocks.step
async def call_sub(ctx: StepContext, data: dict[str, Any]) -> dict[str, Any]:
    got = await ctx.call_workflow(sub, data["n"], ref="sub")  # (the first run stops here)
    RAN.append("call_sub")
    return {**data, "sub": got.result}


def block_sessions(fs: SimulatedFileSystem) -> Any:
    return sessions_of(fs, [blocks, sub])


async def run_blocks(runs: Pipelines, out: list[Any]) -> None:
    await runs.start(blocks, "b", {"kind": "a"})
    async with runs.running():
        out.append(await runs.result("b"))


def test_a_power_loss_in_a_pipeline_with_a_branch_a_parallel_block_and_a_child(
    report: Any,
) -> None:
    """The same promise through a branch, a parallel block (two child runs) and a
    call_workflow child: every session ends with the same result; nothing runs twice in
    one session; a parent step saved before the power loss never runs again."""
    expected, ops = clean_run(block_sessions, run_blocks)
    assert expected == {
        "kind": "a", "n": 2, "route": "a", "sub": 6,
        "__results__": {"left": ["ok", 3], "right": ["ok", 4]},
    }  # fmt: skip
    crashed = crash_everywhere(
        block_sessions, run_blocks, "b", ops, expected, every=2,  # every other disk call
        never_again=lambda step: step in ("prep", "route_a"),  # the parent's own steps
    )  # fmt: skip
    assert crashed > 20
    report(f"steps with blocks: {ops} disk calls, {crashed} crash points, same result")
