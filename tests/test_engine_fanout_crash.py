"""Cross-shard fanout under power loss: every parent resolves exactly once.

The workload spawns children on every shard (one on the parent's own shard, the others
reached through the durable outbox), then finishes them one by one, settling the couriers
after each step, so the disk calls of a run cover every step of every notification:
the child's terminal frame with its `o` key, the delivery frame on the parent's shard
(its `n` key and counters), and the ack that tombstones the `o` key.

A run is cut by a power loss before disk call k (for every k, torn or not, and at random
points under hypothesis with random child outcomes). The engine then reopens, its couriers
re-send whatever was not acknowledged, the test finishes any child still live, and checks:
the group counted every child exactly once (one `child_*` event per child), the parent
resolved exactly once, and its state is what the children's final outcomes imply.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Callable
from typing import Any

import trio
from engine_helpers import FakeClock
from hypothesis import given, settings
from hypothesis import strategies as st

import flowactors as fa
from wal.testing import SimulatedFileSystem

PATH = "/data/engine"
SHARDS = 3
LEASE_MS = 10_000


def partition_on(shard: int, prefix: str) -> str:
    return next(
        f"{prefix}{i}" for i in range(10_000) if fa.slot_of(f"{prefix}{i}") % SHARDS == shard
    )


HOME = partition_on(0, "home")
CHILDREN = [
    fa.ChildSpec("kid-local", "item", payload=b"l", partition_key=HOME),
    fa.ChildSpec("kid-1", "item", payload=b"a", partition_key=partition_on(1, "p")),
    fa.ChildSpec("kid-2", "item", payload=b"b", partition_key=partition_on(2, "p")),
    fa.ChildSpec("kid-2b", "item", payload=b"c", partition_key=partition_on(2, "q")),
]
IDS = [c.id for c in CHILDREN]
PARTS = {c.id: c.partition_key for c in CHILDREN}


def new_fs(seed: int) -> SimulatedFileSystem:
    fs = SimulatedFileSystem(seed)
    fs.makedirs("/data")
    fs.sync_dir("/")
    return fs


def engine(fs: SimulatedFileSystem, clock: FakeClock) -> Any:
    return fa.open_engine(
        PATH, shards=SHARDS, fs=fs, clock=clock, maintenance_interval_ms=None, io_threads=False
    )


async def workload(e: fa.Engine, outcomes: dict[str, str], wait: str) -> None:
    await e.create("parent", "order", partition_key=HOME)
    [p] = await e.claim_due("order", "w")
    await e.spawn_children(
        "parent",
        p.lease_token,
        p.fencing_token,
        group_id="g",
        children=CHILDREN,
        wait=wait,  # type: ignore[arg-type]
        success_state="done",
        failure_state="broken",
        on_child_failed="ignore",
        partition_key=HOME,
    )
    claimed = {f.id: f for f in await e.claim_due("item", "w", limit=10, lease_ms=LEASE_MS)}
    for cid in IDS:
        f = claimed[cid]
        outcome = outcomes[cid]
        act = e.complete if outcome == "completed" else e.fail
        with contextlib.suppress(fa.FlowTerminal):  # a resolved wait-any group cancelled it
            await act(f.id, f.lease_token, f.fencing_token, partition_key=f.partition_key)
        await e.settle()


async def finish_and_check(e: fa.Engine, clock: FakeClock, wait: str) -> None:
    await e.settle()
    clock.advance(LEASE_MS + 1)  # leases of the crashed run expire
    for f in await e.claim_due("item", "w", limit=10, lease_ms=LEASE_MS):
        with contextlib.suppress(fa.FlowTerminal):  # cancelled by a resolved wait-any group
            await e.complete(f.id, f.lease_token, f.fencing_token, partition_key=f.partition_key)
        await e.settle()
    await e.settle()
    parent = await e.get("parent", partition_key=HOME)
    if parent is None:
        return  # the crash came before the parent's create was durable
    history = await e.history("parent", partition_key=HOME)
    if not any(h.name == "children_spawned" for h in history):
        return  # the spawn never became durable: nothing to resolve
    finals = {cid: (await e.get(cid, partition_key=PARTS[cid])) for cid in IDS}
    assert all(f is not None and f.terminal for f in finals.values()), finals
    # Each child counted exactly once: the outcome events count N children in all, and
    # (below) the parent holds a terminal outcome for every one of them.
    reported = [h.meta for h in history if h.name == "children_reported"]
    counted = sum(meta.get(s, 0) for meta in reported for s in ("completed", "failed", "cancelled"))
    assert counted == len(IDS), reported
    resolved = [h for h in history if "resolved" in h.meta]
    assert len(resolved) == 1, [h.meta for h in history]
    states = {cid: f.state for cid, f in finals.items() if f is not None}
    statuses = {c.id: c.state for c in await e.children("parent", partition_key=HOME)}
    assert statuses == states
    if wait == "all":
        assert parent.state == "done"  # on_child_failed=ignore: all terminal -> success
    else:
        assert parent.state == ("done" if "completed" in states.values() else "broken")
    e._check()


def run(fs: SimulatedFileSystem, clock: FakeClock, body: Any) -> BaseException | None:
    async def main() -> None:
        async with engine(fs, clock) as e:
            await body(e)

    try:
        trio.run(main)
    except AssertionError:
        raise
    except BaseException as exc:  # the power loss, as the engine reports it
        return exc
    return None


def crash_and_recover(k: int, torn: bool, outcomes: dict[str, str], wait: str) -> bool:
    """Run the workload with a power loss before disk call k; True if the loss fired."""
    fs = new_fs(k)
    clock = FakeClock()
    baseline = fs.statistics().ops
    fs.crash_after(k, torn=torn, rng=random.Random(k))
    run(fs, clock, lambda e: workload(e, outcomes, wait))
    if not fs.halted:
        return False
    fs.restart()
    assert fs.statistics().ops >= baseline
    error = run(fs, clock, lambda e: finish_and_check(e, clock, wait))
    assert error is None, error
    return True


def disk_calls(outcomes: dict[str, str], wait: str) -> int:
    fs = new_fs(0)
    start = fs.statistics().ops
    clock = FakeClock()
    assert run(fs, clock, lambda e: workload(e, outcomes, wait)) is None
    assert run(fs, clock, lambda e: finish_and_check(e, clock, wait)) is None
    return fs.statistics().ops - start


MIXED = {"kid-local": "completed", "kid-1": "failed", "kid-2": "completed", "kid-2b": "failed"}


def test_a_power_loss_at_every_disk_call_of_a_cross_shard_fanout(
    report: Callable[[str], None],
) -> None:
    total = disk_calls(MIXED, "all")
    fired = 0
    for k in range(1, total + 1):
        for torn in (False, True):
            fired += crash_and_recover(k, torn, MIXED, "all")
    assert fired >= total  # most points are inside the workload
    report(f"fanout: {total} disk calls, {fired} crash points")


@settings(max_examples=25, deadline=None)
@given(
    outcomes=st.fixed_dictionaries({cid: st.sampled_from(["completed", "failed"]) for cid in IDS}),
    wait=st.sampled_from(["all", "any"]),
    point=st.floats(0, 1),
    torn=st.booleans(),
)
def test_random_outcomes_and_crash_points_resolve_exactly_once(
    outcomes: dict[str, str], wait: str, point: float, torn: bool
) -> None:
    total = disk_calls(outcomes, wait)
    crash_and_recover(max(1, int(point * total)), torn, outcomes, wait)
