"""A shard's records, saved at a clean close so the next open skips reading the log.

Recovery from the log reads and decodes the newest history event of every live flow:
most of a restart's time at a million flows. At a clean close, when the shard's actor
has drained its channel (so every applied batch is on disk: a cancelled actor saves
nothing), its records are saved in one file beside the log, stamped with the
log's `position()`; the next open uses them only if the log still stands at exactly
that position. Any other case (a crash after later writes, a merge, a torn or flipped
file, another engine or Python version) falls back to the log: the checkpoint is a
cache, never a source of truth, and doubt costs time, not correctness.

File `records.ckpt` (written as `records.ckpt.tmp`, fsynced, renamed, directory synced;
the log's open removes a leftover `.tmp`)::

    8 bytes  magic b"FACKPT01"
    u32      header length (little-endian)
    header   CBOR {"format", "fields", "python", "marshal", "position", "count"}
    u64      xxh3-64 of the body
    body     marshal of the list of record tuples

`marshal` (not pickle): it only knows plain data, so loading runs no code; it keeps
interned and shared strings shared; and it is the fastest loader CPython has. Its format
may change between Python versions, hence "python" and "marshal" in the header.
"""

from __future__ import annotations

import marshal
import os
import struct
import sys
from typing import Any

import cbor2
import xxhash

import wal

from ._record import EVENT_FORMAT, FIELDS, Record

NAME = "records.ckpt"
MAGIC = b"FACKPT01"
FORMAT = 1
_HEAD = struct.Struct("<I")
_SUM = struct.Struct("<Q")

Position = tuple[int, tuple[tuple[int, int], ...]]


def _stamp(position: Position, count: int) -> dict[str, Any]:
    return {
        "format": [FORMAT, EVENT_FORMAT],
        "fields": list(FIELDS),
        "python": sys.implementation.cache_tag,
        "marshal": marshal.version,
        "position": [position[0], [list(p) for p in position[1]]],
        "count": count,
    }


def save(fs: wal.FileSystem, directory: str, position: Position, records: list[Record]) -> bool:
    """Write the checkpoint durably; False (and no file) when it cannot be written."""
    path = os.path.join(directory, NAME)
    tmp = path + ".tmp"
    try:
        body = marshal.dumps(records, 4)
    except ValueError:  # a value marshal cannot hold: the next open reads the log
        _remove(fs, path)
        return False
    header = cbor2.dumps(_stamp(position, len(records)))
    try:
        handle = fs.open(tmp, create=True)
        try:
            handle.truncate(0)
            handle.append(
                b"".join(
                    (
                        MAGIC,
                        _HEAD.pack(len(header)),
                        header,
                        _SUM.pack(xxhash.xxh3_64_intdigest(body)),
                        body,
                    )
                )
            )
            handle.sync()
        finally:
            handle.close()
        fs.rename(tmp, path)
        fs.sync_dir(directory)
    except OSError:
        _remove(fs, tmp)
        _remove(fs, path)
        return False
    return True


def load(fs: wal.FileSystem, directory: str, position: Position) -> list[Record] | None:
    """The saved records if they were saved at `position`, else None."""
    path = os.path.join(directory, NAME)
    try:
        if not fs.exists(path):
            return None
        data = fs.read_file(path)
    except OSError:
        return None
    if data[: len(MAGIC)] != MAGIC:
        return None
    at = len(MAGIC)
    try:
        (size,) = _HEAD.unpack_from(data, at)
        at += _HEAD.size
        header = cbor2.loads(data[at : at + size])
        at += size
        (digest,) = _SUM.unpack_from(data, at)
        at += _SUM.size
    except (struct.error, cbor2.CBORDecodeError, ValueError):
        return None
    if not isinstance(header, dict):
        return None
    count = header.get("count")
    if header != _stamp(position, count if isinstance(count, int) else -1):
        return None  # saved at another position, or by another format or Python
    body = memoryview(data)[at:]
    if xxhash.xxh3_64_intdigest(body) != digest:
        return None
    try:
        records = marshal.loads(body)
    except (ValueError, EOFError, TypeError):
        return None
    width = len(FIELDS)
    if (
        type(records) is not list
        or len(records) != count
        or not all(type(r) is tuple and len(r) == width for r in records)
    ):
        return None
    return records


def _remove(fs: wal.FileSystem, path: str) -> None:
    try:
        if fs.exists(path):
            fs.remove(path)
    except OSError:
        pass
