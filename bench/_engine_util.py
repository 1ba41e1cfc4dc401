"""Shared pieces of the engine scenarios: ids and batches, a data dir of live flows, and the
single-command loads (closed and open loop) that record per-command latencies.

A single-command load runs whole flow lifecycles, one command at a time: `create`, then
`claim_due(limit=1)`, then `complete`, each timed on its own with `time.perf_counter`.
Every lifecycle in flight has a flow type of its own (a "lane"), so its `claim_due` finds
exactly the flow it just created, and the timings measure one command each (with several
shards, `claim_due(limit=1)` asks first the shard whose due flows rank highest).
"""

from __future__ import annotations

import gc
import math
import os
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import trio
import trio.testing

import flowactors
from flowactors import CreateSpec, Engine

FLOW_TYPE = "bench"
BATCH = 1000
KINDS = ("create", "claim", "complete")
WORKER = "bench-worker"


def flow_ids(n: int, prefix: str = "flow") -> list[str]:
    return [f"{prefix}-{i:09d}" for i in range(n)]


def create_batches(
    ids: Sequence[str], payload: bytes | None = None, size: int = BATCH
) -> list[list[CreateSpec]]:
    return [
        [CreateSpec(flow_id, payload=payload) for flow_id in ids[start : start + size]]
        for start in range(0, len(ids), size)
    ]


@contextmanager
def frozen_inputs() -> Iterator[None]:
    """Move everything alive now (the scenario's pre-built ids and specs) out of the
    cyclic collector's sight while measuring.

    A bulk scenario builds its 200k `CreateSpec` objects before the timed section; held
    for the whole run, they were walked by every full collection the engine's own
    allocations triggered, about half of all collection time in a lifecycle run. A real
    producer does not hold its whole input at once. Only objects that exist before the
    measurement are frozen: everything the engine allocates is collected as usual."""
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def fsyncs(engine: Engine) -> int:
    """fdatasyncs made so far by every shard's log."""
    return sum(int(shard["log"].fsyncs) for shard in engine.statistics()["shards"])


def hint_files(path: Path) -> list[Path]:
    return sorted(path.glob("shard-*/*.hint"))


def delete_hints(path: Path) -> int:
    hints = hint_files(path)
    for hint in hints:
        hint.unlink()
    return len(hints)


def delete_checkpoints(path: Path) -> int:
    """Remove the records saved at the last clean close (the next open reads the log)."""
    saved = sorted(path.glob("shard-*/records.ckpt"))
    for file in saved:
        file.unlink()
    return len(saved)


def dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def size_label(n: int) -> str:
    """1_000_000 -> "1m", 50_000 -> "50k": for keys whose figure depends on the size."""
    if n % 1_000_000 == 0:
        return f"{n // 1_000_000}m"
    if n % 1000 == 0:
        return f"{n // 1000}k"
    return str(n)


# -- a data dir of live flows ---------------------------------------------------------------


def build_live(path: Path, n: int, payload_bytes: int) -> float:
    """Create `n` queued flows (payloads of `payload_bytes`) with sync="never" and
    create_many, then close the engine cleanly (its logs write their hints). Returns the
    build rate in flows/s (closing not included)."""
    payload = os.urandom(payload_bytes)
    ids = flow_ids(n)
    return trio.run(_build, path, ids, payload)


async def _build(path: Path, ids: Sequence[str], payload: bytes) -> float:
    async with flowactors.open_engine(path, sync="never") as engine:
        started = time.perf_counter()
        for start in range(0, len(ids), BATCH):
            specs = [CreateSpec(i, payload=payload) for i in ids[start : start + BATCH]]
            for item in await engine.create_many(FLOW_TYPE, specs):
                if not item.ok:
                    raise RuntimeError(f"create_many failed: {item.error!r}")
        elapsed = time.perf_counter() - started
        await expect_live(engine, len(ids))
    return len(ids) / elapsed


async def expect_live(engine: Engine, n: int) -> None:
    info = await engine.info(FLOW_TYPE)
    if info != {"queued": n}:
        raise RuntimeError(f"engine holds {info}, expected {n:,} queued flows")


# -- percentiles ------------------------------------------------------------------------------


def percentile(ordered: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of an already sorted sequence."""
    if not ordered:
        raise ValueError("no samples")
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


# -- single-command loads ---------------------------------------------------------------------


@dataclass(slots=True)
class Load:
    """What one single-command load did: lifecycles finished, its length, and the latency
    (seconds) of every command, per kind."""

    flows: int = 0
    seconds: float = 0.0
    fdatasyncs: int = 0  # made by the engine's logs during the load
    latencies: dict[str, list[float]] = field(default_factory=lambda: {k: [] for k in KINDS})

    @property
    def flows_per_s(self) -> float:
        return self.flows / self.seconds

    @property
    def commands_per_s(self) -> float:
        return sum(len(v) for v in self.latencies.values()) / self.seconds

    def percentile_ms(self, kind: str, q: float) -> float:
        """Percentile of one kind, or of every command pooled (`kind="all"`)."""
        if kind == "all":
            samples = sorted(s for v in self.latencies.values() for s in v)
        else:
            samples = sorted(self.latencies[kind])
        return percentile(samples, q) * 1000


async def lifecycle(
    engine: Engine, lane: str, flow_id: str, load: Load, intended: float | None = None
) -> None:
    """create -> claim_due(limit=1) -> complete of one flow, each command timed.

    With `intended` (a perf_counter time), the create's latency counts from then: an open
    loop's scheduled start, so a late start is not hidden (no coordinated omission)."""
    clock = time.perf_counter
    lat = load.latencies
    t0 = clock()
    await engine.create(flow_id, lane)
    t1 = clock()
    claimed = await engine.claim_due(lane, WORKER, limit=1)
    t2 = clock()
    if len(claimed) != 1 or claimed[0].id != flow_id:
        raise RuntimeError(f"claim_due on lane {lane} returned {[f.id for f in claimed]}")
    flow = claimed[0]
    await engine.complete(flow_id, flow.lease_token, flow.fencing_token)
    t3 = clock()
    lat["create"].append(t1 - (t0 if intended is None else intended))
    lat["claim"].append(t2 - t1)
    lat["complete"].append(t3 - t2)
    load.flows += 1


async def closed_loop(engine: Engine, tasks: int, seconds: float, tag: str) -> Load:
    """`tasks` Trio tasks, each looping lifecycles on its own lane until the deadline;
    all start together, lifecycles in flight at the deadline are finished and counted."""
    load = Load()
    go = trio.Event()
    deadline = 0.0  # set just before `go`
    clock = time.perf_counter

    async def task(k: int) -> None:
        lane = f"{tag}-{k:05d}"
        await go.wait()
        i = 0
        while clock() < deadline:
            await lifecycle(engine, lane, f"{lane}-{i:09d}", load)
            i += 1

    async with trio.open_nursery() as nursery:
        for k in range(tasks):
            nursery.start_soon(task, k)
        await trio.testing.wait_all_tasks_blocked()
        synced = fsyncs(engine)
        started = clock()
        deadline = started + seconds
        go.set()
    load.seconds = clock() - started
    load.fdatasyncs = fsyncs(engine) - synced
    return load


async def open_loop(engine: Engine, rate: float, seconds: float, tag: str) -> Load:
    """Start a lifecycle every 1/`rate` s on a fixed schedule for `seconds`, whatever the
    engine's replies (open loop); wait for all of them. The achieved rate is the finished
    lifecycles over the time until the last one finished.

    The generator shares the engine's thread, so it must cost little (it cost 75 us of
    the loop's CPU per lifecycle at 3,500/s, more than half of what the engine spends on
    one in the closed loop, with a sleep per arrival and a task spawned for each):
    - it wakes once per timer tick and starts every lifecycle whose time has come;
    - while other tasks are runnable it does not sleep on a timer but yields
      (`checkpoint`), and looks at the clock again when they have run: a timed sleep costs
      the loop a cancel scope, a raised Cancelled and a deadline (21-26 us on the 2-core
      VM), a yield 4 us, and under load the loop turns over more often than the timer
      ticks (1 ms) anyway. Measured at 4,000 lifecycles/s: 160-167 instead of 181-187 us
      of the loop's user CPU per lifecycle, and arrivals start closer to their time;
    - it hands each to an idle task of an elastic pool, as a server hands requests to its
      connections' tasks, and spawns a task only when none is idle. No arrival ever waits
      for a busy task, and each task keeps a flow type of its own (see `lifecycle`).
    Latency still counts from each lifecycle's scheduled time."""
    load = Load()
    count = max(1, round(rate * seconds))
    interval = 1 / rate
    clock = time.perf_counter
    send, receive = trio.open_memory_channel[tuple[int, float]](math.inf)
    idle = 0  # pool tasks waiting for an arrival, or about to take one already sent

    async def pooled(k: int, i: int, intended: float) -> None:
        nonlocal idle
        lane = f"{tag}-{k:05d}"
        while True:
            await lifecycle(engine, lane, f"{tag}-{i:09d}", load, intended)
            idle += 1
            try:
                i, intended = await receive.receive()
            except trio.EndOfChannel:
                return

    async with trio.open_nursery() as nursery:
        started = clock()
        trio_started = trio.current_time()
        spawned = nxt = 0
        now = trio.current_time
        busy = trio.lowlevel.current_statistics
        while nxt < count:
            if now() < trio_started + nxt * interval:
                if busy().tasks_runnable:
                    await trio.lowlevel.checkpoint()
                    continue
                await trio.sleep_until(trio_started + nxt * interval)
            due = math.floor((trio.current_time() - trio_started) / interval) + 1
            for i in range(nxt, min(count, max(due, nxt + 1))):
                if idle:
                    idle -= 1
                    send.send_nowait((i, started + i * interval))
                else:
                    nursery.start_soon(pooled, spawned, i, started + i * interval)
                    spawned += 1
                nxt = i + 1
        send.close()
    load.seconds = clock() - started
    return load
