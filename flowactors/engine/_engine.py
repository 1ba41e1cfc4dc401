"""The embeddable engine: routes commands to shard actors and gathers their answers.

`async with open_engine(path) as engine:` opens N shards (default 4), each with its own wal
directory `path/shard-NNN`, rebuilds their state from the logs and runs one actor task per
shard. Routing: xxh3-64 of the partition key (or of the id when there is none) picks one of
1,024 slots, and a fixed slot table maps slots to shards, so the shard count can change
later by moving whole slots. The shard count is recorded in `path/ENGINE` and must match
on reopen.

Commands on one flow go to its shard. `claim_due` and `info` ask every shard; batch
commands are split per shard and run on all shards concurrently (atomic per shard).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import replace as dataclass_replace
from itertools import islice
from typing import Any

import cbor2
import trio
import xxhash

import wal

from . import _coord as c
from . import _layout
from . import _machine as m
from . import _queries as q
from ._errors import (
    EngineClosed,
    FlowError,
    FlowExists,
    FlowNotFound,
    IdempotencyConflict,
    InvalidArgument,
    Overloaded,
    StorageError,
    translate,
)
from ._policy import decode_policy, encode_policy, merge_policy
from ._record import (
    COMPLETED,
    EXT,
    FAILED,
    ID,
    NEXT_RUN_AT,
    PARTITION,
    STATE,
    TERMINAL,
    Record,
)
from ._shard import NO_HYDRATE, Hydrate, Request, Shard
from ._state import ShardState
from ._types import (
    Ack,
    ChildSpec,
    ChildStatus,
    CreateSpec,
    EngineRecovery,
    Flow,
    FlowPolicy,
    HistoryEvent,
    ItemResult,
    OnChildFailed,
    OnParentClosed,
    Page,
    RetryPolicy,
    WaitMode,
)

SLOTS = 1024
_log = logging.getLogger("flowactors")
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


def _hydrate(payload: bool | int, values: Iterable[str], outcome: bool = False) -> Hydrate:
    if payload is not True and payload is not False:
        m.check_int(payload, "payload max bytes", 0, m.MAX_BLOB_BYTES)
    names = () if values == () else m.check_names(values, "value name")
    if payload is False and not names and not outcome:
        return NO_HYDRATE  # the shared instance: `to_flow` takes its fast path on it
    return Hydrate(payload, names, outcome)


class Engine:
    """The flowactors engine. Create it with `open_engine`."""

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
        try:
            if self._queue_timeout is None:
                await shard.send.send(req)
            else:
                with trio.move_on_after(self._queue_timeout) as scope:
                    await shard.send.send(req)
                if scope.cancelled_caught:
                    raise Overloaded(
                        f"shard {shard.index} stayed full for {self._queue_timeout * 1000:.0f} ms"
                    )
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            raise EngineClosed("the engine is closed") from None
        await req.done.wait()
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

    # -- creation -----------------------------------------------------------------------

    async def create(
        self,
        flow_id: str,
        type: str,
        *,
        state: str = "queued",
        payload: bytes | None = None,
        partition_key: str | None = None,
        run_at_ms: int | None = None,
        delay_ms: int | None = None,
        priority: int = 0,
        values: Mapping[str, bytes] | None = None,
        attributes: Mapping[str, str] | None = None,
        parent_id: str | None = None,
        root_id: str | None = None,
        correlation_id: str | None = None,
        idempotent: bool = False,
        max_active_ms: int | None = None,
        retention_ms: int | None = None,
    ) -> Flow:
        """Create a flow, due at `run_at_ms` (engine time) or after `delay_ms` (default now).

        With `idempotent=True`, repeating the same create is a no-op that returns the
        existing flow; a different request under the same id raises IdempotencyConflict.
        """
        command = m.Create(
            flow_id,
            type,
            state,
            payload,
            partition_key,
            self._due(run_at_ms, delay_ms),
            priority,
            values,
            attributes,
            parent_id,
            root_id,
            correlation_id,
            idempotent,
            max_active_ms,
            retention_ms,
        )
        m.validate_create(command)
        m.check_carried("create", command.values, command.payload, attributes=command.attributes)
        home = self._slot_table[slot_of(flow_id)]
        target = home if partition_key is None else self._slot_table[slot_of(partition_key)]
        self._reserve(flow_id, home, target, idempotent)
        try:
            result: Flow = await self._call(self._shards[target], Request(command))
        finally:
            self._release(flow_id)
        return result

    def _due(self, run_at_ms: int | None, delay_ms: int | None) -> int | None:
        if delay_ms is None:
            if run_at_ms is not None:
                m.check_int(run_at_ms, "run_at_ms", 0, m.MAX_TIME_MS)
            return run_at_ms
        if run_at_ms is not None:
            raise InvalidArgument("give run_at_ms or delay_ms, not both")
        m.check_int(delay_ms, "delay_ms", 0, m.MAX_DELAY_MS)
        return self._clock() + delay_ms

    async def create_many(
        self,
        type: str,
        items: Sequence[CreateSpec],
        *,
        state: str = "queued",
        partition_key: str | None = None,
        priority: int = 0,
        run_at_ms: int | None = None,
        idempotent: bool = False,
        max_active_ms: int | None = None,
        retention_ms: int | None = None,
    ) -> list[ItemResult]:
        """Create many flows. Atomic per shard: if any item of a shard's group fails, that
        whole group is rejected and each of its items reports the error."""
        m.check_items(items, CreateSpec, "create_many", each=False)
        # The call's own defaults, checked once even when every item overrides them.
        m.validate_create(
            m.Create(
                "-",
                type,
                state,
                None,
                partition_key,
                run_at_ms,
                priority,
                idempotent=idempotent,
                max_active_ms=max_active_ms,
                retention_ms=retention_ms,
            )
        )
        # Per item: one Create, grouped by shard at once, and its shard noted for the
        # reply's order; no (shard, command) or (id, partition) tuple unless needed.
        groups: dict[int, list[m.Create]] = {}
        order: list[int] = []
        seen: set[str] = set()
        away: set[int] = set()  # shards given an item whose id's home is another shard
        carried = 0
        table = self._slot_table
        create, validate = m.Create, m.validate_create_item
        for spec in items:
            if spec.__class__ is not CreateSpec:  # (`type` is a parameter here)
                m.check_item(spec, CreateSpec, "create_many")
            part = spec.partition_key if spec.partition_key is not None else partition_key
            command = create(
                spec.id,
                type,
                state,
                spec.payload,
                part,
                spec.run_at_ms if spec.run_at_ms is not None else run_at_ms,
                spec.priority if spec.priority is not None else priority,
                spec.values,
                spec.attributes,
                spec.parent_id,
                spec.root_id,
                spec.correlation_id,
                idempotent,
                max_active_ms,
                retention_ms,
            )
            validate(command)
            if command.payload is not None or command.values or command.attributes:
                carried += m.create_bytes(command)
            if spec.id in seen:
                raise InvalidArgument(f"duplicate id {spec.id!r} in one create_many call")
            seen.add(spec.id)
            if part is None:
                shard = table[slot_of(spec.id)]
            else:
                shard = table[slot_of(part)]
                if shard != table[slot_of(spec.id)]:
                    away.add(shard)
            group = groups.get(shard)
            if group is None:
                group = groups[shard] = []
            group.append(command)
            order.append(shard)
        m.check_command_bytes(carried, "create_many")
        # Ids are unique engine-wide (see `_reserve`); an id held on another shard fails
        # its item's whole shard group, as any failing item does.
        refused: dict[int, Any] = {}
        reserved: list[list[str]] = []
        try:
            for shard, group in groups.items():
                ids = [command.id for command in group]
                try:
                    self._reserve_group(ids, shard, idempotent, shard in away)
                except FlowError as exc:
                    refused[shard] = exc
                    continue
                reserved.append(ids)
            for shard in refused:
                del groups[shard]
            outcome = await self._run_groups(groups, lambda g: Request(m.CreateMany(g)))
        finally:
            for ids in reserved:
                self._release_group(ids)
        outcome.update(refused)
        flows = {i: iter(r) for i, r in outcome.items() if not isinstance(r, Exception)}
        out: list[ItemResult] = []
        for spec, shard in zip(items, order, strict=True):
            result = outcome[shard]
            if isinstance(result, Exception):
                out.append(_tuple_new(ItemResult, (spec.id, None, result)))
            else:
                out.append(_tuple_new(ItemResult, (spec.id, next(flows[shard]), None)))
        return out

    # -- claiming -----------------------------------------------------------------------

    async def claim_due(
        self,
        type: str,
        worker: str,
        *,
        states: Sequence[str] | None = None,
        limit: int = 1,
        lease_ms: int = 30_000,
        payload: bool | int = False,
        values: Sequence[str] = (),
        reclaim: bool = True,
        reclaim_ratio: int = 25,
        priority: int | None = None,
        partition_key: str | None = None,
    ) -> list[Flow]:
        """Claim up to `limit` due flows of `type` under a lease of `lease_ms`.

        Each claim moves the flow to `running` (its logical state kept in `run_state`),
        bumps its fencing token and mints a lease token; both must be presented by every
        later mutation. Expired leases are reclaimed in the same call (about
        `reclaim_ratio`% of `limit` first, then normal work, then more reclaims).
        `payload=True` (or a byte cap) and `values=[...]` hydrate bytes from disk.
        `partition_key` claims only that partition's flows (a tenant's worker).
        """
        return await self._claim(
            type,
            worker,
            states,
            limit,
            lease_ms,
            payload,
            values,
            reclaim,
            reclaim_ratio,
            priority,
            partition_key,
            only_expired=False,
        )

    async def reclaim(
        self,
        type: str,
        worker: str,
        *,
        states: Sequence[str] | None = None,
        limit: int = 1,
        lease_ms: int = 30_000,
        payload: bool | int = False,
        values: Sequence[str] = (),
        priority: int | None = None,
        partition_key: str | None = None,
    ) -> list[Flow]:
        """Claim only flows whose lease expired (their worker is presumed dead); the
        filters are claim_due's (`states` are the logical states they were running in)."""
        return await self._claim(
            type,
            worker,
            states,
            limit,
            lease_ms,
            payload,
            values,
            True,
            100,
            priority,
            partition_key,
            only_expired=True,
        )

    async def _claim(
        self,
        type: str,
        worker: str,
        states: Sequence[str] | None,
        limit: int,
        lease_ms: int,
        payload: bool | int,
        values: Sequence[str],
        reclaim: bool,
        reclaim_ratio: int,
        priority: int | None,
        partition_key: str | None,
        *,
        only_expired: bool,
    ) -> list[Flow]:
        m.check_type(type)
        m.check_name(worker, "worker")
        m.check_int(limit, "limit", 1, m.MAX_CLAIM_LIMIT)
        m.check_int(lease_ms, "lease_ms", 1, m.MAX_DELAY_MS)
        m.check_int(reclaim_ratio, "reclaim_ratio", 0, 100)
        if priority is not None:
            m.check_int(priority, "priority", 0, 2)
        m.check_bool(reclaim, "reclaim")
        wanted = (
            None
            if states is None
            else tuple([m.check_state(s) for s in m.check_list(states, "states")])
        )
        hyd = _hydrate(payload, values)
        if partition_key is not None:
            m.check_name(partition_key, "partition_key")
        n = len(self._shards)
        # Exact shares that add up to `limit`, the remainder rotating between calls, so a
        # claim never takes more than `limit` flows; then shards that filled their share
        # (or had none) are asked, one by one, for whatever is still missing.
        self._claim_cursor = (self._claim_cursor + 1) % n
        order = [(self._claim_cursor + k) % n for k in range(n)]
        shares = [0] * n
        for k, i in enumerate(order):
            shares[i] = limit // n + (1 if k < limit % n else 0)

        def command(count: int) -> Request:
            return Request(
                m.Claim(
                    type,
                    worker,
                    wanted,
                    count,
                    lease_ms,
                    reclaim,
                    reclaim_ratio,
                    priority,
                    only_expired,
                    partition_key,
                ),
                hydrate=hyd,
            )

        if partition_key is not None:  # a partition lives on one shard
            one: list[Flow] = await self._call(
                self._shards[self._slot_table[slot_of(partition_key)]], command(limit)
            )
            return one

        results = await self._each_shard(
            lambda shard: command(shares[shard.index]) if shares[shard.index] else None
        )
        claimed: list[Flow] = []
        for i in order:
            got = results[i] or []
            claimed.extend(got)
            if len(got) < shares[i]:
                shares[i] = -1  # this shard has nothing more to give
        for i in order:
            rest = limit - len(claimed)
            if rest <= 0:
                break
            if shares[i] >= 0:
                claimed.extend(await self._call(self._shards[i], command(rest)))
        return claimed

    async def extend_lease(
        self,
        flow_id: str,
        lease_token: str,
        fencing_token: int,
        *,
        lease_ms: int = 30_000,
        partition_key: str | None = None,
    ) -> Flow:
        """Push the lease deadline to now + lease_ms. Token and fencing stay the same."""
        m.check_int(lease_ms, "lease_ms", 1, m.MAX_DELAY_MS)
        if type(lease_token) is not str:
            raise InvalidArgument(f"lease_token must be a string, got {type(lease_token).__name__}")
        result: Flow = await self._one(
            flow_id,
            partition_key,
            m.ExtendLease(flow_id, lease_token, fencing_token, lease_ms),
        )
        return result

    # -- outcomes -----------------------------------------------------------------------

    def _transition_cmd(
        self,
        flow_id: str,
        from_state: str,
        to_state: str,
        fencing_token: int,
        lease_token: str | None,
        run_at_ms: int | None,
        delay_ms: int | None,
        priority: int | None,
        payload: bytes | None,
        values: Mapping[str, bytes] | None,
        attributes: Mapping[str, str] | None,
    ) -> m.Transition:
        m.check_id(flow_id)
        m.check_name(from_state, "from_state")
        m.check_active_state(to_state, "to_state")
        if priority is not None:
            m.check_int(priority, "priority", 0, 2)
        command = m.Transition(
            flow_id,
            from_state,
            to_state,
            fencing_token,
            lease_token,
            self._due(run_at_ms, delay_ms),
            priority,
            m.check_blob(payload, "payload"),
            m.check_values(values),
            m.check_attributes(attributes),
        )
        m.check_carried(
            "transition", command.values, command.payload, attributes=command.attributes
        )
        return command

    async def transition(
        self,
        flow_id: str,
        from_state: str,
        to_state: str,
        fencing_token: int,
        *,
        lease_token: str | None = None,
        run_at_ms: int | None = None,
        delay_ms: int | None = None,
        priority: int | None = None,
        payload: bytes | None = None,
        values: Mapping[str, bytes] | None = None,
        attributes: Mapping[str, str] | None = None,
        partition_key: str | None = None,
    ) -> Flow:
        """Move a flow from `from_state` (`running` for a claimed flow) to `to_state`,
        due at `run_at_ms`/after `delay_ms` (default now). Releases the lease."""
        command = self._transition_cmd(
            flow_id,
            from_state,
            to_state,
            fencing_token,
            lease_token,
            run_at_ms,
            delay_ms,
            priority,
            payload,
            values,
            attributes,
        )
        result: Flow = await self._one(flow_id, partition_key, command)
        return result

    async def complete(
        self,
        flow_id: str,
        lease_token: str | None,
        fencing_token: int,
        *,
        result: bytes | None = None,
        values: Mapping[str, bytes] | None = None,
        partition_key: str | None = None,
    ) -> Flow:
        """Finish a claimed flow with an optional result (readable with `get`). Needs the
        current lease and fencing tokens; an exact replay returns the flow unchanged."""
        return await self._close(
            m.Complete, "complete", "result", flow_id, lease_token, fencing_token,
            result, values, partition_key,
        )  # fmt: skip

    async def fail(
        self,
        flow_id: str,
        lease_token: str | None,
        fencing_token: int,
        *,
        error: bytes | None = None,
        values: Mapping[str, bytes] | None = None,
        partition_key: str | None = None,
    ) -> Flow:
        """Fail a claimed flow for good (no retry), with optional error bytes. Same
        token rules and replay behaviour as `complete`."""
        return await self._close(
            m.Fail, "fail", "error", flow_id, lease_token, fencing_token,
            error, values, partition_key,
        )  # fmt: skip

    async def _close(
        self,
        command_type: type[m.Complete] | type[m.Fail],
        verb: str,
        what: str,
        flow_id: str,
        lease_token: str | None,
        fencing_token: int,
        data: bytes | None,
        values: Mapping[str, bytes] | None,
        partition_key: str | None,
    ) -> Flow:
        """`complete` and `fail`: one terminal outcome under the presented tokens."""
        blob = m.check_blob(data, what)
        command = command_type(flow_id, lease_token, fencing_token, blob, m.check_values(values))
        m.check_carried(verb, command.values, blob)
        flow: Flow = await self._one(flow_id, partition_key, command)
        return flow

    async def retry(
        self,
        flow_id: str,
        lease_token: str | None,
        fencing_token: int,
        *,
        error: bytes | None = None,
        run_at_ms: int | None = None,
        delay_ms: int | None = None,
        payload: bytes | None = None,
        max_retries: int | None = None,
        exhausted_to: str | None = None,
        partition_key: str | None = None,
    ) -> Flow:
        """Schedule another attempt per the retry policy, or exhaust to `exhausted_to`."""
        command = self._retry_cmd(
            flow_id,
            lease_token,
            fencing_token,
            error,
            run_at_ms,
            delay_ms,
            payload,
            max_retries,
            exhausted_to,
        )
        flow: Flow = await self._one(flow_id, partition_key, command)
        return flow

    def _retry_cmd(
        self,
        flow_id: str,
        lease_token: str | None,
        fencing_token: int,
        error: bytes | None,
        run_at_ms: int | None,
        delay_ms: int | None,
        payload: bytes | None,
        max_retries: int | None,
        exhausted_to: str | None,
    ) -> m.Retry:
        m.check_id(flow_id)
        if max_retries is not None:
            m.check_int(max_retries, "max_retries", 0, m.MAX_RETRIES)
        if exhausted_to is not None:
            m.check_state(exhausted_to, "exhausted_to")
        return m.Retry(
            flow_id,
            lease_token,
            fencing_token,
            m.check_blob(error, "error"),
            self._due(run_at_ms, delay_ms),
            m.check_blob(payload, "payload"),
            max_retries,
            exhausted_to,
        )

    async def cancel(
        self,
        flow_id: str,
        *,
        fencing_token: int | None = None,
        lease_token: str | None = None,
        reason: bytes | None = None,
        force: bool = False,
        partition_key: str | None = None,
    ) -> Flow:
        """Cancel a non-terminal flow. A leased flow needs its lease token unless `force`
        (an operator's override, recorded in the history)."""
        command = m.Cancel(
            flow_id,
            fencing_token,
            lease_token,
            m.check_blob(reason, "reason"),
            m.check_bool(force, "force"),
        )
        flow: Flow = await self._one(flow_id, partition_key, command)
        return flow

    async def _many(self, commands: list[tuple[str, str | None, m.Command]]) -> list[ItemResult]:
        """Independent commands (ids and partition keys checked), one request per shard."""
        groups: dict[int, list[m.Command]] = {}
        order: list[int] = []  # each item's shard, for the reply's order
        locate = self._locate
        for fid, part, command in commands:
            shard = locate(m.check_id(fid), part)
            group = groups.get(shard)
            if group is None:
                group = groups[shard] = []
            group.append(command)
            order.append(shard)
        outcome = await self._run_groups(groups, lambda g: Request(items=g))
        for result in outcome.values():
            if isinstance(result, BaseException):
                raise result
        replies = {i: iter(result) for i, result in outcome.items()}
        return [next(replies[i]) for i in order]

    async def _acks(
        self, items: Sequence[Ack], make: Callable[[Ack], m.Command]
    ) -> list[ItemResult]:
        checked = m.check_items(items, Ack, "batch commands")
        for a in checked:  # wrong types refuse the call, as in `_item_runs`
            token = a.lease_token
            if type(a.fencing_token) is not int or (token is not None and type(token) is not str):
                m.check_tokens(a.fencing_token, token)
        commands = [(a.id, a.partition_key, make(a)) for a in checked]
        m.check_command_bytes(sum(len(a.data or b"") for a in checked), "the batch")
        return await self._many(commands)

    async def complete_many(self, items: Sequence[Ack]) -> list[ItemResult]:
        """Complete many claimed flows in one round trip (`Ack.data` is the result)."""
        return await self._finish_many(COMPLETED, items, "result")

    async def fail_many(self, items: Sequence[Ack]) -> list[ItemResult]:
        """Fail many claimed flows in one round trip (`Ack.data` is the error)."""
        return await self._finish_many(FAILED, items, "error")

    async def _finish_many(self, target: str, items: Sequence[Ack], what: str) -> list[ItemResult]:
        """One `FinishMany` per shard (see `_machine.decide_finish_run`)."""
        return await self._item_runs(items, lambda group: m.FinishMany(target, group), what)

    async def _item_runs(
        self,
        items: Sequence[Ack],
        command: Callable[[list[Any]], m.FinishMany | m.TransitionMany],
        what: str | None = None,
    ) -> list[ItemResult]:
        """Acks grouped per shard, one `command(group)` each; ids (and, with `what`, the
        data) are checked here, for the whole call, before anything is sent."""
        m.check_items(items, Ack, "batch commands", each=False)
        groups: dict[int, list[Any]] = {}
        order: list[int] = []  # each item's shard, for the reply's order
        table, check_id, check_blob = self._slot_table, m.check_id, m.check_blob
        records, locate = self._records, self._locate
        carried = 0
        for a in items:
            if type(a) is not Ack:
                m.check_item(a, Ack, "batch commands")
            fid, data, part, token = a.id, a.data, a.partition_key, a.lease_token
            if type(a.fencing_token) is not int or (token is not None and type(token) is not str):
                m.check_tokens(a.fencing_token, token)
            check_id(fid)
            if what is not None and data is not None:
                if type(data) is not bytes:
                    data = check_blob(data, what)
                    carried += len(data or b"")
                else:
                    if len(data) > m.MAX_BLOB_BYTES:
                        check_blob(data, what)  # raises, with the limit in its message
                    carried += len(data)
            shard = table[slot_of(fid)]
            if part is not None or fid not in records[shard]:
                shard = locate(fid, part)  # (not on its home shard, or a hint to check)
            group = groups.get(shard)
            if group is None:
                group = groups[shard] = []
            # An Ack is the item itself (its first fields are id, lease_token,
            # fencing_token, data): no tuple per item unless its data was converted.
            group.append(a if data is a.data else (fid, a.lease_token, a.fencing_token, data))
            order.append(shard)
        m.check_command_bytes(carried, "the batch")
        outcome = await self._run_groups(groups, lambda g: Request(command(g)))
        for result in outcome.values():
            if isinstance(result, BaseException):
                raise result
        replies = {i: iter(result) for i, result in outcome.items()}
        return [next(replies[i]) for i in order]

    async def retry_many(self, items: Sequence[Ack]) -> list[ItemResult]:
        """Retry many claimed flows per their policy (`Ack.data` is the error)."""
        return await self._acks(
            items,
            lambda a: self._retry_cmd(
                a.id, a.lease_token, a.fencing_token, a.data, None, None, None, None, None
            ),
        )

    async def transition_many(
        self,
        items: Sequence[Ack],
        from_state: str,
        to_state: str,
        *,
        run_at_ms: int | None = None,
        delay_ms: int | None = None,
    ) -> list[ItemResult]:
        """Move many claimed flows from `from_state` to `to_state` in one round trip (due
        at `run_at_ms`, after `delay_ms`, or now); `Ack.data` is ignored."""
        m.check_name(from_state, "from_state")
        m.check_active_state(to_state, "to_state")
        run_at = self._due(run_at_ms, delay_ms)
        return await self._item_runs(
            items, lambda group: m.TransitionMany(from_state, to_state, run_at, group)
        )

    # -- values -------------------------------------------------------------------------

    async def put_value(
        self,
        flow_id: str,
        name: str,
        data: bytes,
        *,
        override: bool = False,
        partition_key: str | None = None,
    ) -> Flow:
        """Store a named value on a flow (same bytes again: no-op; different: needs
        `override`)."""
        blob = m.check_blob(data, "value")
        if blob is None:
            raise InvalidArgument("value must be bytes")
        flow: Flow = await self._one(
            flow_id,
            partition_key,
            m.PutValue(
                flow_id, m.check_name(name, "value name"), blob, m.check_bool(override, "override")
            ),
        )
        return flow

    async def get_values(
        self, flow_id: str, names: Sequence[str], *, partition_key: str | None = None
    ) -> dict[str, bytes]:
        """Named values by name (absent names are left out)."""
        checked = m.check_names(names, "value name")
        shard = self._shards[self._locate(m.check_id(flow_id), partition_key)]

        def query(state: ShardState) -> Any:
            record = state.get(flow_id)
            if record is None:
                raise FlowNotFound(f"flow {flow_id!r} not found")
            return record

        values: dict[str, bytes] = await self._call(
            shard, Request(query=query, read=lambda r: shard.get_values(r, checked))
        )
        return values

    # -- reads --------------------------------------------------------------------------

    async def get(
        self,
        flow_id: str,
        *,
        partition_key: str | None = None,
        payload: bool | int = False,
        values: Sequence[str] = (),
    ) -> Flow | None:
        """The flow (None if absent), with result and error; payload and named values
        when asked for."""
        hyd = _hydrate(payload, values, outcome=True)
        flow: Flow | None = await self._one(flow_id, partition_key, m.Read(flow_id), hyd)
        return flow

    async def history(
        self, flow_id: str, *, partition_key: str | None = None
    ) -> list[HistoryEvent]:
        """Every stored history event of a flow, oldest first."""
        shard = self._shards[self._locate(m.check_id(flow_id), partition_key)]

        def query(state: ShardState) -> Any:
            record = state.get(flow_id)
            if record is None:
                raise FlowNotFound(f"flow {flow_id!r} not found")
            return record

        events: list[HistoryEvent] = await self._call(
            shard, Request(query=query, read=shard.history)
        )
        return events

    async def counts(self) -> dict[str, dict[str, int]]:
        """Flows per type, then per state (running included), across all shards."""

        def make(shard: Shard) -> Request:
            return Request(query=lambda st: dict(st.counts))

        out: dict[str, dict[str, int]] = {}
        for counts in await self._each_shard(make):
            for (flow_type, state), n in counts.items():
                per = out.setdefault(flow_type, {})
                per[state] = per.get(state, 0) + n
        return {t: dict(sorted(per.items())) for t, per in sorted(out.items())}

    async def info(self, type: str, *, partition_key: str | None = None) -> dict[str, int]:
        """Number of flows of `type` per state (running included): across all shards,
        or within one partition."""
        m.check_type(type)
        if partition_key is not None:
            m.check_name(partition_key, "partition_key")
            shard = self._shards[self._slot_table[slot_of(partition_key)]]
            counts: dict[str, int] = await self._call(
                shard,
                Request(
                    query=lambda st: {
                        s: n
                        for (t, p, s), n in st.part_counts.items()
                        if t == type and p == partition_key
                    }
                ),
            )
            return dict(sorted(counts.items()))

        def make(shard: Shard) -> Request:
            return Request(query=lambda st: {s: n for (t, s), n in st.counts.items() if t == type})

        totals: dict[str, int] = {}
        for counts in await self._each_shard(make):
            for state, n in counts.items():
                totals[state] = totals.get(state, 0) + n
        return dict(sorted(totals.items()))

    # -- coordination: fanout ----------------------------------------------------------

    async def spawn_children(
        self,
        parent_id: str,
        lease_token: str | None,
        fencing_token: int,
        *,
        group_id: str,
        children: Sequence[ChildSpec],
        success_state: str,
        failure_state: str,
        wait: WaitMode = "all",
        wait_state: str = "waiting_children",
        on_child_failed: OnChildFailed = "fail_parent",
        on_parent_closed: OnParentClosed = "cancel_children",
        partition_key: str | None = None,
    ) -> Flow:
        """Create `children` under a group of the parent and park the parent until the
        group resolves (`wait` all / any), or move it on at once (`wait="none"`).

        Guards as for a transition (fencing; the lease token if leased). The parent goes
        to `wait_state`, unleased and not claimable; each child's terminal outcome is
        counted once, and the resolution moves the parent to `success_state` or
        `failure_state` (due at once when not terminal). Children default to the
        parent's partition; children elsewhere are created through durable messages,
        and this call returns once they exist. The same request again is a no-op; a
        different request under the same group id raises IdempotencyConflict.
        """
        m.check_id(parent_id)
        gid = m.check_name(group_id, "group_id")
        if gid.startswith("__"):
            raise InvalidArgument("group_id must not start with '__' (reserved)")
        if wait not in ("all", "any", "none"):
            raise InvalidArgument(f"wait must be all, any or none, not {wait!r}")
        if on_child_failed not in ("fail_parent", "ignore"):
            raise InvalidArgument("on_child_failed must be fail_parent or ignore")
        if on_parent_closed not in ("cancel_children", "abandon_children"):
            raise InvalidArgument("on_parent_closed must be cancel_children or abandon_children")
        m.check_active_state(wait_state, "wait_state")
        m.check_state(success_state, "success_state")
        m.check_state(failure_state, "failure_state")
        m.check_items(children, ChildSpec, "spawn_children")
        creates: list[m.Create] = []
        seen: set[str] = set()
        carried = 0
        for spec in children:
            if not isinstance(spec, ChildSpec):
                raise InvalidArgument("children must be ChildSpec items")
            create = m.Create(
                spec.id,
                m.check_type(spec.type),
                m.check_active_state(spec.state, "child state"),
                spec.payload,
                spec.partition_key,
                spec.run_at_ms,
                spec.priority if spec.priority is not None else 0,
                spec.values,
                spec.attributes,
                None,
                None,
                spec.correlation_id,
            )
            m.validate_create_item(create)
            if create.id in seen:
                raise InvalidArgument(f"duplicate child id {create.id!r}")
            seen.add(create.id)
            creates.append(create)
            carried += m.create_bytes(create)
        m.check_command_bytes(carried, "spawn_children")
        command = c.Spawn(
            parent_id,
            lease_token,
            fencing_token,
            gid,
            creates,
            wait,
            wait_state,
            success_state,
            failure_state,
            on_child_failed == "fail_parent",
            on_parent_closed == "cancel_children",
        )
        home = self._locate(parent_id, partition_key)
        record = self._records[home].get(parent_id)
        table = self._slot_table
        targets: set[int] = set()
        reserved: list[str] = []
        try:
            if record is not None:
                # Where each child will live (as `_coord.decide_spawn` places it), each id
                # held against a create of the same id elsewhere until the spawn landed.
                for ch in creates:
                    part = ch.partition if ch.partition is not None else record[PARTITION]
                    target = home if part is None else table[slot_of(part)]
                    self._reserve(ch.id, table[slot_of(ch.id)], target, False)
                    reserved.append(ch.id)
                    targets.add(target)
            parent: Flow = await self._call(self._shards[home], Request(command))
            targets.discard(home)
            await self._delivered(
                self._shards[home], [f"s\x00{parent_id}\x00{gid}\x00{t}" for t in targets]
            )
        finally:
            for fid in reserved:
                self._release(fid)
        return parent

    async def settle(self) -> None:
        """Wait until every cross-shard message sent so far (remote children, child
        outcomes for parents on other shards, cancel cascades), and every message those
        caused, has been delivered and applied. Same-shard fanout needs no waiting: it is
        applied with the command that caused it."""
        while True:
            pending = [(s, list(s.outbox)) for s in self._shards if s.outbox]
            if not pending:
                return
            for shard, msg_ids in pending:
                await self._delivered(shard, msg_ids)

    async def _delivered(self, shard: Shard, msg_ids: list[str]) -> None:
        """Wait until the courier has delivered (and the target applied) `msg_ids`."""
        while True:
            acked = shard.acked
            if not any(msg_id in shard.outbox for msg_id in msg_ids):
                return
            if shard.courier_error is not None:
                raise StorageError(
                    f"shard {shard.index} cannot deliver to another shard yet "
                    f"({shard.courier_error}); delivery resumes when the engine reopens"
                )
            await acked.wait()

    async def children(
        self,
        parent_id: str,
        *,
        group_id: str | None = None,
        partition_key: str | None = None,
    ) -> list[ChildStatus]:
        """The children of a parent's groups (one group with `group_id`) and what the
        parent knows of them: "pending" until their terminal outcome is counted."""
        m.check_id(parent_id)
        shard = self._shards[self._locate(parent_id, partition_key)]
        if group_id is not None:
            m.check_name(group_id, "group_id")

        def read(record: Record) -> list[ChildStatus]:
            groups = (record[EXT] or {}).get("groups") or {}
            if group_id is not None:
                if group_id not in groups:
                    raise FlowNotFound(f"flow {parent_id!r} has no child group {group_id!r}")
                groups = {group_id: groups[group_id]}
            out: list[ChildStatus] = []
            for gid in groups:
                listing = shard._read(c.group_key(parent_id, gid))
                if listing is None:
                    continue
                for child_id, child_type, _shard in cbor2.loads(listing):
                    noted = shard._read(c.noted_key(parent_id, child_id))
                    if noted is None:
                        out.append(ChildStatus(child_id, gid, child_type, "pending"))
                    else:
                        _gid, status, result, error = cbor2.loads(noted)
                        out.append(ChildStatus(child_id, gid, child_type, status, result, error))
            return out

        statuses: list[ChildStatus] = await self._call(
            shard, Request(query=lambda st: _require_record(st, parent_id), read=read)
        )
        return statuses

    # -- coordination: signals, rewind -------------------------------------------------

    async def signal(
        self,
        flow_id: str,
        name: str,
        *,
        values: Mapping[str, bytes] | None = None,
        if_state: str | Sequence[str] | None = None,
        transition_to: str | None = None,
        run_at_ms: int | None = None,
        delay_ms: int | None = None,
        idempotency_key: str | None = None,
        partition_key: str | None = None,
    ) -> Flow:
        """Deliver an external event to a flow.

        Passive (no `transition_to`): a `signaled` history event and the named values;
        a lease and its fencing token are kept. Transitioning: `if_state` is required and
        must contain the current state; the flow moves to `transition_to`, due at
        `run_at_ms` (default now), and loses its lease (its holder then hears
        StaleLease). With `idempotency_key`, the same signal again is a no-op (no second
        event) and a different one under the same key raises IdempotencyConflict.
        """
        m.check_id(flow_id)
        m.check_name(name, "signal name")
        states: tuple[str, ...] | None = None
        if if_state is not None:
            raw = (if_state,) if isinstance(if_state, str) else m.check_list(if_state, "if_state")
            if not raw:
                raise InvalidArgument("if_state must name at least one state")
            states = tuple(m.check_name(s, "if_state") for s in raw)
        if transition_to is not None:
            m.check_active_state(transition_to, "transition_to")
            if states is None:
                raise InvalidArgument("a transitioning signal requires if_state")
        elif run_at_ms is not None or delay_ms is not None:
            raise InvalidArgument("run_at_ms / delay_ms need transition_to")
        if idempotency_key is not None:
            m.check_name(idempotency_key, "idempotency_key")
        checked = m.check_values(values)
        m.check_carried("signal", checked)
        command = c.Signal(
            flow_id,
            name,
            checked,
            states,
            transition_to,
            self._due(run_at_ms, delay_ms) if transition_to is not None else None,
            idempotency_key,
        )
        flow: Flow = await self._one(flow_id, partition_key, command)
        return flow

    async def rewind(
        self,
        flow_id: str,
        to_version: int,
        *,
        expect_state: str | None = None,
        partition_key: str | None = None,
    ) -> Flow:
        """Restore the flow as it was after history event `to_version`.

        Refused while leased. The restored state is the event's (its logical state if it
        was running), with that event's attempts, payload, result and error; the fencing
        token is bumped so nothing issued before the rewind can act on the flow; a live
        target state is due at once. History is appended to (a `rewound` event), never
        rewritten. Named values keep their current contents. Works on terminal flows.
        """
        m.check_int(to_version, "to_version", 1, m.MAX_TIME_MS)
        if expect_state is not None:
            m.check_state(expect_state, "expect_state")
        command = c.Rewind(flow_id, to_version, expect_state)
        flow: Flow = await self._one(flow_id, partition_key, command)
        return flow

    # -- coordination: policies --------------------------------------------------------

    async def install_policy(
        self,
        type: str,
        policy: FlowPolicy,
        *,
        expected_generation: int | None = None,
        replace: bool = False,
    ) -> FlowPolicy:
        """Install `type`'s policy: merged field by field into the current one (state
        layers too), or replacing it with `replace=True`. With `expected_generation`,
        only if the current generation is that (compare-and-swap; 0 = none installed).
        Durable on every shard before it takes effect; returns the new policy."""
        m.check_type(type)
        if not isinstance(policy, FlowPolicy):
            raise InvalidArgument("policy must be a FlowPolicy")
        m.check_bool(replace, "replace")
        if expected_generation is not None:
            m.check_int(expected_generation, "expected_generation", 0, m.MAX_TIME_MS)
        async with self._policy_lock:
            current = self._config.installed.get(type)
            generation = current.generation if current is not None else 0
            if expected_generation is not None and expected_generation != generation:
                raise IdempotencyConflict(
                    f"policy of {type!r} is at generation {generation}, not {expected_generation}"
                )
            merged = policy if replace or current is None else merge_policy(current, policy)
            new = dataclass_replace(merged, generation=generation + 1)
            await self._write_policy(type, new, range(len(self._shards)))
            self._config.install(type, new)
            return new

    async def _write_policy(self, type: str, policy: FlowPolicy, shards: Iterable[int]) -> None:
        data = encode_policy(policy)
        await self._each_shard(
            lambda s: Request(c.PutPolicy(type, data)) if s.index in shards else None
        )

    async def get_policy(self, type: str) -> FlowPolicy:
        """The installed policy of `type` (an empty one, generation 0, if none)."""
        m.check_type(type)
        return self._config.installed.get(type) or FlowPolicy()

    # -- coordination: queries ---------------------------------------------------------

    async def _paged(
        self,
        run: Callable[[ShardState, Any, int], list[Any]],
        cursor: str | None,
        shape: tuple[type, ...],
        limit: int,
    ) -> Page:
        m.check_int(limit, "limit", 1, q.MAX_PAGE)
        after = q.decode_cursor(cursor, shape)

        def make(shard: Shard) -> Request:
            def query(st: ShardState) -> list[tuple[Any, Flow]]:
                return [(key, shard.to_flow(rec)) for key, rec in run(st, after, limit)]

            return Request(query=query)

        entries: list[tuple[Any, Flow]] = []
        for found in await self._each_shard(make):
            entries.extend(found)
        entries.sort(key=lambda e: e[0])
        page = entries[:limit]
        more = len(entries) > limit or len(page) == limit
        next_cursor = q.encode_cursor(page[-1][0]) if page and more else None
        return Page([flow for _key, flow in page], next_cursor)

    async def list_flows(
        self, type: str, state: str, *, limit: int = 100, cursor: str | None = None
    ) -> Page:
        """Flows of `type` in `state`: due ones by priority then due time, then parked
        ones (waiting parents), then terminal ones by the time they ended."""
        m.check_type(type)
        m.check_name(state, "state")  # running included: leased flows, by lease deadline
        return await self._paged(
            lambda st, after, n: q.list_state(st, type, state, after, n),
            cursor,
            q.LIST_KEY,
            limit,
        )

    async def by_parent(
        self, parent_id: str, *, limit: int = 100, cursor: str | None = None
    ) -> Page:
        """Children of `parent_id` (on every shard), by id."""
        m.check_id(parent_id)
        return await self._paged(
            lambda st, after, n: q.by_ids(st, st.children.get(parent_id, ()), after, n),
            cursor,
            q.ID_KEY,
            limit,
        )

    async def by_root(self, root_id: str, *, limit: int = 100, cursor: str | None = None) -> Page:
        """Every descendant of the tree rooted at `root_id` (not the root itself), by id."""
        m.check_id(root_id)
        return await self._paged(
            lambda st, after, n: q.by_ids(st, st.by_root.get(root_id, ()), after, n),
            cursor,
            q.ID_KEY,
            limit,
        )

    async def by_correlation(
        self, correlation_id: str, *, limit: int = 100, cursor: str | None = None
    ) -> Page:
        """Flows created with `correlation_id`, across all shards, by id."""
        m.check_id(correlation_id, "correlation_id")
        return await self._paged(
            lambda st, after, n: q.by_ids(st, st.by_correlation.get(correlation_id, ()), after, n),
            cursor,
            q.ID_KEY,
            limit,
        )

    async def stuck(
        self, type: str, *, older_than_ms: int = 0, limit: int = 100, cursor: str | None = None
    ) -> Page:
        """Running flows whose lease expired at least `older_than_ms` ago and that no
        claim has reclaimed yet, by lease deadline."""
        m.check_type(type)
        m.check_int(older_than_ms, "older_than_ms", 0, m.MAX_TIME_MS)
        deadline = self._clock() - older_than_ms
        return await self._paged(
            lambda st, after, n: q.stuck(st, type, deadline, after, n), cursor, q.TIME_KEY, limit
        )

    async def terminals(
        self,
        type: str,
        *,
        state: str | None = None,
        from_ms: int | None = None,
        to_ms: int | None = None,
        limit: int = 100,
        cursor: str | None = None,
    ) -> Page:
        """Terminal flows of `type` (one terminal `state`, or all) that ended within
        [from_ms, to_ms], oldest first."""
        m.check_type(type)
        names = sorted(TERMINAL) if state is None else [m.check_name(state, "state")]
        if state is not None and state not in TERMINAL:
            raise InvalidArgument(f"{state!r} is not a terminal state")
        for bound, what in ((from_ms, "from_ms"), (to_ms, "to_ms")):
            if bound is not None:
                m.check_int(bound, what, 0, m.MAX_TIME_MS)
        return await self._paged(
            lambda st, after, n: q.terminals(st, type, names, from_ms, to_ms, after, n),
            cursor,
            q.TIME_KEY,
            limit,
        )

    async def reclaim_expired(
        self, type: str, worker: str, *, limit: int = 1, lease_ms: int = 30_000
    ) -> list[Flow]:
        """Claim only flows whose lease expired (alias of `reclaim`)."""
        return await self.reclaim(type, worker, limit=limit, lease_ms=lease_ms)

    # -- retention and maintenance -----------------------------------------------------

    async def retention_cleanup(self, *, limit: int = 1000) -> dict[str, int]:
        """One bounded pass on every shard: fail live flows past their max_active_ms,
        then delete terminal flows past their retention, with their history, values and
        fanout keys. `more` is 1 when a shard had more to do than `limit`."""
        m.check_int(limit, "limit", 1, m.MAX_BATCH_ITEMS)
        reports = await self._each_shard(lambda s: Request(c.Cleanup(limit)))
        total = {"active_timeouts": 0, "deleted": 0, "more": 0}
        for report in reports:
            total["active_timeouts"] += report["active_timeouts"]
            total["deleted"] += report["deleted"]
            total["more"] = max(total["more"], report["more"])
        return total

    async def compact(self) -> dict[str, int]:
        """Merge every shard's closed log segments, reclaiming the space of deleted and
        superseded entries (the keydir already forgot them)."""
        reclaimed = 0
        for shard in self._shards:
            try:
                report = await shard.log.merge()
            except wal.WalError as exc:
                raise translate(exc) from exc
            reclaimed += report.bytes_before - report.bytes_after
        return {"bytes_reclaimed": reclaimed}

    async def _courier(self, shard: Shard) -> None:
        """Deliver `shard`'s durable outbox to the target shards, then ack it there.

        One courier per shard, so a message is never in flight twice; a crash between
        delivery and ack re-delivers after recovery, which the target ignores."""
        try:
            while True:
                if not shard.outbox:
                    shard.outbox_changed = trio.Event()
                    await shard.outbox_changed.wait()
                    continue
                batch = list(islice(shard.outbox.items(), 1024))
                per_target: dict[int, list[c.Deliver]] = {}
                for msg_id, (target, message) in batch:
                    per_target.setdefault(target, []).append(c.Deliver(msg_id, message))
                for target, items in sorted(per_target.items()):
                    try:
                        await self._call(self._shards[target], Request(items=items))
                    except InvalidArgument:
                        if len(items) == 1:
                            raise
                        # Too much for one frame together (the shard refused them and
                        # changed nothing): one at a time, each fits (MAX_COMMAND_BYTES).
                        for item in items:
                            await self._call(self._shards[target], Request(items=[item]))
                await self._call(shard, Request(c.Acked([msg_id for msg_id, _ in batch])))
        except FlowError as exc:
            shard.courier_error = exc
            shard.acked.set()

    async def _recover_policies(self) -> None:
        """Install the newest policy generation found on any shard, and rewrite it on
        shards that missed it (an install interrupted by a crash)."""
        newest: dict[str, FlowPolicy] = {}
        for shard in self._shards:
            for type_name, data in shard.policies.items():
                policy = decode_policy(data, shard.log.path)
                if type_name not in newest or policy.generation > newest[type_name].generation:
                    newest[type_name] = policy
        for type_name, policy in newest.items():
            lagging = [
                s.index
                for s in self._shards
                if s.policies.get(type_name) is None
                or decode_policy(s.policies[type_name], s.log.path).generation < policy.generation
            ]
            if lagging:
                await self._write_policy(type_name, policy, lagging)
            self._config.install(type_name, policy)

    async def _run_couriers(self) -> None:
        with self._background:
            async with trio.open_nursery() as nursery:
                for shard in self._shards:
                    nursery.start_soon(self._courier, shard)

    def statistics(self) -> dict[str, Any]:
        """Per-shard counters and log statistics (for monitoring and benchmarks)."""
        return {
            "shards": [
                {
                    "index": s.index,
                    "flows": len(s.state.records),
                    "requests": s.requests,
                    "commits": s.commits,
                    "broken": s.broken is not None,
                    "log": s.log.statistics(),
                }
                for s in self._shards
            ]
        }

    def _check(self) -> None:
        """Invariants of every shard (tests): indexes match records, logs consistent."""
        for shard in self._shards:
            shard.state._check()
            shard.log._check()
            for record in shard.state.records.values():
                assert self._locate(record[ID], None) == shard.index
                if record[PARTITION] is not None:
                    assert self.shard_for(record[ID], record[PARTITION]) == shard.index
                assert record[STATE] not in TERMINAL or record[NEXT_RUN_AT] is None

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._background.cancel()
        for shard in self._shards:
            await shard.send.aclose()


def _report_recovery(recovery: EngineRecovery) -> None:
    """Say what open repaired: a warning per repair, so an operator sees it happened."""
    if recovery.adopted:
        _log.warning(
            "adopted a data directory made by an older flowactors (engine %s): shard "
            "identities and log manifests written; their checks apply from now on",
            recovery.engine_id,
        )
    for shard in recovery.shards:
        for r in shard.repairs:
            if r.kind == "manifest-rebuilt" and recovery.adopted:
                continue
            _log.warning(
                "shard %d: recovery repaired %s: %s at offset %d (%d bytes dropped): %s",
                shard.index,
                r.kind,
                r.path,
                r.offset,
                r.dropped_bytes,
                r.reason,
            )
        if shard.merge is not None:
            _log.warning("shard %d: a merge cut short by a crash was %s", shard.index, shard.merge)
    _log.info(
        "opened engine %s: %d flows on %d shards in %.3f s",
        recovery.engine_id,
        sum(s.flows for s in recovery.shards),
        len(recovery.shards),
        max((s.seconds for s in recovery.shards), default=0.0),
    )


@asynccontextmanager
async def open_engine(
    path: str | os.PathLike[str],
    *,
    shards: int = 4,
    sync: str = "always",
    clock: Callable[[], int] | None = None,
    retry_policy: RetryPolicy | None = None,
    type_policies: Mapping[str, RetryPolicy] | None = None,
    queue_capacity: int = 4096,
    queue_timeout_ms: int | None = None,
    segment_max_bytes: int = 64 * 1024 * 1024,
    maintenance_interval_ms: int | None = 60_000,
    io_threads: bool = True,
    fs: wal.FileSystem | None = None,
) -> AsyncIterator[Engine]:
    """Open (creating if needed) an engine in `path`, inside the running Trio program.

    `clock` returns engine time in ms (default: wall clock; use `trio_clock_ms` with
    Trio's MockClock in tests). `sync` is the wal sync mode (`always` is durable).
    Every `maintenance_interval_ms` of engine time (None: never), each shard runs a
    bounded pass with its next batch of work: it fails flows past their max_active_ms
    and deletes terminal flows past their retention. It rides on traffic rather than a
    timer, so an idle engine does nothing and Trio's MockClock never jumps for it.
    `io_threads=False` runs each commit's write and fdatasync inside the event loop
    (blocking it): for tests on `trio.testing.MockClock(autojump_threshold=0)`, where
    waiting on a thread lets virtual time leap ahead by however long the disk takes.
    """
    if not isinstance(path, str | os.PathLike):
        raise InvalidArgument(f"path must be a str or os.PathLike, not {type(path).__name__}")
    root = os.fspath(path)
    m.check_int(shards, "shards", 1, SLOTS)
    m.check_int(queue_capacity, "queue_capacity", 1, 1 << 20)
    if maintenance_interval_ms is not None:
        m.check_int(maintenance_interval_ms, "maintenance_interval_ms", 1, m.MAX_DELAY_MS)
    files = fs or wal.OsFileSystem()
    try:
        layout = await trio.to_thread.run_sync(_layout.check, files, root, shards)
    except OSError as exc:
        raise StorageError(f"cannot open the data directory {root}: {exc}") from exc
    except wal.WalError as exc:
        raise translate(exc) from exc
    config = m.Config(
        retry_policy=retry_policy or RetryPolicy(),
        type_policies=dict(type_policies or {}),
    )
    clock_fn = clock or wall_clock_ms
    opened: list[Shard] = []
    try:
        for i in range(shards):
            opened.append(
                await Shard.open(
                    i,
                    _layout.shard_dir(root, i),
                    config,
                    clock_fn,
                    sync=sync,
                    capacity=queue_capacity,
                    segment_max_bytes=segment_max_bytes,
                    fs=files,
                    route=router(shards),
                    maintenance_ms=maintenance_interval_ms,
                    io_threads=io_threads,
                    adopt=layout.adopt,
                )
            )
        try:
            await trio.to_thread.run_sync(layout.finish, files)
        except OSError as exc:
            raise StorageError(f"cannot record the data directory's layout: {exc}") from exc
    except BaseException:
        with trio.CancelScope(shield=True):
            for shard in opened:
                await shard.aclose()
        raise
    engine = Engine(root, opened, config, clock_fn, queue_timeout_ms)
    engine.recovery = EngineRecovery(
        engine_id=layout.engine_id,
        created=layout.created,
        adopted=layout.adopt,
        shards=tuple(s.recovery for s in opened if s.recovery is not None),
    )
    _report_recovery(engine.recovery)
    body_error: BaseException | None = None
    try:
        async with trio.open_nursery() as nursery:
            for shard in opened:
                nursery.start_soon(shard.run)
            try:
                await engine._recover_policies()
                nursery.start_soon(engine._run_couriers)
                yield engine
            except BaseException as exc:
                # Kept out of the nursery so callers see their own exception, not a group.
                body_error = exc
            finally:
                with trio.CancelScope(shield=True):
                    await engine.aclose()
    finally:
        with trio.CancelScope(shield=True):
            for shard in opened:
                await shard.aclose()
    if body_error is not None:
        raise body_error
