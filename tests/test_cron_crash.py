"""A power loss at every disk call of a cron tick (wal.testing.SimulatedFileSystem, as in
test_engine_crash): after recovery each tick fired exactly once, and a flow fired by the
tick that crashed still counts for overlap (`skip`) and for the schedule's `fired`."""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from typing import Any

import trio
from engine_helpers import FakeClock

import flowactors as fa
from flowactors.cron import FlowTarget, Schedules
from wal.testing import SimulatedFileSystem

PATH = "/data/engine"
BASE = 1_704_067_200_000  # 2024-01-01T00:00Z
MIN = 60_000
LEASE_MS = 5_000


def new_fs(seed: int) -> SimulatedFileSystem:
    fs = SimulatedFileSystem(seed)
    fs.makedirs("/data")
    fs.sync_dir("/")
    return fs


def session(
    fs: SimulatedFileSystem, clock: FakeClock, body: Callable[[Schedules], Awaitable[Any]]
) -> BaseException | None:
    """One engine session; returns (not raises) what a power loss made the engine raise."""

    async def main() -> None:
        async with fa.open_engine(
            PATH, shards=2, sync="always", fs=fs, clock=clock, io_threads=False
        ) as engine:
            await body(Schedules(engine, lease_ms=LEASE_MS))

    try:
        trio.run(main)
    except AssertionError:
        raise
    except Exception as exc:  # includes ExceptionGroup
        return exc
    return None


async def create(s: Schedules) -> None:
    await s.create("a", "* * * * *", FlowTarget("job", b"a"), overlap="allow")
    await s.create("b", "* * * * *", FlowTarget("job", b"b"), overlap="skip")
    assert await s.run_due() == []  # installs the type's policy


async def tick(s: Schedules) -> None:
    await s.run_due()


def prepared(seed: int) -> tuple[SimulatedFileSystem, FakeClock]:
    fs, clock = new_fs(seed), FakeClock(BASE)
    assert session(fs, clock, create) is None
    clock.now = BASE + MIN
    return fs, clock


def check_recovery(fs: SimulatedFileSystem, clock: FakeClock, k: int) -> None:
    seen: dict[str, Any] = {}

    async def recover(s: Schedules) -> None:
        clock.now = BASE + MIN + LEASE_MS + 1  # a lease the crash left behind has expired
        await s.run_due()
        clock.now = BASE + 2 * MIN
        await s.run_due()
        jobs = (await s.engine.list_flows("job", "queued", limit=100)).items
        seen["jobs"] = sorted(f.id for f in jobs)
        seen["a"], seen["b"] = await s.get("a"), await s.get("b")

    assert session(fs, clock, recover) is None, k
    assert seen["jobs"] == [f"a@{BASE + MIN}", f"a@{BASE + 2 * MIN}", f"b@{BASE + MIN}"], k
    assert seen["a"].fired == 2 and seen["a"].next_fire_ms == BASE + 3 * MIN, (k, seen["a"])
    assert (seen["b"].fired, seen["b"].skipped) == (1, 1), (k, seen["b"])
    assert seen["b"].live_runs == (f"b@{BASE + MIN}",), (k, seen["b"])


def check_late_recovery(fs: SimulatedFileSystem, clock: FakeClock, k: int) -> None:
    """Recovery only after the next tick: the crashed tick's flow (if it was fired) is
    adopted, so `b` (overlap skip) still has one live flow and `fired` counts each once."""
    seen: dict[str, Any] = {}

    async def recover(s: Schedules) -> None:
        clock.now = BASE + 2 * MIN + LEASE_MS + 1
        await s.run_due()
        jobs = (await s.engine.list_flows("job", "queued", limit=100)).items
        seen["jobs"] = sorted(f.id for f in jobs)
        seen["a"], seen["b"] = await s.get("a"), await s.get("b")

    assert session(fs, clock, recover) is None, k
    a_jobs = [j for j in seen["jobs"] if j.startswith("a@")]
    b_jobs = [j for j in seen["jobs"] if j.startswith("b@")]
    assert f"a@{BASE + 2 * MIN}" in a_jobs, k
    assert set(a_jobs) <= {f"a@{BASE + MIN}", f"a@{BASE + 2 * MIN}"}, k
    assert len(b_jobs) == 1 and seen["b"].live_runs == tuple(b_jobs), (k, seen["b"])
    assert (seen["a"].fired, seen["b"].fired) == (len(a_jobs), 1), (k, seen)


def test_a_power_loss_at_every_disk_call_of_a_tick_fires_each_tick_once(
    report: Callable[[str], None],
) -> None:
    fs, clock = prepared(0)
    start = fs.statistics().ops
    assert session(fs, clock, tick) is None
    total = fs.statistics().ops - start
    check_recovery(fs, clock, 0)
    crashed = 0
    for k in range(1, total + 1):
        for torn in (False, True):
            fs, clock = prepared(k)
            fs.crash_after(k, torn=torn, rng=random.Random(k))
            session(fs, clock, tick)
            if fs.halted:
                crashed += 1
                fs.restart()
            check_recovery(fs, clock, k)
            fs, clock = prepared(k)
            fs.crash_after(k, torn=torn, rng=random.Random(k))
            session(fs, clock, tick)
            fs.restart()
            check_late_recovery(fs, clock, k)
    assert crashed >= total  # every point is reached, clean and torn
    report(f"cron tick: {total} disk calls, {crashed} power losses, each tick fired once")
