"""The `fanout` scenario: one parent, many children, wait all, durable, end to end.

A parent is created and claimed, then `spawn_children` creates N children (10k; 1k with
--quick) in one group with wait="all". One task claims children 1000 at a time and
acknowledges each batch with `complete_many`; the clock stops when the parent, resolved,
has moved to its success state. children/s = N / (spawn + claim + complete + resolution).

Two layouts, each on a fresh engine (sync="always", 4 shards: not the default of 1, as
the cross-shard layout needs several):
- same shard: the parent has a partition key and the children inherit it, so every child
  outcome reaches the parent inside the child's own commit;
- cross shard: no partition keys, so children spread over the 4 shards by id and each
  outcome travels to the parent's shard as a durable message (written with the child's
  terminal frame, delivered, applied once, acked).

The child specs are built before the timed section and frozen out of the cyclic
collector's sight (`frozen_inputs`), as in `lifecycle`.
"""

from __future__ import annotations

import time
from pathlib import Path

import trio

import flowactors
from flowactors import Ack, ChildSpec

from ._engine_util import frozen_inputs, fsyncs
from ._registry import register
from ._session import Floor, Metric, Session

SHARDS = 4

FANOUT_FLOOR = 10_000.0  # children/s end to end, in one process
CLAIM_LIMIT = 1000


@register("fanout")
def fanout_scenario(session: Session) -> None:
    """engine: one parent, N children (wait all), claimed and completed; children/s."""
    n = 1_000 if session.quick else 10_000
    session.record(Metric("fanout_children", "children per run", "children"), n)
    for layout, partition in (("same_shard", "tenant-1"), ("cross_shard", None)):
        session.section(f"{layout.replace('_', ' ')}: 1 parent, {n:,} children, wait all")

        def once(partition: str | None = partition, layout: str = layout) -> dict[str, float]:
            children = child_specs(n)
            with session.scratch(f"fanout-{layout}") as path, frozen_inputs():
                seconds, synced = trio.run(_run, path, children, partition)
            return {
                f"fanout_{layout}_children_per_s": n / seconds,
                f"fanout_{layout}_children_per_fdatasync": n / max(synced, 1),
            }

        session.measure(
            once,
            [
                Metric(
                    f"fanout_{layout}_children_per_s",
                    "end to end: spawned, claimed, completed, parent resolved",
                    "children/s",
                    Floor(f"fanout_{layout}", ">=", FANOUT_FLOOR),
                ),
                Metric(
                    f"fanout_{layout}_children_per_fdatasync",
                    "  children per fdatasync (all shards)",
                    "children",
                ),
            ],
            what=f"{n:,} children ({layout.replace('_', ' ')})",
        )
    session.section("ratios (of medians)")
    raw = session.value("raw_fdatasync_per_s")
    for layout in ("same_shard", "cross_shard"):
        session.record(
            Metric(
                f"fanout_{layout}_children_per_fsync_equivalent",
                f"{layout.replace('_', ' ')} children/s / raw fdatasync/s",
                "children",
            ),
            session.value(f"fanout_{layout}_children_per_s") / raw,
        )


def child_specs(n: int) -> list[ChildSpec]:
    """The children, built before the timed section."""
    return [ChildSpec(f"child-{i:07d}", "item", payload=b"x" * 64) for i in range(n)]


async def _run(path: Path, children: list[ChildSpec], partition: str | None) -> tuple[float, int]:
    n = len(children)
    async with flowactors.open_engine(path, shards=SHARDS, maintenance_interval_ms=None) as engine:
        await engine.create("parent", "batch", partition_key=partition)
        [parent] = await engine.claim_due("batch", "coordinator")
        before = fsyncs(engine)
        started = time.perf_counter()
        await engine.spawn_children(
            "parent",
            parent.lease_token,
            parent.fencing_token,
            group_id="all",
            children=children,
            success_state="completed",
            failure_state="failed",
            partition_key=partition,
        )
        done = 0
        while done < n:
            flows = await engine.claim_due("item", "worker", limit=CLAIM_LIMIT)
            if not flows:
                raise RuntimeError(f"no child claimable after {done:,} of {n:,}")
            acks = [Ack(f.id, f.lease_token, f.fencing_token, None, f.partition_key) for f in flows]
            results = await engine.complete_many(acks)
            if not all(r.ok for r in results):
                raise RuntimeError(f"complete_many failed: {results[0].error!r}")
            done += len(flows)
        await engine.settle()
        seconds = time.perf_counter() - started
        synced = fsyncs(engine) - before
        final = await engine.get("parent", partition_key=partition)
        if final is None or final.state != "completed":
            raise RuntimeError(f"parent did not resolve: {final!r}")
    return seconds, synced
