"""Power loss and I/O errors, on the simulated disk: a model-based machine and exhaustive
crash points for merge."""

import errno
import random
from functools import partial
from typing import Any

import pytest
import trio
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)
from sizing import examples

import wal
from wal.testing import FaultOp, SimulatedFileSystem

PATH = "/data/log"
SMALL = 4096


def clock() -> int:
    return 1_700_000_000_000


def open_sync(fs: SimulatedFileSystem, **options: Any) -> wal.Log:
    options.setdefault("segment_max_bytes", SMALL)
    return trio.run(partial(wal.Log.open, PATH, fs=fs, clock_ms=clock, **options))


keys = st.sampled_from([b"a", b"b", b"c", b"d", b"e", b"f"])
values = st.binary(max_size=40) | st.binary(min_size=900, max_size=1800)


class LogMachine(RuleBasedStateMachine):
    """Compares the log with a dict of acknowledged writes, across crashes and reopens.

    The log object lives across rules; each rule drives it with its own `trio.run` (the
    log has no background tasks, so nothing is in flight between rules). `history` holds
    every state a power loss may leave: the last durable state, then one state per
    acknowledged but not yet synced write (sync mode "never"). In mode "always" it only
    ever holds the current model.
    """

    def __init__(self) -> None:
        super().__init__()
        self.model: dict[bytes, bytes] = {}
        self.history: list[dict[bytes, bytes]] = [{}]
        self.mode = "always"
        self.fs = SimulatedFileSystem()
        self.log: wal.Log | None = None

    @initialize(mode=st.sampled_from(["always", "never"]), seed=st.integers(0, 2**32 - 1))
    def start(self, mode: str, seed: int) -> None:
        self.mode = mode
        self.fs = SimulatedFileSystem(seed)
        self.log = open_sync(self.fs, sync=mode)

    @property
    def live(self) -> wal.Log:
        assert self.log is not None
        return self.log

    def acknowledged(self) -> None:
        if self.mode == "always":
            self.history = [dict(self.model)]
        else:
            self.history.append(dict(self.model))

    def durable(self) -> None:
        self.history = [dict(self.model)]

    @rule(key=keys, value=values)
    def put(self, key: bytes, value: bytes) -> None:
        trio.run(self.live.put, key, value)
        self.model[key] = value
        self.acknowledged()

    @rule(key=keys)
    def delete(self, key: bytes) -> None:
        trio.run(self.live.delete, key)
        self.model.pop(key, None)
        self.acknowledged()

    @rule(ops=st.lists(st.tuples(keys, st.none() | values), max_size=5))
    def write_batch(self, ops: list[wal.Op]) -> None:
        trio.run(self.live.write, ops)
        for key, value in ops:
            if value is None:
                self.model.pop(key, None)
            else:
                self.model[key] = value
        self.acknowledged()

    @precondition(lambda self: self.mode == "always")  # commit order among tasks is free
    @rule(items=st.dictionaries(keys, st.none() | values, min_size=2, max_size=6))
    def concurrent_writers(self, items: dict[bytes, bytes | None]) -> None:
        async def write_all() -> None:
            async with trio.open_nursery() as nursery:
                for key, value in items.items():
                    nursery.start_soon(self.live.write, [(key, value)])

        trio.run(write_all)
        for key, value in items.items():
            if value is None:
                self.model.pop(key, None)
            else:
                self.model[key] = value
        self.acknowledged()

    @rule()
    def sync(self) -> None:
        trio.run(self.live.sync)
        self.durable()

    @rule()
    def rotate(self) -> None:
        trio.run(self.live.rotate)
        self.durable()

    @rule()
    def merge(self) -> None:
        trio.run(self.live.merge)
        self.durable()
        assert not self.fs.exists(PATH + "/merge")

    @rule()
    def reopen(self) -> None:
        trio.run(self.live.aclose)
        self.log = open_sync(self.fs, sync=self.mode)
        assert self.live.recovery.repairs == ()
        assert self.live.recovery.segments_scanned <= 1
        self.durable()

    def recover(self, torn: bool, seed: int, allowed: list[dict[bytes, bytes]]) -> None:
        self.fs.crash(torn=torn, rng=random.Random(seed))
        self.log = open_sync(self.fs, sync=self.mode)  # the old log object is dead
        got = dict(self.live.items())
        assert got in allowed, "a power loss left a state no prefix of the writes explains"
        self.model = got
        self.durable()

    @rule(torn=st.booleans(), seed=st.integers(0, 2**32 - 1))
    def power_loss(self, torn: bool, seed: int) -> None:
        self.recover(torn, seed, self.history)

    @precondition(lambda self: self.mode == "always")
    @rule(
        op=st.sampled_from(["append", "sync"]),
        code=st.sampled_from([errno.EIO, errno.ENOSPC]),
        key=keys,
        value=values,
        torn=st.booleans(),
        seed=st.integers(0, 2**32 - 1),
    )
    def io_error_then_power_loss(
        self, op: FaultOp, code: int, key: bytes, value: bytes, torn: bool, seed: int
    ) -> None:
        self.fs.fail_next(op, code)
        with pytest.raises(wal.LogBroken):
            trio.run(self.live.put, key, value)
        with pytest.raises(wal.LogBroken):
            trio.run(self.live.put, b"later", b"write")
        assert self.live.statistics().broken
        assert dict(self.live.items()) == self.model  # reads still serve acknowledged data
        allowed = [self.model]
        if op == "sync":  # written but not known durable: may or may not survive
            allowed.append({**self.model, key: value})
        self.recover(torn, seed, allowed)

    @invariant()
    def matches_model(self) -> None:
        if self.log is not None:
            self.log._check()
            assert dict(self.log.items()) == self.model

    def teardown(self) -> None:
        if self.log is not None and not self.fs.halted:
            trio.run(self.log.aclose)


test_log_machine = LogMachine.TestCase
# About 0.5 ms of CPU a step: quick 100 x 50 steps (~3 s), long 1,000 x 100 (~50 s).
test_log_machine.settings = settings(
    max_examples=examples(100, 1000), stateful_step_count=examples(50, 100), deadline=None
)


# -- merge under power loss ------------------------------------------------------------


async def build(fs: SimulatedFileSystem) -> tuple[wal.Log, dict[bytes, bytes]]:
    """A log whose merge has work: dead versions, a deleted key, several segments."""
    log = await wal.Log.open(PATH, fs=fs, segment_max_bytes=SMALL, clock_ms=clock)
    await log.put(b"doomed", b"x" * 300)  # put k, delete k, merge, crash: k stays deleted
    for i in range(12):
        await log.put(b"k%d" % (i % 5), b"%d" % i * 150)
    await log.rotate()
    await log.delete(b"doomed")
    await log.write([(b"k1", None), (b"batch", b"b" * 700)])
    await log.rotate()
    await log.put(b"k2", b"final")
    return log, dict(log.items())


async def reopen_and_check(fs: SimulatedFileSystem, expected: dict[bytes, bytes]) -> str | None:
    async with wal.open_log(PATH, fs=fs, segment_max_bytes=SMALL) as log:
        assert dict(log.items()) == expected
        assert b"doomed" not in log
        log._check()
        assert not fs.exists(PATH + "/merge")
        return log.recovery.merge


Outcome = tuple[SimulatedFileSystem, dict[bytes, bytes], bool]


async def crash_merge_at(n: int, torn: bool) -> Outcome:
    """Build, arm a power loss at the n-th disk call of the merge, merge. Returns the disk,
    the expected map, and whether the merge finished before the crash point."""
    fs = SimulatedFileSystem(seed=n)
    log, expected = await build(fs)
    fs.crash_after(n, torn=torn, rng=random.Random(n))
    try:
        await log.merge()
    except (OSError, wal.WalError):
        assert fs.halted
        fs.restart()
        return fs, expected, False
    assert not fs.halted
    fs.crash(torn=torn)  # power loss right after the merge returned
    return fs, expected, True


@pytest.mark.parametrize("torn", [False, True])
async def test_power_loss_at_every_step_of_a_merge(torn: bool) -> None:
    outcomes: dict[str | None, int] = {}
    n = 0
    while True:
        n += 1
        fs, expected, finished = await crash_merge_at(n, torn)
        outcome = await reopen_and_check(fs, expected)
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
        if finished:
            break
    assert n > 20 and outcomes.get("completed"), outcomes
    # merge/ only becomes durable in its parent with the install's directory sync: before
    # that, a strict power loss takes the whole directory away and the open finds nothing.
    assert bool(outcomes.get("discarded")) == torn, outcomes


async def test_power_loss_while_recovery_finishes_a_merge() -> None:
    """Crash a merge after its commit point (DONE durable), then crash the open that
    finishes it at each of its disk calls, then open again: nothing lost or resurrected."""
    committed = []
    n = 0
    while True:
        n += 1
        fs, _expected, finished = await crash_merge_at(n, torn=False)
        if finished:
            break
        if fs.exists(PATH + "/merge/DONE"):
            committed.append(n)
    assert len(committed) > 3
    for n in committed:
        m = 0
        while True:
            m += 1
            fs, expected, _finished = await crash_merge_at(n, torn=False)
            fs.crash_after(m, torn=m % 2 == 0, rng=random.Random(m))
            try:
                log = await wal.Log.open(PATH, fs=fs, segment_max_bytes=SMALL)
            except (OSError, wal.WalError):
                fs.restart()
            else:
                assert log.recovery.merge == "completed"
                break
            assert await reopen_and_check(fs, expected) in (None, "completed")
        assert m > 5


# -- I/O errors ------------------------------------------------------------------------


@pytest.mark.parametrize("op", ["append", "sync"])
@pytest.mark.parametrize("code", [errno.EIO, errno.ENOSPC])
@pytest.mark.parametrize("power_loss", [False, True])
async def test_io_error_breaks_the_log_and_loses_nothing_acknowledged(
    op: FaultOp, code: int, power_loss: bool
) -> None:
    fs = SimulatedFileSystem(seed=code)
    log = await wal.Log.open(PATH, fs=fs)  # large segments: the fault must hit a commit
    acked: dict[bytes, bytes] = {}
    failed: dict[bytes, bytes] = {}
    writes = 0

    async def writer(t: int) -> None:
        nonlocal writes
        for i in range(10):
            key, value = b"t%d/%d" % (t, i), b"v%d" % i * 30
            writes += 1
            if writes == 60:
                fs.fail_next(op, code)
            try:
                await log.put(key, value)
            except wal.LogBroken as exc:
                assert isinstance(exc.__cause__, OSError) and exc.__cause__.errno == code
                failed[key] = value
                return
            acked[key] = value

    async with trio.open_nursery() as nursery:
        for t in range(20):
            nursery.start_soon(writer, t)
    assert failed and acked
    stats = log.statistics()
    assert stats.broken and log.broken
    for call in (
        partial(log.put, b"x", b"y"),
        partial(log.delete, b"t0/0"),
        partial(log.write, [(b"x", b"y")]),
        log.sync,
        log.rotate,
        log.merge,
    ):
        with pytest.raises(wal.LogBroken):
            await call()
    assert dict(log.items()) == acked  # reads serve exactly the acknowledged writes
    on_disk = len(fs.read_file(PATH + "/0000000001.log"))
    assert on_disk >= stats.total_bytes
    if op == "append" and code == errno.EIO:
        assert on_disk == stats.total_bytes  # nothing of the failed write landed
    if power_loss:
        fs.crash(torn=True)
    else:
        await log.aclose()  # a process restart: releases the lock, writes nothing
    async with wal.open_log(PATH, fs=fs) as log:
        got = dict(log.items())
        extra = {k: v for k, v in got.items() if k not in acked}
        assert {k: got.get(k) for k in acked} == acked
        # The failed commit's outcome is unknown: whole frames of it may have landed
        # before a short write's tear (which ones depends on how the writers happened to
        # group), or before a failed fdatasync. Never anything that was not written.
        assert extra.items() <= failed.items()
        if op == "append" and code == errno.EIO:
            assert extra == {}  # the simulated EIO writes nothing
        log._check()
        if op == "append" and not power_loss:  # a short write left a torn tail, or not
            torn = on_disk > stats.total_bytes
            assert [r.kind for r in log.recovery.repairs] == (["torn-tail"] if torn else [])


@pytest.mark.parametrize("op", ["open", "sync_dir"])
async def test_io_error_while_rotating_breaks_the_log(op: FaultOp) -> None:
    fs = SimulatedFileSystem()
    log = await wal.Log.open(PATH, fs=fs, segment_max_bytes=SMALL)
    await log.put(b"a", b"1" * 3000)
    fs.fail_next(op, errno.EIO)
    with pytest.raises(wal.LogBroken):
        await log.put(b"b", b"2" * 3000)  # does not fit: rotates first
    assert log.get(b"a") == b"1" * 3000 and log.get(b"b") is None
    fs.crash()
    async with wal.open_log(PATH, fs=fs) as log:
        assert dict(log.items()) == {b"a": b"1" * 3000}


async def test_failed_hint_write_breaks_the_log_and_loses_nothing() -> None:
    # Sealing a segment is part of the rotating commit: its failure is a failed write,
    # which poisons the log (no retry in place); the acknowledged data survives.
    fs = SimulatedFileSystem()
    async with wal.open_log(PATH, fs=fs) as log:
        await log.put(b"a", b"1")
        fs.fail_next("rename", errno.EIO)  # the hint's rename into place
        with pytest.raises(wal.LogBroken):
            await log.rotate()
        assert log.broken
        with pytest.raises(wal.LogBroken):
            await log.put(b"b", b"2")
        assert log.get(b"a") == b"1"
    async with wal.open_log(PATH, fs=fs) as log:
        assert dict(log.items()) == {b"a": b"1"}
        assert log.recovery.segments_scanned >= 1


async def test_merge_io_error_before_its_commit_point_loses_nothing() -> None:
    fs = SimulatedFileSystem()
    log, expected = await build(fs)
    await log.rotate()  # so the merge itself needs no rotation
    fs.fail_next("sync_dir", errno.EIO)  # merge/ after writing the outputs
    with pytest.raises(wal.LogBroken) as info:
        await log.merge()
    assert isinstance(info.value.__cause__, OSError)  # translated at the boundary
    assert not fs.exists(PATH + "/merge")
    assert log.broken and dict(log.items()) == expected
    log._check()
    await log.aclose()
    assert await reopen_and_check(fs, expected) is None


async def test_power_loss_at_every_step_of_recovery() -> None:
    """An open with work to do (a hintless closed segment, a torn tail), crashed at every
    disk call, then opened again: same contents every time."""

    async def damaged_disk() -> tuple[SimulatedFileSystem, dict[bytes, bytes]]:
        fs = SimulatedFileSystem()
        log = await wal.Log.open(PATH, fs=fs, segment_max_bytes=SMALL)
        for i in range(6):
            await log.put(b"k%d" % i, b"%d" % i * 100)
        await log.rotate()
        fs.remove(PATH + "/0000000001.hint")  # a closed segment without its hint
        fs.sync_dir(PATH)
        await log.delete(b"k0")
        await log.put(b"k1", b"new")
        expected = dict(log.items())
        tail = fs.open(PATH + "/0000000002.log", create=False)
        tail.append(b"FWAL\x01half a frame")
        tail.sync()
        fs.crash(torn=False)
        return fs, expected

    m = 0
    while True:
        m += 1
        fs, expected = await damaged_disk()
        fs.crash_after(m, torn=True, rng=random.Random(m))
        try:
            log = await wal.Log.open(PATH, fs=fs, segment_max_bytes=SMALL)
        except (OSError, wal.WalError):
            fs.restart()
        else:
            assert [r.kind for r in log.recovery.repairs] == ["torn-tail"]
            assert log.recovery.segments_scanned == 2
            fs.crash()  # disarm
            break
        async with wal.open_log(PATH, fs=fs, segment_max_bytes=SMALL) as log:
            assert dict(log.items()) == expected
            log._check()
    assert m > 5
