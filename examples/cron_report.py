"""Cron schedules (flowactors.cron): a nightly report at 02:30 Berlin time as a plain engine
flow, and a weekly digest as a code workflow, over a week of virtual time (Trio's
MockClock) that crosses the spring DST change; then three days with no scheduler running,
caught up with a single fire. Finishes in about a second."""

from __future__ import annotations

import sys
import tempfile
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import trio
import trio.testing

import flowactors as fa
from flowactors.code import CodeRunner, Context, hours, workflow
from flowactors.cron import CodeTarget, FlowTarget, Schedules

START = int(datetime(2024, 3, 27, tzinfo=UTC).timestamp() * 1000)  # a Wednesday
DAY_S = 24 * 3600
BERLIN = ZoneInfo("Europe/Berlin")


@workflow
async def digest(ctx: Context, arg: dict[str, str]) -> str:
    return f"digest for {arg['team']}"


def local(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, BERLIN).strftime("%Y-%m-%d %H:%M %Z")


async def report_worker(engine: fa.Engine) -> None:
    """Writes the reports: claims each fired `report` flow and completes it."""
    while True:
        for job in await engine.claim_due("report", "reporter", limit=10):
            await engine.complete(job.id, job.lease_token, job.fencing_token, result=b"ok")
        await trio.sleep(3600)


async def main(data_dir: str) -> None:
    async with fa.open_engine(
        data_dir,
        clock=lambda: START + fa.trio_clock_ms(),
        io_threads=False,
        maintenance_interval_ms=None,
    ) as engine:
        # hour-long idle intervals: a week of virtual time passes in few wake-ups
        runner = CodeRunner(engine, lease_ms=hours(2), poll_ms=hours(1), recheck_ms=hours(1))
        schedules = Schedules(engine, runner=runner, poll_ms=hours(1))
        await schedules.create(
            "nightly-report", "30 2 * * *", FlowTarget("report", b"sales"), tz="Europe/Berlin"
        )
        await schedules.create(
            "weekly-digest",
            "0 9 * * mon",
            CodeTarget("digest", {"team": "ops"}),
            tz="Europe/Berlin",
        )
        async with trio.open_nursery() as nursery:
            nursery.start_soon(report_worker, engine)
            async with schedules.running(), runner.running(max_idle_ms=hours(1)):
                await trio.sleep(7 * DAY_S)
            done = (await engine.list_flows("report", "completed")).items
            nightly = await schedules.get("nightly-report")
            print(f"nightly-report: {nightly.fired} fired, {len(done)} completed")
            ticks = sorted(int(f.id.rpartition("@")[2]) for f in done)  # <name>@<tick ms>
            print("  ticks (Berlin):", ", ".join(local(t)[5:16] for t in ticks))
            weekly = await schedules.get("weekly-digest")
            assert weekly.last_run is not None and weekly.last_tick_ms is not None
            result = await runner.result(weekly.last_run)
            print(f"weekly-digest: {result!r} at {local(weekly.last_tick_ms)}")

            await trio.sleep(3 * DAY_S)  # down for three nights: no scheduler running
            caught_up = await schedules.run_due()
            latest = local(int(caught_up[0].rpartition("@")[2]))
            print(
                f"after 3 days down: {len(caught_up)} catch-up fire (latest missed tick {latest})"
            )
            nursery.cancel_scope.cancel()


def go(data_dir: str) -> None:
    trio.run(main, data_dir, clock=trio.testing.MockClock(autojump_threshold=0))


if __name__ == "__main__":
    if len(sys.argv) > 1:
        go(sys.argv[1])
    else:
        with tempfile.TemporaryDirectory(prefix="flowactors-example-") as data_dir:
            go(data_dir)
