"""The `workflow` scenario: a 3-state SDK workflow run by SDK workers, durably, end to end.

Each flow goes created -> charged -> shipped -> completed: three claims and three fenced
acknowledgements (two transitions, one complete), every one group-committed with
fdatasync (sync="always", default shards: 1) before it is acknowledged. A producer task creates the
flows with `Workflow.create_many` (1000 per call) while two `Worker`s (concurrency 2000,
batch 1000, async handlers) process them, so creation and work overlap as in a live
system. Measured: flows/s from the first create to the last completion, and each flow's
create -> completion latency (the engine's own `created_at_ms` and `updated_at_ms` of the
completed record, read back after the timed section) at p50 / p99.

N = 100k flows (5k with --quick). Ids and specs are built before the timed section and
frozen out of the cyclic collector's sight (`frozen_inputs`), as in `lifecycle`. Reported
beside the raw fdatasync rate of the same run: flows/s / raw fdatasync/s is flows per
fsync-equivalent.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import trio

import flowactors
from flowactors import Client, CreateSpec, Worker, Workflow, transition

from ._engine_util import frozen_inputs, percentile
from ._registry import register
from ._session import Floor, Metric, Session

WORKFLOW_FLOOR = 5_000.0  # flows/s end to end, one process (aim: 10k)
BATCH = 1000
WORKERS = 2
CONCURRENCY = 2000
SAMPLE = 2000  # flows whose latency is read back


@dataclass(frozen=True, slots=True)
class Run:
    flows: int
    seconds: float
    latencies_ms: list[float]  # sorted


def build(engine: flowactors.Engine) -> Workflow:
    order = Client(engine).workflow(type="order", initial_state="created")

    @order.state("created", claim_payload=False)
    async def created(job: flowactors.Context) -> flowactors.Outcome:
        return transition("charged")

    @order.state("charged", claim_payload=False)
    async def charged(job: flowactors.Context) -> flowactors.Outcome:
        return transition("shipped")

    @order.state("shipped", claim_payload=False)
    async def shipped(job: flowactors.Context) -> bytes:
        return b"delivered"

    return order


def inputs(n: int) -> tuple[list[str], list[list[CreateSpec]]]:
    """The flow ids and their create_many batches, built before the timed section."""
    ids = [f"order-{i:09d}" for i in range(n)]
    batches = [
        [CreateSpec(i, payload=b'{"amount": 42}') for i in ids[s : s + BATCH]]
        for s in range(0, n, BATCH)
    ]
    return ids, batches


async def _run(path: Path, ids: list[str], batches: list[list[CreateSpec]]) -> Run:
    n = len(ids)
    async with flowactors.open_engine(path) as engine:
        order = build(engine)
        workers = [
            Worker(order, concurrency=CONCURRENCY, batch_size=BATCH, name=f"bench-{w}")
            for w in range(WORKERS)
        ]
        started = time.perf_counter()
        async with trio.open_nursery() as nursery:
            for worker in workers:
                await nursery.start(worker.run)
            for batch in batches:
                results = await order.create_many(batch)
                if not all(r.ok for r in results):
                    raise RuntimeError(f"create_many failed: {results[0].error!r}")
            while sum(w.statistics().completed for w in workers) < n:
                await trio.sleep(0.001)
            finished = time.perf_counter()
            for worker in workers:
                worker.stop()
        lost = sum(w.statistics().lost_leases for w in workers)
        info = await order.info()
        if info != {"completed": n} or lost:
            raise RuntimeError(f"engine holds {info}, lost leases {lost}; expected {n} completed")
        step = max(1, n // SAMPLE)
        latencies = []
        for flow_id in ids[::step]:
            flow = await order.get(flow_id)
            assert flow is not None
            latencies.append(float(flow.updated_at_ms - flow.created_at_ms))
    return Run(n, finished - started, sorted(latencies))


@register("workflow")
def workflow_scenario(session: Session) -> None:
    """SDK: 3-state workflow with SDK workers, created and run to completion, durable."""
    n = 5_000 if session.quick else 100_000
    session.section(
        f"{n:,} flows created -> charged -> shipped -> completed by {WORKERS} SDK workers "
        f"(concurrency {CONCURRENCY}, batch {BATCH}, sync=always)"
    )
    session.record(Metric("workflow_flows", "flows per run", "flows"), n)

    ids, batches = inputs(n)

    def once() -> dict[str, float]:
        with session.scratch("workflow") as path, frozen_inputs():
            run = trio.run(_run, path, ids, batches)
        return {
            "workflow_flows_per_s": run.flows / run.seconds,
            "workflow_steps_per_s": 3 * run.flows / run.seconds,
            "workflow_latency_p50_ms": max(percentile(run.latencies_ms, 50), 0.001),
            "workflow_latency_p99_ms": max(percentile(run.latencies_ms, 99), 0.001),
        }

    session.measure(
        once,
        [
            Metric(
                "workflow_flows_per_s",
                "end to end: created and run through 3 states",
                "flows/s",
                Floor("workflow", ">=", WORKFLOW_FLOOR, "aim 10k"),
            ),
            Metric("workflow_steps_per_s", "  handler steps acknowledged", "steps/s"),
            Metric("workflow_latency_p50_ms", "  create -> completion, p50", "ms"),
            Metric("workflow_latency_p99_ms", "  create -> completion, p99", "ms"),
        ],
        what=f"{n:,} flows through the SDK",
    )
    session.section("ratios (of medians)")
    session.record(
        Metric(
            "workflow_flows_per_fsync_equivalent",
            "end-to-end flows/s / raw fdatasync/s",
            "flows",
        ),
        session.value("workflow_flows_per_s") / session.value("raw_fdatasync_per_s"),
    )
