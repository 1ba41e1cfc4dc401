"""Code workflows run durably on the engine through CodeRunner, in virtual time: every effect
kind end to end, the client API, and bad input refused with nothing written."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing
from code_helpers import code_runner, registry

import flowactors as fa
from flowactors.code import (
    ActivityError,
    CodeRunner,
    Context,
    NonRetryable,
    Timeout,
    UnknownWorkflow,
    UnstorableValue,
    WorkflowFailed,
    activity_info,
    hours,
    seconds,
    workflow,
)
from flowactors.code._runner import MAX_RECLAIMS

CALLS: list[str] = []


async def double(x: int) -> int:
    CALLS.append(f"double {x}")
    return x * 2


def add_sync(a: int, b: int) -> int:
    CALLS.append(f"add {a} {b}")
    return a + b


FLAKY: dict[str, int] = {}


async def flaky(key: str) -> str:
    FLAKY[key] = FLAKY.get(key, 0) + 1
    if FLAKY[key] < 3:
        raise RuntimeError(f"try {FLAKY[key]}")
    return f"ok after {FLAKY[key]}"


async def broken(kind: str) -> None:
    if kind == "fatal":
        raise NonRetryable("no point retrying")
    raise ValueError("always")


@workflow(check=False)
async def three_steps(ctx: Context, n: int) -> dict[str, Any]:
    a = await ctx.activity(double, n)
    b = await ctx.activity(add_sync, a, 1)
    c = await ctx.activity(double, b)
    return {"a": a, "b": b, "c": c, "t": ctx.now_ms() >= 0}


@workflow(check=False)
async def retrying(ctx: Context, key: str) -> str:
    policy = fa.RetryPolicy(max_retries=5, backoff="exponential", base_ms=1000, jitter_pct=0)
    return str(await ctx.activity(flaky, key, retry=policy))


@workflow(check=False)
async def catching(ctx: Context, kind: str) -> dict[str, Any]:
    try:
        await ctx.activity(broken, kind, retry=fa.RetryPolicy(max_retries=2, base_ms=10))
    except ActivityError as exc:
        return {"type": exc.type, "attempts": exc.attempts}
    return {}


@workflow(check=False)
async def sleeper(ctx: Context, ms: int) -> int:
    t0 = ctx.now_ms()
    await ctx.timer(ms)
    return ctx.now_ms() - t0


@workflow(check=False)
async def approval(ctx: Context, timeout: int | None) -> Any:
    got = await ctx.signal("review", timeout=timeout)
    if isinstance(got, Timeout):
        return "timed out"
    return got


@workflow(check=False)
async def two_signals(ctx: Context, _: None) -> list[Any]:
    return [await ctx.signal("item"), await ctx.signal("item")]


@workflow(check=False)
async def primitives(ctx: Context, _: None) -> list[Any]:
    return [str(ctx.uuid4()), ctx.random(), ctx.side_effect(lambda: "once"), ctx.patched("p1")]


async def keyed() -> str:
    return activity_info().idempotency_key


@workflow(check=False)
async def uses_key(ctx: Context, _: None) -> str:
    return str(await ctx.activity(keyed))


@workflow(check=False)
async def failing(ctx: Context, _: None) -> None:
    raise KeyError("nope")


REG = registry(
    three_steps, retrying, catching, sleeper, approval, two_signals, primitives, uses_key, failing
)


async def test_three_activities_run_once_each_and_complete(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    CALLS.clear()
    async with code_runner(tmp_path, REG) as r:
        result = await r.execute(three_steps, "r1", 5)
        assert result == {"a": 10, "b": 11, "c": 22, "t": True}
        assert CALLS == ["double 5", "add 10 1", "double 11"]
        info = await r.describe("r1")
        assert info.status == "completed" and info.workflow == "three_steps"
        history = await r.history("r1")
        kinds = [(e["type"], e.get("kind")) for e in history]
        assert kinds.count(("scheduled", "activity")) == 3
        assert [e["type"] for e in history].count("completed") == 4  # 3 activities + now


async def test_a_retry_policy_retries_durably_with_backoff(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    async with code_runner(tmp_path, REG) as r:
        t0 = trio.current_time()
        assert await r.execute(retrying, "r2", "k2") == "ok after 3"
        assert trio.current_time() - t0 >= 3.0  # 1 s then 2 s of back-off
        history = await r.history("r2")
        assert [e["retry_at"] - e["at"] for e in history if e["type"] == "attempt_failed"] == [
            1000,
            2000,
        ]


async def test_a_failed_activity_raises_in_the_workflow(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    async with code_runner(tmp_path, REG) as r:
        assert await r.execute(catching, "c1", "retry") == {"type": "ValueError", "attempts": 3}
        assert await r.execute(catching, "c2", "fatal") == {"type": "NonRetryable", "attempts": 1}


async def test_timers_sleep_in_engine_time(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    async with code_runner(tmp_path, REG, poll_ms=600_000) as r:
        assert await r.execute(sleeper, "s1", hours(24), max_idle_ms=600_000) >= hours(24)


async def test_a_signal_sent_before_the_wait_is_kept(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    async with code_runner(tmp_path, REG) as r:
        await r.start(approval, "a1", None)
        await r.signal("a1", "review", {"ok": True}, delivery_id="d1")
        async with r.running():
            assert await r.result("a1") == {"ok": True}


async def test_a_signal_wakes_a_waiting_run_and_timeouts_win_otherwise(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    async with code_runner(tmp_path, REG) as r, r.running():
        await r.start(approval, "a2", hours(1))
        await r.start(approval, "a3", seconds(5))
        await trio.sleep(1)
        await r.signal("a2", "review", "yes")
        assert await r.result("a2") == "yes"
        assert await r.result("a3") == "timed out"
        with pytest.raises(fa.FlowTerminal):
            await r.signal("a3", "review", "late")


async def test_delivery_ids_make_signals_exactly_once_and_ordered(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    async with code_runner(tmp_path, REG) as r:
        await r.start(two_signals, "t1", None)
        await r.signal("t1", "item", 1, delivery_id="x")
        await r.signal("t1", "item", 1, delivery_id="x")  # a retry: no second delivery
        with pytest.raises(fa.IdempotencyConflict):
            await r.signal("t1", "item", 99, delivery_id="x")
        await r.signal("t1", "item", 2, delivery_id="a")
        async with r.running():
            assert await r.result("t1") == [1, 2]


async def test_deterministic_primitives_are_journaled(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    async with code_runner(tmp_path, REG) as r:
        out = await r.execute(primitives, "p1", None)
        assert out[2:] == ["once", True] and 0 <= out[1] < 1
        kinds = [e["kind"] for e in await r.history("p1") if e["type"] == "scheduled"]
        assert kinds == ["uuid4", "random", "side_effect", "patched"]


async def test_the_idempotency_key_is_stable_per_effect(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    async with code_runner(tmp_path, REG) as r:
        assert await r.execute(uses_key, "k1", None) == "k1:0"


async def test_a_raising_workflow_fails_the_run(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    async with code_runner(tmp_path, REG) as r:
        with pytest.raises(WorkflowFailed) as caught:
            await r.execute(failing, "f1", None)
        assert caught.value.type == "KeyError"
        assert (await r.describe("f1")).status == "failed"


async def test_bad_input_is_refused_and_nothing_written(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    async with code_runner(tmp_path, REG) as r:
        with pytest.raises(UnknownWorkflow):
            await r.start("nope", "b1", 1)
        with pytest.raises(UnstorableValue, match=r"input\['x'\]\[1\] is a set"):
            await r.start(three_steps, "b2", {"x": [1, {2}]})
        await r.start(three_steps, "b3", 1)
        await r.start(three_steps, "b3", 1)  # the same start: a no-op
        with pytest.raises(fa.IdempotencyConflict):
            await r.start(three_steps, "b3", 2)
        with pytest.raises(fa.FlowNotFound):
            await r.signal("missing", "x")
        with pytest.raises(fa.InvalidArgument):
            await r.signal("b3", "a:b")
        assert [i.run_id for i in await r.list()] == ["b3"]
        assert await r.engine.get("b1") is None and await r.engine.get("b2") is None


async def test_list_by_workflow_and_status(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    async with code_runner(tmp_path, REG) as r:
        await r.start(approval, "l1", None)
        await r.execute(sleeper, "l2", 10)
        assert [i.run_id for i in await r.list(workflow="approval")] == ["l1"]
        assert [i.run_id for i in await r.list(status="completed")] == ["l2"]
        assert [i.run_id for i in await r.list(status="running")] == ["l1"]
        info = await r.cancel("l1")
        assert info.status == "cancelled"
        assert [i.run_id for i in await r.list(status="cancelled")] == ["l1"]


@workflow(check=False)
async def many_steps(ctx: Context, n: int) -> int:
    total = 0
    for i in range(n):
        total += await ctx.activity(double, i)
        await ctx.timer(10)
    return total


async def test_a_kept_replay_resumes_without_replaying_and_journals_the_same(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    reg = registry(many_steps)
    async with code_runner(tmp_path / "a", reg) as kept:
        assert await kept.execute(many_steps, "m", 20) == 380
        assert kept.counts["replays"] == 1 and kept.counts["steps"] > 20
        journal_kept = await kept.history("m")
    async with code_runner(tmp_path / "b", reg, sticky_runs=0) as fresh:
        assert await fresh.execute(many_steps, "m", 20) == 380
        assert fresh.counts["replays"] == fresh.counts["steps"]
        journal_fresh = await fresh.history("m")
    timeless = ("at", "fire_at")
    strip = [{k: v for k, v in e.items() if k not in timeless} for e in journal_kept]
    assert strip == [{k: v for k, v in e.items() if k not in timeless} for e in journal_fresh]


async def returns_a_set() -> Any:
    return {1, 2}


async def slow(beat: bool) -> str:
    for _ in range(10):
        await trio.sleep(1)
        if beat:
            activity_info().heartbeat()
    return "finished"


@workflow(check=False)
async def limits(ctx: Context, _: None) -> list[str]:
    out = []
    for call in (
        ctx.activity(returns_a_set),
        ctx.activity(slow, True, timeout=seconds(3)),
        ctx.activity(slow, False, heartbeat_timeout=seconds(2)),
        ctx.activity(slow, True, heartbeat_timeout=seconds(2)),
    ):
        try:
            out.append(str(await call))
        except ActivityError as exc:
            out.append(exc.type)
    return out


async def test_unstorable_results_and_time_limits_fail_the_activity(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    async with code_runner(tmp_path, registry(limits)) as r:
        assert await r.execute(limits, "lim", None) == [
            "UnstorableValue",
            "ActivityTimeout",
            "ActivityHeartbeatTimeout",
            "finished",
        ]


async def test_a_run_outlives_the_engine_default_crash_budget(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """A run whose claim is lost more often than the engine's default `max_reclaims` (10,
    counted over the run's whole life: workers killed, deploys) still completes: the runner
    gives its flow types a budget of MAX_RECLAIMS, and keeps one the operator set."""
    async with code_runner(tmp_path, REG, queues={"q": 1}) as r:
        await r.engine.install_policy("code.q", fa.FlowPolicy(max_reclaims=3))
        await r.install_crash_budget()
        assert (await r.engine.get_policy("code")).max_reclaims == MAX_RECLAIMS
        assert (await r.engine.get_policy("code.q")).max_reclaims == 3  # the operator's
        await r.start(three_steps, "long", 5)
        for _ in range(15):  # a worker claims it and dies, again and again
            assert [f.id for f in await r.engine.claim_due("code", "dead", lease_ms=10)] == ["long"]
            await trio.sleep(0.02)
        async with r.running():
            assert await r.result("long") == {"a": 10, "b": 11, "c": 22, "t": True}
        flow = await r.engine.get("long")
        assert flow is not None and flow.reclaims >= 14


async def test_the_crash_budget_must_be_a_valid_max_reclaims(tmp_path: Path) -> None:
    async with code_runner(tmp_path, REG) as r:
        for bad in (-1, True, "many"):
            with pytest.raises(fa.InvalidArgument):
                CodeRunner(r.engine, REG, max_reclaims=bad)
