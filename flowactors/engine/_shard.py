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
rebuilds the state from the log. Only I/O may do that: a frame the log refuses (too large,
which the engine's limits should already have prevented) leaves nothing written, so the
shard rebuilds its state from the log and decides the batch again request by request,
answering the one that cannot be written with InvalidArgument (`_redo`). Frames that fit
the log one by one but not together are written in consecutive commits (`_write`).

Payload, result, error and value bytes are hydrated after the commit, from the log.

Batch commands (claims, `create_many`, outcomes and moves in bulk) mostly decide into one
`Writes` run: the shard indexes it with `ShardState.put_many` and encodes it in one pass
(`encode_run`); the items the machine leaves out of the run are decided one by one after
it (`_run_many`), into the same frame.

Outbox. Cross-shard messages (see `_coord`) are written under `o<msg_id>` keys in the
same frame as the mutation that caused them, but enter `outbox` (what the engine's
courier delivers) only after that frame is durable: a message must never announce a
mutation that a crash could still roll back. Recovery refills `outbox` from the keys.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable, Container, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import cbor2
import trio

import wal
from wal import _format as wal_format

from . import _checkpoint
from . import _coord as c
from . import _machine as m
from ._errors import (
    CorruptLog,
    FlowError,
    FlowNotFound,
    InternalError,
    InvalidArgument,
    StorageError,
    translate,
)
from ._record import (
    ACTIVE_DEADLINE,
    ATTEMPTS,
    ATTRIBUTES,
    COMPLETED,
    CORRELATION_ID,
    ERROR_VER,
    EXT,
    FAILED,
    FENCING,
    HIST_FLOOR,
    ID,
    LEASE_OWNER,
    NEXT_RUN_AT,
    PARENT_ID,
    PARTITION,
    PAYLOAD_SIZE,
    PAYLOAD_VER,
    RESULT_VER,
    ROOT_ID,
    RUN_STATE,
    STATE,
    TYPE,
    UPDATED_AT,
    VALUES,
    VERSION,
    Record,
    decode_event,
    encode_event,
    encode_run,
    from_snapshot,
    history_key,
    is_record,
    parse_history_key,
    value_key,
)
from ._state import ShardState
from ._types import EMPTY, Flow, HistoryEvent, ItemResult, ShardRecovery

# Flow's leading fields are the record's id .. partition (FIELDS[:_FLOW_HEAD]).
_FLOW_HEAD = PARTITION + 1

MAX_BATCH = 1024


class _Refused(Exception):
    """The log refused a frame of the batch: nothing of it was written."""


def _frame_size(frame: wal.Columns) -> int | None:
    """The body size of `frame` if the log would take it alone, else None."""
    size = wal_format.ENTRY_HEADER_SIZE * len(frame.keys)
    for key in frame.keys:
        if not 0 < len(key) <= wal_format.MAX_KEY_BYTES:
            return None
        size += len(key)
    for value in frame.values:
        if value is not None:
            if len(value) > wal_format.MAX_VALUE_BYTES:
                return None
            size += len(value)
    return size if size <= wal_format.MAX_BODY_BYTES else None


# Batch commands answered item by item (ItemResults), decided by `_run_many`.
_RUNS = (m.FinishMany, m.TransitionMany)
MAINTENANCE_LIMIT = 256  # flows timed out / deleted per shard by one maintenance pass
_tuple_new = tuple.__new__


@dataclass(frozen=True, slots=True)
class Hydrate:
    """What to read back from the log when answering: payload (True, or a byte cap),
    named values, and the result and error bytes; none of them for flows whose id is in
    `held` (a claim's caller that already holds them: `claim_due(held=)`). `held` is not
    compared: claims that differ only in it are still decided together."""

    payload: bool | int = False
    values: tuple[str, ...] = ()
    outcome: bool = False
    held: Container[str] | None = field(default=None, compare=False)


NO_HYDRATE = Hydrate()


class Request:
    """One caller's request: a command (or batch of independent commands) or a query.

    The reply: the caller parks its task on the request (`wait`) and the actor, once the
    request's frame is durable, sets `result` or `error` and reschedules that task
    (`answer`). No Event per request: a park and a reschedule are all a reply needs, and
    they cost a third of an Event's set and wait."""

    __slots__ = (
        "answered",
        "command",
        "error",
        "hydrate",
        "items",
        "query",
        "read",
        "result",
        "task",
    )

    def __init__(
        self,
        command: c.AnyCommand | None = None,
        *,
        items: Sequence[c.AnyCommand] | None = None,
        query: Callable[[ShardState], Any] | None = None,
        read: Callable[[Any], Any] | None = None,
        hydrate: Hydrate = NO_HYDRATE,
    ) -> None:
        self.command = command
        self.items = items
        self.query = query
        # `read(query result)` runs after the batch's commit, inside the actor: log reads
        # see exactly the committed state the query saw, and no later batch (which may
        # delete keys) can come in between.
        self.read = read
        self.hydrate = hydrate
        self.result: Any = None
        self.error: BaseException | None = None
        self.task: trio.lowlevel.Task | None = None  # the caller parked in `wait`
        self.answered = False

    async def wait(self) -> None:
        """Park the calling task until the actor answers (see `answer`); at once if it
        already has (a caller that waited for room on the channel may be answered before
        it gets here). Cancelling the caller does not withdraw the request: it is decided
        and written all the same, as a request already on its way is (the answer is then
        dropped)."""
        if self.answered:
            return
        self.task = trio.lowlevel.current_task()
        await trio.lowlevel.wait_task_rescheduled(self._abort)

    def _abort(self, _raise_cancel: Any) -> trio.lowlevel.Abort:
        self.task = None
        return trio.lowlevel.Abort.SUCCEEDED

    def answer(self) -> None:
        """Wake the caller, if it waits (result or error already set)."""
        self.answered = True
        task = self.task
        if task is not None:
            self.task = None
            trio.lowlevel.reschedule(task)


class _Run:
    """Requests of one kind decided together (see `Shard._plan`): the position in the
    batch of its first member, and the ids its members touch."""

    __slots__ = ("ids", "kind", "members", "start")

    def __init__(self, kind: Any, first: Request, flow_id: str | None, start: int) -> None:
        self.kind = kind  # "created", COMPLETED, FAILED, or a claim's parameters (a tuple)
        self.members = [first]
        self.ids = set() if flow_id is None else {flow_id}
        self.start = start


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
        # Durable outbound messages: msg_id -> (target shard, message).
        self.outbox: dict[str, tuple[int, list[Any]]] = {}
        self.outbox_changed = trio.Event()
        self.acked = trio.Event()  # set (and replaced) whenever messages leave the outbox
        self.courier_error: FlowError | None = None
        self.policies: dict[str, bytes] = {}  # installed policies found at recovery
        self.fs: wal.FileSystem = wal.OsFileSystem()  # where the checkpoint is written
        self.from_checkpoint = False  # this open used the records saved at a clean close
        self.recovery: ShardRecovery | None = None  # what opening found (see `open`)
        self.drained = False  # the actor ended normally: state == log (see `run`)
        self._sending: list[c.Send] = []
        # The frame being built: where each parent's open outcome event sits in its ops,
        # and every value slot that still holds a Write to encode (see `_apply_open`).
        self._open_ops: dict[str, int] = {}
        self._open_at: list[int] = []
        self._unsending: list[str] = []
        # The batch's shared frame: its size in the log's terms, and where the entries of
        # the request being decided start (see `_frame`, `_account`).
        self._frame_size = 0
        self._frame_start = 0
        # Maintenance rides on traffic: the first batch after this engine time carries
        # a bounded retention / max_active_ms pass (see `_process`).
        self.maintenance_ms: int | None = None
        self.next_maintenance = 0
        self.maintenance = {"passes": 0, "active_timeouts": 0, "deleted": 0}
        # Monitoring counters, read by Engine.statistics() (flowactors.ops turns them into
        # metrics at scrape time): requests answered by (command class, error class or
        # None) - the class of a batch's first item, None for queries - and history
        # events applied by name (counted when applied; a failed commit breaks the shard).
        self.command_counts: dict[tuple[type | None, type | None], int] = {}
        self.event_counts: dict[str, int] = {}

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
        route: Callable[[str], int] | None = None,
        maintenance_ms: int | None = None,
        io_threads: bool = True,
        adopt: bool = False,
    ) -> Shard:
        started = time.perf_counter()
        try:
            log = await wal.Log.open(
                path,
                sync=sync,
                segment_max_bytes=segment_max_bytes,
                adopt=adopt,
                fs=fs,
                clock_ms=clock,
            )
        except wal.WalError as exc:
            raise translate(exc) from exc
        except OSError as exc:
            raise StorageError(f"cannot open the log of shard {index} in {path}: {exc}") from exc
        log.io_threads = io_threads
        files = fs or wal.OsFileSystem()
        try:
            recovered = await trio.to_thread.run_sync(recover, log, index, route, files)
        except BaseException as exc:
            with trio.CancelScope(shield=True):
                await log.aclose()
            if isinstance(exc, wal.WalError):
                raise translate(exc) from exc
            if isinstance(exc, OSError):
                raise StorageError(f"cannot read the log of shard {index}: {exc}") from exc
            raise
        shard = cls(index, log, recovered.state, config, clock, capacity)
        report = log.recovery
        shard.recovery = ShardRecovery(
            index=index,
            path=path,
            flows=len(recovered.state.records),
            from_checkpoint=recovered.from_checkpoint,
            segments=report.segments,
            segments_from_hints=report.segments_from_hints,
            segments_scanned=report.segments_scanned,
            repairs=report.repairs,
            merge=report.merge,
            seconds=time.perf_counter() - started,
        )
        shard.fs = files
        shard.from_checkpoint = recovered.from_checkpoint
        shard.outbox = recovered.outbox
        shard.policies = recovered.policies
        shard.maintenance_ms = maintenance_ms
        if maintenance_ms is not None:
            shard.next_maintenance = clock() + maintenance_ms
        if shard.outbox:
            shard.outbox_changed.set()
        return shard

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
        # Only here, after the channel closed and every batch was written, is the state
        # exactly what the log holds. A cancelled actor may have applied a batch whose
        # frame never reached the disk: then there must be no checkpoint of it.
        self.drained = True

    async def _process(self, batch: list[Request]) -> None:
        now = self.clock()
        frames: list[wal.Columns] = []
        sweep = None
        if self.maintenance_ms is not None and now >= self.next_maintenance:
            # First in the batch, so every answer of the batch sees the state after it.
            sweep = Request(c.Cleanup(MAINTENANCE_LIMIT))
            batch.insert(0, sweep)
        units = self._plan(batch) if len(batch) > 1 else batch
        for unit in units:
            if isinstance(unit, _Run):
                if self.broken is None:
                    self._execute_run(unit, now, frames)
                continue
            if self.broken is not None:
                unit.error = self.broken
                continue
            self._execute_one(unit, now, frames)
        if frames and not frames[-1].keys:
            frames.pop()  # (a shared frame opened by requests that wrote nothing)
        if frames and self.broken is None:
            try:
                await self._write(frames)
            except _Refused:
                await self._redo(batch, now)
            except wal.WalError as exc:
                self.broken = translate(exc)
        if self._sending or self._unsending:
            self._settle_outbox()
        if sweep is not None:
            del batch[0]
            self._swept(sweep, now)
        self.requests += len(batch)
        counts = self.command_counts
        for req in batch:
            if self.broken is not None and req.error is None:
                req.error = self.broken
            if req.error is None:
                try:
                    req.result = self._answer(req)
                except FlowError as exc:
                    req.error = exc
            req.answer()
            cmd = req.command
            key = (
                type(cmd) if cmd is not None else type(req.items[0]) if req.items else None,
                None if req.error is None else type(req.error),
            )
            counts[key] = counts.get(key, 0) + 1

    def _execute_one(self, req: Request, now: int, frames: list[wal.Columns]) -> None:
        try:
            self._execute(req, now, frames)
        except FlowError as exc:
            req.error = exc
        except Exception as exc:  # a bug: the state may be half-applied
            self.broken = StorageError(f"shard {self.index} hit an internal error: {exc!r}")
            self.broken.__cause__ = exc
            req.error = self.broken
        if frames:
            self._account(frames)

    def _plan(self, batch: list[Request]) -> list[Request | _Run]:
        """The order in which to decide a batch: its requests as they came, except that
        single creates, single completes / fails, and single claims asking alike join an
        earlier request of their kind into a run (`_Run`) decided as one, when they
        commute with every request they pass over. Requests in one batch all wait at once,
        so any order of them is one the callers could have seen; moving only commuting
        requests keeps every answer, record and history what deciding them as they came
        would give (tests/test_engine_coalesce.py checks it).

        Commuting, judged from what each request can touch: a plain create touches its
        id; a complete / fail of a flow with no coordination data or active deadline
        touches that flow; a claim of type T touches flows of type T. A create or an
        outcome joins its run unless a request it passes touches its id or claims its
        type; a claim joins claims asking the same of the same type (any limit) unless
        a request it passes touches its type, and only when no lease of that type has
        expired (a run of claims then takes exactly what they would take in turn, see
        `_execute_run`). Anything else (queries, batches, other commands, a command on a
        type whose policy acts on writes, `Config.settled`) is a barrier that nothing passes."""
        units: list[Request | _Run] = []
        runs: dict[Any, _Run] = {}
        # Where each id, claimed type and touched type was last touched (batch position),
        # so that a join asks "touched since the run began?" in O(1) rather than every
        # open run being told of every request (quadratic: 40% of a 1,000-request batch
        # of claims on distinct types). For types, also by whom: a claim run's own members
        # touch its type, and only others' touches cross it - `by_type[t]` is (last
        # position, its run or request, the last position touched by any other).
        id_touched: dict[str, int] = {}
        claim_touched: dict[str, int] = {}
        by_type: dict[str, tuple[int, object, int]] = {}
        state = self.state
        records = state.records
        settled = self.config.settled
        now = self.clock()
        for pos, req in enumerate(batch):
            cmd = req.command
            fid: str | None
            key: Any
            if isinstance(cmd, m.Create) and not cmd.values and cmd.parent_id is None:
                key, fid, ftype = "created", cmd.id, cmd.type
            elif isinstance(cmd, (m.Complete, m.Fail)) and not cmd.values:
                fid = cmd.id
                r = records.get(fid)
                if r is None or r[EXT] is not None or r[ACTIVE_DEADLINE] is not None:
                    runs.clear()
                    units.append(req)
                    continue
                key, ftype = (COMPLETED if type(cmd) is m.Complete else FAILED), r[TYPE]
            elif isinstance(cmd, m.Claim):
                fid, ftype = None, cmd.type
                if cmd.reclaim and state.lease_expired(ftype, now):
                    key = None  # decided alone (reclaims split a limit unlike single claims)
                else:
                    key = (cmd.type, cmd.worker, cmd.states, cmd.lease_ms, cmd.reclaim,
                           cmd.reclaim_ratio, cmd.priority, cmd.only_expired, cmd.partition,
                           req.hydrate)  # fmt: skip
            else:
                runs.clear()
                units.append(req)
                continue
            if settled and type(ftype) is str and ftype in settled:
                runs.clear()  # (its policy's effects are settled one command at a time)
                units.append(req)
                continue
            joined = None if key is None else runs.get(key)
            run: _Run | None = None
            if joined is not None:
                start = joined.start
                if fid is None:
                    last = by_type.get(ftype)
                    crossed = last is not None and (
                        last[0] > start if last[1] is not joined else last[2] > start
                    )
                else:
                    crossed = (
                        id_touched.get(fid, -1) >= start or claim_touched.get(ftype, -1) > start
                    )
                if not crossed:
                    run = joined
                    run.members.append(req)
                    if fid is not None:
                        run.ids.add(fid)
            if run is None:
                if key is None:
                    units.append(req)
                else:
                    run = runs[key] = _Run(key, req, fid, pos)
                    units.append(run)
            who: object = req if run is None else run
            if fid is None:
                claim_touched[ftype] = pos
            else:
                id_touched[fid] = pos
            last = by_type.get(ftype)
            if last is None:
                by_type[ftype] = (pos, who, -1)
            elif last[1] is who:
                by_type[ftype] = (pos, who, last[2])
            else:
                by_type[ftype] = (pos, who, last[0])
        return units

    def _execute_run(self, run: _Run, now: int, frames: list[wal.Columns]) -> None:
        """A run of single creates, or of single completes / fails, decided together: one
        `Writes` run for the items the batch path takes, the others decided alone after
        it (as `_run_many` does), each request answered as if decided alone."""
        members = run.members
        if len(members) == 1:
            self._execute_one(members[0], now, frames)
            return
        slow: list[int] = []
        try:
            if type(run.kind) is tuple:
                self._claim_run(members, now, frames)
            elif run.kind == "created":
                creates = [req.command for req in members if isinstance(req.command, m.Create)]
                results, writes = m.decide_create_run(self.state, creates, now)
                if writes is not None:
                    self._apply_run(writes, self._frame(frames))
                for req, res in zip(members, results, strict=True):
                    if isinstance(res, FlowError):
                        req.error = res
                    else:
                        req.result = res
            else:
                items = [
                    (cmd.id, cmd.lease_token, cmd.fencing, cmd.result)
                    if isinstance(cmd, m.Complete)
                    else (cmd.id, cmd.lease_token, cmd.fencing, cmd.error)
                    for req in members
                    if isinstance(cmd := req.command, (m.Complete, m.Fail))
                ]
                fm = m.FinishMany(run.kind, items)
                outcomes, writes, slow = m.decide_finish_run(self.state, fm, now, self.config)
                if writes is not None:
                    self._apply_run(writes, self._frame(frames))
                for req, out in zip(members, outcomes, strict=True):
                    if out is not None:
                        req.result = out[1]
        except Exception as exc:  # a bug: the state may be half-applied
            self.broken = StorageError(f"shard {self.index} hit an internal error: {exc!r}")
            self.broken.__cause__ = exc
            for req in members:
                req.error = self.broken
            return
        if frames:
            self._account(frames)
        for i in slow:
            self._execute_one(members[i], now, frames)

    def _claim_run(self, members: list[Request], now: int, frames: list[wal.Columns]) -> None:
        """Claims asking alike, as one claim of their limits' sum: with no expired lease
        of the type (`_plan` checks), a claim takes due flows in index order until its
        limit, so one claim of limit a + b takes what a claim of a, then one of b, would
        take; each request gets its share, in order."""
        claims = [req.command for req in members if isinstance(req.command, m.Claim)]
        total = sum(claim.limit for claim in claims)
        merged = m.Claim(
            claims[0].type, claims[0].worker, claims[0].states, total, claims[0].lease_ms,
            claims[0].reclaim, claims[0].reclaim_ratio, claims[0].priority,
            claims[0].only_expired, claims[0].partition,
        )  # fmt: skip
        result, mutations = c.decide(self.state, merged, now, self.config)
        if mutations:
            self._apply(mutations, self._frame(frames))
        at = 0
        for req, claim in zip(members, claims, strict=True):
            req.result = result[at : at + claim.limit]
            at += claim.limit

    async def _write(self, frames: list[wal.Columns]) -> None:
        """Write a batch's frames in one commit, or, when together they exceed what one
        log call takes (each fitting alone), in consecutive commits of frames that fit.
        `_Refused` when the log refuses a frame itself (nothing of the batch is written)."""
        try:
            await self.log.write_frames(frames)
            self.commits += 1
            return
        except wal.InvalidArgument as exc:
            refused = exc  # checked before anything was written
        limit = wal_format.MAX_BODY_BYTES
        sizes = [_frame_size(frame) for frame in frames]
        if len(frames) == 1 or any(size is None for size in sizes):
            raise _Refused from refused
        run: list[wal.Columns] = []
        total = 0
        first = True
        for frame, size in zip(frames, sizes, strict=True):
            assert size is not None
            if run and total + size > limit:
                await self._write_run(run, first)
                run, total, first = [], 0, False
            run.append(frame)
            total += size
        await self._write_run(run, first)

    async def _write_run(self, run: list[wal.Columns], first: bool) -> None:
        try:
            await self.log.write_frames(run)
        except wal.InvalidArgument as exc:
            if first:  # still nothing written
                raise _Refused from exc
            raise  # unreachable: each frame was checked; the shard breaks, as on I/O errors
        self.commits += 1

    async def _redo(self, batch: list[Request], now: int) -> None:
        """The log refused a frame of this batch as too large (or otherwise malformed):
        nothing of the batch was written, but the state already holds all of it. Rebuild
        the state from the log, then decide and write the requests again one at a time
        (a commit each): a request whose frame the log refuses again is answered with
        InvalidArgument, and the state is rebuilt once more; the others go through as if
        nothing had happened. A rare path (the engine refuses commands too large for a
        frame before they get here), so it may be slow: each rebuild reads the log's keys,
        in the event loop."""
        self._sending.clear()
        self._unsending.clear()
        self._rebuild()
        for req in batch:
            req.result = req.error = None
            frames: list[wal.Columns] = []
            self._execute_one(req, now, frames)
            if self.broken is not None:
                return
            if not frames or not frames[-1].keys:
                continue
            try:
                await self.log.write_frames(frames)
            except wal.InvalidArgument as exc:
                self._sending.clear()
                self._unsending.clear()
                self._rebuild()
                req.result = None
                req.error = InvalidArgument(
                    f"shard {self.index}: the log refused what this request would write "
                    f"({exc}); nothing was changed"
                )
                continue
            except wal.WalError as exc:
                self.broken = translate(exc)
                return
            self.commits += 1
            self._settle_outbox()

    def _rebuild(self) -> None:
        """The state as the log holds it (after a batch the log refused), rebuilt into the
        same ShardState: its dicts and sets keep their identity, since the engine holds
        on to some of them (`Engine._records`, `Engine._foreign`)."""
        state = self.state
        fresh = recover(self.log, self.index, state.route).state
        for name in ShardState.__slots__:
            old, new = getattr(state, name), getattr(fresh, name)
            if type(old) in (dict, set) and type(new) is type(old):
                old.clear()
                old.update(new)
            else:
                setattr(state, name, new)

    def _swept(self, sweep: Request, now: int) -> None:
        assert self.maintenance_ms is not None
        report = sweep.result if sweep.error is None else None
        if report is None:
            self.next_maintenance = now + self.maintenance_ms
            return
        self.maintenance["passes"] += 1
        self.maintenance["active_timeouts"] += report["active_timeouts"]
        self.maintenance["deleted"] += report["deleted"]
        # More left: go on with the next batch; else wait for the next interval.
        self.next_maintenance = now if report["more"] else now + self.maintenance_ms

    def _settle_outbox(self) -> None:
        """After the commit: durable messages become deliverable, acked ones leave."""
        sending, unsending = self._sending, self._unsending
        self._sending, self._unsending = [], []
        if self.broken is not None:
            return  # nothing of this batch is known durable; recovery re-reads the keys
        for send in sending:
            self.outbox[send.msg_id] = (send.target, send.message)
        for msg_id in unsending:
            self.outbox.pop(msg_id, None)
        if sending:
            self.outbox_changed.set()
        if unsending:
            self.acked.set()
            self.acked = trio.Event()

    def _execute(self, req: Request, now: int, frames: list[wal.Columns]) -> None:
        if req.query is not None:
            try:
                req.result = req.query(self.state)
            except FlowError:
                raise
            except Exception as exc:  # a read changes nothing: fail this request only
                raise InternalError(f"shard {self.index}: query failed: {exc!r}") from exc
            return
        if req.items is not None:
            # Independent items: each succeeds or fails alone, all share one frame.
            frame = self._frame(frames)
            req.result = [self._decide_item(item, now, frame) for item in req.items]
            self._seal(frame)
            return
        assert req.command is not None
        if type(req.command) is m.FinishMany or type(req.command) is m.TransitionMany:
            self._run_many(req, req.command, now, frames)
            return
        if type(req.command) is c.Rewind:
            self._load_rewind(req.command)
        result, mutations = c.decide(self.state, req.command, now, self.config)
        if mutations:
            frame = self._frame(frames)
            self._apply(mutations, frame)
            self._seal(frame)
        if isinstance(result, FlowError):  # e.g. a timeout failure: written, then raised
            req.error = result
        else:
            req.result = result

    def _frame(self, frames: list[wal.Columns]) -> wal.Columns:
        """The frame a request writes into: the batch's one frame, shared by all its
        requests (a batch of small commands costs one frame to build, checksum and index,
        not one each). Sharing changes nothing a caller sees: nobody is answered before
        the batch's commit, and a torn frame loses only unanswered requests. Each request
        still seals its own events (`_seal`), so histories do not depend on batching; and
        `_account` moves a request's entries to a frame of their own when the shared one
        would outgrow what the log takes."""
        if frames:
            return frames[-1]
        frame = wal.Columns()
        frames.append(frame)
        self._frame_size = self._frame_start = 0
        return frame

    def _account(self, frames: list[wal.Columns]) -> None:
        """After a request: count what it added to the shared frame (the log's own size
        rule: a header per entry, its key, its value), splitting it off into a new frame
        when the two would not fit one frame together, as frames of their own fit."""
        frame = frames[-1]
        keys = frame.keys
        start = self._frame_start
        if start == len(keys):
            return
        values = frame.values
        size = wal_format.ENTRY_HEADER_SIZE * (len(keys) - start)
        size += sum([len(k) for k in keys[start:]])
        size += sum([len(v) for v in values[start:] if v is not None])
        if start and self._frame_size + size > wal_format.MAX_BODY_BYTES:
            frames.append(wal.Columns(keys[start:], values[start:]))
            del keys[start:]
            del values[start:]
            self._frame_size = size
        else:
            self._frame_size += size
        self._frame_start = len(frames[-1].keys)

    def _decide_item(
        self, item: c.AnyCommand, now: int, frame: wal.Columns
    ) -> tuple[str, Any, FlowError | None]:
        """One independent item of a batch: decided and applied alone (into the shared
        `frame`), or refused with its error."""
        flow_id = getattr(item, "id", "")
        try:
            result, mutations = c.decide(self.state, item, now, self.config)
        except FlowError as exc:
            return (flow_id, None, exc)
        self._apply(mutations, frame)
        if isinstance(result, FlowError):  # written, yet answered with an error
            return (flow_id, None, result)
        return (flow_id, result, None)

    def _run_many(
        self,
        req: Request,
        cmd: m.FinishMany | m.TransitionMany,
        now: int,
        frames: list[wal.Columns],
    ) -> None:
        """complete_many / fail_many / transition_many: the machine decides the common
        items together (one `Writes` run); the rest are decided one by one afterwards,
        like batch items, so each sees what the earlier ones left."""
        slow_item: Callable[[Any], c.AnyCommand]
        if type(cmd) is m.FinishMany:
            results, run, slow = m.decide_finish_run(self.state, cmd, now, self.config)
            make = m.Complete if cmd.target == COMPLETED else m.Fail
            slow_item = lambda item: make(  # noqa: E731
                item[0], item[1], item[2], item[3], item[5] if len(item) > 5 else None
            )
        else:
            assert type(cmd) is m.TransitionMany
            results, run, slow = m.decide_transition_run(self.state, cmd, now, self.config)
            frm, to, run_at = cmd.from_state, cmd.to_state, cmd.run_at
            slow_item = lambda item: m.Transition(  # noqa: E731
                item[0], frm, to, item[2], item[1], run_at
            )
        frame = self._frame(frames)
        if run is not None:
            self._apply_run(run, frame)
        for i in slow:
            results[i] = self._decide_item(slow_item(cmd.items[i]), now, frame)
        self._seal(frame)
        req.result = results

    def _load_rewind(self, cmd: c.Rewind) -> None:
        """Read the event a rewind restores (the machine does no I/O)."""
        record = self.state.get(cmd.id)
        if record is None or not isinstance(cmd.to_version, int):
            return
        if not record[HIST_FLOOR] <= cmd.to_version <= record[VERSION]:
            return
        data = self._read(history_key(cmd.id, cmd.to_version))
        if data is None:
            return  # trimmed, or written by this very batch: the machine refuses it
        snap = from_snapshot(decode_event(data)[2])
        blobs = {}
        for which, version in (
            ("p", snap[PAYLOAD_VER]),
            ("r", snap[RESULT_VER]),
            ("e", snap[ERROR_VER]),
        ):
            blob = self._blob(snap, version, which) if version else None
            if blob is not None:
                blobs[which] = blob
        cmd.snapshot, cmd.blobs = snap, blobs

    def _apply_other(self, mut: Any, frame: wal.Columns) -> None:
        kind = type(mut)
        keys, values = frame.keys, frame.values
        if kind is c.Put:
            keys.append(mut.key)
            values.append(mut.value)
        elif kind is c.Note:
            self.state.note_child(mut.parent_id, mut.child_id)
        elif kind is c.Drop:
            self.state.remove(mut.id)
            self.state.noted.pop(mut.id, None)
        elif kind is c.Send:
            keys.append(c.outbox_key(mut.msg_id))
            values.append(cbor2.dumps([mut.target, mut.message]))
            self._sending.append(mut)
        elif kind is c.Unsend:
            keys.append(c.outbox_key(mut.msg_id))
            values.append(None)
            self._unsending.append(mut.msg_id)
        else:  # pragma: no cover - every mutation kind is handled above
            raise AssertionError(f"unknown mutation {mut!r}")

    def _apply(self, mutations: list[Any], frame: wal.Columns) -> None:
        put = self.state.put
        opened = self.state.open_outcomes
        keys, values = frame.keys, frame.values
        events = self.event_counts
        for mut in mutations:
            if type(mut) is not m.Write:
                if type(mut) is m.Writes:
                    self._apply_run(mut, frame)
                else:
                    self._apply_other(mut, frame)
                continue
            rec = mut.record
            put(rec)
            events[mut.event] = events.get(mut.event, 0) + 1
            if mut.open:
                self._apply_open(mut, frame)
                continue
            if opened:
                opened.pop(rec[ID], None)  # another write: the next outcome starts anew
            keys.append(history_key(rec[ID], rec[VERSION]))
            values.append(encode_event(rec, mut.event, mut.meta, mut.blobs))
            if mut.values:
                for name, data in mut.values.items():
                    keys.append(value_key(rec[ID], name))
                    values.append(data)

    def _apply_run(self, run: m.Writes, frame: wal.Columns) -> None:
        """A `Writes` run: indexed together, encoded in one comprehension."""
        records = run.records
        self.state.put_many(records)
        opened = self.state.open_outcomes
        if opened:
            for r in records:
                opened.pop(r[ID], None)
        event = run.event
        self.event_counts[event] = self.event_counts.get(event, 0) + len(records)
        frame.keys += [history_key(r[ID], r[VERSION]) for r in records]
        if run.blobs is None:
            frame.values += encode_run(records, event, run.meta, run.metas)
        else:
            n = len(records)
            metas = run.metas if run.metas is not None else [run.meta] * n
            frame.values += [
                encode_event(r, event, meta, blob)
                for r, meta, blob in zip(records, metas, run.blobs, strict=True)
            ]

    def _apply_open(self, w: m.Write, frame: wal.Columns) -> None:
        """An outcome event that later outcomes in this frame may extend: its value slot
        holds the Write until `_seal` encodes it, and an extension (same version) replaces
        it."""
        rec = w.record
        key = history_key(rec[ID], rec[VERSION])
        keys, values = frame.keys, frame.values
        at = self._open_ops.get(rec[ID])
        if at is not None and keys[at] == key:
            values[at] = w
        else:
            self._open_ops[rec[ID]] = len(keys)
            self._open_at.append(len(keys))
            keys.append(key)
            values.append(w)
        assert w.meta is not None
        self.state.open_outcomes[rec[ID]] = (rec[VERSION], w.meta)
        if w.values:
            for name, data in w.values.items():
                keys.append(value_key(rec[ID], name))
                values.append(data)

    def _seal(self, frame: wal.Columns) -> None:
        """End of a frame: encode its open outcome events; nothing stays open."""
        values = frame.values
        for at in self._open_at:
            w = values[at]
            values[at] = encode_event(w.record, w.event, w.meta, w.blobs)
        self._open_at.clear()
        self._open_ops.clear()
        self.state.open_outcomes.clear()

    # -- answers (after the commit) -----------------------------------------------------

    def _answer(self, req: Request) -> Any:
        result = req.result
        if req.query is not None:
            return req.read(result) if req.read is not None else result
        hyd = req.hydrate
        if req.items is not None or type(req.command) in _RUNS:
            flows = self.to_flows([rec for _fid, rec, _err in result if rec is not None], hyd)
            at = iter(flows)
            return [  # tuple.__new__: ItemResult's generated __new__ is one more frame
                _tuple_new(ItemResult, (fid, next(at) if rec is not None else None, err))
                for fid, rec, err in result
            ]
        if is_record(result):
            return self.to_flow(result, hyd)
        if isinstance(result, list):
            return self.to_flows(result, hyd)
        return result

    def to_flows(self, records: list[Record], hyd: Hydrate = NO_HYDRATE) -> list[Flow]:
        """`to_flow` of each record, without its checks for the common reply (nothing to
        hydrate about a flow with no values)."""
        if hyd is not NO_HYDRATE:
            return [self.to_flow(r, hyd) for r in records]
        to_flow = self.to_flow
        return [to_flow(r) if r[VALUES] else _plain_flow(r) for r in records]

    def _read(self, key: bytes) -> bytes | None:
        try:
            return self.log.get(key)
        except wal.WalError as exc:
            raise translate(exc) from exc

    def _blob(self, record: Record, version: int, which: str) -> bytes | None:
        if not version:
            return None
        data = self._read(history_key(record[ID], version))
        if data is None:
            raise CorruptLog(self.log.path, 0, f"event {version} of flow {record[ID]!r} missing")
        blobs = decode_event(data)[3]
        return blobs.get(which) if blobs else None

    def to_flow(self, r: Record, hyd: Hydrate = NO_HYDRATE) -> Flow:
        if hyd.held is not None and r[ID] in hyd.held:
            hyd = NO_HYDRATE  # (its caller holds its payload and values)
        # Most replies ask for nothing (the shared NO_HYDRATE) about a flow with no
        # values: nothing to read or size, straight to the tuple.
        if hyd is NO_HYDRATE and not r[VALUES]:
            return _plain_flow(r)
        payload = result = error = None
        omitted = False
        values: Mapping[str, bytes] = EMPTY
        sizes: Mapping[str, int] = EMPTY
        if hyd.payload is not False and r[PAYLOAD_VER]:
            cap = None if hyd.payload is True else int(hyd.payload)
            if cap is not None and r[PAYLOAD_SIZE] > cap:
                omitted = True
            else:
                payload = self._blob(r, r[PAYLOAD_VER], "p")
        if r[VALUES]:
            sizes = {name: meta[1] for name, meta in r[VALUES].items()}
            if hyd.values:
                values = self.get_values(r, hyd.values)
        if hyd.outcome:
            result = self._blob(r, r[RESULT_VER], "r")
            error = self._blob(r, r[ERROR_VER], "e")
        return _flow(r, payload, omitted, result, error, values, sizes)

    def history(self, r: Record) -> list[HistoryEvent]:
        events = []
        for version in range(r[HIST_FLOOR], r[VERSION] + 1):
            data = self._read(history_key(r[ID], version))
            if data is None:
                continue  # trimmed
            name, meta, snap, _blobs = decode_event(data)
            s = from_snapshot(snap)
            events.append(
                HistoryEvent(
                    event_id=f"{s[UPDATED_AT]}-{s[VERSION]}",
                    name=name,
                    at_ms=s[UPDATED_AT],
                    version=s[VERSION],
                    state=s[STATE],
                    run_state=s[RUN_STATE],
                    attempts=s[ATTEMPTS],
                    fencing_token=s[FENCING],
                    lease_owner=s[LEASE_OWNER],
                    next_run_at_ms=s[NEXT_RUN_AT],
                    meta=meta or {},
                )
            )
        return events

    def get_values(self, r: Record, names: Sequence[str]) -> dict[str, bytes]:
        out = {}
        for name in names:
            if r[VALUES] and name in r[VALUES]:
                data = self._read(value_key(r[ID], name))
                if data is not None:
                    out[name] = data
        return out

    async def aclose(self) -> None:
        """Close the log; on a clean close (the actor drained its channel, nothing broke),
        save the records first so the next open need not read them back from the log.
        The checkpoint is a cache: failing to write it (a full disk) is no failure of
        close; what close does raise is a `StorageError` (an fdatasync that failed)."""
        if self.drained and self.broken is None and not self.log.broken:
            position = self.log.position()
            records = list(self.state.records.values())
            await trio.to_thread.run_sync(
                _checkpoint.save, self.fs, self.log.path, position, records
            )
        try:
            await self.log.aclose()
        except wal.WalError as exc:
            raise translate(exc) from exc
        except OSError as exc:
            raise StorageError(f"closing the log of shard {self.index} failed: {exc}") from exc


def _plain_flow(r: Record) -> Flow:
    """The reply for `r` with nothing hydrated. Positional, straight into tuple.__new__:
    Flow's keyword constructor costs ~1 us more per flow, and every reply builds one per
    flow. Flow starts with the record's first fields (id .. partition), in the same order:
    one slice (a test checks the order)."""
    return _flow(r, None, False, None, None, EMPTY, EMPTY)


def _flow(
    r: Record,
    payload: bytes | None,
    omitted: bool,
    result: bytes | None,
    error: bytes | None,
    values: Mapping[str, bytes],
    sizes: Mapping[str, int],
) -> Flow:
    """A reply with what was hydrated (positional: `Flow._replace` costs ~3 us)."""
    flow: Flow = _tuple_new(
        Flow,
        (
            *r[:_FLOW_HEAD],
            dict(r[ATTRIBUTES]) if r[ATTRIBUTES] else EMPTY,
            r[PARENT_ID],
            r[ROOT_ID] or r[ID],
            r[CORRELATION_ID],
            r[PAYLOAD_SIZE],
            payload,
            omitted,
            result,
            error,
            values,
            sizes,
        ),
    )
    return flow


@dataclass(slots=True)
class Recovered:
    state: ShardState
    outbox: dict[str, tuple[int, list[Any]]]
    policies: dict[str, bytes]
    from_checkpoint: bool = False


def rebuild_state(log: wal.Log) -> ShardState:
    """The state alone (tests and benchmarks)."""
    return recover(log).state


def recover(
    log: wal.Log,
    index: int = 0,
    route: Callable[[str], int] | None = None,
    fs: wal.FileSystem | None = None,
) -> Recovered:
    """Recovery: the newest event of every flow is its record; index them all; reload the
    fanout `noted` sets, the outbox and the installed policies from their keys. With `fs`,
    the records saved at the last clean close are used instead of the log's events when
    the log still stands where they were saved (`_checkpoint`).

    The cyclic garbage collector is paused meanwhile: recovery allocates millions of
    long-lived objects and nothing cyclic, and each collection would walk them all again
    (about a fifth of the time at a million flows)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        saved = None if fs is None else _checkpoint.load(fs, log.path, log.position())
        return _recover(log, ShardState(index, route), saved)
    finally:
        if was_enabled:
            gc.enable()


def _recover(log: wal.Log, state: ShardState, saved: list[Record] | None) -> Recovered:
    newest: dict[str, int] = {}
    outbox_keys: list[bytes] = []
    policy_keys: list[bytes] = []
    for key in log.keys(b""):
        tag = key[0]
        if tag == 0x68:  # b"h"
            if saved is not None:
                continue
            flow_id, version = parse_history_key(key)
            if version > newest.get(flow_id, 0):
                newest[flow_id] = version
        elif tag == 0x6E:  # b"n"
            parent, _, child = key[1:].decode().partition("\x00")
            state.note_child(parent, child)
        elif tag == 0x6F:  # b"o"
            outbox_keys.append(key)
        elif tag == 0x50:  # b"P"
            policy_keys.append(key)
    records = [] if saved is None else saved
    wanted = [history_key(flow_id, version) for flow_id, version in newest.items()]
    for key, data in log.get_many(wanted):
        try:
            record = from_snapshot(decode_event(data)[2])
        except ValueError as exc:
            raise CorruptLog(log.path, 0, f"event {key!r}: {exc}") from exc
        records.append(record)
    if saved is None and len(records) != len(newest):  # pragma: no cover
        raise FlowNotFound(f"{len(newest) - len(records)} flows lost their newest event")
    state.load(records)
    outbox: dict[str, tuple[int, list[Any]]] = {}
    for key, data in log.get_many(outbox_keys):
        target, message = cbor2.loads(data)
        outbox[key[1:].decode()] = (target, message)
    policies = {key[1:].decode(): data for key, data in log.get_many(policy_keys)}
    return Recovered(state, outbox, policies, saved is not None)
