"""The `asl` scenario: a 5-state ASL machine executed durably, many executions at once.

The machine is Pass -> Choice -> Task (an async no-op handler) -> Wait 0 s -> Succeed. Each
execution is one flow: created by `AslRunner.start_many` (500 per call) with its definition
and input, claimed once by the SDK worker behind `AslRunner`, which starts the interpreter,
runs the task, fires the zero wait in memory and completes the flow with the whole history
as one value chunk - so a durable execution costs a create, a claim and a complete, each
group-committed with fdatasync (sync="always", default shards: 1). A producer creates while one
worker (concurrency 2000, batch 1000) executes, as in a live system.

Measured: executions/s from the first create to the last completion. N = 20k executions
(2k with --quick). Reported beside the raw fdatasync rate of the same run: executions/s /
raw fdatasync/s is executions per fsync-equivalent. No floor is stated for this scenario.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import trio

import flowactors
from flowactors.asl import AslRunner

from ._engine_util import fsyncs
from ._registry import register
from ._session import Metric, Session

BATCH = 500
CONCURRENCY = 2000
MACHINE = {
    "StartAt": "Prepare",
    "States": {
        "Prepare": {"Type": "Pass", "Parameters": {"n.$": "$.n", "kind": "bench"}, "Next": "Route"},
        "Route": {
            "Type": "Choice",
            "Choices": [{"Variable": "$.n", "NumericGreaterThanEquals": 0, "Next": "Work"}],
            "Default": "Work",
        },
        "Work": {"Type": "Task", "Resource": "noop", "ResultPath": "$.result", "Next": "Pause"},
        "Pause": {"Type": "Wait", "Seconds": 0, "Next": "Done"},
        "Done": {"Type": "Succeed"},
    },
}


async def noop(data: Any) -> Any:
    return data["n"]


async def _run(path: Path, n: int) -> tuple[float, int]:
    names = [f"exec-{i:08d}" for i in range(n)]
    async with flowactors.open_engine(path, maintenance_interval_ms=None) as engine:
        runner = AslRunner(engine, {"noop": noop})
        worker = runner.worker(concurrency=CONCURRENCY, batch_size=1000, name="bench-asl")
        before = fsyncs(engine)
        started = time.perf_counter()
        async with trio.open_nursery() as nursery:
            await nursery.start(worker.run)
            for s in range(0, n, BATCH):
                results = await runner.start_many(
                    MACHINE, [(name, {"n": i}) for i, name in enumerate(names[s : s + BATCH], s)]
                )
                if not all(r.ok for r in results):
                    raise RuntimeError(f"start_many failed: {results[0].error!r}")
            while worker.statistics().completed < n:
                await trio.sleep(0.001)
            seconds = time.perf_counter() - started
            worker.stop()
        synced = fsyncs(engine) - before
        info = await runner.workflow.info()
        if info != {"completed": n} or worker.statistics().lost_leases:
            raise RuntimeError(f"engine holds {info}; expected {n} completed")
        last = await runner.describe(names[-1])
        if last.output != {"n": n - 1, "kind": "bench", "result": n - 1}:
            raise RuntimeError(f"unexpected output {last.output!r}")
    return seconds, synced


@register("asl")
def asl_scenario(session: Session) -> None:
    """ASL: a 5-state machine (Pass, Choice, Task, Wait 0 s, Succeed) executed durably."""
    n = 2_000 if session.quick else 20_000
    session.section(
        f"{n:,} executions of Pass -> Choice -> Task -> Wait 0 s -> Succeed "
        f"(one worker, concurrency {CONCURRENCY}, sync=always)"
    )
    session.record(Metric("asl_executions", "executions per run", "executions"), n)

    def once() -> dict[str, float]:
        with session.scratch("asl") as path:
            seconds, synced = trio.run(_run, path, n)
        return {
            "asl_executions_per_s": n / seconds,
            "asl_executions_per_fdatasync": n / max(synced, 1),
        }

    session.measure(
        once,
        [
            Metric("asl_executions_per_s", "end to end: started, run, completed", "executions/s"),
            Metric(
                "asl_executions_per_fdatasync",
                "  executions per fdatasync (all shards)",
                "executions",
            ),
        ],
        what=f"{n:,} ASL executions",
    )
    session.section("ratios (of medians)")
    session.record(
        Metric(
            "asl_executions_per_fsync_equivalent",
            "executions/s / raw fdatasync/s",
            "executions",
        ),
        session.value("asl_executions_per_s") / session.value("raw_fdatasync_per_s"),
    )
