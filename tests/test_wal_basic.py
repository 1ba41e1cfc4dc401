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
