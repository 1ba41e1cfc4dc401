"""The file seam: every byte the wal reads or writes goes through `FileSystem`.

`OsFileSystem` is the real implementation. Tests swap in a fault-injecting one (simulated
power loss, EIO, ENOSPC) behind the same two protocols, so the log code under test is
exactly the code that runs in production.
"""

from __future__ import annotations

import errno
import fcntl
import os
from typing import Protocol


class FileHandle(Protocol):
    """An open file. Writes always append; reads are positional."""

    def append(self, data: bytes) -> None:
        """Append all of `data` (looping over short writes) or raise OSError."""

    def pread(self, size: int, offset: int) -> bytes: ...

    def sync(self) -> None:
        """fdatasync: make the appended bytes and the file size durable."""

    def truncate(self, size: int) -> None: ...

    def size(self) -> int: ...

    def close(self) -> None: ...


class DirLock(Protocol):
    def release(self) -> None: ...


class FileSystem(Protocol):
    def open(self, path: str, *, create: bool) -> FileHandle:
        """Open for reading and appending; with `create`, the file must not exist yet."""

    def read_file(self, path: str) -> bytes: ...

    def exists(self, path: str) -> bool: ...

    def listdir(self, path: str) -> list[str]: ...

    def makedirs(self, path: str) -> None: ...

    def rename(self, src: str, dst: str) -> None: ...

    def remove(self, path: str) -> None: ...

    def rmdir(self, path: str) -> None: ...

    def sync_dir(self, path: str) -> None:
        """fsync a directory, so entries created, renamed or removed in it are durable."""

    def lock(self, path: str) -> DirLock:
        """Take an exclusive lock on `path`; raise BlockingIOError if it is held."""


class OsFile:
    __slots__ = ("_fd",)

    def __init__(self, fd: int) -> None:
        self._fd = fd

    def append(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            written = os.write(self._fd, view)
            if written <= 0:  # pragma: no cover - the kernel reports errors as OSError
                raise OSError(errno.EIO, "short write")
            view = view[written:]

    def pread(self, size: int, offset: int) -> bytes:
        return os.pread(self._fd, size, offset)

    def sync(self) -> None:
        os.fdatasync(self._fd)

    def truncate(self, size: int) -> None:
        os.ftruncate(self._fd, size)

    def size(self) -> int:
        return os.fstat(self._fd).st_size

    def close(self) -> None:
        os.close(self._fd)

    def fileno(self) -> int:
        """The OS file descriptor (the log's AIO fdatasync needs it; not in the protocol:
        other file systems' handles are synced through their own `sync`)."""
        return self._fd


class _FlockLock:
    __slots__ = ("_fd",)

    def __init__(self, fd: int) -> None:
        self._fd = fd

    def release(self) -> None:
        if self._fd >= 0:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = -1


class OsFileSystem:
    """The real file system, through os.* calls.

    Files are created `file_mode` (0600) and directories `dir_mode` (0700) by default, as
    PostgreSQL does with its data directory: a log holds its users' payloads, which are
    nobody else's business. Pass wider modes to share them (the umask still applies)."""

    def __init__(self, *, file_mode: int = 0o600, dir_mode: int = 0o700) -> None:
        self.file_mode = file_mode
        self.dir_mode = dir_mode

    def open(self, path: str, *, create: bool) -> FileHandle:
        flags = os.O_RDWR | os.O_APPEND | os.O_CLOEXEC
        if create:
            flags |= os.O_CREAT | os.O_EXCL
        return OsFile(os.open(path, flags, self.file_mode))

    def read_file(self, path: str) -> bytes:
        with open(path, "rb") as f:
            return f.read()

    def exists(self, path: str) -> bool:
        return os.path.exists(path)

    def listdir(self, path: str) -> list[str]:
        return os.listdir(path)

    def makedirs(self, path: str) -> None:
        os.makedirs(path, mode=self.dir_mode, exist_ok=True)

    def rename(self, src: str, dst: str) -> None:
        os.rename(src, dst)

    def remove(self, path: str) -> None:
        os.remove(path)

    def rmdir(self, path: str) -> None:
        os.rmdir(path)

    def sync_dir(self, path: str) -> None:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def lock(self, path: str) -> DirLock:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, self.file_mode)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BaseException:
            os.close(fd)
            raise
        return _FlockLock(fd)


def makedirs_durably(fs: FileSystem, path: str) -> None:
    """Create `path` and its missing parents, syncing each parent that gained an entry:
    otherwise a power loss could take the new log directory, and all in it, away."""
    missing: list[str] = []
    head = os.path.normpath(path)
    while not fs.exists(head):
        missing.append(head)
        parent = os.path.dirname(head)
        if parent in ("", head):
            break
        head = parent
    fs.makedirs(path)
    for created in reversed(missing):
        fs.sync_dir(os.path.dirname(created) or ".")
