"""The engine's core: which shard holds a flow, and how a request reaches shard actors.

`Routing` holds the engine's shards and answers where a flow lives (`_locate`: its id's
home shard unless a shard lists it as foreign, `ShardState.foreign`), keeps ids unique
across partitions while they are being created (`_reserve`), and carries requests to one
shard, to each shard, or per shard group (`_call`, `_one`, `_each_shard`, `_run_groups`).
Routing: xxh3-64 of the partition key (or of the id when there is none) picks one of 1,024
slots, and a fixed slot table maps slots to shards, so the shard count can change later by
moving whole slots. The other engine files (`_commands`, `_coordination`, `_reads`) are
mixins over it; `_engine.Engine` puts them together.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Container, Iterable, Iterator, Sequence
from typing import Any

import trio
import xxhash

from . import _coord as c
from . import _machine as m
from ._errors import (
    EngineClosed,
    FlowError,
    FlowExists,
    FlowNotFound,
    IdempotencyConflict,
    InvalidArgument,
    Overloaded,
)
from ._record import (
    PARTITION,
    Record,
)
from ._shard import NO_HYDRATE, Hydrate, Request, Shard
from ._state import ShardState
from ._types import (
    EngineRecovery,
)

SLOTS = 1024
_tuple_new = tuple.__new__


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


def trio_clock_ms() -> int:
    """Milliseconds from Trio's clock: with `trio.testing.MockClock` time is virtual."""
    return int(trio.current_time() * 1000)


def slot_of(key: str) -> int:
    return xxhash.xxh3_64_intdigest(key.encode("utf-8", "surrogatepass")) & (SLOTS - 1)


def slot_table(shards: int) -> list[int]:
    return [slot % shards for slot in range(SLOTS)]


def router(shards: int) -> Callable[[str], int]:
    """Routing key (partition key, or id) -> shard index; the engine's one rule."""
    table = slot_table(shards)
    return lambda key: table[slot_of(key)]


def _require_record(state: ShardState, flow_id: str) -> Record:
    record = state.get(flow_id)
    if record is None:
        raise FlowNotFound(f"flow {flow_id!r} not found")
    return record


def _hydrate(
    payload: bool | int,
    values: Iterable[str],
    outcome: bool = False,
    held: Container[str] | None = None,
) -> Hydrate:
    if payload is not True and payload is not False:
        m.check_int(payload, "payload max bytes", 0, m.MAX_BLOB_BYTES)
    names = () if values == () else m.check_names(values, "value name")
    if held is not None and (
        not isinstance(held, Container) or isinstance(held, str | bytes | bytearray)
    ):
        raise InvalidArgument(f"held must be a container of flow ids, got {held!r:.60}")
    if payload is False and not names and not outcome:
        return NO_HYDRATE  # the shared instance: `to_flow` takes its fast path on it
    return Hydrate(payload, names, outcome, held)


class Routing:
    """Shards, routing and request plumbing; the base of every engine mixin."""

    def __init__(
        self,
        path: str,
        shards: list[Shard],
        config: m.Config,
        clock: Callable[[], int],
        queue_timeout_ms: int | None,
    ) -> None:
        self.path = path
        self._shards = shards
        self._config = config
        self._clock = clock
        self._queue_timeout = None if queue_timeout_ms is None else queue_timeout_ms / 1000
        self._slot_table = slot_table(len(shards))
        self._closed = False
        self._claim_cursor = 0
        # The shard orders claims go round: every rotation of the shard list.
        n = len(shards)
        self._rotations = [[(start + k) % n for k in range(n)] for start in range(n)]
        self._policy_lock = trio.Lock()
        self._background = trio.CancelScope()
        # Every shard's records and foreign ids, read (never changed) by `_locate`.
        self._records = [s.state.records for s in shards]
        self._foreign = [s.state.foreign for s in shards]
        # Ids being created: id -> target shard; and how many more creates of the same id
        # into the same shard are in flight (idempotent replays), for `_release`.
        self._creating: dict[str, int] = {}
        self._also_creating: dict[str, int] = {}
        # What open found and repaired, per shard (set by open_engine).
        self.recovery = EngineRecovery("", False, False, ())

    # -- plumbing -----------------------------------------------------------------------

    @property
    def shard_count(self) -> int:
        return len(self._shards)

    def now_ms(self) -> int:
        """The engine's clock (ms): the only time flowactors uses."""
        return self._clock()

    def shard_for(self, flow_id: str, partition_key: str | None = None) -> int:
        """The shard a new flow with this id (and partition key) is created on."""
        m.check_id(flow_id)
        if partition_key is None:
            return self._slot_table[slot_of(flow_id)]
        return self._slot_table[slot_of(m.check_name(partition_key, "partition_key"))]

    def locate(self, flow_id: str, partition_key: str | None = None) -> int:
        """The shard that holds `flow_id`, found from its id alone (see `_locate`)."""
        m.check_id(flow_id)
        return self._locate(flow_id, partition_key)

    def _locate(self, flow_id: str, hint: str | None) -> int:
        """Where a flow lives: its id's home shard, unless a shard lists it as foreign
        (created in a partition that routes elsewhere, or a child placed with its parent:
        `ShardState.foreign`). One hash and one dict lookup in the common case.

        `hint`, a partition key, is checked against the flow's own: a wrong hint is an
        `InvalidArgument`, never a silent miss. An absent flow is looked for on the shard
        it would be created on, which answers "not found"."""
        home = self._slot_table[slot_of(flow_id)]
        record = self._records[home].get(flow_id)
        where = home
        if record is None:
            for i, foreign in enumerate(self._foreign):
                if foreign and flow_id in foreign:
                    where, record = i, self._records[i][flow_id]
                    break
            else:
                if hint is None:
                    return home
                return self._slot_table[slot_of(m.check_name(hint, "partition_key"))]
        if hint is not None and record[PARTITION] != hint:
            m.check_name(hint, "partition_key")
            raise InvalidArgument(
                f"flow {flow_id!r} is in partition {record[PARTITION]!r}, not {hint!r} "
                "(a flow is found by its id alone; partition_key is only a check)"
            )
        return where

    def _holder(self, flow_id: str, home: int) -> int | None:
        """The shard holding `flow_id` (its home shard given), or None."""
        if flow_id in self._records[home]:
            return home
        for i, foreign in enumerate(self._foreign):
            if foreign and flow_id in foreign:
                return i
        return None

    def _reserve(self, flow_id: str, home: int, target: int, idempotent: bool) -> None:
        """Ids are unique engine-wide, whatever the partition: refuse `flow_id` if it
        lives, or is being created, on a shard other than `target` (the target shard
        itself judges a flow already there); else note it as being created there until
        `_release`. Runs with no await between check and note, so two creates of one id
        into different shards cannot both pass."""
        held = self._creating.get(flow_id)
        if held is not None:
            if held != target:
                raise self._exists(flow_id, idempotent, "is being created in another partition")
            self._also_creating[flow_id] = self._also_creating.get(flow_id, 0) + 1
            return
        where = self._holder(flow_id, home)
        if where is not None and where != target:
            raise self._exists(flow_id, idempotent, "exists in another partition")
        self._creating[flow_id] = target

    def _release(self, flow_id: str) -> None:
        more = self._also_creating.get(flow_id)
        if more is None:
            del self._creating[flow_id]
        elif more == 1:
            del self._also_creating[flow_id]
        else:
            self._also_creating[flow_id] = more - 1

    @contextlib.contextmanager
    def _reserving(self, placed: Iterable[tuple[str, int]]) -> Iterator[None]:
        """`_reserve` each (id, target shard) for the duration of the block (children of
        one command, placed with their parent), all or none."""
        table = self._slot_table
        held: list[str] = []
        try:
            for fid, target in placed:
                self._reserve(fid, table[slot_of(fid)], target, False)
                held.append(fid)
            yield
        finally:
            for fid in held:
                self._release(fid)

    def _reserve_group(self, ids: list[str], target: int, idempotent: bool, away: bool) -> None:
        """`_reserve` of every id of one shard's group, all or none. When no id is being
        created or is held elsewhere (every set disjoint) and every id's home is `target`
        (not `away`), nothing can conflict: the ids are noted in one C-level update."""
        creating = self._creating
        if (
            away
            or (creating and not creating.keys().isdisjoint(ids))
            or any(f and not f.isdisjoint(ids) for f in self._foreign)
        ):
            table = self._slot_table
            done: list[str] = []
            try:
                for fid in ids:
                    self._reserve(fid, table[slot_of(fid)], target, idempotent)
                    done.append(fid)
            except BaseException:
                self._release_group(done)
                raise
            return
        creating.update(dict.fromkeys(ids, target))

    def _release_group(self, ids: list[str]) -> None:
        if self._also_creating:
            for fid in ids:
                self._release(fid)
        else:
            pop = self._creating.pop
            for fid in ids:
                pop(fid)

    @staticmethod
    def _exists(flow_id: str, idempotent: bool, why: str) -> FlowError:
        if idempotent:
            return IdempotencyConflict(f"flow {flow_id!r} {why}")
        return FlowExists(f"flow {flow_id!r} {why}")

    async def _call(self, shard: Shard, req: Request) -> Any:
        if self._closed:
            raise EngineClosed("the engine is closed")
        # A caller already cancelled sends nothing. Then the request goes straight onto
        # the channel when there is room (the common case: no extra schedule point), and
        # the caller parks until the actor answers (`Request.wait`).
        await trio.lowlevel.checkpoint_if_cancelled()
        try:
            try:
                shard.send.send_nowait(req)
            except trio.WouldBlock:
                if self._queue_timeout is None:
                    await shard.send.send(req)
                else:
                    with trio.move_on_after(self._queue_timeout) as scope:
                        await shard.send.send(req)
                    if scope.cancelled_caught:
                        raise Overloaded(
                            f"shard {shard.index} stayed full for "
                            f"{self._queue_timeout * 1000:.0f} ms"
                        ) from None
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            raise EngineClosed("the engine is closed") from None
        await req.wait()
        if req.error is not None:
            raise req.error
        return req.result

    async def _one(
        self,
        flow_id: str,
        partition_key: str | None,
        command: c.AnyCommand,
        hydrate: Hydrate = NO_HYDRATE,
    ) -> Any:
        m.check_id(flow_id)
        shard = self._shards[self._locate(flow_id, partition_key)]
        return await self._call(shard, Request(command, hydrate=hydrate))

    async def _each_shard(self, make: Callable[[Shard], Request | None]) -> list[Any]:
        """Send one request to every shard concurrently; results in shard order (None
        where `make` gave no request). A lone request is awaited directly: no nursery and
        no task per shard (a `claim_due(limit=1)` asks one shard first)."""
        results: list[Any] = [None] * len(self._shards)
        requests = [(s, req) for s in self._shards if (req := make(s)) is not None]
        if len(requests) == 1:
            shard, req = requests[0]
            results[shard.index] = await self._call(shard, req)
            return results
        errors: list[BaseException] = []

        async def one(shard: Shard, req: Request) -> None:
            try:
                results[shard.index] = await self._call(shard, req)
            except FlowError as exc:
                errors.append(exc)

        async with trio.open_nursery() as nursery:
            for shard, req in requests:
                nursery.start_soon(one, shard, req)
        if errors:
            raise errors[0]
        return results

    async def _grouped(
        self, items: Sequence[tuple[int, Any]], make: Callable[[list[Any]], Request]
    ) -> dict[int, Any]:
        """Split (shard index, payload) items per shard, one request per shard."""
        groups: dict[int, list[Any]] = {}
        for shard, payload in items:
            groups.setdefault(shard, []).append(payload)
        return await self._run_groups(groups, make)

    async def _run_groups(
        self, groups: dict[int, list[Any]], make: Callable[[list[Any]], Request]
    ) -> dict[int, Any]:
        """One request per shard's group, concurrently: shard -> result or FlowError."""
        out: dict[int, Any] = {}
        errors: dict[int, BaseException] = {}

        async def run(i: int, group: list[Any]) -> None:
            try:
                out[i] = await self._call(self._shards[i], make(group))
            except FlowError as exc:
                errors[i] = exc

        async with trio.open_nursery() as nursery:
            for i, group in groups.items():
                nursery.start_soon(run, i, group)
        out.update(errors)
        return out

    def _due(self, run_at_ms: int | None, delay_ms: int | None) -> int | None:
        if delay_ms is None:
            if run_at_ms is not None:
                m.check_int(run_at_ms, "run_at_ms", 0, m.MAX_TIME_MS)
            return run_at_ms
        if run_at_ms is not None:
            raise InvalidArgument("give run_at_ms or delay_ms, not both")
        m.check_int(delay_ms, "delay_ms", 0, m.MAX_DELAY_MS)
        return self._clock() + delay_ms
