"""The `codeflow` scenario: a 3-activity code workflow, started and run to completion
durably by a CodeRunner worker; and the replay cost per wake as a journal grows.

Throughput. Each run is one flow: created by `CodeRunner.start_many` (1000 per call) while
one worker (concurrency 2000, batch 1000) runs them. A run costs a create and three claims,
each claim ending with one fenced command that stores that step's journal chunk: the first
activity runs in the first claim (it derives from the input alone), each later one in the
claim after the commit that journaled its predecessor's result, and the third claim
completes the run. Every command is group-committed with fdatasync (sync="always",
default shards: 1). Measured: workflows/s from the first start to the last completion. N = 20k runs
(2k with --quick). Floor: 3,000 workflows/s on the 2-core VM.

Replay cost. A workflow of N activities (N = 10, 100, 1000) is replayed against its full
journal, as a wake on a worker that does not keep the run does: fold the events into
effects and run the coroutine from the top to its end (all effects replayed, none new).
Reported in microseconds per wake, warm (the journal's events already decoded, as the
worker's per-run cache keeps them) and cold (decoding the N one-step chunks first, as
after a restart), and per effect. Beside it, a wake of a run the worker kept (sticky): the
suspended coroutine is resumed with the new outcome, no replay, whatever the journal's
length (measured as the mean step while a 1,000-effect journal is written).
"""

from __future__ import annotations

import importlib.util
import time
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import trio

import flowactors
from flowactors.code import CodeRunner, Context, Registry, Replay, fold, workflow
from flowactors.code._values import decode, encode

from ._engine_util import frozen_inputs, fsyncs
from ._registry import register
from ._session import Floor, Metric, Session
from .scenario_peers import _dbos

CODEFLOW_FLOOR = 3_000.0  # workflows/s end to end, one process
DBOS_FLOOR = 15.0  # x DBOS running the same 3-step workflow on SQLite, same run
DBOS_RUNS, DBOS_RUNS_QUICK = 1_000, 100
BATCH = 1000
CONCURRENCY = 2000
REG = Registry()


async def validate(n: int) -> int:
    return n + 1


async def charge(n: int) -> int:
    return n * 2


async def ship(n: int) -> str:
    return f"shipped {n}"


@workflow(registry=REG)
async def order(ctx: Context, n: int) -> str:
    a = await ctx.activity(validate, n)
    b = await ctx.activity(charge, a)
    return str(await ctx.activity(ship, b))


@workflow(registry=REG)
async def long_run(ctx: Context, n: int) -> int:
    total = 0
    for i in range(n):
        total += int(await ctx.activity(validate, i))
    return total


async def _run(path: Path, names: list[str]) -> tuple[float, int]:
    async with flowactors.open_engine(path, maintenance_interval_ms=None) as engine:
        runner = CodeRunner(engine, REG)
        return await run_all(engine, runner, order, names, runner.running, flows=len(names))


async def run_all(
    engine: flowactors.Engine,
    runner: CodeRunner,
    target: Any,
    names: list[str],
    hosting: Callable[..., AbstractAsyncContextManager[Any]],
    *,
    flows: int,
) -> tuple[float, int]:
    """Start runs `names` of `target` (input: their index) in batches while `hosting`
    (a runner's or pipelines' `running`) works, until every top-level run completed;
    (seconds, fdatasyncs). Checks `flows` completed flows and the last run's result."""
    n = len(names)
    done = [0]

    def on_ack(flow: flowactors.Flow) -> None:
        if flow.state == "completed" and flow.parent_id is None:
            done[0] += 1

    before = fsyncs(engine)
    started = time.perf_counter()
    async with hosting(concurrency=CONCURRENCY, batch_size=BATCH, on_ack=on_ack):
        for s in range(0, n, BATCH):
            batch = [(name, i) for i, name in enumerate(names[s : s + BATCH], s)]
            results = await runner.start_many(target, batch)
            if not all(r.ok for r in results):
                raise RuntimeError(f"start_many failed: {results[0].error!r}")
        while done[0] < n:
            await trio.sleep(0.001)
        seconds = time.perf_counter() - started
    synced = fsyncs(engine) - before
    info = await runner.workflow.info()
    if info != {"completed": flows}:
        raise RuntimeError(f"engine holds {info}; expected {flows} completed")
    last = await runner.result(names[-1])
    if last != f"shipped {2 * n}":
        raise RuntimeError(f"unexpected result {last!r}")
    return seconds, synced


def journal_of(n: int) -> list[dict[str, Any]]:
    """The full journal of `long_run(n)`, each activity answered as it comes."""
    r = Replay(long_run, "bench", n, [], 0, REG.resolve)
    while r.advance().status == "suspended":
        eff, call = r.blocked, r.call
        assert eff is not None and call is not None
        r.resolve(eff, call.args[0] + 1)
    return r.new_events


def replay_cost(n: int, quick: bool) -> tuple[float, float]:
    """(warm, cold) microseconds per wake over a journal of `n` effects."""
    events = journal_of(n)
    chunks = [encode([e]) for e in events]
    reps = max(3, (300 if quick else 3000) // n)

    def wake(evs: list[dict[str, Any]]) -> None:
        r = Replay(long_run, "bench", n, fold(evs), 0, REG.resolve)
        out = r.advance()
        assert out.status == "returned" and not r.new_events

    t0 = time.perf_counter()
    for _ in range(reps):
        wake(events)
    warm = (time.perf_counter() - t0) / reps
    t0 = time.perf_counter()
    for _ in range(reps):
        decoded: list[dict[str, Any]] = []
        for c in chunks:
            decoded.extend(decode(c))
        wake(decoded)
    cold = (time.perf_counter() - t0) / reps
    return warm * 1e6, cold * 1e6


@register("codeflow")
def codeflow_scenario(session: Session) -> None:
    """Code workflows: 3 activities, started and run to completion durably; replay cost."""
    n = 2_000 if session.quick else 20_000
    session.section(
        f"{n:,} runs of a 3-activity code workflow, started and run to completion "
        f"(one worker, concurrency {CONCURRENCY}, sync=always)"
    )
    session.record(Metric("codeflow_runs", "runs per measurement", "runs"), n)
    names = [f"order-{i:08d}" for i in range(n)]

    def once() -> dict[str, float]:
        with session.scratch("codeflow") as path, frozen_inputs():
            seconds, synced = trio.run(_run, path, names)
        return {
            "codeflow_workflows_per_s": n / seconds,
            "codeflow_activities_per_s": 3 * n / seconds,
            "codeflow_workflows_per_fdatasync": n / max(synced, 1),
        }

    session.measure(
        once,
        [
            Metric(
                "codeflow_workflows_per_s",
                "end to end: started, 3 activities, completed",
                "workflows/s",
                Floor("codeflow", ">=", CODEFLOW_FLOOR, "issue 17"),
            ),
            Metric("codeflow_activities_per_s", "  activities journaled", "activities/s"),
            Metric(
                "codeflow_workflows_per_fdatasync",
                "  workflows per fdatasync (all shards)",
                "workflows",
            ),
        ],
        what=f"{n:,} code workflows",
    )
    dbos_rate = _measure_dbos(session)
    session.section("replay cost per wake (fold + replay from the top, no new effect)")
    sizes = (10, 100, 1000)

    def replays() -> dict[str, float]:
        t0 = time.perf_counter()
        journal_of(1000)
        out: dict[str, float] = {"codeflow_kept_wake_us": (time.perf_counter() - t0) / 1000 * 1e6}
        for size in sizes:
            warm, cold = replay_cost(size, session.quick)
            out[f"codeflow_replay_{size}_us"] = warm
            out[f"codeflow_replay_{size}_cold_us"] = cold
            out[f"codeflow_replay_{size}_us_per_effect"] = warm / size
        return out

    metrics = [
        Metric(
            "codeflow_kept_wake_us",
            "a wake of a kept (sticky) run: resume, no replay, at 1,000 effects",
            "us",
        )
    ]
    for size in sizes:
        metrics += [
            Metric(f"codeflow_replay_{size}_us", f"{size:,} effects: a wake, warm", "us"),
            Metric(f"codeflow_replay_{size}_cold_us", "  cold (decode chunks first)", "us"),
            Metric(f"codeflow_replay_{size}_us_per_effect", "  warm, per effect", "us"),
        ]
    session.measure(replays, metrics, what="replay cost")
    try:
        raw = session.value("raw_fdatasync_per_s")
    except KeyError:
        return
    session.section("ratios (of medians)")
    session.record(
        Metric(
            "codeflow_workflows_per_fsync_equivalent",
            "workflows/s / raw fdatasync/s",
            "workflows",
        ),
        session.value("codeflow_workflows_per_s") / raw,
    )
    if dbos_rate is not None:
        session.record(
            Metric(
                "codeflow_vs_dbos",
                "flowactors code workflows/s / DBOS 3-step workflows/s",
                "x",
                Floor("codeflow_15x_dbos", ">=", DBOS_FLOOR, "issue 17"),
            ),
            session.value("codeflow_workflows_per_s") / dbos_rate,
        )


def _measure_dbos(session: Session) -> float | None:
    """The same 3-step workflow on DBOS (SQLite), if DBOS is installed (the `peers`
    extra); its workflows/s, or None."""
    if importlib.util.find_spec("dbos") is None:
        session.section("DBOS: not installed (pip install -e '.[peers]'), no ratio")
        return None
    n = DBOS_RUNS_QUICK if session.quick else DBOS_RUNS
    session.section(f"peer: {n:,} runs of the same 3-step workflow on DBOS (SQLite), queued")
    durability: list[str] = []

    def once() -> dict[str, float]:
        with session.scratch("dbos") as path:
            rate, how = _dbos(path, n, steps=True)
        durability[:] = [how.short]
        return {"codeflow_dbos_workflows_per_s": rate}

    session.measure(
        once,
        [Metric("codeflow_dbos_workflows_per_s", "DBOS: 3 steps, end to end", "workflows/s")],
        what="DBOS 3-step workflows",
    )
    session.progress(f"DBOS durability: {durability[0] if durability else '?'}")
    return session.value("codeflow_dbos_workflows_per_s")
