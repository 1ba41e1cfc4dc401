"""A shard actor: one Trio task owning one ShardState and one wal log.

Theory of operation. Callers put requests on the shard's bounded channel and wait on the
request's event. The actor takes every request that has arrived (up to `MAX_BATCH`) and,
for each, asks the pure machine to decide, applies the mutations to its in-memory state at
once (so the next request in the batch sees them) and turns them into one wal frame. It
then awaits a single group commit for all the batch's frames, and only after that wakes
the callers: nobody observes state that a crash could roll back. Reads queued behind
writes are answered after the same commit, for the same reason.

If the commit fails, the in-memory state has run ahead of the disk: the shard is poisoned
(`ShardBroken`) and refuses every later request, reads included; reopening the engine
rebuilds the state from the log.

Payload, result, error and value bytes are hydrated after the commit, from the log.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import trio

import wal

from . import _machine as m
from ._errors import CorruptLog, FlowError, FlowNotFound, StorageError, translate
from ._record import (
    Record,
    decode_event,
    encode_event,
    history_key,
    parse_history_key,
    value_key,
)
from ._state import ShardState
from ._types import EMPTY, Flow, HistoryEvent, ItemResult

MAX_BATCH = 1024
_tuple_new = tuple.__new__


@dataclass(frozen=True, slots=True)
class Hydrate:
    """What to read back from the log when answering: payload (True, or a byte cap),
    named values, and the result and error bytes."""

    payload: bool | int = False
    values: tuple[str, ...] = ()
    outcome: bool = False


NO_HYDRATE = Hydrate()


class Request:
    """One caller's request: a command (or batch of independent commands) or a query."""

    __slots__ = ("command", "done", "error", "hydrate", "items", "query", "result")

    def __init__(
        self,
        command: m.Command | None = None,
        *,
        items: Sequence[m.Command] | None = None,
        query: Callable[[ShardState], Any] | None = None,
        hydrate: Hydrate = NO_HYDRATE,
    ) -> None:
        self.command = command
        self.items = items
        self.query = query
        self.hydrate = hydrate
        self.done = trio.Event()
        self.result: Any = None
        self.error: BaseException | None = None


class Shard:
    def __init__(
        self,
        index: int,
        log: wal.Log,
        state: ShardState,
        config: m.Config,
        clock: Callable[[], int],
        capacity: int,
    ) -> None:
        self.index = index
        self.log = log
        self.state = state
        self.config = config
        self.clock = clock
        self.send, self._receive = trio.open_memory_channel[Request](capacity)
        self.broken: StorageError | None = None
        self.commits = 0
        self.requests = 0

    # -- opening ------------------------------------------------------------------------

    @classmethod
    async def open(
        cls,
        index: int,
        path: str,
        config: m.Config,
        clock: Callable[[], int],
        *,
        sync: str,
        capacity: int,
        segment_max_bytes: int,
        fs: wal.FileSystem | None,
    ) -> Shard:
        try:
            log = await wal.Log.open(
                path, sync=sync, segment_max_bytes=segment_max_bytes, fs=fs, clock_ms=clock
            )
        except wal.WalError as exc:
            raise translate(exc) from exc
        try:
            state = await trio.to_thread.run_sync(rebuild_state, log)
        except BaseException:
            await log.aclose()
            raise
        return cls(index, log, state, config, clock, capacity)

    # -- the actor loop -----------------------------------------------------------------

    async def run(self) -> None:
        receive = self._receive
        async with receive:
            async for first in receive:
                batch = [first]
                while len(batch) < MAX_BATCH:
                    try:
                        batch.append(receive.receive_nowait())
                    except (trio.WouldBlock, trio.EndOfChannel):
                        break
                await self._process(batch)

    async def _process(self, batch: list[Request]) -> None:
        now = self.clock()
        frames: list[list[wal.Op]] = []
        for req in batch:
            if self.broken is not None:
                req.error = self.broken
                continue
            try:
                self._execute(req, now, frames)
            except FlowError as exc:
                req.error = exc
            except Exception as exc:  # a bug: the state may be half-applied
                self.broken = StorageError(f"shard {self.index} hit an internal error: {exc!r}")
                self.broken.__cause__ = exc
                req.error = self.broken
        if frames and self.broken is None:
            try:
                await self.log.write_frames(frames)
                self.commits += 1
            except wal.WalError as exc:
                self.broken = translate(exc)
        self.requests += len(batch)
        for req in batch:
            if self.broken is not None and req.error is None:
                req.error = self.broken
            if req.error is None:
                try:
                    req.result = self._answer(req)
                except FlowError as exc:
                    req.error = exc
            req.done.set()

    def _execute(self, req: Request, now: int, frames: list[list[wal.Op]]) -> None:
        if req.query is not None:
            req.result = req.query(self.state)
            return
        if req.items is not None:
            # Independent items: each succeeds or fails alone, all share one frame.
            results: list[tuple[str, Any, FlowError | None]] = []
            ops: list[wal.Op] = []
            for item in req.items:
                flow_id = getattr(item, "id", "")
                try:
                    result, mutations = m.decide(self.state, item, now, self.config)
                except FlowError as exc:
                    results.append((flow_id, None, exc))
                    continue
                self._apply(mutations, ops)
                if isinstance(result, FlowError):  # written, yet answered with an error
                    results.append((flow_id, None, result))
                else:
                    results.append((flow_id, result, None))
            if ops:
                frames.append(ops)
            req.result = results
            return
        assert req.command is not None
        result, mutations = m.decide(self.state, req.command, now, self.config)
        if mutations:
            ops = []
            self._apply(mutations, ops)
            frames.append(ops)
        if isinstance(result, FlowError):  # e.g. a timeout failure: written, then raised
            req.error = result
        else:
            req.result = result

    def _apply(self, mutations: list[m.Mutation], ops: list[wal.Op]) -> None:
        put = self.state.put
        for mut in mutations:
            rec = mut.record
            put(rec)
            ops.append(
                (
                    history_key(rec.id, rec.version),
                    encode_event(rec, mut.event, mut.meta, mut.blobs),
                )
            )
            if mut.values:
                for name, data in mut.values.items():
                    ops.append((value_key(rec.id, name), data))

    # -- answers (after the commit) -----------------------------------------------------

    def _answer(self, req: Request) -> Any:
        result = req.result
        if req.query is not None:
            return result
        hyd = req.hydrate
        if req.items is not None:
            return [
                ItemResult(fid, self.to_flow(rec, hyd) if rec is not None else None, err)
                for fid, rec, err in result
            ]
        if isinstance(result, Record):
            return self.to_flow(result, hyd)
        if isinstance(result, list):
            return [self.to_flow(r, hyd) for r in result]
        return result

    def _read(self, key: bytes) -> bytes | None:
        try:
            return self.log.get(key)
        except wal.WalError as exc:
            raise translate(exc) from exc

    def _blob(self, record: Record, version: int, which: str) -> bytes | None:
        if not version:
            return None
        data = self._read(history_key(record.id, version))
        if data is None:
            raise CorruptLog(self.log.path, 0, f"event {version} of flow {record.id!r} missing")
        blobs = decode_event(data)[3]
        return blobs.get(which) if blobs else None

    def to_flow(self, r: Record, hyd: Hydrate = NO_HYDRATE) -> Flow:
        payload = None
        omitted = False
        if hyd.payload is not False and r.payload_ver:
            cap = None if hyd.payload is True else int(hyd.payload)
            if cap is not None and r.payload_size > cap:
                omitted = True
            else:
                payload = self._blob(r, r.payload_ver, "p")
        values: Mapping[str, bytes] = EMPTY
        sizes: Mapping[str, int] = EMPTY
        if r.values:
            sizes = {name: meta[1] for name, meta in r.values.items()}
            if hyd.values:
                values = self.get_values(r, hyd.values)
        # Positional, straight into tuple.__new__: Flow's keyword constructor costs
        # ~1 us more per flow, and every reply builds one per flow.
        flow: Flow = _tuple_new(
            Flow,
            (
                r.id,
                r.type,
                r.state,
                r.run_state,
                r.version,
                r.attempts,
                r.reclaims,
                r.fencing,
                r.lease_owner,
                r.lease_token,
                r.lease_deadline,
                r.created_at,
                r.updated_at,
                r.next_run_at,
                r.priority,
                r.partition,
                dict(r.attributes) if r.attributes else EMPTY,
                r.parent_id,
                r.root_id or r.id,
                r.correlation_id,
                r.payload_size,
                payload,
                omitted,
                self._blob(r, r.result_ver, "r") if hyd.outcome else None,
                self._blob(r, r.error_ver, "e") if hyd.outcome else None,
                values,
                sizes,
            ),
        )
        return flow

    def history(self, r: Record) -> list[HistoryEvent]:
        events = []
        for version in range(r.hist_floor, r.version + 1):
            data = self._read(history_key(r.id, version))
            if data is None:
                continue  # trimmed
            name, meta, snap, _blobs = decode_event(data)
            s = Record.from_snapshot(snap)
            events.append(
                HistoryEvent(
                    event_id=f"{s.updated_at}-{s.version}",
                    name=name,
                    at_ms=s.updated_at,
                    version=s.version,
                    state=s.state,
                    run_state=s.run_state,
                    attempts=s.attempts,
                    fencing_token=s.fencing,
                    lease_owner=s.lease_owner,
                    next_run_at_ms=s.next_run_at,
                    meta=meta or {},
                )
            )
        return events

    def get_values(self, r: Record, names: Sequence[str]) -> dict[str, bytes]:
        out = {}
        for name in names:
            if r.values and name in r.values:
                data = self._read(value_key(r.id, name))
                if data is not None:
                    out[name] = data
        return out

    async def aclose(self) -> None:
        await self.log.aclose()


def rebuild_state(log: wal.Log) -> ShardState:
    """Recovery: the newest event of every flow is its record; index them all.

    The cyclic garbage collector is paused meanwhile: recovery allocates millions of
    long-lived objects and nothing cyclic, and each collection would walk them all again
    (about a fifth of the time at a million flows)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        return _rebuild_state(log)
    finally:
        if was_enabled:
            gc.enable()


def _rebuild_state(log: wal.Log) -> ShardState:
    newest: dict[str, int] = {}
    oldest: dict[str, int] = {}
    for key in log.keys(b"h"):
        flow_id, version = parse_history_key(key)
        if version > newest.get(flow_id, 0):
            newest[flow_id] = version
        if version < oldest.get(flow_id, 1 << 62):
            oldest[flow_id] = version
    state = ShardState()
    records = []
    wanted = [history_key(flow_id, version) for flow_id, version in newest.items()]
    for key, data in log.get_many(wanted):
        try:
            record = Record.from_snapshot(decode_event(data)[2])
        except ValueError as exc:
            raise CorruptLog(log.path, 0, f"event {key!r}: {exc}") from exc
        record.hist_floor = oldest[record.id]
        records.append(record)
    if len(records) != len(newest):  # pragma: no cover - keys() and get_many() agree
        raise FlowNotFound(f"{len(newest) - len(records)} flows lost their newest event")
    state.load(records)
    return state
