"""The log: segments + keydir + group commit + recovery + merge.

Theory of operation
-------------------
*Write path (group commit).* A writer validates its operations, then joins the open batch.
The task that opened a batch is its leader: when no commit is in flight it commits at once,
otherwise it waits for its turn. Everything that arrived while the previous commit was in
flight is therefore committed together: the leader encodes one frame per submitted batch of
operations, appends them with one write(2) and makes them durable with one fdatasync, and
the Trio loop keeps running meanwhile: the write (a copy into the page cache) is made in
the loop and the fdatasync through Linux AIO, completing on an eventfd the loop waits on
(`_aio.py`); without AIO, and for a rotation, both are made in a worker thread
(`_iothread.py`). Only then does it publish the new locations in the keydir and wake every
member of the batch. A reader never sees a value that a crash could take back. The
leader's part cannot be cancelled (its waits are shielded, and a cancel can interrupt
neither the AIO wait nor the commit thread), so a cancelled caller cannot strand the
others; a cancelled non-leader's write still lands.
This is the write-group design of LevelDB/RocksDB, without a background task, so the log
needs no nursery and raises plain exceptions.

*Sync modes.* `always` (default): acknowledged means fdatasync'd. `interval`: acknowledged
after write(2); fdatasync at most every `sync_interval_ms` on the write path, on `sync()`
and at close. A process crash loses nothing (the page cache survives it); a power loss
loses what was written since the last fdatasync. `never`: fdatasync only at rotation and
close; for tests and benchmarks.

*Failure.* If a write or fdatasync fails, the log is broken: the failing batch and every
later write raise `LogBroken`. The fsync is never retried (after a failed fsync the kernel
may have dropped the dirty pages). Reads still serve the keydir, which only ever holds
acknowledged data. Reopening recovers; a torn tail left by the failed write is truncated.
A failed commit's outcome is unknown, never "absent": a short write (ENOSPC) may have put
whole frames of it on disk before the tear, and those frames (each one writer's batch,
whole) are back after a reopen.

*Segments.* `NNNNNNNNNN.log`, append-only; the active one rotates at `segment_max_bytes`
(a segment overshoots by at most one commit batch, since frames never span files). A
closed segment is immutable and gets a hint file, written inside the rotating commit from
entries the publish loop kept in memory (a failed hint write is a failed write). The
directory is fsync'd after every create, rename and remove.

*The manifest.* `MANIFEST` names every sealed segment with its exact size, the active
segment, and how many bytes of the active segment were already durable when it was written
(`active_min`); it is rewritten (temp file, fsync, rename, directory fsync) at open, at each
rotation (after the new segment exists, before anything is written into it), by a merge
(before its inputs are removed) and at a clean close (then the active segment is listed as
sealed too). It is what makes whole-file damage loud: a sealed segment that is missing,
shorter or longer than listed, a segment the manifest does not know that holds bytes (a
duplicate or a renamed copy), or an active segment shorter than `active_min` is
`CorruptLog` naming the file and both sizes, never a silently smaller log. Only the active
segment's tail past `active_min` may be repaired as torn. A directory that holds segments
but no manifest is refused too, unless the caller says to build one (`adopt=True`, for a
log made before manifests existed, or `repair=True`).

*Recovery on open.* Merge leftovers are finished or discarded (see merge). Segments with a
valid hint load from it without reading values. The newest segment without a hint is the
one that was being written: it is scanned, and damage there is a torn tail, truncated to
the last good frame and reported, provided no valid frame of a *later* write follows the
damage (frames record where their write began). Any other damage, or damage in a closed
segment, raises `CorruptLog` naming file and offset, unless `repair=True`: then every
valid frame is kept, the damaged ranges are skipped and reported, and the segment is
sealed (data in damaged frames is lost, which is why repair is never implicit). A hint that
fails its checksum, or disagrees with its segment's size, is rebuilt from a strict scan.

*Last writer wins by sequence number, not by file order*, because merge outputs get new
segment ids but keep their entries' original sequence numbers.

*Merge.* Seals the active segment, then rewrites every closed segment keeping only the
entries the keydir points at. Outputs and their hints are
written into `merge/` and fsync'd; then a `merge/DONE` manifest naming inputs and outputs
is written and fsync'd: that is the commit point. The outputs are renamed in (hints
first), the keydir is repointed with compare-and-swap (a key written meanwhile keeps its
newer location), and the inputs are removed. A crash before DONE discards `merge/`; a crash
after it makes the next open finish the swap. Tombstones are dropped safely because a
merge always takes every closed segment, and segments it leaves out only hold newer data:
no older value of a deleted key can survive the merge and come back.
"""

from __future__ import annotations

import enum
import errno
import json
import os
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from functools import partial
from itertools import chain, repeat
from operator import add, and_, lshift, or_, rshift
from typing import TypeVar

import trio
import xxhash

from . import _format as fmt
from ._aio import AioSync, AioUnsupported, open_aio
from ._errors import CorruptLog, InvalidArgument, LogBroken, LogClosed, LogLocked, WalError
from ._fs import DirLock, FileHandle, FileSystem, OsFile, OsFileSystem, makedirs_durably
from ._iothread import IoThread
from ._keydir import (
    _SEGMENT_MASK,
    _SIZE_MASK,
    MAX_SEGMENT_BYTES,
    MAX_SEGMENT_ID,
    Keydir,
    pack,
    segment_of,
    seq_of,
    size_of,
    unpack,
)

_T = TypeVar("_T")

LOCK_NAME = "LOCK"
MANIFEST_NAME = "MANIFEST"
MANIFEST_FORMAT = 1
MERGE_DIR = "merge"
DONE_NAME = "DONE"
MERGE_FRAME_BYTES = 1 << 20
_RECYCLE_BYTES = 8 << 20


def _log_name(seg: int) -> str:
    return f"{seg:010d}.log"


def _hint_name(seg: int) -> str:
    return f"{seg:010d}.hint"


def _parse_id(name: str, suffix: str) -> int | None:
    stem = name[: -len(suffix)]
    if name.endswith(suffix) and len(stem) == 10 and stem.isdigit():
        return int(stem)
    return None


def _wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


class SyncMode(enum.Enum):
    ALWAYS = "always"
    INTERVAL = "interval"
    NEVER = "never"


@dataclass(frozen=True, slots=True)
class Repair:
    """One repair made while opening: a truncated torn tail or a skipped damaged range."""

    path: str
    offset: int
    dropped_bytes: int
    reason: str
    kind: str  # "torn-tail" | "salvaged" | "hint-rebuilt" | "manifest-rebuilt" | "manifest"


@dataclass(frozen=True, slots=True)
class RecoveryReport:
    segments: int
    segments_from_hints: int
    segments_scanned: int
    keys: int
    repairs: tuple[Repair, ...]
    merge: str | None  # None, "completed" or "discarded"
    seconds: float


@dataclass(frozen=True, slots=True)
class LogStatistics:
    segments: int
    active_segment: int
    keys: int
    live_bytes: int
    total_bytes: int
    dead_bytes: int
    frames_written: int
    records_written: int
    bytes_written: int
    commits: int
    fsyncs: int
    max_batch_frames: int
    mean_batch_frames: float
    batch_frames_histogram: dict[int, int]  # power-of-two bucket -> commits
    merges: int
    broken: bool
    # fdatasync latency of commits: power-of-two microsecond bucket -> syncs, and the sum.
    sync_micros_histogram: dict[int, int] = field(default_factory=dict)
    sync_seconds_total: float = 0.0
    # How the last commit's fdatasync was made: "aio", "thread", "inline" ("" before any).
    sync_via: str = ""


@dataclass(frozen=True, slots=True)
class MergeReport:
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    keys_copied: int
    bytes_before: int
    bytes_after: int


@dataclass(eq=False, slots=True)
class _Batch:
    """Frames committed together: one write(2), one fdatasync."""

    frames: list[fmt.Prepared] = field(default_factory=list)
    done: trio.Event = field(default_factory=trio.Event)
    turn: trio.Event = field(default_factory=trio.Event)
    error: BaseException | None = None
    force_sync: bool = False
    rotate: bool = False


@dataclass(slots=True)
class _Counters:
    frames: int = 0
    records: int = 0
    bytes: int = 0
    commits: int = 0
    fsyncs: int = 0
    max_batch: int = 0
    histogram: dict[int, int] = field(default_factory=dict)
    merges: int = 0
    sync_histogram: dict[int, int] = field(default_factory=dict)  # micros bucket -> syncs
    sync_ns: int = 0


class Log:
    """A Bitcask-style log store. Open it with `open_log` (or `await Log.open`)."""

    def __init__(
        self,
        path: str,
        fs: FileSystem,
        lock: DirLock,
        *,
        sync: SyncMode,
        sync_interval_ms: int,
        segment_max_bytes: int,
        clock_ms: Callable[[], int],
    ) -> None:
        self.path = path
        self._fs = fs
        self._lock: DirLock | None = lock
        self._sync_mode = sync
        self._sync_interval_ms = sync_interval_ms
        self._segment_max = segment_max_bytes
        self._clock = clock_ms
        self._keydir = Keydir()
        self._files: dict[int, FileHandle] = {}
        self._sizes: dict[int, int] = {}
        self._active = 0
        self._next_segment = 0
        self._next_seq = 1
        self._broken: LogBroken | None = None
        self._closed = False
        self._open_batch: _Batch | None = None
        self._leader_active = False
        self._unsynced = False
        self._last_sync_ms = 0
        self._last_sync_ns = 0  # the worker thread's last fdatasync, taken by `_commit`
        # Hint entries of the active segment, appended as commits publish: sealing a
        # segment at rotation or close then only writes them out.
        self._hint_body = bytearray()
        self._hint_count = 0
        self._recycle: tuple[bytes, list[fmt.Prepared]] | None = None
        self._merging = False
        self._merge_done = trio.Event()
        self._merge_done.set()
        # Held while the set of segments changes (a rotation, a merge's install), so the
        # manifest each writes describes the set as it is.
        self._layout_lock = trio.Lock()
        self._active_min = 0  # bytes of the active segment a manifest says are durable
        self._counters = _Counters()
        self.recovery = RecoveryReport(0, 0, 0, 0, (), None, 0.0)
        # The event loop runs on while a commit is on its way to disk: a commit writes in
        # the loop (into the page cache) and fdatasyncs through Linux AIO (`_aio` says
        # why); where AIO is unavailable, and for rotations (several files and syncs),
        # it writes and syncs in a worker thread. False runs everything inline, blocking
        # the loop: for tests on Trio's MockClock with autojump, where a task waiting on
        # the disk counts as idle and lets virtual time leap ahead by however long the
        # disk happens to take.
        self.io_threads = True
        self._io: IoThread | None = None  # the commit thread, started when first needed
        self._aio: AioSync | bool | None = True  # True: not tried yet; None: unavailable
        self.sync_via = ""  # how the last commit's fdatasync was made: aio, thread, inline

    # -- opening ------------------------------------------------------------------------

    @classmethod
    async def open(
        cls,
        path: str | os.PathLike[str],
        *,
        sync: SyncMode | str = SyncMode.ALWAYS,
        sync_interval_ms: int = 200,
        segment_max_bytes: int = 64 * 1024 * 1024,
        repair: bool = False,
        adopt: bool = False,
        fs: FileSystem | None = None,
        clock_ms: Callable[[], int] | None = None,
    ) -> Log:
        """Open (creating if needed) the log in directory `path`, recovering as documented.

        `adopt=True` accepts a directory of segments without a MANIFEST (a log written
        before manifests existed) and builds one from what is there, reported as a
        repair; nothing can be checked against it that first time."""
        try:
            mode = SyncMode(sync)
        except ValueError:
            raise InvalidArgument(f"sync must be one of {[m.value for m in SyncMode]}") from None
        if not 4096 <= segment_max_bytes <= MAX_SEGMENT_BYTES:
            raise InvalidArgument(f"segment_max_bytes must be 4096..{MAX_SEGMENT_BYTES}")
        if sync_interval_ms <= 0:
            raise InvalidArgument("sync_interval_ms must be positive")
        opener = partial(
            cls._open_sync,
            os.fspath(path),
            fs or OsFileSystem(),
            sync=mode,
            sync_interval_ms=sync_interval_ms,
            segment_max_bytes=segment_max_bytes,
            repair=repair,
            adopt=adopt,
            clock_ms=clock_ms or _wall_clock_ms,
        )
        return await trio.to_thread.run_sync(opener)

    @classmethod
    def _open_sync(
        cls,
        path: str,
        fs: FileSystem,
        *,
        sync: SyncMode,
        sync_interval_ms: int,
        segment_max_bytes: int,
        repair: bool,
        adopt: bool,
        clock_ms: Callable[[], int],
    ) -> Log:
        started = time.perf_counter()
        makedirs_durably(fs, path)
        try:
            lock = fs.lock(os.path.join(path, LOCK_NAME))
        except BlockingIOError:
            raise LogLocked(f"log directory {path} is already open (its LOCK is held)") from None
        log = cls(
            path,
            fs,
            lock,
            sync=sync,
            sync_interval_ms=sync_interval_ms,
            segment_max_bytes=segment_max_bytes,
            clock_ms=clock_ms,
        )
        try:
            log._recover(repair, adopt, started)
        except BaseException:
            log._release()
            raise
        return log

    def _recover(self, repair: bool, adopt: bool, started: float) -> None:
        fs, path = self._fs, self.path
        merge_outcome, merged = _finish_or_discard_merge(fs, path)
        names = fs.listdir(path)
        for name in names:
            if name.endswith(".tmp"):
                fs.remove(os.path.join(path, name))
        logs = sorted(i for n in names if (i := _parse_id(n, ".log")) is not None)
        hints = {i for n in names if (i := _parse_id(n, ".hint")) is not None}
        for orphan in hints - set(logs):
            fs.remove(os.path.join(path, _hint_name(orphan)))
        hintless = [i for i in logs if i not in hints]
        write_seg = hintless[-1] if hintless else None

        repairs: list[Repair] = []
        for seg in logs:
            self._files[seg] = fs.open(os.path.join(path, _log_name(seg)), create=False)
        found = {seg: self._files[seg].size() for seg in logs}
        sealed, active, active_min = self._check_manifest(found, merged, repair, adopt, repairs)

        tombs: dict[bytes, int] = {}
        from_hints = scanned = 0
        max_seq = 0
        write_entries: list[fmt.HintEntry] = []
        for seg in logs:
            handle = self._files[seg]
            size = found[seg]
            entries: Iterable[fmt.HintEntry] | None = None
            if seg in hints:
                entries = self._read_hint(seg, size, repairs)
            if entries is not None:
                from_hints += 1
            else:
                scanned += 1
                frames, size, salvaged = self._scan_segment(
                    seg,
                    handle,
                    lenient=seg == write_seg and seg not in sealed,
                    floor=active_min if seg == active else 0,
                    repair=repair,
                    repairs=repairs,
                )
                entries = fmt.last_ops(frames).values()
                if seg == write_seg:
                    write_entries = list(entries)
                if seg != write_seg or salvaged:
                    self._write_hint_sync(seg, list(entries), size)
                    if seg == write_seg:
                        write_seg = None
            self._sizes[seg] = size
            max_seq = max(max_seq, self._load(seg, entries, tombs))
        self._next_seq = max_seq + 1
        self._next_segment = (logs[-1] + 1) if logs else 1
        if write_seg is None:
            self._active = self._create_segment_sync()
        else:
            self._active = write_seg
            body, count = fmt.encode_hint_entries(write_entries)
            self._hint_body = bytearray(body)
            self._hint_count = count
            if self._sizes[write_seg]:
                # What recovery found may sit in the page cache only (the last process
                # crashed, the machine did not): durable before the manifest vouches for it.
                self._files[write_seg].sync()
        self._active_min = self._sizes[self._active]
        self._write_manifest_sync(self._manifest_blob(clean=False))
        self.recovery = RecoveryReport(
            segments=len(self._files),
            segments_from_hints=from_hints,
            segments_scanned=scanned,
            keys=len(self._keydir),
            repairs=tuple(repairs),
            merge=merge_outcome,
            seconds=time.perf_counter() - started,
        )

    def _read_hint(self, seg: int, size: int, repairs: list[Repair]) -> list[fmt.HintEntry] | None:
        hint_path = os.path.join(self.path, _hint_name(seg))
        try:
            hint_seg, hint_size, entries = fmt.decode_hint(self._fs.read_file(hint_path), hint_path)
            if hint_seg != seg or hint_size != size:
                raise CorruptLog(hint_path, 0, f"hint describes {hint_seg}/{hint_size} bytes")
            return list(entries)
        except CorruptLog as exc:
            repairs.append(Repair(hint_path, exc.offset, 0, exc.reason, "hint-rebuilt"))
            return None

    def _scan_segment(
        self,
        seg: int,
        handle: FileHandle,
        *,
        lenient: bool,
        floor: int,
        repair: bool,
        repairs: list[Repair],
    ) -> tuple[list[fmt.Frame], int, bool]:
        """Scan one segment; return (frames, size to keep, sealed-by-salvage). Damage is a
        torn tail only in the segment being written (`lenient`), past the `floor` bytes the
        manifest says were durable, and with no valid frame of a later write after it."""
        seg_path = os.path.join(self.path, _log_name(seg))
        data = handle.pread(handle.size(), 0)
        result = fmt.scan(data, seg)
        if result.error is None:
            return result.frames, len(data), False
        bad = result.end
        later_writes = [f for f in result.later_frames if f.batch_start > bad]
        if lenient and not later_writes and bad >= floor:
            handle.truncate(bad)
            handle.sync()
            repairs.append(Repair(seg_path, bad, len(data) - bad, result.error, "torn-tail"))
            return result.frames, bad, False
        if not repair:
            detail = "; valid frames of later writes follow it" if later_writes else ""
            if bad < floor:
                detail += f"; the first {floor} bytes were durable when the manifest was written"
            raise CorruptLog(seg_path, bad, result.error + detail)
        frames = result.frames + result.later_frames
        kept_end = bad
        for frame in result.later_frames:
            if frame.offset > kept_end:
                repairs.append(
                    Repair(seg_path, kept_end, frame.offset - kept_end, result.error, "salvaged")
                )
            kept_end = frame.offset + frame.size
        if kept_end < len(data):
            repairs.append(
                Repair(seg_path, kept_end, len(data) - kept_end, result.error, "salvaged")
            )
        return frames, len(data), True

    def _check_manifest(
        self,
        found: dict[int, int],
        merged: dict[str, list[int]] | None,
        repair: bool,
        adopt: bool,
        repairs: list[Repair],
    ) -> tuple[set[int], int | None, int]:
        """Hold the segments found (id -> size) against the manifest; return the sealed
        segment ids, the active segment and its durable floor (see the module doc).
        Every disagreement is `CorruptLog`, or with `repair` a reported repair."""
        fs, path = self._fs, self.path
        mpath = os.path.join(path, MANIFEST_NAME)
        holding = {seg for seg, size in found.items() if size}
        problems: list[CorruptLog] = []
        if not fs.exists(mpath):
            if not holding:
                return set(), None, 0  # a new log, or one whose first open was cut short
            if not (adopt or repair):
                raise CorruptLog(
                    mpath,
                    0,
                    f"missing, but the directory holds {len(holding)} segment(s) with data: "
                    "it was deleted, or the log was made before manifests existed "
                    "(open it once with adopt=True for that)",
                )
            repairs.append(Repair(mpath, 0, 0, "built from the segments found", "manifest-rebuilt"))
            return set(), None, 0
        try:
            sealed, active, active_min = _decode_manifest(fs.read_file(mpath), mpath)
        except CorruptLog as exc:
            if not repair:
                raise
            repairs.append(Repair(mpath, exc.offset, 0, exc.reason, "manifest-rebuilt"))
            return set(), None, 0
        if merged is not None:  # a merge finished at this open: its outputs replace inputs
            for seg in merged["inputs"]:
                sealed.pop(seg, None)
            for seg in merged["outputs"]:
                sealed.setdefault(seg, found.get(seg, 0))
        for seg, size in sorted(sealed.items()):
            seg_path = os.path.join(path, _log_name(seg))
            have = found.get(seg)
            if have is None:
                problems.append(
                    CorruptLog(
                        seg_path, 0, f"missing: the manifest lists it sealed at {size} bytes"
                    )
                )
            elif have != size:
                problems.append(
                    CorruptLog(
                        seg_path,
                        min(have, size),
                        f"sealed segment is {have} bytes, but it was sealed at {size} bytes",
                    )
                )
        if active not in sealed and active_min:
            seg_path = os.path.join(path, _log_name(active))
            have = found.get(active)
            if have is None or have < active_min:
                problems.append(
                    CorruptLog(
                        seg_path,
                        have or 0,
                        f"active segment is {'missing' if have is None else f'{have} bytes'}, "
                        f"but its first {active_min} bytes were durable",
                    )
                )
        for seg in sorted(holding - set(sealed) - {active}):
            problems.append(
                CorruptLog(
                    os.path.join(path, _log_name(seg)),
                    0,
                    f"holds {found[seg]} bytes but the manifest does not list it "
                    "(a copy, a rename, or a file from elsewhere)",
                )
            )
        if problems and not repair:
            raise problems[0]
        for problem in problems:
            repairs.append(Repair(problem.path, problem.offset, 0, problem.reason, "manifest"))
        if problems:
            return set(), None, 0
        return set(sealed), active, active_min

    def _manifest_blob(self, *, clean: bool) -> bytes:
        """The manifest of the segment set as it stands (event loop or an exclusive thread).
        `clean`: the active segment is sealed too (a clean close)."""
        active = self._active
        sealed = {seg: size for seg, size in self._sizes.items() if size and seg != active}
        if clean and self._sizes.get(active):
            sealed[active] = self._sizes[active]
        return _encode_manifest(sealed, active, self._active_min, clean)

    def _write_manifest_sync(self, blob: bytes) -> None:
        _write_file_durably(self._fs, os.path.join(self.path, MANIFEST_NAME), blob)
        self._fs.sync_dir(self.path)

    def _load(self, seg: int, entries: Iterable[fmt.HintEntry], tombs: dict[bytes, int]) -> int:
        """Fold one segment's last operations into the keydir, newest sequence winning."""
        kd = self._keydir
        kmap = kd.map
        top = 0
        for key, kind, offset, size, seq in entries:
            top = max(top, seq)
            cur = kmap.get(key)
            if cur is not None and seq_of(cur) > seq:
                continue
            tomb = tombs.get(key)
            if kind == fmt.PUT:
                if tomb is not None:
                    if tomb > seq:
                        continue
                    del tombs[key]
                kd.set(key, pack(seg, offset, size, seq))
            else:
                kd.delete(key)
                if tomb is None or tomb < seq:
                    tombs[key] = seq
        return top

    def _allocate_segment_id(self) -> int:
        seg = self._next_segment
        if seg > MAX_SEGMENT_ID:
            raise WalError("segment ids exhausted; merge the log into a new directory")
        self._next_segment += 1
        return seg

    def _create_segment_file(self, seg: int) -> FileHandle:
        """Create an empty segment file and make its directory entry durable (any thread)."""
        handle = self._fs.open(os.path.join(self.path, _log_name(seg)), create=True)
        self._fs.sync_dir(self.path)
        return handle

    def _create_segment_sync(self) -> int:
        seg = self._allocate_segment_id()
        self._files[seg] = self._create_segment_file(seg)
        self._sizes[seg] = 0
        return seg

    def _write_hint_sync(self, seg: int, entries: Sequence[fmt.HintEntry], size: int) -> None:
        blob = fmt.encode_hint(seg, size, entries)
        _write_file_durably(self._fs, os.path.join(self.path, _hint_name(seg)), blob)
        self._fs.sync_dir(self.path)

    def _seal_sync(self, seg: int, size: int, count: int, body: bytes | bytearray) -> None:
        """Write the hint of a segment that just closed, from the entries kept in memory."""
        blob = fmt.seal_hint(seg, size, count, body)
        _write_file_durably(self._fs, os.path.join(self.path, _hint_name(seg)), blob)
        self._fs.sync_dir(self.path)

    # -- writing ------------------------------------------------------------------------

    async def put(self, key: bytes, value: bytes) -> None:
        """Store one value; returns once it is durable (per the sync mode)."""
        await self.write_frames([[(key, value)]])

    async def delete(self, key: bytes) -> None:
        """Write a tombstone for `key` (a no-op for readers if it was absent)."""
        await self.write_frames([[(key, None)]])

    async def write(self, ops: Sequence[fmt.Op]) -> None:
        """Write a batch of puts and tombstones as one atomic frame."""
        await self.write_frames([ops])

    async def write_frames(self, frames: Sequence[Sequence[fmt.Op] | fmt.Columns]) -> None:
        """Write several atomic frames in one commit (each frame all-or-nothing); a frame
        is a list of operations or the same as `Columns` (keys and values).

        Every operation is checked (and its frame body encoded) here, in the caller, so a
        bad one raises `InvalidArgument` before anything joins the commit."""
        prepared = [fmt.prepare(ops) for ops in frames]
        if sum(len(p.body) for p in prepared) > fmt.MAX_BODY_BYTES:
            raise InvalidArgument(f"one call writes at most {fmt.MAX_BODY_BYTES} bytes")
        await self._submit(prepared, force_sync=False, rotate=False)

    async def sync(self) -> None:
        """fdatasync now (useful in `interval` and `never` modes)."""
        await self._submit([], force_sync=True, rotate=False)

    async def rotate(self) -> None:
        """Close the active segment (writing its hint) and start a new one."""
        await self._submit([], force_sync=True, rotate=True)

    def _check_writable(self) -> None:
        if self._closed:
            raise LogClosed(f"log {self.path} is closed")
        if self._broken is not None:
            raise LogBroken(str(self._broken)) from self._broken.__cause__

    async def _submit(self, frames: list[fmt.Prepared], *, force_sync: bool, rotate: bool) -> None:
        self._check_writable()
        batch = self._open_batch
        leader = batch is None
        if batch is None:
            batch = self._open_batch = _Batch()
        batch.frames.extend(frames)
        batch.force_sync |= force_sync
        batch.rotate |= rotate
        if leader:
            if self._leader_active:
                with trio.CancelScope(shield=True):
                    await batch.turn.wait()
                    await self._lead(batch)
            else:
                # No shield needed here (a CancelScope costs ~12 us): the leader's only
                # wait is the disk, and neither way to it lets a cancel through: the AIO
                # wait shields itself (`AioSync.fdatasync`), the commit thread cannot be
                # interrupted (`IoThread.run`), and a rotation shields its lock.
                self._leader_active = True
                await self._lead(batch)
        else:
            await batch.done.wait()
        if batch.error is not None:
            if isinstance(batch.error, WalError):
                raise type(batch.error)(str(batch.error)) from batch.error.__cause__
            raise LogBroken(f"commit failed: {batch.error!r}") from batch.error

    async def _lead(self, batch: _Batch) -> None:
        if self._open_batch is batch:
            self._open_batch = None  # later arrivals form the next batch
        try:
            if self._broken is not None:
                batch.error = self._broken
            elif self._closed:
                batch.error = LogClosed(f"log {self.path} is closed")
            else:
                await self._commit(batch)
        except BaseException as exc:
            batch.error = exc
            if not isinstance(exc, WalError):
                self._broken = LogBroken(f"commit failed: {exc!r}")
                self._broken.__cause__ = exc
            raise
        finally:
            batch.done.set()
            nxt = self._open_batch
            if nxt is not None:
                nxt.turn.set()
            else:
                self._leader_active = False

    async def _commit(self, batch: _Batch) -> None:
        """Seal, write and sync one batch; publish it."""
        rotating = batch.rotate or (
            self._sizes[self._active] > 0
            and self._sizes[self._active] + sum(fmt.HEADER_SIZE + len(p.body) for p in batch.frames)
            > self._segment_max
        )
        if not rotating:
            await self._commit_locked(batch)
            return
        with trio.CancelScope(shield=True):
            async with self._layout_lock:  # a merge's install must not interleave a rotation
                await self._commit_locked(batch)

    async def _commit_locked(self, batch: _Batch) -> None:
        pieces: list[bytes] = []
        placed: list[tuple[int, int, fmt.Prepared]] = []  # (frame offset, seq, frame)
        size = sum(fmt.HEADER_SIZE + len(p.body) for p in batch.frames)
        old_active = self._active
        rotate = batch.rotate or (
            self._sizes[old_active] > 0 and self._sizes[old_active] + size > self._segment_max
        )
        if rotate and self._sizes[old_active] == 0:
            rotate = False
        new_seg = self._allocate_segment_id() if rotate else None
        seg = new_seg if new_seg is not None else old_active
        base = 0 if rotate else self._sizes[old_active]
        pos = base
        now = self._clock()
        seq = self._next_seq
        for prepared in batch.frames:
            pieces.append(fmt.seal(prepared, seq, now, pos - base, seg, pos))
            pieces.append(prepared.body)
            placed.append((pos, seq, prepared))
            pos += fmt.HEADER_SIZE + len(prepared.body)
            seq += 1
        blob = b"".join(pieces)
        # The previous commit's buffers are freed only now, after this one's were
        # allocated: freed at the top of the heap, glibc would trim it and every commit
        # would fault in fresh pages (a 228 KB commit: ~80 page faults, 8x its CPU).
        self._recycle = (blob, batch.frames) if len(blob) <= _RECYCLE_BYTES else None
        manifest = None
        if new_seg is not None:
            sealed = {s: n for s, n in self._sizes.items() if n}
            manifest = _encode_manifest(sealed, new_seg, 0, False)
        sync = (
            self._sync_mode is SyncMode.ALWAYS
            or batch.force_sync
            or (
                self._sync_mode is SyncMode.INTERVAL
                and now - self._last_sync_ms >= self._sync_interval_ms
            )
        )
        new_handle: FileHandle | None = None
        try:
            aio = self._aio_for(new_seg)
            if aio is not None:
                await self._write_aio(aio, blob, sync)
            else:
                write = partial(
                    self._write_sync, blob, new_seg, manifest, sync, self._hint_body,
                    self._hint_count,
                )  # fmt: skip
                new_handle = await self._in_thread(write) if self.io_threads else write()
                if sync:
                    self.sync_via = "thread" if self.io_threads else "inline"
        except OSError as exc:
            self._broken = LogBroken(
                f"write to {self.path} failed ({errno.errorcode.get(exc.errno or 0, exc)}: "
                f"{exc.strerror}); the log refuses writes until it is reopened"
            )
            self._broken.__cause__ = exc
            raise self._broken from exc
        if new_seg is not None and new_handle is not None:
            # Registered here, in the event loop: the worker thread never mutates the dicts
            # that statistics() and merge iterate.
            self._files[new_seg] = new_handle
            self._sizes[new_seg] = 0
            self._active = new_seg
            self._active_min = 0
            self._hint_body = bytearray()
            self._hint_count = 0
        assert seg == self._active
        self._sizes[seg] += len(blob)
        if sync:
            self._last_sync_ms = now
            self._counters.fsyncs += 1
            if self._last_sync_ns:
                ns, self._last_sync_ns = self._last_sync_ns, 0
                self._counters.sync_ns += ns
                bucket = 1 << max(ns // 1000 - 1, 0).bit_length()
                hist = self._counters.sync_histogram
                hist[bucket] = hist.get(bucket, 0) + 1
        self._next_seq = seq
        # Publish: the bytes are on disk (or in the page cache, per the sync mode).
        records = 0
        for frame_off, fseq, prepared in placed:
            records += self._publish(seg, frame_off, fseq, prepared)
        self._hint_count += records
        c = self._counters
        n = len(batch.frames)
        if n:
            c.commits += 1
            c.frames += n
            c.records += records
            c.bytes += len(blob)
            c.max_batch = max(c.max_batch, n)
            bucket = 1 << (n - 1).bit_length()
            c.histogram[bucket] = c.histogram.get(bucket, 0) + 1

    def _publish(self, seg: int, frame_off: int, fseq: int, p: fmt.Prepared) -> int:
        """Point the keydir at one written frame's entries and append their hint entries;
        return the entry count. Keydir.set inlined, column-wise in C loops when the frame
        holds only puts of distinct keys (the common case), else one record at a time."""
        kmap = self._keydir.map
        live = self._keydir.live
        keys = p.keys
        loc_base = (fseq << 96) | (seg << 72)
        if p.kinds is None and len(keys) == 1:  # one put: straight-line, no iterators
            key = keys[0]
            offset = frame_off + p.positions[0]
            size = p.sizes[0]
            self._hint_body += fmt.hint_entry_head(fmt.PUT, p.klens[0], size, offset, fseq)
            self._hint_body += key
            old = kmap.get(key)
            if old is not None:
                old_seg = segment_of(old)
                live[old_seg] = live.get(old_seg, 0) - size_of(old)
            kmap[key] = loc_base | (offset << 32) | size
            live[seg] = live.get(seg, 0) + size
            return 1
        offsets = list(map(add, p.positions, repeat(frame_off)))
        kinds = p.kinds if p.kinds is not None else [fmt.PUT] * len(keys)
        heads = map(fmt.hint_entry_head, kinds, p.klens, p.sizes, offsets, repeat(fseq))
        self._hint_body += b"".join(chain.from_iterable(zip(heads, keys, strict=True)))
        if p.kinds is None and p.unique and len(keys) >= 16:
            olds = list(filter(None, map(kmap.get, keys)))  # a location is never 0
            locs = map(or_, map(lshift, offsets, repeat(32)), p.sizes)
            kmap.update(zip(keys, map(or_, locs, repeat(loc_base)), strict=True))
            live[seg] = live.get(seg, 0) + len(p.body)
            if olds:
                old_segs = set(map(and_, map(rshift, olds, repeat(72)), repeat(_SEGMENT_MASK)))
                if len(old_segs) == 1:
                    (old_seg,) = old_segs
                    freed = sum(map(and_, olds, repeat(_SIZE_MASK)))
                    live[old_seg] = live.get(old_seg, 0) - freed
                else:
                    for prev in olds:
                        old_seg = segment_of(prev)
                        live[old_seg] = live.get(old_seg, 0) - size_of(prev)
            return len(keys)
        added = 0
        for key, kind, offset, size in zip(keys, kinds, offsets, p.sizes, strict=True):
            old = kmap.get(key)
            if old is not None:
                old_seg = segment_of(old)
                live[old_seg] = live.get(old_seg, 0) - size_of(old)
            if kind == fmt.PUT:
                kmap[key] = loc_base | (offset << 32) | size
                added += size
            elif old is not None:
                del kmap[key]
        live[seg] = live.get(seg, 0) + added
        return len(keys)

    def _write_sync(
        self,
        blob: bytes,
        new_seg: int | None,
        manifest: bytes | None,
        sync: bool,
        hint_body: bytearray,
        hint_count: int,
    ) -> FileHandle | None:
        """Worker thread: rotate to `new_seg` if given (sealing the closed segment with its
        hint, creating the new one, then recording both in the manifest before a byte goes
        into the new segment), append, fdatasync. Returns the new segment's handle, which the caller
        registers in the event loop. A failure here fails the batch, which was not yet
        written: nothing unacknowledged is left half-done.
        """
        handle = self._files[self._active]
        new_handle: FileHandle | None = None
        if new_seg is not None:
            if self._unsynced or self._sync_mode is not SyncMode.ALWAYS:
                handle.sync()  # a hint may only describe bytes that are durable
            self._unsynced = False
            self._seal_sync(self._active, self._sizes[self._active], hint_count, hint_body)
            handle = new_handle = self._create_segment_file(new_seg)
            assert manifest is not None
            self._write_manifest_sync(manifest)
        if blob:
            handle.append(blob)
            self._unsynced = True
        if sync and self._unsynced:
            started = time.perf_counter_ns()
            handle.sync()
            self._last_sync_ns = time.perf_counter_ns() - started
            self._unsynced = False
        return new_handle

    def _aio_for(self, new_seg: int | None) -> AioSync | None:
        """The AIO context a commit syncs through, or None for the thread / inline path:
        a rotation, a file that is not an OS file (a test's fault-injecting one), no AIO
        on this system, or `io_threads=False`."""
        aio = self._aio
        if aio is None or new_seg is not None or not self.io_threads:
            return None
        if type(self._files[self._active]) is not OsFile:
            return None
        if aio is True:
            aio = self._aio = open_aio()
        assert aio is not False
        return aio

    async def _write_aio(self, aio: AioSync, blob: bytes, sync: bool) -> None:
        """Append in the loop (a copy into the page cache), fdatasync through AIO. If the
        kernel refuses AIO fdatasync (nothing was submitted), sync in the commit thread,
        now and from then on."""
        handle = self._files[self._active]
        assert type(handle) is OsFile
        if blob:
            handle.append(blob)
            self._unsynced = True
        if sync and self._unsynced:
            started = time.perf_counter_ns()
            try:
                await aio.fdatasync(handle.fileno())
                self.sync_via = "aio"
            except AioUnsupported:
                self._aio = None
                aio.close()
                await self._in_thread(handle.sync)
                self.sync_via = "thread"
            self._last_sync_ns = time.perf_counter_ns() - started
            self._unsynced = False

    # -- reading ------------------------------------------------------------------------

    def get(self, key: bytes) -> bytes | None:
        """The latest acknowledged value of `key`, read from disk; None if absent."""
        if self._closed:
            raise LogClosed(f"log {self.path} is closed")
        loc = self._keydir.map.get(key)
        if loc is None:
            return None
        seg = segment_of(loc)
        offset = (loc >> 32) & 0xFFFFFFFFFF
        size = size_of(loc)
        try:
            data = self._files[seg].pread(size, offset)
            if len(data) != size:
                raise CorruptLog("", offset, "entry cut short")
            return fmt.decode_entry_value("", data, offset, key)
        except (OSError, CorruptLog) as exc:
            # The file name is formatted only on this rare path: get() is hot in recovery.
            reason = exc.reason if isinstance(exc, CorruptLog) else f"read failed: {exc}"
            raise CorruptLog(os.path.join(self.path, _log_name(seg)), offset, reason) from exc

    def get_many(self, keys: Iterable[bytes]) -> Iterator[tuple[bytes, bytes]]:
        """(key, value) for each live key among `keys`, in file order, not request order.

        For bulk reads such as an engine's recovery: entries are sorted by location and
        every segment is read once, sequentially, instead of one pread per key. Every entry
        is still checked (kind, key, value checksum) as in `get`.
        """
        if self._closed:
            raise LogClosed(f"log {self.path} is closed")
        kmap = self._keydir.map
        located = [(loc, key) for key in keys if (loc := kmap.get(key)) is not None]
        located.sort(key=lambda item: (item[0] >> 32) & ((1 << 64) - 1))  # segment, offset
        current = -1
        data = b""
        view = memoryview(data)
        decode = fmt.decode_entry_value
        for loc, key in located:
            seg = segment_of(loc)
            if seg != current:
                current = seg
                data = self._files[seg].pread(self._sizes[seg], 0)
                view = memoryview(data)
            offset = (loc >> 32) & 0xFFFFFFFFFF
            size = size_of(loc)
            try:
                if offset + size > len(data):
                    raise CorruptLog("", offset, "entry cut short")
                value = decode("", bytes(view[offset : offset + size]), offset, key)
            except CorruptLog as exc:
                path = os.path.join(self.path, _log_name(seg))
                raise CorruptLog(path, offset, exc.reason) from exc
            if value is not None:
                yield key, value

    def __contains__(self, key: object) -> bool:
        return key in self._keydir.map

    def __len__(self) -> int:
        return len(self._keydir)

    def value_size(self, key: bytes) -> int | None:
        """The stored value's size in bytes, without reading it; None if absent."""
        loc = self._keydir.map.get(key)
        if loc is None:
            return None
        seg, offset, _size, _seq = unpack(loc)
        head = self._files[seg].pread(fmt.ENTRY_HEADER_SIZE, offset)
        return fmt.entry_value_length(os.path.join(self.path, _log_name(seg)), head, offset)

    def position(self) -> tuple[int, tuple[tuple[int, int], ...]]:
        """Where the log stands: the next sequence number and (segment, size) of every
        non-empty segment. The log only appends, repair only cuts what a crash left
        unacknowledged, and merge changes the segment set, so two equal positions of
        one directory mean equal contents: a cache derived from the log (the engine's
        checkpoint) is valid exactly when it was made at the position the log has now."""
        sizes = tuple(sorted((seg, size) for seg, size in self._sizes.items() if size))
        return self._next_seq, sizes

    def keys(self, prefix: bytes = b"") -> list[bytes]:
        """A snapshot of the live keys starting with `prefix` (unordered)."""
        return self._keydir.keys_with_prefix(prefix)

    def items(self, prefix: bytes = b"") -> Iterator[tuple[bytes, bytes]]:
        """Live (key, value) pairs under `prefix`, values read from disk one by one."""
        for key in self.keys(prefix):
            value = self.get(key)
            if value is not None:
                yield key, value

    # -- merge --------------------------------------------------------------------------

    async def merge(self) -> MergeReport:
        """Rewrite every closed segment keeping only live entries (see the module doc)."""
        self._check_writable()
        if self._merging:
            raise InvalidArgument("a merge is already running on this log")
        self._merging = True
        self._merge_done = trio.Event()
        try:
            if self._sizes[self._active] > 0:
                await self.rotate()
            inputs = sorted(s for s in self._files if s != self._active)
            bytes_before = sum(self._sizes[s] for s in inputs)
            if not inputs:
                return MergeReport((), (), 0, 0, 0)
            chosen = set(inputs)
            live = sorted(
                ((k, loc) for k, loc in self._keydir.map.items() if segment_of(loc) in chosen),
                key=_file_position,
            )
            live_bytes = sum(size_of(loc) for _k, loc in live)
            # Merged entries carry 8 more header bytes; reserve ids generously (gaps are fine).
            # An output is closed only when it plus the next entry would pass the limit, so
            # each output and the next one's first entry hold more than limit - 128 bytes.
            merged_bytes = live_bytes + 8 * len(live)
            reserve = (2 * merged_bytes) // (self._segment_max - 128) + 2
            first = self._next_segment
            self._next_segment += reserve
            try:
                moves, outputs = await trio.to_thread.run_sync(
                    self._merge_copy_sync, inputs, live, list(range(first, first + reserve))
                )
            except OSError as exc:  # translated here like every OS error (poison on failure)
                self._broken = LogBroken(f"merge failed ({exc}); reopen to use the log again")
                self._broken.__cause__ = exc
                raise self._broken from exc
            self._check_writable()
            try:
                async with self._layout_lock:
                    handles = await trio.to_thread.run_sync(self._merge_install_sync, outputs)
                    for seg, size in outputs:
                        self._files[seg] = handles[seg]
                        self._sizes[seg] = size
                    copied = 0
                    for key, old, new in moves:
                        copied += self._keydir.replace_if(key, old, new)
                    for seg in inputs:
                        self._files.pop(seg).close()
                        del self._sizes[seg]
                        left = self._keydir.live.pop(seg, 0)
                        assert left == 0, f"merge left {left} live bytes in segment {seg}"
                    manifest = self._manifest_blob(clean=False)
                    await trio.to_thread.run_sync(self._merge_cleanup_sync, inputs, manifest)
            except OSError as exc:
                self._broken = LogBroken(f"merge commit failed ({exc}); reopen to finish it")
                self._broken.__cause__ = exc
                raise self._broken from exc
            self._counters.merges += 1
            return MergeReport(
                tuple(inputs),
                tuple(s for s, _ in outputs),
                copied,
                bytes_before,
                sum(size for _, size in outputs),
            )
        finally:
            self._merging = False
            self._merge_done.set()

    def _merge_copy_sync(
        self, inputs: list[int], live: list[tuple[bytes, int]], out_ids: list[int]
    ) -> tuple[list[tuple[bytes, int, int]], list[tuple[int, int]]]:
        fs = self._fs
        mdir = os.path.join(self.path, MERGE_DIR)
        fs.makedirs(mdir)
        moves: list[tuple[bytes, int, int]] = []
        outputs: list[tuple[int, int]] = []
        out_ids = list(out_ids)
        writer: _MergeWriter | None = None
        now = self._clock()
        try:
            by_seg: dict[int, list[tuple[bytes, int]]] = {}
            for key, loc in live:
                by_seg.setdefault(segment_of(loc), []).append((key, loc))
            for seg in inputs:
                items = by_seg.get(seg)
                if not items:
                    continue
                seg_path = os.path.join(self.path, _log_name(seg))
                data = self._files[seg].pread(self._sizes[seg], 0)
                for key, loc in items:
                    _s, offset, size, seq = unpack(loc)
                    value = fmt.decode_entry_value(
                        seg_path, data[offset : offset + size], offset, key
                    )
                    assert value is not None
                    if writer is None or writer.full(len(key) + len(value), self._segment_max):
                        if writer is not None:
                            moves.extend(writer.flush())  # its pending entries, too
                            outputs.append(writer.finish())
                        writer = _MergeWriter(fs, mdir, out_ids.pop(0), now)
                    writer.add(key, loc, seq, value)
                    if writer.pending_bytes >= MERGE_FRAME_BYTES:
                        moves.extend(writer.flush())
            if writer is not None:
                moves.extend(writer.flush())
                outputs.append(writer.finish())
                writer = None
            fs.sync_dir(mdir)
            manifest = json.dumps(
                {"inputs": inputs, "outputs": [s for s, _ in outputs]}, sort_keys=True
            ).encode()
            checksum = xxhash.xxh3_64_hexdigest(manifest).encode()
            _write_file_durably(fs, os.path.join(mdir, DONE_NAME), manifest + b"\n" + checksum)
            fs.sync_dir(mdir)  # DONE is durable: the merge is committed
        except BaseException:
            if writer is not None:
                writer.abort()
            _remove_tree(fs, mdir)
            raise
        return moves, outputs

    def _merge_install_sync(self, outputs: list[tuple[int, int]]) -> dict[int, FileHandle]:
        fs = self._fs
        mdir = os.path.join(self.path, MERGE_DIR)
        for seg, _size in outputs:
            fs.rename(os.path.join(mdir, _hint_name(seg)), os.path.join(self.path, _hint_name(seg)))
        for seg, _size in outputs:
            fs.rename(os.path.join(mdir, _log_name(seg)), os.path.join(self.path, _log_name(seg)))
        fs.sync_dir(self.path)
        return {
            seg: fs.open(os.path.join(self.path, _log_name(seg)), create=False)
            for seg, _ in outputs
        }

    def _merge_cleanup_sync(self, inputs: list[int], manifest: bytes) -> None:
        fs = self._fs
        # The manifest first: were the inputs removed before it, a crash would leave one
        # that lists them; merge/DONE still names them, so an open finishes the removal.
        self._write_manifest_sync(manifest)
        for seg in inputs:
            for name in (_log_name(seg), _hint_name(seg)):
                p = os.path.join(self.path, name)
                if fs.exists(p):
                    fs.remove(p)
        fs.sync_dir(self.path)
        _remove_tree(fs, os.path.join(self.path, MERGE_DIR))
        fs.sync_dir(self.path)

    # -- introspection and closing -------------------------------------------------------

    @property
    def broken(self) -> bool:
        return self._broken is not None

    def statistics(self) -> LogStatistics:
        c = self._counters
        total = sum(self._sizes.values())
        live = sum(self._keydir.live.values())
        return LogStatistics(
            segments=len(self._files),
            active_segment=self._active,
            keys=len(self._keydir),
            live_bytes=live,
            total_bytes=total,
            dead_bytes=total - live,
            frames_written=c.frames,
            records_written=c.records,
            bytes_written=c.bytes,
            commits=c.commits,
            fsyncs=c.fsyncs,
            max_batch_frames=c.max_batch,
            mean_batch_frames=c.frames / c.commits if c.commits else 0.0,
            batch_frames_histogram=dict(sorted(c.histogram.items())),
            merges=c.merges,
            broken=self._broken is not None,
            sync_micros_histogram=dict(sorted(c.sync_histogram.items())),
            sync_seconds_total=c.sync_ns / 1e9,
            sync_via=self.sync_via,
        )

    def _check(self) -> None:
        """Invariants, for tests: keydir consistent with the segments held open."""
        assert set(self._files) == set(self._sizes)
        assert self._active in self._files
        self._keydir._check(self._sizes)
        assert all(seq_of(loc) < self._next_seq for loc in self._keydir.map.values())

    async def aclose(self) -> None:
        """Finish in-flight commits, sync, seal the active segment with a hint, release."""
        if self._closed:
            return
        with trio.CancelScope(shield=True):
            await self._merge_done.wait()
            while self._leader_active:
                await self._submit_quiet()
            self._closed = True
            try:
                if self._broken is None:
                    await trio.to_thread.run_sync(self._close_sync)
            finally:
                self._release()

    async def _submit_quiet(self) -> None:
        with suppress(WalError):
            await self._submit([], force_sync=False, rotate=False)

    def _close_sync(self) -> None:
        """Sync what is unsynced (a failure there is a real one: `LogBroken`), then write
        the hint and a clean manifest. Those two only save the next open time and sharpen
        its checks; the state the last manifest describes is true either way, so failing
        to write them (a full disk) is no reason for close to fail: leftovers are removed."""
        handle = self._files[self._active]
        try:
            if self._unsynced or self._sync_mode is not SyncMode.ALWAYS:
                handle.sync()
                self._unsynced = False
        except OSError as exc:
            broken = LogBroken(
                f"fdatasync of {self.path} at close failed ({exc.strerror}); "
                "writes since the last sync may be lost"
            )
            self._broken = broken
            raise broken from exc
        try:
            if self._sizes[self._active] > 0:
                self._seal_sync(
                    self._active, self._sizes[self._active], self._hint_count, self._hint_body
                )
            self._active_min = self._sizes[self._active]
            self._write_manifest_sync(self._manifest_blob(clean=True))
        except OSError:
            for name in (_hint_name(self._active) + ".tmp", MANIFEST_NAME + ".tmp"):
                with suppress(OSError):
                    self._fs.remove(os.path.join(self.path, name))

    async def _in_thread(self, fn: Callable[[], _T]) -> _T:
        io = self._io
        if io is None or io.token is not trio.lowlevel.current_trio_token():
            if io is not None:
                io.stop()
            io = self._io = IoThread(self)
        return await io.run(fn)

    def _release(self) -> None:
        self._closed = True
        if self._io is not None:
            self._io.stop()
            self._io = None
        if isinstance(self._aio, AioSync):
            self._aio.close()
            self._aio = None
        for handle in self._files.values():
            with suppress(OSError):
                handle.close()
        self._files.clear()
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    async def __aenter__(self) -> Log:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


def _encode_manifest(sealed: dict[int, int], active: int, active_min: int, clean: bool) -> bytes:
    """MANIFEST: one line of JSON, then the xxh3-64 (hex) of that line."""
    body = json.dumps(
        {
            "format": MANIFEST_FORMAT,
            "sealed": sorted([seg, size] for seg, size in sealed.items()),
            "active": active,
            "active_min": active_min,
            "clean": clean,
        },
        sort_keys=True,
    ).encode()
    return body + b"\n" + xxhash.xxh3_64_hexdigest(body).encode()


def _decode_manifest(raw: bytes, path: str) -> tuple[dict[int, int], int, int]:
    body, _, checksum = raw.rpartition(b"\n")
    if xxhash.xxh3_64_hexdigest(body).encode() != checksum:
        raise CorruptLog(path, 0, "manifest fails its checksum")
    try:
        meta = json.loads(body)
        if meta["format"] != MANIFEST_FORMAT:
            raise CorruptLog(path, 0, f"manifest format {meta['format']!r} is unknown")
        sealed = {int(seg): int(size) for seg, size in meta["sealed"]}
        return sealed, int(meta["active"]), int(meta["active_min"])
    except (ValueError, KeyError, TypeError) as exc:
        raise CorruptLog(path, 0, f"manifest is malformed ({exc})") from None


def _file_position(item: tuple[bytes, int]) -> int:
    """Sort key: (segment, offset) packed, read straight out of a location."""
    return (item[1] >> 32) & ((1 << 64) - 1)


class _MergeWriter:
    """Writes one merge output segment in `merge/`, frame by frame, then its hint."""

    def __init__(self, fs: FileSystem, mdir: str, seg: int, now: int) -> None:
        self.fs = fs
        self.mdir = mdir
        self.seg = seg
        self.now = now
        self.handle = fs.open(os.path.join(mdir, _log_name(seg)), create=True)
        self.size = 0
        self.pending: list[tuple[bytes, int, bytes]] = []
        self.pending_old: list[int] = []
        self.pending_bytes = 0
        self.hint: list[fmt.HintEntry] = []

    def full(self, nbytes: int, limit: int) -> bool:
        return self.size + self.pending_bytes > 0 and (
            self.size + self.pending_bytes + nbytes + 64 > limit
        )

    def add(self, key: bytes, old_loc: int, seq: int, value: bytes) -> None:
        self.pending.append((key, seq, value))
        self.pending_old.append(old_loc)
        self.pending_bytes += fmt.MERGED_ENTRY_HEADER_SIZE + len(key) + len(value)

    def flush(self) -> list[tuple[bytes, int, int]]:
        if not self.pending:
            return []
        base = self.size
        data, refs = fmt.encode_merged_frame(
            self.pending, 0, self.now, segment=self.seg, offset=base
        )
        self.handle.append(data)
        self.size += len(data)
        moves = []
        for (key, seq, _v), old, ref in zip(self.pending, self.pending_old, refs, strict=True):
            offset = base + ref[2]
            self.hint.append((key, fmt.PUT, offset, ref[3], seq))
            moves.append((key, old, pack(self.seg, offset, ref[3], seq)))
        self.pending, self.pending_old, self.pending_bytes = [], [], 0
        return moves

    def finish(self) -> tuple[int, int]:
        self.handle.sync()
        self.handle.close()
        blob = fmt.encode_hint(self.seg, self.size, self.hint)
        _write_file_durably(self.fs, os.path.join(self.mdir, _hint_name(self.seg)), blob)
        return self.seg, self.size

    def abort(self) -> None:
        with suppress(OSError):
            self.handle.close()


def _write_file_durably(fs: FileSystem, path: str, blob: bytes) -> None:
    """Write `blob` to `path` via a fsync'd temp file and a rename (directory sync: caller)."""
    tmp = path + ".tmp"
    if fs.exists(tmp):
        fs.remove(tmp)
    handle = fs.open(tmp, create=True)
    try:
        handle.append(blob)
        handle.sync()
    finally:
        handle.close()
    fs.rename(tmp, path)


def _remove_tree(fs: FileSystem, directory: str) -> None:
    if not fs.exists(directory):
        return
    for name in fs.listdir(directory):
        fs.remove(os.path.join(directory, name))
    fs.rmdir(directory)


def _finish_or_discard_merge(
    fs: FileSystem, path: str
) -> tuple[str | None, dict[str, list[int]] | None]:
    """Open-time: finish a committed merge (DONE present and valid), else discard it.
    Returns the outcome and, for a finished merge, its inputs and outputs."""
    mdir = os.path.join(path, MERGE_DIR)
    if not fs.exists(mdir):
        return None, None
    done_path = os.path.join(mdir, DONE_NAME)
    manifest: dict[str, list[int]] | None = None
    if fs.exists(done_path):
        raw = fs.read_file(done_path)
        body, _, checksum = raw.rpartition(b"\n")
        if xxhash.xxh3_64_hexdigest(body).encode() == checksum:
            manifest = json.loads(body)
    if manifest is None:
        _remove_tree(fs, mdir)
        fs.sync_dir(path)
        return "discarded", None
    for seg in manifest["outputs"]:
        for name in (_hint_name(seg), _log_name(seg)):
            src = os.path.join(mdir, name)
            if fs.exists(src):
                fs.rename(src, os.path.join(path, name))
    fs.sync_dir(path)
    # As in a live merge, the log's manifest learns of the swap before the inputs go.
    mpath = os.path.join(path, MANIFEST_NAME)
    with suppress(CorruptLog):
        if fs.exists(mpath):
            sealed, active, active_min = _decode_manifest(fs.read_file(mpath), mpath)
            if any(seg in sealed for seg in manifest["inputs"]):
                for seg in manifest["inputs"]:
                    sealed.pop(seg, None)
                for seg in manifest["outputs"]:
                    out = fs.open(os.path.join(path, _log_name(seg)), create=False)
                    try:
                        sealed[seg] = out.size()
                    finally:
                        out.close()
                _write_file_durably(fs, mpath, _encode_manifest(sealed, active, active_min, False))
                fs.sync_dir(path)
    for seg in manifest["inputs"]:
        for name in (_log_name(seg), _hint_name(seg)):
            p = os.path.join(path, name)
            if fs.exists(p):
                fs.remove(p)
    fs.sync_dir(path)
    _remove_tree(fs, mdir)
    fs.sync_dir(path)
    return "completed", manifest


@asynccontextmanager
async def open_log(
    path: str | os.PathLike[str],
    *,
    sync: SyncMode | str = SyncMode.ALWAYS,
    sync_interval_ms: int = 200,
    segment_max_bytes: int = 64 * 1024 * 1024,
    repair: bool = False,
    adopt: bool = False,
    fs: FileSystem | None = None,
    clock_ms: Callable[[], int] | None = None,
) -> AsyncIterator[Log]:
    """`async with open_log(path) as log:` — open, recover, and close on exit."""
    log = await Log.open(
        path,
        sync=sync,
        sync_interval_ms=sync_interval_ms,
        segment_max_bytes=segment_max_bytes,
        repair=repair,
        adopt=adopt,
        fs=fs,
        clock_ms=clock_ms,
    )
    try:
        yield log
    finally:
        await log.aclose()
