"""The `latency` scenario: single-command latency at 10%, 50% and 90% of capacity.

One unit of work is a flow's lifecycle in three durable single commands: `create`, then
`claim_due(limit=1)`, then `complete` (each lifecycle on a flow type of its own, so the
claim finds exactly its flow; see `_engine_util`). Each run gets a fresh engine
(sync="always", default shards: 1).

1. Capacity: a closed loop, 50 and then 200 Trio tasks each looping lifecycles for a fixed
   time (2 s; 0.3 s with --quick). Capacity is the higher of the two medians, in
   lifecycles/s (x3 for commands/s).
2. Open loop at 10%, 50% and 90% of that capacity: a scheduler starts one lifecycle task
   every 1/rate s on a fixed timetable, whatever the engine answers, for a fixed time (3 s;
   0.3 s with --quick), then waits for the stragglers. Every command is timed with
   `time.perf_counter`; a create counts from its scheduled start, so a late start shows
   as latency (Trio's timers have millisecond resolution: above 1000/s, arrivals come in
   small bursts). Reported per level: p50 / p90 / p99 per command kind and the achieved
   rate (lifecycles finished over the time until the last one finished).
"""

from __future__ import annotations

import gc
from pathlib import Path

import trio

import flowactors
from flowactors.engine._tuning import LATENCY_IDLE_GEN0, TUNED_GEN0

from ._engine_util import KINDS, Load, closed_loop, open_loop
from ._registry import register
from ._session import Floor, Metric, Session

CAPACITY_TASKS = (50, 200)
LEVELS = (10, 50, 90)  # % of capacity
PERCENTILES = (50, 90, 99)
COMMAND = {"create": "create", "claim": "claim_due(limit=1)", "complete": "complete"}
# Issue 19's floors for single commands on the 2-core VM (full run).
CAPACITY_FLOOR = 8_000.0  # lifecycles/s, closed loop of 200 tasks
PER_SYNC_FLOOR = 10.0  # commands per fdatasync made, same loop
P99_FLOOR_MS = 10.0  # create and complete, open loop at 50% of capacity


@register("latency")
def latency_scenario(session: Session) -> None:
    """engine: p50/p90/p99 of create, claim_due(1), complete at 10/50/90% of capacity."""
    # A program with a tail-latency target collects the young generation when its loop
    # waits (flowactors/engine/_tuning.py says why and what it costs elsewhere); so does
    # this scenario, when the run is tuned at all (not under `--gc default`).
    tuned = gc.get_threshold()[0] >= TUNED_GEN0
    if tuned:
        flowactors.tune_gc(gc.get_threshold()[0], idle_gen0=LATENCY_IDLE_GEN0)
    try:
        _scenario(session, tuned)
    finally:
        if tuned:
            flowactors.tune_gc(gc.get_threshold()[0], idle_gen0=None)


def _scenario(session: Session, tuned: bool) -> None:
    capacity_s, level_s = (0.3, 0.3) if session.quick else (2.0, 3.0)
    idle = f"; GC: tune_gc(idle_gen0={LATENCY_IDLE_GEN0:_})" if tuned else ""
    session.section(
        f"capacity: closed loop of lifecycles (create, claim, complete), {capacity_s:g} s{idle}"
    )
    rates = [_measure_capacity(session, tasks, capacity_s) for tasks in CAPACITY_TASKS]
    capacity = max(rates)
    session.record(
        Metric(
            "latency_capacity_flows_per_s",
            "capacity: the higher of the two",
            "flows/s",
            Floor("latency_single_8k_lifecycles", ">=", CAPACITY_FLOOR, "full run"),
        ),
        capacity,
    )
    session.record(
        Metric("latency_capacity_commands_per_s", "  in single commands", "commands/s"),
        3 * capacity,
    )
    session.record(
        Metric(
            "latency_capacity_commands_per_fsync_equivalent",
            "  commands/s / raw fdatasync/s",
            "commands",
        ),
        3 * capacity / session.value("raw_fdatasync_per_s"),
    )

    for level in LEVELS:
        _measure_level(session, level, capacity * level / 100, level_s)


def _measure_capacity(session: Session, tasks: int, seconds: float) -> float:
    key = f"latency_closed_loop_{tasks}_tasks_flows_per_s"
    per_sync = f"latency_closed_loop_{tasks}_tasks_commands_per_fdatasync"

    def once() -> dict[str, float]:
        with session.scratch(f"capacity-{tasks}") as path:
            load = trio.run(_closed, path, tasks, seconds)
        return {key: load.flows_per_s, per_sync: 3 * load.flows / max(1, load.fdatasyncs)}

    medians = session.measure(
        once,
        [
            Metric(key, f"{tasks} tasks looping lifecycles", "flows/s"),
            Metric(
                per_sync,
                "  commands per fdatasync made",
                "commands",
                None
                if tasks != max(CAPACITY_TASKS)
                else Floor("latency_10_commands_per_fdatasync", ">=", PER_SYNC_FLOOR),
            ),
        ],
        what=f"closed loop, {tasks} tasks",
    )
    return medians[key]


def _measure_level(session: Session, level: int, rate: float, seconds: float) -> None:
    prefix = f"latency_at_{level}pct_capacity"
    session.section(
        f"open loop at {level}% of capacity: {rate:,.0f} lifecycles/s for {seconds:g} s"
    )
    session.record(Metric(f"{prefix}_offered_flows_per_s", "offered rate", "flows/s"), rate)
    metrics = [Metric(f"{prefix}_achieved_flows_per_s", "achieved rate", "flows/s")]
    for kind in KINDS:
        for q in PERCENTILES:
            floor = None
            if level == 50 and q == 99 and kind in ("create", "complete"):
                floor = Floor(f"latency_50pct_{kind}_p99_10ms", "<=", P99_FLOOR_MS)
            metrics.append(
                Metric(f"{prefix}_{kind}_p{q}_ms", f"  {COMMAND[kind]}, p{q}", "ms", floor)
            )

    def once() -> dict[str, float]:
        with session.scratch(f"level-{level}") as path:
            load = trio.run(_open, path, rate, seconds)
        out = {f"{prefix}_achieved_flows_per_s": load.flows_per_s}
        for kind in KINDS:
            for q in PERCENTILES:
                out[f"{prefix}_{kind}_p{q}_ms"] = load.percentile_ms(kind, q)
        return out

    session.measure(once, metrics, what=f"open loop at {level}% of capacity")


async def _closed(path: Path, tasks: int, seconds: float) -> Load:
    async with flowactors.open_engine(path) as engine:
        return await closed_loop(engine, tasks, seconds, "lane")


async def _open(path: Path, rate: float, seconds: float) -> Load:
    async with flowactors.open_engine(path) as engine:
        return await open_loop(engine, rate, seconds, "lane")
