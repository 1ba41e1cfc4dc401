"""Cron schedules (flowactors.cron) in Trio's virtual time: every tick fires once, missed
ticks fire once in all, overlap policies, auto-disable after failures, the client API,
bad input changing nothing, time zones and DST, workflow targets."""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing
from code_helpers import code_runner, registry
from engine_helpers import written
from sdk_helpers import trio_engine

import flowactors as fa
from flowactors.code import Context, workflow
from flowactors.cron import (
    FlowTarget,
    ScheduleBusy,
    ScheduleExists,
    ScheduleNotFound,
    Schedules,
    WorkflowTarget,
    next_tick,
)
from wal.testing import SimulatedFileSystem

MIN = 60_000


async def fired(engine: fa.Engine, type: str = "job") -> list[fa.Flow]:
    out: list[fa.Flow] = []
    for state in ("queued", "running", "completed", "failed"):
        out += (await engine.list_flows(type, state, limit=1000)).items
    return sorted(out, key=lambda f: f.created_at_ms)


async def test_every_tick_fires_once_at_its_time(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    async with trio_engine(tmp_path) as engine:
        s = Schedules(engine)
        info = await s.create("every-minute", "* * * * *", FlowTarget("job", b"p"), overlap="allow")
        assert info.next_ms == MIN and info.enabled and info.fired == 0
        async with s.running():
            await trio.sleep(5 * 60 + 30)
        flows = await fired(engine)
        assert [f.id for f in flows] == [f"every-minute@{k * MIN}" for k in range(1, 6)]
        assert [f.created_at_ms for f in flows] == [k * MIN for k in range(1, 6)]
        first = await engine.get(flows[0].id, payload=True)
        assert first is not None and first.payload == b"p"
        assert first.attributes == {"cron.schedule": "every-minute", "cron.tick_ms": "60000"}
        assert first.correlation_id == "every-minute"
        info = await s.get("every-minute")
        assert info.fired == 5 and info.next_ms == 6 * MIN
        assert info.skipped == 0


async def test_missed_ticks_fire_once_then_the_schedule_goes_on_from_now(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    async with trio_engine(tmp_path) as engine:
        s = Schedules(engine)
        await s.create("m", "* * * * *", FlowTarget("job"), overlap="allow")
        await trio.sleep(10 * 60 + 30)  # no scheduler running: ticks 1..10 missed
        async with s.running():
            await trio.sleep(1)
            flows = await fired(engine)
            assert [f.id for f in flows] == [f"m@{MIN}"]
            info = await s.get("m")
            assert info.next_ms == 11 * MIN and info.missed == 9 and info.fired == 1
            await trio.sleep(2 * 60)
        assert [f.id for f in await fired(engine)] == [f"m@{k * MIN}" for k in (1, 11, 12)]


@pytest.mark.parametrize("overlap", ["skip", "allow"])
async def test_overlap_policy(
    tmp_path: Path, autojump_clock: trio.testing.MockClock, overlap: str
) -> None:
    async with trio_engine(tmp_path) as engine:
        s = Schedules(engine)
        await s.create("o", "* * * * *", FlowTarget("job"), overlap=overlap)  # type: ignore[arg-type]
        async with s.running():
            await trio.sleep(3 * 60 + 30)  # ticks 1, 2, 3; nobody works the jobs
            ids = [f.id for f in await fired(engine)]
            if overlap == "skip":
                assert ids == [f"o@{MIN}"]
                assert (await s.get("o")).skipped == 2
                job = (await engine.claim_due("job", "w"))[0]
                await engine.complete(job.id, job.lease_token, job.fencing_token)
                await trio.sleep(60)  # tick 4: the last one ended, so it fires
                assert [f.id for f in await fired(engine)] == [f"o@{MIN}", f"o@{4 * MIN}"]
            else:
                assert ids == [f"o@{k * MIN}" for k in (1, 2, 3)]
                assert (await s.get("o")).skipped == 0


async def test_consecutive_failures_disable_the_schedule_and_a_success_resets_the_count(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    outcomes = iter(["fail", "ok", "fail", "fail", "fail"])

    async def work(engine: fa.Engine) -> None:
        while True:
            for job in await engine.claim_due("job", "w", limit=10):
                if next(outcomes, "fail") == "ok":
                    await engine.complete(job.id, job.lease_token, job.fencing_token)
                else:
                    await engine.fail(job.id, job.lease_token, job.fencing_token, error=b"boom")
            await trio.sleep(1)

    async with trio_engine(tmp_path) as engine:
        s = Schedules(engine)
        await s.create("f", "* * * * *", FlowTarget("job"), max_failures=3)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(work, engine)
            async with s.running():
                await trio.sleep(2 * 60 + 30)  # fired 1 (failed), 2 (ok)
                info = await s.get("f")
                assert info.failures == 1 and info.last_error == "boom" and info.enabled
                await trio.sleep(60)  # tick 3 sees 2 completed: back to 0
                assert (await s.get("f")).failures == 0
                await trio.sleep(4 * 60)  # 3, 4, 5 fail; tick 6 sees the third: disabled
                info = await s.get("f")
                assert not info.enabled and info.failures == 3 and info.next_ms is None
                assert info.last_error == "boom"
                count = len(await fired(engine))
                await trio.sleep(5 * 60)  # disabled: nothing more fires
                assert len(await fired(engine)) == count
                info = await s.enable("f")
                assert info.enabled and info.failures == 0
                await trio.sleep(60)
                assert len(await fired(engine)) == count + 1
            nursery.cancel_scope.cancel()


async def test_a_target_that_cannot_start_counts_as_a_failure(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    async with trio_engine(tmp_path) as engine:
        s = Schedules(engine)
        await s.create("bad", "* * * * *", FlowTarget("job", state="running"), max_failures=2)
        async with s.running():
            await trio.sleep(2 * 60 + 30)
        info = await s.get("bad")
        assert not info.enabled and info.failures == 2
        assert info.last_error is not None and "InvalidArgument" in info.last_error
        assert await fired(engine) == []


async def test_client_api(tmp_path: Path, autojump_clock: trio.testing.MockClock) -> None:
    async with trio_engine(tmp_path) as engine:
        s = Schedules(engine)
        await s.create("a", "0 * * * *", FlowTarget("job"))
        await s.create("b", "*/5 * * * *", FlowTarget("job"), enabled=False)
        listed = await s.list()
        assert [(i.name, i.enabled, i.next_ms) for i in listed] == [
            ("a", True, 60 * MIN),
            ("b", False, None),
        ]
        info = await s.update("a", cron="*/10 * * * *", overlap="allow", max_failures=9)
        assert (info.cron, info.next_ms, info.overlap, info.max_failures) == (
            "*/10 * * * *",
            10 * MIN,
            "allow",
            9,
        )
        assert (await s.get("a")) == info
        info = await s.update("a", target=FlowTarget("other", b"x"))
        assert info.target == FlowTarget("other", b"x")
        assert not (await s.disable("a")).enabled
        assert (await s.enable("b")).next_ms == 5 * MIN
        fired_id = await s.trigger("a")  # out of band, even while disabled
        assert fired_id == "a@manual-0"
        assert [f.id for f in await fired(engine, "other")] == ["a@manual-0"]
        assert (await s.get("a")).fired == 0
        await s.delete("a")
        with pytest.raises(ScheduleNotFound):
            await s.get("a")
        assert [i.name for i in await s.list()] == ["b"]
        with pytest.raises(ScheduleExists):  # names are kept until retention removes them
            await s.create("a", "* * * * *", FlowTarget("job"))


async def test_bad_input_is_refused_and_writes_nothing(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    async with trio_engine(tmp_path) as engine:
        s = Schedules(engine)
        await s.create("ok", "* * * * *", FlowTarget("job"))
        before = written(engine)
        calls: list[tuple[type[fa.FlowError], Any]] = [
            (ScheduleExists, s.create("ok", "* * * * *", FlowTarget("job"))),
            (fa.InvalidArgument, s.create("x", "61 * * * *", FlowTarget("job"))),
            (fa.InvalidArgument, s.create("x", "* * *", FlowTarget("job"))),
            (fa.InvalidArgument, s.create("x", "0 0 30 2 *", FlowTarget("job"))),
            (fa.InvalidArgument, s.create("x", "* * * * *", FlowTarget("job"), tz="Mars/Base")),
            (fa.InvalidArgument, s.create("x", "* * * * *", FlowTarget("job"), overlap="queue")),  # type: ignore[arg-type]
            (fa.InvalidArgument, s.create("x", "* * * * *", FlowTarget("job"), max_failures=0)),
            (fa.InvalidArgument, s.create("x", "* * * * *", "job")),  # type: ignore[arg-type]
            (fa.InvalidArgument, s.create("x@y", "* * * * *", FlowTarget("job"))),
            (fa.InvalidArgument, s.create("", "* * * * *", FlowTarget("job"))),
            (fa.InvalidArgument, s.create("x", "* * * * *", WorkflowTarget("wf"))),  # no runner
            (fa.InvalidArgument, s.create("x", "* * * * *", FlowTarget("job", "s"))),  # type: ignore[arg-type]
            (ScheduleNotFound, s.get("nope")),
            (ScheduleNotFound, s.update("nope", overlap="allow")),
            (ScheduleNotFound, s.delete("nope")),
            (ScheduleNotFound, s.trigger("nope")),
            (ScheduleNotFound, s.enable("nope")),
            (fa.InvalidArgument, s.update("ok", cron="bad")),
            (fa.InvalidArgument, s.update("ok", tz="Nowhere/City")),
        ]
        for error, call in calls:
            with pytest.raises(error):
                await call
        assert written(engine) == before
        assert [i.name for i in await s.list()] == ["ok"]
        assert issubclass(ScheduleBusy, fa.FlowError)


def test_time_zones_and_dst() -> None:
    hour = 60 * MIN
    # 2026-01-01T00:00Z; 03:00 in Berlin (UTC+1 in winter) is 02:00Z
    jan1 = 1_767_225_600_000
    assert next_tick("0 3 * * *", "Europe/Berlin", jan1) == jan1 + 2 * hour
    assert next_tick("0 3 * * *", "UTC", jan1) == jan1 + 3 * hour
    # Spring forward (2026-03-29, 02:00 -> 03:00 in Berlin): 02:30 does not exist that
    # day; the tick comes at 03:00 local (01:00Z)
    mar29 = 1_774_742_400_000  # 2026-03-29T00:00Z
    assert next_tick("30 2 * * *", "Europe/Berlin", mar29) == mar29 + 1 * hour
    # Fall back (2026-10-25, 03:00 -> 02:00): 02:30 happens twice; it fires once, the
    # first time (00:30Z), and next at 02:30 the day after (01:30Z, winter time)
    oct25 = 1_792_886_400_000  # 2026-10-25T00:00Z
    first = next_tick("30 2 * * *", "Europe/Berlin", oct25)
    assert first == oct25 + 30 * MIN
    assert next_tick("30 2 * * *", "Europe/Berlin", first) == oct25 + 24 * hour + 90 * MIN


@workflow(check=False)
async def nightly(ctx: Context, batch: str) -> str:
    return f"done {batch}"


async def test_a_schedule_can_start_code_workflow_runs(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    async with code_runner(tmp_path, registry(nightly)) as runner:
        s = Schedules(runner.engine, runner=runner)
        await s.create("n", "*/2 * * * *", WorkflowTarget("nightly", "b1"))
        async with runner.running(), s.running():
            await trio.sleep(4 * 60 + 30)
            assert await runner.result(f"n@{2 * MIN}") == "done b1"
            assert await runner.result(f"n@{4 * MIN}") == "done b1"
        assert (await s.get("n")).fired == 2


# -- power loss at every disk call of a run of ticks ------------------------------------------

CRASH_PATH = "/data/engine"


class _Sessions:
    """Engine sessions on one simulated disk, virtual time continuing across them."""

    def __init__(self, fs: SimulatedFileSystem) -> None:
        self.fs = fs
        self.base_ms = 0

    def run(self, body: Any) -> BaseException | None:
        end = [self.base_ms]

        async def main() -> None:
            base = self.base_ms

            def clock() -> int:
                return base + fa.trio_clock_ms()

            try:
                async with fa.open_engine(
                    CRASH_PATH,
                    shards=2,
                    fs=self.fs,
                    clock=clock,
                    io_threads=False,
                    maintenance_interval_ms=None,
                ) as engine:
                    await body(engine)
            finally:
                end[0] = clock()

        try:
            trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
        except AssertionError:
            raise
        except BaseException as exc:  # the power loss, as the engine reports it
            return exc
        finally:
            self.base_ms = end[0] + 1
        return None


def _crash_fs(seed: int) -> SimulatedFileSystem:
    fs = SimulatedFileSystem(seed)
    fs.makedirs("/data")
    fs.sync_dir("/")
    return fs


async def _ticks(engine: fa.Engine, until_ms: int, acked: list[str]) -> None:
    s = Schedules(engine, lease_ms=10_000)
    try:
        await s.create("c", "* * * * *", FlowTarget("job"), overlap="allow")
        acked.append("created")
    except ScheduleExists:
        pass
    async with s.running():
        await trio.sleep(max(0, until_ms - engine.now_ms()) / 1000)


def test_a_power_loss_at_any_disk_call_neither_loses_nor_repeats_a_tick(
    report: Callable[[str], None],
) -> None:
    fs = _crash_fs(0)
    start = fs.statistics().ops
    assert _Sessions(fs).run(lambda e: _ticks(e, 3 * MIN + 30_000, [])) is None
    ops = fs.statistics().ops - start
    crashed = 0
    for k in range(1, ops + 1):
        for torn in (False, True):
            fs = _crash_fs(k)
            sessions = _Sessions(fs)
            acked: list[str] = []
            fs.crash_after(k, torn=torn, rng=random.Random(k))
            sessions.run(lambda e, acked=acked: _ticks(e, 3 * MIN + 30_000, acked))
            if not fs.halted:
                continue
            crashed += 1
            fs.restart()
            seen: dict[str, Any] = {}

            async def resume(
                engine: fa.Engine, seen: dict[str, Any] = seen, acked: list[str] = acked
            ) -> None:
                if acked:  # an acknowledged schedule survives the power loss
                    assert await engine.get("c") is not None
                await _ticks(engine, 8 * MIN + 30_000, [])
                seen["flows"] = await fired(engine)
                seen["info"] = await Schedules(engine).get("c")

            assert sessions.run(resume) is None, (k, torn)
            flows, info = seen["flows"], seen["info"]
            ticks = [int(f.id.split("@")[1]) for f in flows]
            assert ticks == sorted(set(ticks)), (k, ticks)
            assert [int(f.attributes["cron.tick_ms"]) for f in flows] == ticks
            # each tick from the schedule's first to its last fired once, or was passed
            # over while the schedule waited for a dead scheduler's lease (counted)
            assert info.fired == len(flows), (k, torn, info.fired, ticks)
            assert info.fired + info.missed == (info.next_ms - ticks[0]) // MIN, (k, torn)
            assert info.failures == 0 and info.last_error is None, (k, torn, info)
            assert info.next_ms == 9 * MIN
    assert crashed > 20
    report(f"cron: {ops} disk calls, {crashed} crash points, every tick fired once")
