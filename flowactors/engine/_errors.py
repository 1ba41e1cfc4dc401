"""The flowactors error tree: one root, `FlowError`, split by who is at fault.

Caller errors (bad input, wrong state, stale lease) change nothing. Storage errors mean the
disk failed or holds damage; the wal's own errors are re-raised as these subclasses (which
also derive from the wal class, so `except wal.CorruptLog` keeps working).
"""

from __future__ import annotations

import wal


class FlowError(Exception):
    """Root of every error flowactors raises."""


class InvalidArgument(FlowError, ValueError):
    """An id, type, state, size or limit is invalid. Nothing was written."""


class FlowNotFound(FlowError, LookupError):
    """No flow with that id (in that partition)."""


class FlowExists(FlowError):
    """A flow with that id already exists (create without `idempotent`)."""


class IdempotencyConflict(FlowError):
    """An idempotent request was replayed with different content."""


class WrongState(FlowError):
    """The flow is not in the state the command requires."""


class StaleLease(FlowError):
    """The lease or fencing token is not current: another worker owns the flow now."""


class FlowTerminal(FlowError):
    """The flow is completed, failed or cancelled; rewind it to change it."""


class Overloaded(FlowError):
    """The shard's request queue stayed full for longer than the configured wait."""


class EngineClosed(FlowError):
    """The engine is closed (or closing)."""


class InternalError(FlowError):
    """A bug in flowactors surfaced while answering one request (a read); nothing was
    changed, and the shard goes on. Please report it."""


class StorageError(FlowError):
    """The log failed or holds damage."""


class ShardBroken(StorageError, wal.LogBroken):
    """A write or fsync failed: the shard refuses every request until the engine reopens."""


class CorruptLog(StorageError, wal.CorruptLog):
    """A log file fails its checks (names the file and offset)."""


class DataDirLocked(StorageError, wal.LogLocked):
    """Another engine holds this data directory."""


class DataDirDamaged(StorageError):
    """The data directory is not whole: its ENGINE file or a shard directory is missing,
    or a shard directory belongs to another engine or shard count. Nothing was changed;
    opening it anyway would serve fewer flows than were acknowledged."""


def translate(exc: wal.WalError) -> StorageError:
    """Map a wal error onto the flowactors tree (done once, at the shard boundary)."""
    if isinstance(exc, StorageError):
        return exc
    if isinstance(exc, wal.CorruptLog):
        return CorruptLog(exc.path, exc.offset, exc.reason)
    if isinstance(exc, wal.LogLocked):
        return DataDirLocked(str(exc))
    if isinstance(exc, wal.LogBroken):
        return ShardBroken(str(exc))
    return StorageError(str(exc))
