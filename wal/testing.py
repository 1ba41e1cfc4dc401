"""A fault-injecting, in-memory file system for crash tests: `SimulatedFileSystem`.

It implements the `FileSystem`, `FileHandle` and `DirLock` protocols of `wal._fs`, so a log
runs on it unchanged (`wal.open_log(path, fs=SimulatedFileSystem())`).

Durability model (in the spirit of LazyFS and ALICE)
----------------------------------------------------
*File contents.* Every file (an inode: renames and hard links share it) has a *volatile*
image, which reads see, and a *durable* image: its bytes as of the last completed `sync()`.
A power loss (`crash()`) keeps the durable image and, when the crash is *torn*, a random
prefix of the bytes appended since that sync (the page cache wrote some of them back). A
file truncated below its durable length since the last sync loses only its unsynced
change: it reverts to the durable image.

*Directory entries.* Every directory has a volatile entry table and a durable one: the table
as of the last completed `sync_dir()` of that directory. Entries created, renamed or removed
since then are pending. A power loss rolls each directory back to its durable table and,
when torn, replays a random prefix of its pending operations (a journal that committed
part of its work). So a created file may vanish, a rename may revert, and a removed file
may reappear with its durable content. A rename across directories is two independent
operations (unlink in the source, link in the target), so syncing only one side can leave
the file in both places or in neither: the pessimistic reading of POSIX.

*After a power loss* every handle and lock is dead (any use raises `OSError(EBADF)`), all
locks are released, and the disk is whatever survived; it counts as durable from then on.

Fault injection
---------------
`fail_next(op, errno_, count)` makes the next `count` calls of `op` raise `OSError(errno_)`.
An append that fails with ENOSPC first writes a random prefix of its bytes, as a short write
followed by a failing one would. `crash_after(n)` arms a power loss just before the n-th
state-changing call from now: that call raises `OSError(EIO)`, and so does every later call
until `restart()`, because a machine without power runs no more code. Random choices come
from one `random.Random` (seeded by the constructor), so a failing run replays exactly.

Limits: one process's view (no concurrent openers besides the lock check), no permissions,
no sparse files, and torn writes keep a prefix only (no reordered pages).
"""

from __future__ import annotations

import errno
import os
import posixpath
import random
import threading
from dataclasses import dataclass
from typing import Literal

from . import _log
from ._fs import DirLock, FileHandle

FaultOp = Literal["append", "sync", "truncate", "open", "rename", "remove", "sync_dir"]
FAULT_OPS: frozenset[str] = frozenset(
    ("append", "sync", "truncate", "open", "rename", "remove", "sync_dir")
)


@dataclass(frozen=True, slots=True)
class SimStatistics:
    ops: int  # state-changing calls so far: each is a crash point for `crash_after`
    syncs: int  # completed file syncs
    dir_syncs: int  # completed directory syncs
    crashes: int  # power losses simulated
    faults: int  # OSErrors injected by `fail_next`


class _File:
    __slots__ = ("data", "diverged", "durable")

    def __init__(self) -> None:
        self.data = bytearray()  # the volatile image
        self.durable = bytearray()  # the image as of the last completed sync
        self.diverged = False  # volatile is no longer `durable` + appended bytes


@dataclass(frozen=True, slots=True)
class _DirOp:
    kind: Literal["link", "unlink", "rename"]
    name: str
    node: _File | _Dir
    new_name: str = ""

    def apply(self, entries: dict[str, _File | _Dir]) -> None:
        if self.kind == "link":
            entries[self.name] = self.node
        elif self.kind == "unlink":
            if entries.get(self.name) is self.node:
                del entries[self.name]
        else:
            if entries.get(self.name) is self.node:
                del entries[self.name]
            entries[self.new_name] = self.node


class _Dir:
    __slots__ = ("durable", "entries", "pending")

    def __init__(self) -> None:
        self.entries: dict[str, _File | _Dir] = {}
        self.durable: dict[str, _File | _Dir] = {}
        self.pending: list[_DirOp] = []


def _oserror(code: int, path: str, detail: str = "") -> OSError:
    message = os.strerror(code) + (f" ({detail})" if detail else "")
    return OSError(code, message, path)


class SimulatedFileHandle:
    """An open file of a `SimulatedFileSystem`; dies with a simulated power loss."""

    __slots__ = ("_closed", "_epoch", "_fs", "_node", "_path")

    def __init__(self, fs: SimulatedFileSystem, node: _File, path: str) -> None:
        self._fs = fs
        self._node = node
        self._path = path
        self._epoch = fs._epoch
        self._closed = False

    def _live(self) -> _File:
        """Call with the file system's mutex held."""
        self._fs._check_running()
        if self._closed or self._epoch != self._fs._epoch:
            raise _oserror(errno.EBADF, self._path, "handle closed or lost in a crash")
        return self._node

    def append(self, data: bytes) -> None:
        fs = self._fs
        with fs._mutex:
            node = self._live()
            fs._tick()
            code = fs._take_fault("append")
            if code is not None:
                if code == errno.ENOSPC and data:
                    node.data += data[: fs._rng.randrange(len(data))]
                raise _oserror(code, self._path, "injected")
            node.data += data

    def pread(self, size: int, offset: int) -> bytes:
        with self._fs._mutex:
            node = self._live()
            return bytes(node.data[offset : offset + size])

    def sync(self) -> None:
        fs = self._fs
        with fs._mutex:
            node = self._live()
            fs._tick()
            code = fs._take_fault("sync")
            if code is not None:
                raise _oserror(code, self._path, "injected")
            if node.diverged or len(node.data) < len(node.durable):
                node.durable = bytearray(node.data)
            else:
                node.durable += node.data[len(node.durable) :]
            node.diverged = False
            fs._syncs += 1

    def truncate(self, size: int) -> None:
        fs = self._fs
        with fs._mutex:
            node = self._live()
            fs._tick()
            code = fs._take_fault("truncate")
            if code is not None:
                raise _oserror(code, self._path, "injected")
            if size < len(node.data):
                del node.data[size:]
            else:
                node.data += bytes(size - len(node.data))
            if size < len(node.durable):
                node.diverged = True

    def size(self) -> int:
        with self._fs._mutex:
            return len(self._live().data)

    def close(self) -> None:
        with self._fs._mutex:
            self._live()
            self._closed = True


class SimulatedLock:
    __slots__ = ("_epoch", "_fs", "_path")

    def __init__(self, fs: SimulatedFileSystem, path: str) -> None:
        self._fs = fs
        self._path = path
        self._epoch = fs._epoch

    def release(self) -> None:
        """Idempotent; a lock lost in a crash releases nothing (another may hold it now)."""
        fs = self._fs
        with fs._mutex:
            if self._epoch == fs._epoch and fs._locks.get(self._path) is self:
                del fs._locks[self._path]


class SimulatedFileSystem:
    """An in-memory `FileSystem` with simulated power loss and injected I/O errors."""

    def __init__(self, seed: int = 0) -> None:
        self._mutex = threading.RLock()
        self._rng = random.Random(seed)
        self._root = _Dir()
        self._epoch = 0
        self._locks: dict[str, SimulatedLock] = {}
        self._faults: dict[str, list[int]] = {}
        self._crash_at: int | None = None
        self._crash_torn: bool | None = None
        self._crash_rng: random.Random | None = None
        self._halted = False
        self._ops = self._syncs = self._dir_syncs = self._crashes = self._injected = 0

    # -- path handling ------------------------------------------------------------------

    @staticmethod
    def _parts(path: str) -> list[str]:
        norm = posixpath.normpath("/" + os.fspath(path))
        return [p for p in norm.split("/") if p]

    def _dir(self, parts: list[str], path: str) -> _Dir:
        node: _File | _Dir = self._root
        for part in parts:
            if not isinstance(node, _Dir):
                raise _oserror(errno.ENOTDIR, path)
            child = node.entries.get(part)
            if child is None:
                raise _oserror(errno.ENOENT, path)
            node = child
        if not isinstance(node, _Dir):
            raise _oserror(errno.ENOTDIR, path)
        return node

    def _parent(self, path: str) -> tuple[_Dir, str]:
        parts = self._parts(path)
        if not parts:
            raise _oserror(errno.EBUSY, path, "the root directory")
        return self._dir(parts[:-1], path), parts[-1]

    def _lookup(self, path: str) -> _File | _Dir | None:
        parts = self._parts(path)
        if not parts:
            return self._root
        try:
            parent = self._dir(parts[:-1], path)
        except OSError:
            return None
        return parent.entries.get(parts[-1])

    def _file(self, path: str) -> _File:
        node = self._lookup(path)
        if node is None:
            raise _oserror(errno.ENOENT, path)
        if isinstance(node, _Dir):
            raise _oserror(errno.EISDIR, path)
        return node

    # -- run state, faults and crash points ---------------------------------------------

    def _check_running(self) -> None:
        if self._halted:
            raise _oserror(errno.EIO, "<simulated disk>", "power is off: call restart()")

    def _tick(self) -> None:
        """Count one state-changing call; lose power here if a crash is armed for it."""
        self._check_running()
        self._ops += 1
        if self._crash_at is not None and self._ops >= self._crash_at:
            self._power_loss(self._crash_torn, self._crash_rng)
            self._halted = True
            raise _oserror(errno.EIO, "<simulated disk>", "simulated power loss")

    def _take_fault(self, op: str) -> int | None:
        queue = self._faults.get(op)
        if not queue:
            return None
        self._injected += 1
        return queue.pop(0)

    def _begin(self, op: str, path: str) -> None:
        """Start a state-changing file system call: crash point, then injected fault."""
        self._tick()
        code = self._take_fault(op)
        if code is not None:
            raise _oserror(code, path, "injected")

    def fail_next(self, op: FaultOp, errno_: int, count: int = 1) -> None:
        """Make the next `count` calls of `op` raise `OSError(errno_)`."""
        if op not in FAULT_OPS:
            raise ValueError(f"unknown operation {op!r}; expected one of {sorted(FAULT_OPS)}")
        if count < 1:
            raise ValueError("count must be at least 1")
        with self._mutex:
            self._faults.setdefault(op, []).extend([errno_] * count)

    def crash_after(
        self, ops: int, *, torn: bool | None = None, rng: random.Random | None = None
    ) -> None:
        """Lose power just before the `ops`-th state-changing call from now (1: the next)."""
        if ops < 1:
            raise ValueError("ops must be at least 1")
        with self._mutex:
            self._crash_at = self._ops + ops
            self._crash_torn = torn
            self._crash_rng = rng

    @property
    def halted(self) -> bool:
        """True after an armed crash fired, until `restart()`."""
        return self._halted

    def restart(self) -> None:
        """Power on again after a crash fired by `crash_after`."""
        with self._mutex:
            self._halted = False

    def crash(self, torn: bool | None = None, rng: random.Random | None = None) -> None:
        """Simulated power loss, then power on again (see the module doc for what survives).

        `torn=None` lets `rng` decide whether unsynced appends and directory operations
        partly survive; `rng` defaults to the file system's own seeded generator.
        """
        with self._mutex:
            self._power_loss(torn, rng)
            self._halted = False

    def _power_loss(self, torn: bool | None, rng: random.Random | None) -> None:
        rng = rng or self._rng
        if torn is None:
            torn = rng.random() < 0.5
        files: dict[int, _File] = {}
        dirs: list[_Dir] = [self._root]
        seen = {id(self._root)}
        while dirs:
            d = dirs.pop()
            entries = dict(d.durable)
            if torn and d.pending:
                for op in d.pending[: rng.randint(0, len(d.pending))]:
                    op.apply(entries)
            d.entries, d.durable, d.pending = entries, dict(entries), []
            for node in entries.values():
                if isinstance(node, _Dir):
                    if id(node) not in seen:
                        seen.add(id(node))
                        dirs.append(node)
                else:
                    files[id(node)] = node
        for f in files.values():
            image = bytearray(f.durable)
            extra = len(f.data) - len(f.durable)
            if torn and not f.diverged and extra > 0:
                image += f.data[len(f.durable) : len(f.durable) + rng.randint(0, extra)]
            f.data, f.durable, f.diverged = image, bytearray(image), False
        self._epoch += 1
        self._locks.clear()
        self._faults.clear()
        self._crash_at = None
        self._crashes += 1

    def corrupt(self, path: str, offset: int, xor: int) -> None:
        """Bit rot: XOR one byte of `path` in both its volatile and durable images."""
        if not 0 < xor < 256:
            raise ValueError("xor must be 1..255")
        with self._mutex:
            node = self._file(path)
            if offset >= len(node.data):
                raise ValueError(f"offset {offset} is past the end of {path}")
            node.data[offset] ^= xor
            if offset < len(node.durable):
                node.durable[offset] ^= xor

    def durable_bytes(self, path: str) -> bytes:
        """What `path` holds on disk now: its bytes as of its last completed sync."""
        with self._mutex:
            return bytes(self._file(path).durable)

    def statistics(self) -> SimStatistics:
        return SimStatistics(self._ops, self._syncs, self._dir_syncs, self._crashes, self._injected)

    # -- the FileSystem protocol ----------------------------------------------------------

    def open(self, path: str, *, create: bool) -> FileHandle:
        with self._mutex:
            self._begin("open", path)
            parent, name = self._parent(path)
            node = parent.entries.get(name)
            if create:
                if node is not None:
                    raise _oserror(errno.EEXIST, path)
                node = _File()
                parent.entries[name] = node
                parent.pending.append(_DirOp("link", name, node))
            elif node is None:
                raise _oserror(errno.ENOENT, path)
            elif isinstance(node, _Dir):
                raise _oserror(errno.EISDIR, path)
            return SimulatedFileHandle(self, node, path)

    def read_file(self, path: str) -> bytes:
        with self._mutex:
            self._check_running()
            return bytes(self._file(path).data)

    def exists(self, path: str) -> bool:
        with self._mutex:
            self._check_running()
            return self._lookup(path) is not None

    def listdir(self, path: str) -> list[str]:
        with self._mutex:
            self._check_running()
            return sorted(self._dir(self._parts(path), path).entries)

    def makedirs(self, path: str) -> None:
        with self._mutex:
            self._tick()
            node = self._root
            for part in self._parts(path):
                child = node.entries.get(part)
                if child is None:
                    child = _Dir()
                    node.entries[part] = child
                    node.pending.append(_DirOp("link", part, child))
                elif not isinstance(child, _Dir):
                    raise _oserror(errno.EEXIST, path, "a file is in the way")
                node = child

    def rename(self, src: str, dst: str) -> None:
        with self._mutex:
            self._begin("rename", src)
            src_dir, src_name = self._parent(src)
            dst_dir, dst_name = self._parent(dst)
            node = src_dir.entries.get(src_name)
            if node is None:
                raise _oserror(errno.ENOENT, src)
            target = dst_dir.entries.get(dst_name)
            if isinstance(target, _Dir) and target is not node:
                raise _oserror(errno.EISDIR, dst)
            if isinstance(node, _Dir) and target is not None and not isinstance(target, _Dir):
                raise _oserror(errno.ENOTDIR, dst)
            if target is node:
                return
            del src_dir.entries[src_name]
            dst_dir.entries[dst_name] = node
            if src_dir is dst_dir:
                src_dir.pending.append(_DirOp("rename", src_name, node, dst_name))
            else:
                src_dir.pending.append(_DirOp("unlink", src_name, node))
                dst_dir.pending.append(_DirOp("link", dst_name, node))

    def remove(self, path: str) -> None:
        with self._mutex:
            self._begin("remove", path)
            parent, name = self._parent(path)
            node = parent.entries.get(name)
            if node is None:
                raise _oserror(errno.ENOENT, path)
            if isinstance(node, _Dir):
                raise _oserror(errno.EISDIR, path)
            del parent.entries[name]
            parent.pending.append(_DirOp("unlink", name, node))

    def rmdir(self, path: str) -> None:
        with self._mutex:
            self._tick()
            parent, name = self._parent(path)
            node = parent.entries.get(name)
            if node is None:
                raise _oserror(errno.ENOENT, path)
            if not isinstance(node, _Dir):
                raise _oserror(errno.ENOTDIR, path)
            if node.entries:
                raise _oserror(errno.ENOTEMPTY, path)
            del parent.entries[name]
            parent.pending.append(_DirOp("unlink", name, node))

    def sync_dir(self, path: str) -> None:
        with self._mutex:
            self._begin("sync_dir", path)
            d = self._dir(self._parts(path), path)
            d.durable = dict(d.entries)
            d.pending.clear()
            self._dir_syncs += 1

    def lock(self, path: str) -> DirLock:
        with self._mutex:
            self._tick()
            key = "/" + "/".join(self._parts(path))
            parent, name = self._parent(path)
            node = parent.entries.get(name)
            if node is None:
                node = _File()
                parent.entries[name] = node
                parent.pending.append(_DirOp("link", name, node))
            elif isinstance(node, _Dir):
                raise _oserror(errno.EISDIR, path)
            if key in self._locks:
                raise BlockingIOError(errno.EWOULDBLOCK, os.strerror(errno.EWOULDBLOCK), path)
            lock = self._locks[key] = SimulatedLock(self, key)
            return lock


def writing_manifest(active: int = 1) -> bytes:
    """The `MANIFEST` of a log whose segment `active` is being written and none is sealed
    (as after its first open): beside a hand-made segment file, it makes a directory look
    like one that crashed mid-write, so recovery treats the segment's tail as torn."""
    return _log._encode_manifest({}, active, 0, False)
