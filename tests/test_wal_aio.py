"""Commits fdatasync through Linux AIO where it exists (wal/_aio.py): used when it can be,
durable, shielded from cancellation, and every way it can be missing or refused falls
back to the commit thread without losing or poisoning anything; a failed AIO fdatasync
breaks the log like a failed fdatasync."""

from __future__ import annotations

import errno
import os
import platform
from pathlib import Path

import pytest
import trio

import wal
from wal import _aio
from wal._aio import AioSync, AioUnsupported, open_aio

HAVE_AIO = open_aio() is not None
needs_aio = pytest.mark.skipif(not HAVE_AIO, reason="no Linux AIO on this machine")


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@needs_aio
async def test_commits_sync_through_aio_and_survive_reopen(tmp_path: Path) -> None:
    path = str(tmp_path / "log")
    async with wal.open_log(path) as log:
        assert log.statistics().sync_via == ""
        for i in range(20):
            await log.put(b"k%d" % i, b"v%d" % i)
        stats = log.statistics()
        assert stats.sync_via == "aio"
        assert stats.fsyncs == 20 and stats.commits == 20
    async with wal.open_log(path) as log:
        assert dict(log.items()) == {b"k%d" % i: b"v%d" % i for i in range(20)}


@needs_aio
async def test_a_cancelled_writer_still_lands_its_write(tmp_path: Path) -> None:
    """The only checkpoint on the way is the wait for the AIO completion, inside a shield:
    unshielded, the cancel would abandon a request in flight and break the log."""
    async with wal.open_log(str(tmp_path / "log")) as log:
        with trio.CancelScope() as scope:
            scope.cancel()
            await log.put(b"k", b"v")
        assert log.get(b"k") == b"v"
        assert log.statistics().sync_via == "aio" and not log.statistics().broken
        await log.put(b"k2", b"v2")  # still writable


@needs_aio
async def test_the_kernel_refusing_aio_fdatasync_falls_back_to_the_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = 0

    async def refuse(self: AioSync, fd: int) -> None:
        nonlocal calls
        calls += 1
        raise AioUnsupported("EINVAL")

    monkeypatch.setattr(AioSync, "fdatasync", refuse)
    path = str(tmp_path / "log")
    async with wal.open_log(path) as log:
        await log.put(b"a", b"1")
        assert log.statistics().sync_via == "thread"
        await log.put(b"b", b"2")
        assert calls == 1  # refused once: never asked again
        assert log.statistics().fsyncs == 2 and not log.statistics().broken
    async with wal.open_log(path) as log:
        assert dict(log.items()) == {b"a": b"1", b"b": b"2"}


@needs_aio
async def test_a_failed_aio_fdatasync_breaks_the_log_and_is_not_retried(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = 0

    async def fail(self: AioSync, fd: int) -> None:
        nonlocal calls
        calls += 1
        raise OSError(errno.EIO, "fdatasync: I/O error")

    async with wal.open_log(str(tmp_path / "log")) as log:
        await log.put(b"a", b"1")
        monkeypatch.setattr(AioSync, "fdatasync", fail)
        with pytest.raises(wal.LogBroken, match="EIO"):
            await log.put(b"b", b"2")
        with pytest.raises(wal.LogBroken):
            await log.put(b"c", b"3")
        assert calls == 1
        assert log.get(b"b") is None and log.get(b"a") == b"1"  # never acknowledged


async def test_no_aio_on_this_architecture_means_the_commit_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(platform, "machine", lambda: "sparc64")
    assert open_aio() is None
    async with wal.open_log(str(tmp_path / "log")) as log:
        await log.put(b"a", b"1")
        assert log.statistics().sync_via == "thread"


@needs_aio
async def test_a_context_that_cannot_be_set_up_means_the_commit_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An unknown syscall number fails like a sandbox refusing io_setup (ENOSYS).
    monkeypatch.setitem(_aio._SYSCALLS, platform.machine().lower(), (-1, -1, -1, -1))
    assert open_aio() is None
    async with wal.open_log(str(tmp_path / "log")) as log:
        await log.put(b"a", b"1")
        assert log.statistics().sync_via == "thread"


async def test_inline_io_never_uses_aio_or_a_thread(tmp_path: Path) -> None:
    async with wal.open_log(str(tmp_path / "log")) as log:
        log.io_threads = False
        await log.put(b"a", b"1")
        assert log.statistics().sync_via == "inline"
        assert log._io is None


async def test_sync_modes_without_fdatasync_still_write_every_commit(tmp_path: Path) -> None:
    path = str(tmp_path / "log")
    async with wal.open_log(path, sync="never") as log:
        for i in range(5):
            await log.put(b"k%d" % i, b"v")
        assert log.statistics().fsyncs == 0
    async with wal.open_log(path) as log:
        assert len(log) == 5


@needs_aio
async def test_closing_releases_the_context_and_its_eventfd(tmp_path: Path) -> None:
    before = _fds()
    for i in range(3):
        async with wal.open_log(str(tmp_path / f"log{i}")) as log:
            await log.put(b"a", b"1")
            assert log.statistics().sync_via == "aio"
    assert _fds() == before


@needs_aio
async def test_rotation_commits_go_through_the_thread_and_later_ones_back_to_aio(
    tmp_path: Path,
) -> None:
    async with wal.open_log(str(tmp_path / "log"), segment_max_bytes=4096) as log:
        await log.put(b"a", b"x" * 3000)
        await log.put(b"b", b"x" * 3000)  # rotates: seal, hint, new segment, manifest
        assert log.statistics().sync_via == "thread" and log.statistics().segments == 2
        await log.put(b"c", b"x")
        assert log.statistics().sync_via == "aio"


@needs_aio
async def test_a_refused_submission_falls_back_without_breaking_the_log(tmp_path: Path) -> None:
    """The real submission path: io_submit failing (here: ENOSYS from a bad syscall number)
    submitted nothing, so the commit syncs in the thread and the log stays healthy."""
    path = str(tmp_path / "log")
    async with wal.open_log(path) as log:
        await log.put(b"a", b"1")
        aio = log._aio
        assert isinstance(aio, AioSync)
        aio._nr = (*aio._nr[:3], -1)
        await log.put(b"b", b"2")
        stats = log.statistics()
        assert stats.sync_via == "thread" and not stats.broken and stats.fsyncs == 2
        assert log._aio is None
    async with wal.open_log(path) as log:
        assert dict(log.items()) == {b"a": b"1", b"b": b"2"}
