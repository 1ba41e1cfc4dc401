"""The `create` scenario: how fast durable flows can be created in bulk.

A fresh engine (sync="always", default shards: 1) per run; one Trio task awaits
`create_many(type, [1000 CreateSpec])` in a loop until N flows exist (200k; 20k with
--quick), no payloads. Ids and specs are built before the timed section, the engine is
opened before it. Reported: flows/s, the latency of one `create_many` call (p50 / p99),
flows per fdatasync (from the logs' counters), and, as a second figure, the same N flows
created by 4 tasks at once (their batches can share group commits). Compare with the raw
fdatasync rate of the same run: flows/s / raw fdatasync/s is flows per fsync-equivalent.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import trio

import flowactors
from flowactors import CreateSpec

from ._engine_util import FLOW_TYPE, create_batches, flow_ids, frozen_inputs, fsyncs, percentile
from ._registry import register
from ._session import Floor, Metric, Session

CREATE_FLOOR = 50_000.0  # flows/s (aim: 100k)
CALLERS = 4


@dataclass(frozen=True, slots=True)
class Sizes:
    flows: int


FULL = Sizes(flows=200_000)
QUICK = Sizes(flows=20_000)


@dataclass(frozen=True, slots=True)
class Created:
    flows: int
    seconds: float
    fsyncs: int
    call_seconds: tuple[float, ...]  # one per create_many call

    @property
    def flows_per_s(self) -> float:
        return self.flows / self.seconds

    @property
    def flows_per_fsync(self) -> float:
        return self.flows / self.fsyncs if self.fsyncs else 0.0


@register("create")
def create_scenario(session: Session) -> None:
    """engine: create_many in batches of 1000 (durable), flows/s, one and 4 callers."""
    sizes = QUICK if session.quick else FULL
    batches = create_batches(flow_ids(sizes.flows))

    session.section(f"create_many, 1000 flows per call, {sizes.flows:,} flows (sync=always)")
    session.record(Metric("create_flows", "flows created per run", "flows"), sizes.flows)

    def one_caller() -> dict[str, float]:
        with session.scratch("create") as path, frozen_inputs():
            c = trio.run(_create, path, batches, 1)
        calls = sorted(c.call_seconds)
        return {
            "create_flows_per_s": c.flows_per_s,
            "create_many_call_p50_ms": percentile(calls, 50) * 1000,
            "create_many_call_p99_ms": percentile(calls, 99) * 1000,
            "create_flows_per_fdatasync": c.flows_per_fsync,
        }

    session.measure(
        one_caller,
        [
            Metric(
                "create_flows_per_s",
                "1 task: create_many([1000]) in a loop",
                "flows/s",
                Floor("create", ">=", CREATE_FLOOR, "aim 100k"),
            ),
            Metric("create_many_call_p50_ms", "  one create_many call, p50", "ms"),
            Metric("create_many_call_p99_ms", "  one create_many call, p99", "ms"),
            Metric("create_flows_per_fdatasync", "  flows per fdatasync (all shards)", "flows"),
        ],
        what="create_many from 1 task",
    )

    def callers() -> dict[str, float]:
        with session.scratch("create-callers") as path, frozen_inputs():
            c = trio.run(_create, path, batches, CALLERS)
        return {
            f"create_{CALLERS}_callers_flows_per_s": c.flows_per_s,
            f"create_{CALLERS}_callers_flows_per_fdatasync": c.flows_per_fsync,
        }

    session.measure(
        callers,
        [
            Metric(
                f"create_{CALLERS}_callers_flows_per_s",
                f"{CALLERS} tasks, each create_many([1000]) in a loop",
                "flows/s",
            ),
            Metric(
                f"create_{CALLERS}_callers_flows_per_fdatasync",
                "  flows per fdatasync (all shards)",
                "flows",
            ),
        ],
        what=f"create_many from {CALLERS} tasks",
    )

    session.section("ratios (of medians)")
    raw = session.value("raw_fdatasync_per_s")
    session.record(
        Metric(
            "create_flows_per_fsync_equivalent",
            "1 task's flows/s / raw fdatasync/s",
            "flows",
        ),
        session.value("create_flows_per_s") / raw,
    )
    session.record(
        Metric(
            f"create_{CALLERS}_callers_vs_1_caller",
            f"{CALLERS} tasks' flows/s / 1 task's flows/s",
            "x",
        ),
        session.value(f"create_{CALLERS}_callers_flows_per_s")
        / session.value("create_flows_per_s"),
    )


async def _create(path: Path, batches: Sequence[Sequence[CreateSpec]], callers: int) -> Created:
    """Create every batch, `callers` tasks taking batches in turn; time only the creates."""
    clock = time.perf_counter
    calls: list[float] = []
    async with flowactors.open_engine(path) as engine:
        create_many = engine.create_many

        async def caller(first: int) -> None:
            for i in range(first, len(batches), callers):
                t0 = clock()
                results = await create_many(FLOW_TYPE, batches[i])
                calls.append(clock() - t0)
                if not all(r.ok for r in results):
                    raise RuntimeError(f"create_many failed: {results[0].error!r}")

        before = fsyncs(engine)
        started = clock()
        async with trio.open_nursery() as nursery:
            for k in range(callers):
                nursery.start_soon(caller, k)
        elapsed = clock() - started
        synced = fsyncs(engine) - before
        flows = sum(len(b) for b in batches)
        info = await engine.info(FLOW_TYPE)
        if info != {"queued": flows}:
            raise RuntimeError(f"engine holds {info}, expected {flows:,} queued flows")
    return Created(flows, elapsed, synced, tuple(calls))
