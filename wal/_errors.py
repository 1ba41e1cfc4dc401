"""The wal error tree: one root, split by who is at fault.

- `InvalidArgument`: the caller's input was wrong; nothing was written.
- `LogLocked`, `LogClosed`: the caller used the log in a state that forbids it.
- `CorruptLog`: bytes on disk fail a check; names the file and offset.
- `LogBroken`: a write or fsync failed; the log refuses every later write until reopened.

OS errors are translated once, at the log boundary; the original is kept as `__cause__`.
"""

from __future__ import annotations


class WalError(Exception):
    """Root of every error the wal raises."""


class InvalidArgument(WalError, ValueError):
    """A key, value, option or limit is out of range. Nothing was written."""


class LogLocked(WalError):
    """Another opener holds the log directory's exclusive lock."""


class LogClosed(WalError):
    """The log was closed; open it again to use it."""


class CorruptLog(WalError):
    """Bytes on disk fail their checksum or structure check.

    `path` is the damaged file, `offset` the byte offset of the first bad frame or entry.
    """

    def __init__(self, path: str, offset: int, reason: str) -> None:
        super().__init__(f"corrupt log file {path} at offset {offset}: {reason}")
        self.path = path
        self.offset = offset
        self.reason = reason


class LogBroken(WalError):
    """A write or fsync failed: this and every later write fail until the log is reopened.

    Acknowledged writes are not lost: reopening recovers them (a torn tail left by the
    failed write is truncated). The log never retries an fsync in place, because after a
    failed fsync the kernel may already have dropped the dirty pages it could not write.
    """
