"""The file seam: one contract for both FileSystems, then the simulator's power-loss model."""

import errno
import os
import random
from collections.abc import Callable
from pathlib import Path

import pytest

import wal
from wal.testing import FaultOp, SimulatedFileSystem


@pytest.fixture(params=["os", "sim"])
def fs_root(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[wal.FileSystem, str]:
    if request.param == "os":
        return wal.OsFileSystem(), str(tmp_path)
    fs = SimulatedFileSystem()
    fs.makedirs("/root")
    return fs, "/root"


class TestFileSystemContract:
    """What the log relies on, checked against every implementation of the seam."""

    def test_open_create_is_exclusive(self, fs_root: tuple[wal.FileSystem, str]) -> None:
        fs, root = fs_root
        p = os.path.join(root, "f")
        with pytest.raises(FileNotFoundError):
            fs.open(p, create=False)
        fs.open(p, create=True).close()
        with pytest.raises(FileExistsError):
            fs.open(p, create=True)
        fs.open(p, create=False).close()

    def test_append_pread_truncate(self, fs_root: tuple[wal.FileSystem, str]) -> None:
        fs, root = fs_root
        h = fs.open(os.path.join(root, "f"), create=True)
        h.append(b"hello ")
        h.append(b"world")
        assert h.size() == 11
        assert h.pread(5, 6) == b"world"
        assert h.pread(100, 9) == b"ld"
        h.truncate(5)
        h.append(b"!")  # appends go to the end, wherever that is now
        h.sync()
        assert h.pread(100, 0) == b"hello!"
        h.close()
        assert fs.read_file(os.path.join(root, "f")) == b"hello!"

    def test_directory_operations(self, fs_root: tuple[wal.FileSystem, str]) -> None:
        fs, root = fs_root
        sub = os.path.join(root, "a", "b")
        fs.makedirs(sub)
        fs.makedirs(sub)  # idempotent
        assert fs.exists(sub) and fs.listdir(sub) == []
        for name, data in ((b"x", b"1"), (b"y", b"2")):
            h = fs.open(os.path.join(sub, name.decode()), create=True)
            h.append(data)
            h.close()
        fs.rename(os.path.join(sub, "x"), os.path.join(sub, "y"))  # replaces y
        assert sorted(fs.listdir(sub)) == ["y"]
        assert fs.read_file(os.path.join(sub, "y")) == b"1"
        with pytest.raises(OSError):
            fs.rmdir(sub)  # not empty
        fs.sync_dir(sub)
        fs.remove(os.path.join(sub, "y"))
        assert not fs.exists(os.path.join(sub, "y"))
        with pytest.raises(FileNotFoundError):
            fs.remove(os.path.join(sub, "y"))
        fs.rmdir(sub)
        assert fs.listdir(os.path.join(root, "a")) == []

    def test_open_handle_follows_the_file(self, fs_root: tuple[wal.FileSystem, str]) -> None:
        fs, root = fs_root
        h = fs.open(os.path.join(root, "old"), create=True)
        h.append(b"data")
        fs.rename(os.path.join(root, "old"), os.path.join(root, "new"))
        h.append(b"+")
        assert fs.read_file(os.path.join(root, "new")) == b"data+"
        fs.remove(os.path.join(root, "new"))
        assert h.pread(10, 0) == b"data+"
        h.close()

    def test_lock_is_exclusive(self, fs_root: tuple[wal.FileSystem, str]) -> None:
        fs, root = fs_root
        p = os.path.join(root, "LOCK")
        lock = fs.lock(p)
        with pytest.raises(BlockingIOError):
            fs.lock(p)
        lock.release()
        lock.release()  # idempotent
        fs.lock(p).release()


def _write(fs: SimulatedFileSystem, path: str, data: bytes, *, sync: bool) -> None:
    h = fs.open(path, create=not fs.exists(path))
    h.append(data)
    if sync:
        h.sync()
    h.close()


class TestSimulatedPowerLoss:
    def test_only_synced_bytes_survive(self) -> None:
        fs = SimulatedFileSystem()
        fs.sync_dir("/")
        _write(fs, "/f", b"durable", sync=True)
        fs.sync_dir("/")
        _write(fs, "/f", b" volatile", sync=False)
        assert fs.read_file("/f") == b"durable volatile"
        fs.crash(torn=False)
        assert fs.read_file("/f") == b"durable"

    def test_torn_crash_keeps_a_prefix_of_the_unsynced_bytes(self) -> None:
        seen: set[bytes] = set()
        for seed in range(60):
            fs = SimulatedFileSystem()
            _write(fs, "/f", b"sync", sync=True)
            fs.sync_dir("/")
            _write(fs, "/f", b"abcdef", sync=False)
            fs.crash(torn=True, rng=random.Random(seed))
            data = fs.read_file("/f")
            assert (b"syncabcdef").startswith(data) and data.startswith(b"sync")
            seen.add(data)
        assert b"sync" in seen and b"syncabcdef" in seen and len(seen) > 3

    def test_truncate_without_sync_reverts(self) -> None:
        fs = SimulatedFileSystem()
        _write(fs, "/f", b"0123456789", sync=True)
        fs.sync_dir("/")
        h = fs.open("/f", create=False)
        h.truncate(3)
        h.append(b"xyz")
        fs.crash(torn=True)
        assert fs.read_file("/f") == b"0123456789"

    def test_directory_entries_need_a_directory_sync(self) -> None:
        fs = SimulatedFileSystem()
        _write(fs, "/kept", b"k", sync=True)
        _write(fs, "/gone", b"g", sync=True)
        fs.sync_dir("/")
        _write(fs, "/new", b"n", sync=True)
        fs.rename("/kept", "/renamed")
        fs.remove("/gone")
        fs.crash(torn=False)
        assert fs.listdir("/") == ["gone", "kept"]  # created vanished, rename and remove undone
        assert fs.read_file("/gone") == b"g"
        _write(fs, "/new", b"n", sync=True)
        fs.rename("/kept", "/renamed")
        fs.sync_dir("/")
        fs.crash(torn=False)
        assert fs.listdir("/") == ["gone", "new", "renamed"]

    def test_torn_crash_replays_a_prefix_of_directory_operations(self) -> None:
        outcomes: set[tuple[str, ...]] = set()
        for seed in range(40):
            fs = SimulatedFileSystem()
            fs.sync_dir("/")
            for name in ("a", "b", "c"):
                _write(fs, "/" + name, b"", sync=True)
            fs.crash(torn=True, rng=random.Random(seed))
            outcomes.add(tuple(fs.listdir("/")))
        assert outcomes == {(), ("a",), ("a", "b"), ("a", "b", "c")}

    def test_rename_across_directories_syncing_only_the_target(self) -> None:
        fs = SimulatedFileSystem()
        fs.makedirs("/d")
        fs.sync_dir("/")
        _write(fs, "/d/f", b"x", sync=True)
        fs.sync_dir("/d")
        fs.rename("/d/f", "/f")
        fs.sync_dir("/")
        fs.crash(torn=False)
        assert fs.read_file("/f") == fs.read_file("/d/f") == b"x"  # in both places

    def test_unsynced_directory_takes_its_files_with_it(self) -> None:
        fs = SimulatedFileSystem()
        fs.makedirs("/a/b")
        _write(fs, "/a/b/f", b"x", sync=True)
        fs.sync_dir("/a/b")
        fs.crash(torn=False)
        assert fs.listdir("/") == []

    def test_handles_and_locks_die_in_a_crash(self) -> None:
        fs = SimulatedFileSystem()
        h = fs.open("/f", create=True)
        lock = fs.lock("/LOCK")
        fs.sync_dir("/")
        fs.crash()
        for use in (lambda: h.append(b"x"), h.sync, h.size, lambda: h.pread(1, 0), h.close):
            with pytest.raises(OSError) as info:
                use()
            assert info.value.errno == errno.EBADF
        new = fs.lock("/LOCK")  # released by the crash
        lock.release()  # a stale lock releases nothing
        with pytest.raises(BlockingIOError):
            fs.lock("/LOCK")
        new.release()
        h2 = fs.open("/f", create=False)
        h2.close()
        with pytest.raises(OSError):
            h2.close()

    @pytest.mark.parametrize("op", ["append", "sync", "truncate", "open", "rename", "sync_dir"])
    def test_fail_next_raises_then_recovers(self, op: FaultOp) -> None:
        fs = SimulatedFileSystem()
        h = fs.open("/f", create=True)
        calls: dict[str, Callable[[], None]] = {
            "append": lambda: h.append(b"x"),
            "sync": h.sync,
            "truncate": lambda: h.truncate(0),
            "open": lambda: fs.open("/f", create=False).close(),
            "rename": lambda: fs.rename("/f", "/f"),
            "sync_dir": lambda: fs.sync_dir("/"),
        }
        fs.fail_next(op, errno.EIO, count=2)
        for _ in range(2):
            with pytest.raises(OSError) as info:
                calls[op]()
            assert info.value.errno == errno.EIO
        calls[op]()
        assert fs.statistics().faults == 2
        with pytest.raises(ValueError):
            fs.fail_next("chmod", errno.EIO)  # type: ignore[arg-type]

    def test_enospc_append_writes_a_prefix(self) -> None:
        lengths = set()
        for seed in range(30):
            fs = SimulatedFileSystem(seed)
            h = fs.open("/f", create=True)
            fs.fail_next("append", errno.ENOSPC)
            with pytest.raises(OSError):
                h.append(b"0123456789")
            data = h.pread(100, 0)
            assert b"0123456789".startswith(data) and len(data) < 10
            lengths.add(len(data))
        assert len(lengths) > 3

    def test_crash_after_stops_the_machine(self) -> None:
        fs = SimulatedFileSystem()
        fs.sync_dir("/")
        h = fs.open("/f", create=True)
        fs.sync_dir("/")
        fs.crash_after(3, torn=False)
        h.append(b"a")
        h.sync()
        with pytest.raises(OSError) as info:
            h.append(b"b")  # the third call: power is gone before it runs
        assert info.value.errno == errno.EIO and fs.halted
        with pytest.raises(OSError):
            fs.listdir("/")
        fs.restart()
        assert fs.read_file("/f") == b"a"
        assert fs.statistics().crashes == 1

    def test_corrupt_is_durable_bit_rot(self) -> None:
        fs = SimulatedFileSystem()
        _write(fs, "/f", b"\x00\x00", sync=True)
        fs.sync_dir("/")
        fs.corrupt("/f", 1, 0x80)
        fs.crash(torn=False)
        assert fs.read_file("/f") == b"\x00\x80"
