"""The `wal` scenario: what the log gets out of the disk, and what an open costs.

Measured in one run, beside the runner's raw fdatasync and sequential-write baselines:

- durable appends (sync="always", 200-byte values): 1, 10, 100 and 1000 concurrent Trio
  tasks each looping `await log.put(key, value)` for a fixed time; 1 task is the single
  writer. Group commit should turn many writers into few fdatasyncs.
- the batch API: one task looping `await log.write([...1000 records...])`, also durable.
- group-commit bandwidth: 64 concurrent tasks, each looping `await log.write([...])` of 16
  records of 4 KiB, durable: how close group commit gets to the disk's sequential-write
  limit when the bytes, not the per-record interpreter cost, dominate. (With 200-byte
  records the ratio above measures Python's cost per record; it is reported too.)
- open time of a log of N keys (1M; 50k with --quick), built with sync="never" and the batch
  API and closed (which writes hints): reopened with its hints, then with every `*.hint`
  deleted (the open then scans the segments and rewrites the hints). The page cache is warm:
  this is the CPU cost of recovery, not the disk's read speed.
- keydir bytes per key beyond the key itself: the dict plus its packed location ints.

Keys and batches are built before the timed sections; each timed write run gets a fresh log.
"""

from __future__ import annotations

import gc
import random
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import trio
import trio.testing

import wal

from ._registry import register
from ._session import Floor, Metric, Session

VALUE_BYTES = 200
BATCH_RECORDS = 1000
WRITER_COUNTS = (1, 10, 100, 1000)

# The project's stated floors.
GROUP_COMMIT_FLOOR = 50_000.0  # records/s with 1000 writers
GROUP_COMMIT_GAIN_FLOOR = 10.0  # 1000 writers vs single writer
BATCH_API_FLOOR = 300_000.0  # records/s
BANDWIDTH_FLOOR = 0.25  # group-commit MB/s over the raw sequential-write MB/s
BANDWIDTH_VALUE_BYTES = 4096
BANDWIDTH_WRITERS = 64
BANDWIDTH_BATCH = 16
OPEN_SECONDS_PER_MILLION_KEYS = 2.0  # with hints
KEYDIR_BYTES_FLOOR = 150.0  # per key, beyond the key (aim: 100)


@dataclass(frozen=True, slots=True)
class Sizes:
    seconds: float  # length of one timed write run
    key_pool: int  # distinct keys the write runs cycle through
    open_keys: int


FULL = Sizes(seconds=1.5, key_pool=200_000, open_keys=1_000_000)
QUICK = Sizes(seconds=0.25, key_pool=20_000, open_keys=50_000)


@dataclass(frozen=True, slots=True)
class Written:
    """What one timed write run did, from the log's statistics."""

    records: int
    bytes: int
    commits: int
    frames: int
    rotations: int  # segments sealed: each rotation writes the closed segment's hint
    seconds: float

    @classmethod
    def between(
        cls, before: wal.LogStatistics, after: wal.LogStatistics, seconds: float
    ) -> Written:
        return cls(
            after.records_written - before.records_written,
            after.bytes_written - before.bytes_written,
            after.commits - before.commits,
            after.frames_written - before.frames_written,
            after.segments - before.segments,
            seconds,
        )

    @property
    def records_per_s(self) -> float:
        return self.records / self.seconds

    @property
    def mb_per_s(self) -> float:
        return self.bytes / self.seconds / 1e6

    @property
    def frames_per_commit(self) -> float:
        return self.frames / self.commits if self.commits else 0.0


def key_of(i: int) -> bytes:
    return b"bench/%012d" % i


@register("wal")
def wal_scenario(session: Session) -> None:
    """wal log: durable appends, group commit, batch API, open time, keydir bytes per key."""
    sizes = QUICK if session.quick else FULL
    value = random.Random(1).randbytes(VALUE_BYTES)
    keys = [key_of(i) for i in range(sizes.key_pool)]

    session.section("durable appends (sync=always, 200-byte values)")
    rates = {n: _measure_writers(session, n, keys, value, sizes.seconds) for n in WRITER_COUNTS}

    batch_mb = _measure_batch_api(session, keys, value, sizes.seconds)
    bandwidth_mb = _measure_bandwidth(session, keys, sizes.seconds)
    del keys

    _measure_open(session, sizes.open_keys, value)

    session.section("ratios (of medians)")
    raw_syncs = session.value("raw_fdatasync_per_s")
    raw_mb = session.value("raw_seq_write_mb_per_s")
    session.record(
        Metric(
            "wal_group_commit_1000_writers_vs_single_writer",
            "group commit 1000 writers / single writer",
            "x",
            Floor("wal_group_commit_1000_writers_vs_single_writer", ">=", GROUP_COMMIT_GAIN_FLOOR),
        ),
        rates[1000] / rates[1],
    )
    session.record(
        Metric(
            "wal_group_commit_1000_writers_records_per_fsync_equivalent",
            "1000 writers' records/s / raw fdatasync/s",
            "records",
        ),
        rates[1000] / raw_syncs,
    )
    session.record(
        Metric(
            "wal_single_writer_vs_raw_fdatasync",
            "single writer's appends/s / raw fdatasync/s",
            "fraction",
        ),
        rates[1] / raw_syncs,
    )
    session.record(
        Metric(
            "wal_group_commit_1000_writers_bandwidth_vs_raw_seq_write",
            "1000 writers' MB/s / raw sequential MB/s",
            "fraction",
        ),
        session.value("wal_group_commit_1000_writers_mb_per_s") / raw_mb,
    )
    session.record(
        Metric(
            "wal_batch_api_bandwidth_vs_raw_seq_write",
            "batch API's MB/s / raw sequential MB/s",
            "fraction",
        ),
        batch_mb / raw_mb,
    )
    session.record(
        Metric(
            "wal_group_commit_bandwidth_vs_raw_seq_write",
            f"{BANDWIDTH_WRITERS} writers x {BANDWIDTH_BATCH} x 4 KiB records: MB/s / raw "
            "sequential MB/s",
            "fraction",
            Floor("wal_group_commit_bandwidth", ">=", BANDWIDTH_FLOOR),
        ),
        bandwidth_mb / raw_mb,
    )
    session.record(
        Metric("wal_open_hints_speedup", "open without hints / open with hints", "x"),
        session.value("wal_open_without_hints_s") / session.value("wal_open_with_hints_s"),
    )


def _in_scratch(session: Session, name: str, fn: Callable[[Path], Written]) -> Written:
    with session.scratch(name) as path:
        return fn(path)


# -- durable appends and group commit -----------------------------------------------------


def _measure_writers(
    session: Session, n: int, keys: Sequence[bytes], value: bytes, seconds: float
) -> float:
    name = "wal_single_writer" if n == 1 else f"wal_group_commit_{n}_writers"
    label = "1 writer (single writer)" if n == 1 else f"{n} writers"
    floor = Floor(f"{name}", ">=", GROUP_COMMIT_FLOOR) if n == 1000 else None
    metrics = [
        Metric(f"{name}_records_per_s", f"{label} looping put()", "records/s", floor),
        Metric(f"{name}_records_per_commit", "  records per commit (fdatasync)", "records"),
    ]
    if n == 1000:
        metrics.append(Metric(f"{name}_mb_per_s", "  their write bandwidth", "MB/s"))

    def once() -> dict[str, float]:
        w = _in_scratch(session, f"writers-{n}", lambda p: _writers_run(p, n, keys, value, seconds))
        out = {metrics[0].key: w.records_per_s, metrics[1].key: w.frames_per_commit}
        if n == 1000:
            out[metrics[2].key] = w.mb_per_s
        return out

    label_what = f"put() from {n} concurrent task{'s' if n > 1 else ''}"
    return session.measure(once, metrics, what=label_what)[metrics[0].key]


def _writers_run(
    path: Path, n: int, keys: Sequence[bytes], value: bytes, seconds: float
) -> Written:
    return trio.run(_writers, path, n, keys, value, seconds)


async def _writers(
    path: Path, n: int, keys: Sequence[bytes], value: bytes, seconds: float
) -> Written:
    """`n` tasks, each looping `await log.put(...)` until the deadline; all start together."""
    async with wal.open_log(path, sync="always") as log:
        put = log.put
        count = len(keys)

        def writer(first: int) -> Callable[[int], Awaitable[None]]:
            return lambda i: put(keys[(first + i * n) % count], value)

        return await _closed_loop(log, [writer(k) for k in range(n)], seconds)


async def _closed_loop(
    log: wal.Log, writers: Sequence[Callable[[int], Awaitable[None]]], seconds: float
) -> Written:
    """Run every `writer(i)` for i = 0, 1, ... in its own task, all from one start, until
    `seconds` have passed; what the log wrote meanwhile."""
    go = trio.Event()
    deadline = 0.0  # set just before `go`; the writers read it only after `go`
    clock = time.perf_counter

    async def loop(write: Callable[[int], Awaitable[None]]) -> None:
        await go.wait()
        i = 0
        while clock() < deadline:
            await write(i)
            i += 1

    async with trio.open_nursery() as nursery:
        for write in writers:
            nursery.start_soon(loop, write)
        await trio.testing.wait_all_tasks_blocked()
        before = log.statistics()
        started = clock()
        deadline = started + seconds
        go.set()
    elapsed = clock() - started
    return Written.between(before, log.statistics(), elapsed)


# -- the batch API -------------------------------------------------------------------------


def _measure_batch_api(
    session: Session, keys: Sequence[bytes], value: bytes, seconds: float
) -> float:
    """Records/s of `write([...1000 records...])` in a loop; returns the median MB/s."""
    session.section("batch API (sync=always, 1000 records per write)")
    batches = [
        [(k, value) for k in keys[i : i + BATCH_RECORDS]]
        for i in range(0, len(keys) - BATCH_RECORDS + 1, BATCH_RECORDS)
    ]

    def once() -> dict[str, float]:
        w = _in_scratch(session, "batch", lambda p: _batch_run(p, batches, seconds))
        return {
            "wal_batch_api_records_per_s": w.records_per_s,
            "wal_batch_api_mb_per_s": w.mb_per_s,
            "wal_batch_api_rotations": w.rotations,
        }

    medians = session.measure(
        once,
        [
            Metric(
                "wal_batch_api_records_per_s",
                "write([1000 records]) in a loop",
                "records/s",
                Floor("wal_batch_api", ">=", BATCH_API_FLOOR),
            ),
            Metric("wal_batch_api_mb_per_s", "  its write bandwidth", "MB/s"),
            Metric(
                "wal_batch_api_rotations",
                "  segment rotations in the run (each seals a hint)",
                "rotations",
            ),
        ],
        what="batch API",
    )
    return medians["wal_batch_api_mb_per_s"]


def _measure_bandwidth(session: Session, keys: Sequence[bytes], seconds: float) -> float:
    """MB/s of many writers writing 4 KiB records in small batches; returns the median."""
    session.section(
        f"group-commit bandwidth (sync=always, {BANDWIDTH_WRITERS} writers, "
        f"write([{BANDWIDTH_BATCH} x 4 KiB]) each)"
    )
    value = random.Random(2).randbytes(BANDWIDTH_VALUE_BYTES)
    per_writer = [
        [
            [(keys[(w * 997 + b * BANDWIDTH_BATCH + j) % len(keys)], value)
             for j in range(BANDWIDTH_BATCH)]
            for b in range(8)
        ]
        for w in range(BANDWIDTH_WRITERS)
    ]  # fmt: skip

    def once() -> dict[str, float]:
        w = _in_scratch(
            session, "bandwidth", lambda p: trio.run(_bandwidth_writes, p, per_writer, seconds)
        )
        return {
            "wal_group_commit_bandwidth_mb_per_s": w.mb_per_s,
            "wal_group_commit_bandwidth_frames_per_commit": w.frames_per_commit,
        }

    medians = session.measure(
        once,
        [
            Metric("wal_group_commit_bandwidth_mb_per_s", "write bandwidth", "MB/s"),
            Metric(
                "wal_group_commit_bandwidth_frames_per_commit",
                "  frames per commit (one write + one fdatasync)",
                "frames",
            ),
        ],
        what="group-commit bandwidth",
    )
    return medians["wal_group_commit_bandwidth_mb_per_s"]


async def _bandwidth_writes(
    path: Path, per_writer: Sequence[Sequence[Sequence[tuple[bytes, bytes]]]], seconds: float
) -> Written:
    async with wal.open_log(path, sync="always") as log:

        def writer(
            batches: Sequence[Sequence[tuple[bytes, bytes]]],
        ) -> Callable[[int], Awaitable[None]]:
            return lambda i: log.write(batches[i % len(batches)])

        return await _closed_loop(log, [writer(b) for b in per_writer], seconds)


def _batch_run(
    path: Path, batches: Sequence[Sequence[tuple[bytes, bytes]]], seconds: float
) -> Written:
    return trio.run(_batch_writes, path, batches, seconds)


async def _batch_writes(
    path: Path, batches: Sequence[Sequence[tuple[bytes, bytes]]], seconds: float
) -> Written:
    clock = time.perf_counter
    async with wal.open_log(path, sync="always") as log:
        before = log.statistics()
        started = clock()
        deadline = started + seconds
        i = 0
        while clock() < deadline:
            await log.write(batches[i % len(batches)])
            i += 1
        elapsed = clock() - started
        return Written.between(before, log.statistics(), elapsed)


# -- open time and keydir size -------------------------------------------------------------


def _measure_open(session: Session, n_keys: int, value: bytes) -> None:
    scaled = n_keys != 1_000_000
    session.section(f"open a log of {n_keys:,} keys (warm page cache)")
    open_floor = Floor(
        "wal_open_with_hints",
        "<=",
        OPEN_SECONDS_PER_MILLION_KEYS * n_keys / 1e6,
        "2 s per 1M keys, scaled" if scaled else "",
    )
    with session.scratch("open") as path:
        session.progress(f"building a log of {n_keys:,} keys")
        batches = [
            [(key_of(i), value) for i in range(start, min(start + BATCH_RECORDS, n_keys))]
            for start in range(0, n_keys, BATCH_RECORDS)
        ]
        build = trio.run(_build, path, batches)
        del batches
        gc.collect()
        session.record(Metric("wal_open_keys", "keys in the log", "keys"), n_keys)
        session.record(
            Metric("wal_build_records_per_s", "building it: write() with sync=never", "records/s"),
            build.records_per_s,
        )

        def with_hints() -> dict[str, float]:
            seconds, per_key = trio.run(_open, path, n_keys)
            return {"wal_open_with_hints_s": seconds, "wal_keydir_bytes_per_key": per_key}

        session.measure(
            with_hints,
            [
                Metric("wal_open_with_hints_s", "open with hints", "s", open_floor),
                Metric(
                    "wal_keydir_bytes_per_key",
                    "keydir bytes per key, beyond the key",
                    "bytes",
                    Floor("wal_keydir_bytes_per_key", "<=", KEYDIR_BYTES_FLOOR, "aim 100"),
                ),
            ],
            what=f"open {n_keys:,} keys with hints",
        )

        def without_hints() -> dict[str, float]:
            for hint in path.glob("*.hint"):
                hint.unlink()
            seconds, _per_key = trio.run(_open, path, n_keys)
            return {"wal_open_without_hints_s": seconds}

        session.measure(
            without_hints,
            [Metric("wal_open_without_hints_s", "open without hints (scan, rewrite hints)", "s")],
            what=f"open {n_keys:,} keys without hints",
        )


async def _build(path: Path, batches: Sequence[Sequence[tuple[bytes, bytes]]]) -> Written:
    clock = time.perf_counter
    async with wal.open_log(path, sync="never") as log:
        before = log.statistics()
        started = clock()
        for batch in batches:
            await log.write(batch)
        elapsed = clock() - started
        return Written.between(before, log.statistics(), elapsed)


async def _open(path: Path, n_keys: int) -> tuple[float, float]:
    """Seconds to open (recover) the log, and its keydir's bytes per key."""
    started = time.perf_counter()
    async with wal.open_log(path) as log:
        elapsed = time.perf_counter() - started
        if len(log) != n_keys:
            raise RuntimeError(f"reopened log holds {len(log)} keys, expected {n_keys}")
        return elapsed, keydir_bytes_per_key(log)


def keydir_bytes_per_key(log: wal.Log) -> float:
    """The dict plus its location ints, per key; the key objects themselves not counted."""
    kmap = log._keydir.map
    if not kmap:
        return 0.0
    total = sys.getsizeof(kmap) + sum(sys.getsizeof(loc) for loc in kmap.values())
    return total / len(kmap)
