"""The log's behaviour, run on every FileSystem: the real one and the simulated one."""

import os
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import trio

import wal
from wal.testing import SimulatedFileSystem

SMALL = 4096  # the smallest segment_max_bytes the log accepts


@dataclass
class Env:
    fs: wal.FileSystem
    path: str

    def open(self, **options: Any) -> AbstractAsyncContextManager[wal.Log]:
        return wal.open_log(self.path, fs=self.fs, **options)

    def files(self) -> dict[str, bytes]:
        names = self.fs.listdir(self.path)
        return {n: self.fs.read_file(os.path.join(self.path, n)) for n in names}


@pytest.fixture(params=["os", "sim"])
def env(request: pytest.FixtureRequest, tmp_path: Path) -> Env:
    if request.param == "os":
        return Env(wal.OsFileSystem(), str(tmp_path / "log"))
    return Env(SimulatedFileSystem(), "/data/log")


def contents(log: wal.Log) -> dict[bytes, bytes]:
    return dict(log.items())


class TestLog:
    async def test_put_get_delete_reopen(self, env: Env) -> None:
        async with env.open() as log:
            assert log.get(b"a") is None
            await log.put(b"a", b"1")
            await log.put(b"b", b"")
            await log.put(b"a", b"2")
            await log.delete(b"b")
            await log.delete(b"never-there")
            assert log.get(b"a") == b"2" and log.get(b"b") is None
            assert b"a" in log and b"b" not in log and len(log) == 1
            assert log.value_size(b"a") == 1 and log.value_size(b"b") is None
            log._check()
        async with env.open() as log:
            assert contents(log) == {b"a": b"2"}
            log._check()

    async def test_write_batches_are_atomic_frames(self, env: Env) -> None:
        async with env.open() as log:
            await log.write([(b"k1", b"v1"), (b"k2", b"v2"), (b"k1", None), (b"k3", b"v3")])
            await log.write_frames([[(b"x", b"1")], [(b"y", b"2"), (b"k3", None)], []])
            stats = log.statistics()
            assert stats.frames_written == 4 and stats.commits == 2
            assert sorted(log.keys()) == [b"k2", b"x", b"y"]
            assert sorted(log.keys(b"k")) == [b"k2"]
        async with env.open() as log:
            assert contents(log) == {b"k2": b"v2", b"x": b"1", b"y": b"2"}

    async def test_one_commit_rewrites_a_key_in_a_fresh_segment(self, env: Env) -> None:
        # Regression: publishing a commit subtracted the overwritten entry's bytes from a
        # live-bytes counter its (fresh) segment did not have yet: KeyError, log broken.
        async with env.open() as log:
            await log.write([(b"k", b"1"), (b"k", b"2"), (b"j", b"1"), (b"j", None)])
            await log.rotate()
            async with trio.open_nursery() as nursery:
                for i in range(5):
                    nursery.start_soon(log.put, b"k", b"%d" % i)
            assert log.get(b"k") is not None and log.get(b"j") is None
            assert not log.broken
            log._check()
            last = log.get(b"k")
        async with env.open() as log:
            assert contents(log) == {b"k": last}

    async def test_rotation_at_small_segments(self, env: Env) -> None:
        expected = {}
        async with env.open(segment_max_bytes=SMALL) as log:
            for i in range(40):
                key, value = b"k%d" % (i % 15), bytes([i]) * (100 + 37 * i)
                await log.put(key, value)
                expected[key] = value
            stats = log.statistics()
            assert stats.segments > 5
            assert contents(log) == expected
            log._check()
        sizes = [len(b) for n, b in env.files().items() if n.endswith(".log")]
        assert len(sizes) == stats.segments
        assert max(sizes) <= SMALL  # only a commit larger than the limit may overshoot it
        async with env.open(segment_max_bytes=SMALL) as log:
            assert contents(log) == expected
            log._check()

    async def test_merge_keeps_live_data_and_drops_the_rest(self, env: Env) -> None:
        async with env.open(segment_max_bytes=SMALL) as log:
            for round_ in range(6):
                for i in range(10):
                    await log.put(b"k%d" % i, b"%d-" % round_ * 40)
            await log.put(b"doomed", b"x" * 100)
            await log.rotate()
            await log.delete(b"doomed")
            before = log.statistics()
            report = await log.merge()
            after = log.statistics()
            assert report.inputs and report.keys_copied == 10
            assert report.bytes_after < report.bytes_before
            assert after.total_bytes < before.total_bytes and after.merges == 1
            assert after.live_bytes == before.live_bytes + 8 * 10  # merged entries: +8 bytes
            assert after.dead_bytes == 44  # one frame header in one output segment
            expected = {b"k%d" % i: b"5-" * 40 for i in range(10)}
            assert contents(log) == expected
            log._check()
            await log.put(b"after", b"merge")
            expected[b"after"] = b"merge"
        assert not env.fs.exists(os.path.join(env.path, "merge"))
        async with env.open(segment_max_bytes=SMALL) as log:
            assert contents(log) == expected  # "doomed" stays deleted
            assert log.recovery.merge is None
            log._check()

    async def test_merge_into_several_output_segments(self, env: Env) -> None:
        # Regression: starting a new output segment dropped the previous one's unflushed
        # entries, after the merge had committed: the next open lost those keys.
        expected = {b"k%02d" % i: bytes([i]) * (300 + 50 * i) for i in range(30)}
        async with env.open(segment_max_bytes=SMALL) as log:
            for key, value in expected.items():
                await log.put(key, b"old")
                await log.put(key, value)
            report = await log.merge()
            assert len(report.outputs) > 5 and report.keys_copied == 30
            assert contents(log) == expected
            log._check()
        async with env.open(segment_max_bytes=SMALL) as log:
            assert contents(log) == expected

    async def test_merge_of_entries_just_over_half_a_segment(self, env: Env) -> None:
        # Each output holds one such entry: regression for reserving too few output ids.
        key_and_value = (SMALL - 19 - 64) // 2 + 1
        expected = {b"k%03d" % i: b"v" * (key_and_value - 4) for i in range(150)}
        async with env.open(segment_max_bytes=SMALL) as log:
            await log.write(list(expected.items()))
            report = await log.merge()
            assert len(report.outputs) == 150
            assert contents(log) == expected
        async with env.open(segment_max_bytes=SMALL) as log:
            assert contents(log) == expected

    async def test_merge_with_concurrent_writers(self, env: Env) -> None:
        async with env.open(segment_max_bytes=SMALL) as log:
            for i in range(50):
                await log.put(b"k%d" % (i % 20), b"old%d" % i * 20)

            async def writer(n: int) -> None:
                for j in range(10):
                    await log.put(b"k%d" % n, b"new%d.%d" % (n, j))
                await log.delete(b"k%d" % (n + 10))

            async with trio.open_nursery() as nursery:
                for n in range(10):
                    nursery.start_soon(writer, n)
                nursery.start_soon(log.merge)
            expected = {b"k%d" % n: b"new%d.9" % n for n in range(10)}
            assert contents(log) == expected
            log._check()
        async with env.open(segment_max_bytes=SMALL) as log:
            assert contents(log) == expected

    async def test_merge_of_an_empty_or_fully_deleted_log(self, env: Env) -> None:
        async with env.open() as log:
            assert (await log.merge()).inputs == ()
            await log.put(b"k", b"v")
            await log.delete(b"k")
            report = await log.merge()
            assert report.keys_copied == 0 and report.outputs == ()
            assert log.statistics().total_bytes == 0
        async with env.open() as log:
            assert contents(log) == {}

    async def test_reopen_loads_closed_segments_from_hints(self, env: Env) -> None:
        async with env.open(segment_max_bytes=SMALL) as log:
            for i in range(30):
                await log.put(b"k%d" % i, b"v" * 500)
            await log.delete(b"k0")
            segments = log.statistics().segments
        async with env.open(segment_max_bytes=SMALL) as log:
            rec = log.recovery
            assert rec.segments_from_hints == segments
            assert rec.segments_scanned == 0 and rec.repairs == () and rec.keys == 29
            assert b"k0" not in log and log.get(b"k29") == b"v" * 500
        # Without hints every segment is scanned, with the same result.
        for name in env.fs.listdir(env.path):
            if name.endswith(".hint"):
                env.fs.remove(os.path.join(env.path, name))
        async with env.open(segment_max_bytes=SMALL) as log:
            assert log.recovery.segments_from_hints == 0
            assert log.recovery.keys == 29 and b"k0" not in log

    async def test_second_opener_gets_log_locked(self, env: Env) -> None:
        async with env.open() as log:
            await log.put(b"k", b"v")
            with pytest.raises(wal.LogLocked):
                async with env.open():
                    pass
        async with env.open() as log:
            assert log.get(b"k") == b"v"

    async def test_closed_log_raises_log_closed(self, env: Env) -> None:
        async with env.open() as log:
            await log.put(b"k", b"v")
        await log.aclose()  # idempotent
        for call in (
            lambda: log.put(b"k", b"v"),
            lambda: log.delete(b"k"),
            lambda: log.write([(b"k", b"v")]),
            log.sync,
            log.rotate,
            log.merge,
        ):
            with pytest.raises(wal.LogClosed):
                await call()
        with pytest.raises(wal.LogClosed):
            log.get(b"k")

    @pytest.mark.parametrize(
        "ops",
        [
            [(b"", b"v")],
            [("str", b"v")],
            [(bytearray(b"k"), b"v")],
            [(b"k" * (wal.MAX_KEY_BYTES + 1), b"v")],
            [(b"k", "str")],
            [(b"k", 5)],
            [[b"k", b"v"]],
            [(b"k", b"v", b"extra")],
            [(b"ok", b"v"), (b"", None)],  # one bad op spoils the batch
        ],
    )
    async def test_invalid_input_writes_nothing(self, env: Env, ops: list[Any]) -> None:
        async with env.open() as log:
            await log.put(b"before", b"1")
            stats = log.statistics()
            with pytest.raises(wal.InvalidArgument):
                await log.write(ops)
            with pytest.raises(wal.InvalidArgument):
                await log.write_frames([[(b"fine", b"v")], ops])
            if len(ops) == 1 and isinstance(ops[0], tuple) and len(ops[0]) == 2:
                with pytest.raises(wal.InvalidArgument):
                    await log.put(*ops[0])
            assert log.statistics().bytes_written == stats.bytes_written
            assert not log.broken
        async with env.open() as log:
            assert contents(log) == {b"before": b"1"}

    @pytest.mark.parametrize(
        "options",
        [
            {"segment_max_bytes": 4095},
            {"segment_max_bytes": 1 << 41},
            {"sync_interval_ms": 0},
            {"sync": "sometimes"},
        ],
    )
    async def test_invalid_options(self, env: Env, options: dict[str, Any]) -> None:
        with pytest.raises(wal.InvalidArgument):
            async with env.open(**options):
                pass

    async def test_many_tasks_share_group_commits(self, env: Env) -> None:
        tasks, puts = 200, 20
        async with env.open() as log:

            async def writer(t: int) -> None:
                for i in range(puts):
                    await log.put(b"t%d/%d" % (t, i), b"v%d" % (t * puts + i))

            async with trio.open_nursery() as nursery:
                for t in range(tasks):
                    nursery.start_soon(writer, t)
            stats = log.statistics()
            assert stats.records_written == tasks * puts
            assert stats.commits < tasks * puts / 4
            assert stats.fsyncs >= stats.commits  # sync mode "always"
            assert stats.max_batch_frames > 1
        async with env.open() as log:
            assert len(log) == tasks * puts
            assert all(
                log.get(b"t%d/%d" % (t, i)) == b"v%d" % (t * puts + i)
                for t in range(tasks)
                for i in range(puts)
            )

    async def test_sync_mode_never(self, env: Env) -> None:
        async with env.open(sync="never") as log:
            for i in range(20):
                await log.put(b"k%d" % i, b"v")
            assert log.statistics().fsyncs == 0
            await log.sync()
            assert log.statistics().fsyncs == 1
        async with env.open(sync="never") as log:
            assert len(log) == 20

    async def test_sync_mode_interval_follows_the_clock(self, env: Env) -> None:
        now = [1_000_000]
        async with env.open(sync="interval", sync_interval_ms=200, clock_ms=lambda: now[0]) as log:
            await log.put(b"a", b"1")  # the first write finds the last sync long ago
            assert log.statistics().fsyncs == 1
            now[0] += 199
            await log.put(b"b", b"2")
            assert log.statistics().fsyncs == 1
            now[0] += 1
            await log.put(b"c", b"3")
            assert log.statistics().fsyncs == 2
        async with env.open() as log:
            assert contents(log) == {b"a": b"1", b"b": b"2", b"c": b"3"}


# -- durability on the simulated disk --------------------------------------------------


async def test_fresh_log_survives_power_loss() -> None:
    """The log directory's own entry must be durable, or a crash takes the whole log."""
    fs = SimulatedFileSystem()
    log = await wal.Log.open("/a/b/log", fs=fs)
    await log.put(b"k", b"v")
    fs.crash(torn=False)
    async with wal.open_log("/a/b/log", fs=fs) as log:
        assert log.get(b"k") == b"v"


@pytest.mark.parametrize("mode", ["never", "interval"])
async def test_power_loss_keeps_only_what_was_synced(mode: str) -> None:
    fs = SimulatedFileSystem()
    now = [0]
    opts: dict[str, Any] = {"sync": mode, "clock_ms": lambda: now[0]}
    log = await wal.Log.open("/log", fs=fs, **opts)
    await log.put(b"a", b"1")
    await log.sync()
    await log.put(b"b", b"2")  # interval mode: 0 ms since the last sync, so not synced
    fs.crash(torn=False)
    log = await wal.Log.open("/log", fs=fs, **opts)
    assert contents(log) == {b"a": b"1"}
    if mode == "interval":
        await log.put(b"b", b"2")
        now[0] += 10_000
        await log.put(b"c", b"3")  # the interval passed: syncs both
        fs.crash(torn=False)
        async with wal.open_log("/log", fs=fs, **opts) as log:
            assert contents(log) == {b"a": b"1", b"b": b"2", b"c": b"3"}


async def test_group_commit_survives_power_loss() -> None:
    fs = SimulatedFileSystem()
    log = await wal.Log.open("/log", fs=fs, segment_max_bytes=SMALL)

    async def writer(t: int) -> None:
        for i in range(20):
            await log.put(b"t%d/%d" % (t, i), b"%d" % i * t)

    async with trio.open_nursery() as nursery:
        for t in range(100):
            nursery.start_soon(writer, t)
    assert log.statistics().commits < 2000
    fs.crash(torn=True)
    async with wal.open_log("/log", fs=fs) as log:
        assert len(log) == 2000
        for t in range(100):
            assert all(log.get(b"t%d/%d" % (t, i)) == b"%d" % i * t for i in range(20))
        log._check()
