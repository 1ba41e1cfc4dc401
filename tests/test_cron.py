"""Cron schedules (flowactors.cron) in Trio's virtual time: the API and its bad input,
firing, the catch-up rule, overlap, auto-disable after failures, code-workflow targets and
DST (pure tick arithmetic)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

import flowactors as fa
from flowactors.code import CodeRunner, Context, Registry, workflow
from flowactors.cron import (
    TYPE,
    CodeTarget,
    FlowTarget,
    InvalidSchedule,
    ScheduleExists,
    ScheduleNotFound,
    Schedules,
    _expr,
)

BASE = 1_704_067_200_000  # 2024-01-01T00:00Z
MIN = 60_000
JOB = FlowTarget("job", b"report")


@asynccontextmanager
async def engine_at(path: str | os.PathLike[str]) -> AsyncIterator[fa.Engine]:
    """An engine whose clock is BASE + Trio's (virtual) clock."""
    async with fa.open_engine(
        path, clock=lambda: BASE + fa.trio_clock_ms(), shards=2, io_threads=False
    ) as engine:
        engine._check()
        yield engine
        engine._check()


async def until(engine: fa.Engine, ms: int) -> None:
    """Sleep (virtual time) until engine time `ms`."""
    await trio.sleep(max(0, ms - engine.now_ms()) / 1000)


async def fired(engine: fa.Engine, type: str = "job") -> list[str]:
    ids: list[str] = []
    for state in ("queued", "running", "completed", "failed"):
        ids += [f.id for f in (await engine.list_flows(type, state)).items]
    return sorted(ids)


async def finish(engine: fa.Engine, how: str, error: bytes = b"boom") -> None:
    for job in await engine.claim_due("job", "w", limit=100):
        if how == "fail":
            await engine.fail(job.id, job.lease_token, job.fencing_token, error=error)
        else:
            await engine.complete(job.id, job.lease_token, job.fencing_token)


async def test_create_get_list_and_fire_every_minute(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    async with engine_at(tmp_path) as engine:
        s = Schedules(engine)
        info = await s.create("every", "* * * * *", JOB, overlap="allow")
        assert info.enabled and info.next_fire_ms == BASE + MIN and info.fired == 0
        await s.create("daily", "0 3 * * *", JOB, tz="Europe/Berlin")
        assert [i.name for i in await s.list()] == ["daily", "every"]
        async with s.running():
            await until(engine, BASE + 3 * MIN + 500)
        assert await fired(engine) == [f"every@{BASE + k * MIN}" for k in (1, 2, 3)]
        flow = await engine.get(f"every@{BASE + MIN}", payload=True)
        assert flow is not None and flow.payload == b"report"
        assert flow.correlation_id == "every"
        info = await s.get("every")
        assert info.fired == 3 and info.last_tick_ms == BASE + 3 * MIN
        assert info.next_fire_ms == BASE + 4 * MIN
        assert (await s.get("daily")).next_fire_ms == BASE + 2 * 3600_000  # 03:00 CET
        policy = await engine.get_policy(TYPE)  # a crashed tick never fails a schedule
        assert (policy.max_reclaims, policy.exhausted_to) == (1000, "scheduled")


async def test_catch_up_fires_once_for_the_whole_gap(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    async with engine_at(tmp_path) as engine:
        s = Schedules(engine)
        await s.create("every", "* * * * *", JOB, overlap="allow")
        await until(engine, BASE + 10 * MIN + 30_000)  # down for ten ticks
        assert await s.run_due() == [f"every@{BASE + 10 * MIN}"]  # the most recent one
        assert await s.run_due() == []
        assert (await s.get("every")).next_fire_ms == BASE + 11 * MIN
        await until(engine, BASE + 11 * MIN)
        assert await s.run_due() == [f"every@{BASE + 11 * MIN}"]
        assert len(await fired(engine)) == 2


async def test_a_tick_beyond_the_engine_delay_limit_re_arms_without_firing(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    async with engine_at(tmp_path) as engine:
        s = Schedules(engine)
        yearly = (await s.create("yearly", "0 0 1 1 *", JOB)).next_fire_ms
        assert yearly == 1_735_689_600_000  # 2025-01-01T00:00Z
        for _ in range(12):  # due every 29 days: nothing fires before the tick
            await until(engine, engine.now_ms() + 29 * 24 * 3600_000)
            assert await s.run_due() == []
            assert (await s.get("yearly")).next_fire_ms == yearly
        await until(engine, yearly)
        assert await s.run_due() == [f"yearly@{yearly}"]


async def test_overlap_skip_and_allow(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    async with engine_at(tmp_path) as engine:
        s = Schedules(engine)
        await s.create("skip", "* * * * *", FlowTarget("job"), overlap="skip")
        await s.create("allow", "* * * * *", FlowTarget("job"), overlap="allow")
        for k in (1, 2):
            await until(engine, BASE + k * MIN)
            await s.run_due()
        # the first run of "skip" is still queued: its second tick fired nothing
        assert await fired(engine) == sorted(
            [f"allow@{BASE + MIN}", f"allow@{BASE + 2 * MIN}", f"skip@{BASE + MIN}"]
        )
        assert (await s.get("skip")).skipped == 1
        assert (await s.get("skip")).live_runs == (f"skip@{BASE + MIN}",)
        await finish(engine, "complete")
        await until(engine, BASE + 3 * MIN)
        await s.run_due()
        assert f"skip@{BASE + 3 * MIN}" in await fired(engine)
        assert (await s.get("skip")).live_runs == (f"skip@{BASE + 3 * MIN}",)


async def test_consecutive_failures_disable_and_success_resets(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    async with engine_at(tmp_path) as engine:
        s = Schedules(engine)
        await s.create("flaky", "* * * * *", JOB, max_failures=2)
        outcomes = ["fail", "complete", "fail", "fail"]
        for k, how in enumerate(outcomes, start=1):
            await until(engine, BASE + k * MIN)
            assert await s.run_due() == [f"flaky@{BASE + k * MIN}"]
            await finish(engine, how, error=f"boom {k}".encode())
        await until(engine, BASE + 5 * MIN)
        assert await s.run_due() == []
        info = await s.get("flaky")
        assert not info.enabled and info.next_fire_ms is None
        assert info.failures == 2
        assert info.last_error == f"flaky@{BASE + 4 * MIN}: boom 4"
        await until(engine, BASE + 7 * MIN)
        assert await s.run_due() == []  # disabled: never claimed
        info = await s.enable("flaky")
        assert info.enabled and info.failures == 0 and info.next_fire_ms == BASE + 8 * MIN


async def test_a_target_that_cannot_start_is_a_failure(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    async with engine_at(tmp_path) as engine:
        s = Schedules(engine)  # no CodeRunner: a CodeTarget cannot start
        await s.create("code", "* * * * *", CodeTarget("nightly", {"n": 1}), max_failures=1)
        await until(engine, BASE + MIN)
        assert await s.run_due() == []
        info = await s.get("code")
        assert not info.enabled and info.failures == 1
        assert info.last_error is not None and "CodeRunner" in info.last_error


REG = Registry()


@workflow(registry=REG)
async def nightly(ctx: Context, arg: dict[str, int]) -> int:
    return arg["n"] + 1


async def test_a_code_workflow_target(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    async with engine_at(tmp_path) as engine:
        runner = CodeRunner(engine, REG)
        s = Schedules(engine, runner=runner)
        await s.create("code", "*/5 * * * *", CodeTarget("nightly", {"n": 41}))
        async with s.running(), runner.running():
            await until(engine, BASE + 5 * MIN + 1000)
            assert await runner.result(f"code@{BASE + 5 * MIN}") == 42
            await until(engine, BASE + 10 * MIN + 1000)
            assert await runner.result(f"code@{BASE + 10 * MIN}") == 42
        assert (await s.get("code")).failures == 0


async def test_enable_disable_update_delete_trigger(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    async with engine_at(tmp_path) as engine:
        s = Schedules(engine)
        await s.create("r", "0 * * * *", JOB, enabled=False)
        assert (await s.get("r")).next_fire_ms is None
        assert (await s.enable("r")).next_fire_ms == BASE + 60 * MIN
        info = await s.update("r", cron="*/10 * * * *", overlap="allow", max_failures=3)
        assert (info.cron, info.overlap, info.max_failures) == ("*/10 * * * *", "allow", 3)
        assert info.next_fire_ms == BASE + 10 * MIN
        await s.disable("r")
        await until(engine, BASE + 20 * MIN)
        assert await s.run_due() == []
        run_id = await s.trigger("r")  # out of band, even while disabled
        assert run_id == f"r@{BASE + 20 * MIN}!" and await fired(engine) == [run_id]
        await s.delete("r")
        with pytest.raises(ScheduleNotFound):
            await s.get("r")
        assert await s.list() == []
        again = await s.create("r", "* * * * *", JOB)  # the name is free again
        assert again.fired == 0 and again.cron == "* * * * *"


async def test_a_change_waits_for_a_tick_and_takes_over_from_a_dead_scheduler(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    async with engine_at(tmp_path) as engine:
        s = Schedules(engine)
        await s.create("r", "* * * * *", JOB)
        await until(engine, BASE + MIN)
        [held] = await engine.claim_due(TYPE, "dead", lease_ms=5_000)  # then it died
        info = await s.disable("r")
        assert not info.enabled and engine.now_ms() >= BASE + MIN + 5_000
        info = await s.enable("r")
        assert info.next_fire_ms == BASE + 2 * MIN
        with pytest.raises(fa.StaleLease):
            await engine.complete("r", held.lease_token, held.fencing_token)


async def test_bad_input_is_refused_and_writes_nothing(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    async with engine_at(tmp_path) as engine:
        s = Schedules(engine)
        await s.create("r", "* * * * *", JOB)
        before = await s.get("r")
        bad: list[dict[str, Any]] = [
            {"cron": "61 * * * *"},
            {"cron": "* * * *"},
            {"cron": "* * * * * *"},
            {"cron": 5},
            {"tz": "Mars/Olympus"},
            {"tz": ""},
            {"overlap": "queue"},
            {"max_failures": 0},
            {"target": "job"},
            {"target": FlowTarget("__reserved")},
            {"target": CodeTarget("wf", {1, 2})},
        ]
        for fields in bad:
            args: dict[str, Any] = {"cron": "* * * * *", "target": JOB} | fields
            cron, target = args.pop("cron"), args.pop("target")
            with pytest.raises(InvalidSchedule) as caught:
                await s.create("new", cron, target, **args)
            assert isinstance(caught.value, fa.InvalidArgument)
            with pytest.raises(InvalidSchedule):
                await s.update(
                    "r",
                    cron=cron if "cron" in fields else None,
                    target=target if "target" in fields else None,
                    **args,
                )
            assert await engine.get("new") is None
            assert await s.get("r") == before
        with pytest.raises(ScheduleExists) as exists:
            await s.create("r", "0 0 * * *", JOB)
        assert isinstance(exists.value, fa.FlowError)
        assert await s.get("r") == before
        for call in (s.get, s.delete, s.trigger, s.enable, s.disable, s.update):
            with pytest.raises(ScheduleNotFound):
                await call("nope")
        await engine.create("plain", "job")  # a flow that is not a schedule
        with pytest.raises(ScheduleNotFound):
            await s.get("plain")
        assert [i.name for i in await s.list()] == ["r"]


def utc(*args: int) -> int:
    return int(datetime(*args, tzinfo=UTC).timestamp() * 1000)  # type: ignore[misc]


def test_dst_gap_and_overlap_follow_cronsim() -> None:
    berlin = "Europe/Berlin"
    # spring forward 2024-03-31: 02:00-03:00 does not exist; 02:30 fires at 03:00 CEST
    assert _expr.next_after("30 2 * * *", berlin, utc(2024, 3, 30, 23)) == utc(2024, 3, 31, 1)
    assert _expr.next_after("30 2 * * *", berlin, utc(2024, 3, 31, 1)) == utc(2024, 4, 1, 0, 30)
    # fall back 2024-10-27: 02:00-03:00 happens twice; a daily 02:30 fires once (the first)
    first = _expr.next_after("30 2 * * *", berlin, utc(2024, 10, 26, 23))
    assert first == utc(2024, 10, 27, 0, 30)
    assert _expr.next_after("30 2 * * *", berlin, first) == utc(2024, 10, 28, 1, 30)
    # ... while an hourly entry fires in both passes of the repeated hour
    hourly = [utc(2024, 10, 26, 23)]
    for _ in range(3):
        hourly.append(_expr.next_after("30 * * * *", berlin, hourly[-1]))
    assert hourly[1:] == [
        utc(2024, 10, 26, 23, 30),
        utc(2024, 10, 27, 0, 30),  # 02:30 CEST
        utc(2024, 10, 27, 1, 30),  # 02:30 CET
    ]
    # the latest tick at or before a time includes that time
    assert _expr.last_at_or_before("*/5 * * * *", "UTC", utc(2024, 1, 1, 0, 10)) == utc(
        2024, 1, 1, 0, 10
    )
