"""wal: a Bitcask-style append-only log store with group commit.

Knows nothing of flows and imports nothing from flowactors: it could ship on its own.
See `wal._format` for the byte layout and `wal._log` for the durability promise.
"""

from ._errors import CorruptLog, InvalidArgument, LogBroken, LogClosed, LogLocked, WalError
from ._format import MAX_KEY_BYTES, MAX_VALUE_BYTES, Columns, Op, decode_frames
from ._fs import DirLock, FileHandle, FileSystem, OsFileSystem, makedirs_durably
from ._log import (
    Log,
    LogStatistics,
    MergeReport,
    RecoveryReport,
    Repair,
    SyncMode,
    open_log,
)

__all__ = [
    "MAX_KEY_BYTES",
    "MAX_VALUE_BYTES",
    "Columns",
    "CorruptLog",
    "DirLock",
    "FileHandle",
    "FileSystem",
    "InvalidArgument",
    "Log",
    "LogBroken",
    "LogClosed",
    "LogLocked",
    "LogStatistics",
    "MergeReport",
    "Op",
    "OsFileSystem",
    "RecoveryReport",
    "Repair",
    "SyncMode",
    "WalError",
    "decode_frames",
    "makedirs_durably",
    "open_log",
]
