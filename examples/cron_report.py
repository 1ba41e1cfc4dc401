"""Cron schedules: a report every 15 minutes (Europe/Berlin), fired as plain flows that a
worker completes; then two hours of downtime, after which the missed ticks fire once.

Runs in Trio's virtual time (MockClock), so three simulated hours take about a second;
the engine's clock starts at 2026-12-04 08:00 UTC."""

from __future__ import annotations

import sys
import tempfile
from datetime import UTC, datetime

import trio
import trio.testing

import flowactors
from flowactors.cron import FlowTarget, Schedules

START_MS = 1_796_371_200_000  # 2026-12-04T08:00:00Z


def clock() -> int:
    return START_MS + flowactors.trio_clock_ms()


def at(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%H:%M")


async def work(engine: flowactors.Engine) -> None:
    """The report worker: completes every report it finds."""
    while True:
        for job in await engine.claim_due("report", "report-worker", limit=10):
            await engine.complete(job.id, job.lease_token, job.fencing_token, result=b"ok")
        await trio.sleep(1)


async def main(data_dir: str) -> None:
    async with flowactors.open_engine(data_dir, clock=clock, io_threads=False) as engine:
        schedules = Schedules(engine)
        await schedules.create(
            "sales-report", "*/15 * * * *", FlowTarget("report", b"sales"), tz="Europe/Berlin"
        )
        async with trio.open_nursery() as nursery:
            nursery.start_soon(work, engine)
            async with schedules.running():
                await trio.sleep(3660)  # an hour (and a minute) with the scheduler running
            await trio.sleep(2 * 3600)  # two hours of downtime: nothing fires
            async with schedules.running():
                await trio.sleep(1860)
            nursery.cancel_scope.cancel()
        done = (await engine.list_flows("report", "completed", limit=100)).items
        info = await schedules.get("sales-report")
        print("fired at (UTC):", " ".join(at(int(f.attributes["cron.tick_ms"])) for f in done))
        print(
            f"sales-report: fired {info.fired}, missed {info.missed} during the downtime, "
            f"next at {at(info.next_ms or 0)} UTC"
        )
        assert info.fired == len(done) == 7 and info.missed == 7


if __name__ == "__main__":
    if len(sys.argv) > 1:
        trio.run(main, sys.argv[1], clock=trio.testing.MockClock(autojump_threshold=0))
    else:
        with tempfile.TemporaryDirectory(prefix="flowactors-example-") as d:
            trio.run(main, d, clock=trio.testing.MockClock(autojump_threshold=0))
