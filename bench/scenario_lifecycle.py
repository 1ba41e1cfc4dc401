"""The `lifecycle` scenario: flows created, claimed and completed, end to end, durably.

Two measurements, each run on a fresh engine (sync="always", default shards: 1):

- bulk: N flows (200k; 10k with --quick) go through `create_many` (1000 per call), then one
  task loops `claim_due(limit=1000)` -> `complete_many([...])` until every flow is
  completed. End-to-end flows/s is N over both phases; each phase's rate is shown too.
  Ids and specs are built before the timed section, then frozen out of the cyclic
  collector's sight (`frozen_inputs`): the engine is not charged for walking them.
- single commands under concurrent load: 50 Trio tasks, each looping create ->
  `claim_due(limit=1)` -> complete on its own flows (a flow type per task) for a fixed time
  (3 s; 0.5 s with --quick); every command is timed with `time.perf_counter`. Reported:
  p50 / p99 per command kind and over all commands, commands/s and lifecycles/s.

Compare with the raw fdatasync rate of the same run: flows/s / raw fdatasync/s is flows per
fsync-equivalent.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import trio

import flowactors
from flowactors import Ack, CreateSpec

from ._engine_util import (
    FLOW_TYPE,
    KINDS,
    WORKER,
    Load,
    closed_loop,
    create_batches,
    flow_ids,
    frozen_inputs,
    fsyncs,
)
from ._registry import register
from ._session import Floor, Metric, Session

LIFECYCLE_FLOOR = 15_000.0  # flows/s end to end (aim: 30k)
CLAIM_LIMIT = 1000
TASKS = 50


@dataclass(frozen=True, slots=True)
class Sizes:
    flows: int
    seconds: float  # the single-command load's length


FULL = Sizes(flows=200_000, seconds=3.0)
QUICK = Sizes(flows=10_000, seconds=0.5)


@dataclass(frozen=True, slots=True)
class Bulk:
    flows: int
    create_seconds: float
    work_seconds: float  # claim_due + complete_many
    fsyncs: int

    @property
    def seconds(self) -> float:
        return self.create_seconds + self.work_seconds


@register("lifecycle")
def lifecycle_scenario(session: Session) -> None:
    """engine: create_many -> claim_due(1000) -> complete_many end to end; command latency."""
    sizes = QUICK if session.quick else FULL
    _measure_bulk(session, sizes.flows)
    _measure_single_commands(session, sizes.seconds)

    session.section("ratios (of medians)")
    raw = session.value("raw_fdatasync_per_s")
    session.record(
        Metric(
            "lifecycle_flows_per_fsync_equivalent",
            "end-to-end flows/s / raw fdatasync/s",
            "flows",
        ),
        session.value("lifecycle_flows_per_s") / raw,
    )
    session.record(
        Metric(
            "lifecycle_single_command_ops_per_fsync_equivalent",
            "single commands/s / raw fdatasync/s",
            "commands",
        ),
        session.value("lifecycle_single_command_ops_per_s") / raw,
    )


def _measure_bulk(session: Session, n: int) -> None:
    session.section(
        f"bulk: {n:,} flows, create_many(1000) -> claim_due(limit={CLAIM_LIMIT}) "
        "-> complete_many (sync=always)"
    )
    batches = create_batches(flow_ids(n))
    session.record(Metric("lifecycle_flows", "flows per run", "flows"), n)

    def once() -> dict[str, float]:
        with session.scratch("lifecycle") as path, frozen_inputs():
            b = trio.run(_bulk, path, batches)
        return {
            "lifecycle_flows_per_s": b.flows / b.seconds,
            "lifecycle_create_phase_flows_per_s": b.flows / b.create_seconds,
            "lifecycle_claim_complete_phase_flows_per_s": b.flows / b.work_seconds,
            "lifecycle_flows_per_fdatasync": b.flows / b.fsyncs,
        }

    session.measure(
        once,
        [
            Metric(
                "lifecycle_flows_per_s",
                "end to end: created, claimed and completed",
                "flows/s",
                Floor("lifecycle", ">=", LIFECYCLE_FLOOR, "aim 30k"),
            ),
            Metric("lifecycle_create_phase_flows_per_s", "  create phase", "flows/s"),
            Metric(
                "lifecycle_claim_complete_phase_flows_per_s",
                "  claim_due + complete_many phase",
                "flows/s",
            ),
            Metric("lifecycle_flows_per_fdatasync", "  flows per fdatasync (all shards)", "flows"),
        ],
        what=f"{n:,} flows end to end",
    )


async def _bulk(
    path: Path,
    batches: Sequence[Sequence[CreateSpec]],
    alongside: Callable[[flowactors.Engine, trio.Nursery], Awaitable[None]] | None = None,
) -> Bulk:
    """The bulk run; `alongside(engine, nursery)` may start tasks that run meanwhile
    (the dashboard scenario's poller), cancelled when the run ends."""
    clock = time.perf_counter
    n = sum(len(b) for b in batches)
    async with flowactors.open_engine(path) as engine, trio.open_nursery() as nursery:
        if alongside is not None:
            await alongside(engine, nursery)
        before = fsyncs(engine)
        started = clock()
        for batch in batches:
            created = await engine.create_many(FLOW_TYPE, batch)
            if not all(r.ok for r in created):
                raise RuntimeError(f"create_many failed: {created[0].error!r}")
        created_at = clock()
        done = 0
        while done < n:
            flows = await engine.claim_due(FLOW_TYPE, WORKER, limit=CLAIM_LIMIT)
            if not flows:
                raise RuntimeError(f"claim_due found nothing after {done:,} of {n:,} flows")
            acks = [Ack(f.id, f.lease_token, f.fencing_token) for f in flows]
            completed = await engine.complete_many(acks)
            if not all(r.ok for r in completed):
                raise RuntimeError(f"complete_many failed: {completed[0].error!r}")
            done += len(flows)
        finished = clock()
        synced = fsyncs(engine) - before
        info = await engine.info(FLOW_TYPE)
        if info != {"completed": n}:
            raise RuntimeError(f"engine holds {info}, expected {n:,} completed flows")
        nursery.cancel_scope.cancel()
    return Bulk(n, created_at - started, finished - created_at, synced)


def _measure_single_commands(session: Session, seconds: float) -> None:
    session.section(
        f"single commands: {TASKS} tasks, each create -> claim_due(limit=1) -> complete, "
        f"{seconds:g} s"
    )
    prefix = "lifecycle_single_command"
    metrics = [
        Metric(f"{prefix}_ops_per_s", "commands/s (all kinds)", "commands/s"),
        Metric(f"{prefix}_flows_per_s", "  lifecycles/s", "flows/s"),
        Metric(f"{prefix}_p50_ms", "  any command, p50", "ms"),
        Metric(f"{prefix}_p99_ms", "  any command, p99", "ms"),
    ]
    for kind in KINDS:
        for q in (50, 99):
            metrics.append(Metric(f"{prefix}_{kind}_p{q}_ms", f"  {_command(kind)}, p{q}", "ms"))

    def once() -> dict[str, float]:
        with session.scratch("single") as path:
            load = trio.run(_single, path, seconds)
        out = {
            f"{prefix}_ops_per_s": load.commands_per_s,
            f"{prefix}_flows_per_s": load.flows_per_s,
            f"{prefix}_p50_ms": load.percentile_ms("all", 50),
            f"{prefix}_p99_ms": load.percentile_ms("all", 99),
        }
        for kind in KINDS:
            for q in (50, 99):
                out[f"{prefix}_{kind}_p{q}_ms"] = load.percentile_ms(kind, q)
        return out

    session.measure(once, metrics, what=f"{TASKS} tasks of single commands")


async def _single(path: Path, seconds: float) -> Load:
    async with flowactors.open_engine(path) as engine:
        return await closed_loop(engine, TASKS, seconds, "lane")


def _command(kind: str) -> str:
    return {"create": "create", "claim": "claim_due(limit=1)", "complete": "complete"}[kind]
