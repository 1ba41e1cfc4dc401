"""Basic wal behaviour: put, batch, tombstone, reopen."""

from pathlib import Path

import trio

import wal


async def test_put_get_delete_survive_reopen(tmp_path: Path) -> None:
    async with wal.open_log(tmp_path) as log:
        await log.put(b"a", b"1")
        await log.write([(b"b", b"2"), (b"c", b"3"), (b"a", None)])
        assert log.get(b"a") is None
        assert log.get(b"b") == b"2"
        log._check()
    async with wal.open_log(tmp_path) as log:
        assert sorted(log.keys()) == [b"b", b"c"]
        assert log.get(b"c") == b"3"
        log._check()


async def test_concurrent_writers_share_commits(tmp_path: Path) -> None:
    async with wal.open_log(tmp_path) as log:
        async with trio.open_nursery() as nursery:
            for i in range(50):
                nursery.start_soon(log.put, b"k%d" % i, b"v%d" % i)
        stats = log.statistics()
        assert stats.records_written == 50
        assert stats.commits < 50
    async with wal.open_log(tmp_path) as log:
        assert all(log.get(b"k%d" % i) == b"v%d" % i for i in range(50))


async def test_get_many_matches_get_across_segments(tmp_path: Path) -> None:
    async with wal.open_log(tmp_path, segment_max_bytes=4096) as log:
        for i in range(300):
            await log.put(b"k%03d" % i, b"v%d" % i * (i % 7 + 1))
        await log.write([(b"k005", None), (b"k006", b"new")])
        assert log.statistics().segments > 3
        wanted = [b"k%03d" % i for i in range(300)] + [b"absent"]
        got = dict(log.get_many(wanted))
        assert got == {k: v for k in wanted if (v := log.get(k)) is not None}
        assert b"k005" not in got and got[b"k006"] == b"new"


async def test_get_many_detects_a_rotted_value(tmp_path: Path) -> None:
    async with wal.open_log(tmp_path) as log:
        await log.put(b"key", b"value-bytes")
        seg = next(p for p in tmp_path.iterdir() if p.suffix == ".log")
        data = bytearray(seg.read_bytes())
        data[data.index(b"value-bytes")] ^= 0x01
        seg.write_bytes(bytes(data))
        try:
            dict(log.get_many([b"key"]))
        except wal.CorruptLog as exc:
            assert exc.path == str(seg)
        else:
            raise AssertionError("a flipped value byte was not detected")
