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

import json
import os
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

import trio
import xxhash

import wal

from . import _machine as m
from ._errors import (
    EngineClosed,
    FlowError,
    FlowNotFound,
    InvalidArgument,
    Overloaded,
)
from ._record import TERMINAL
from ._shard import NO_HYDRATE, Hydrate, Request, Shard
from ._state import ShardState
from ._types import Ack, CreateSpec, Flow, HistoryEvent, ItemResult, RetryPolicy

SLOTS = 1024
ENGINE_FILE = "ENGINE"


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


def trio_clock_ms() -> int:
    """Milliseconds from Trio's clock: with `trio.testing.MockClock` time is virtual."""
    return int(trio.current_time() * 1000)


def slot_of(key: str) -> int:
    return xxhash.xxh3_64_intdigest(key.encode("utf-8", "surrogatepass")) & (SLOTS - 1)


def _hydrate(payload: bool | int, values: Iterable[str], outcome: bool = False) -> Hydrate:
    if payload is not True and payload is not False:
        m.check_int(payload, "payload max bytes", 0, m.MAX_BLOB_BYTES)
    names = tuple(m.check_name(v, "value name") for v in values)
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
        self._slot_table = [slot % len(shards) for slot in range(SLOTS)]
        self._closed = False
        self._claim_cursor = 0

    # -- plumbing -----------------------------------------------------------------------

    @property
    def shard_count(self) -> int:
        return len(self._shards)

    def now_ms(self) -> int:
        """The engine's clock (ms): the only time flowactors uses."""
        return self._clock()

    def shard_for(self, flow_id: str, partition_key: str | None = None) -> int:
        return self._slot_table[slot_of(partition_key if partition_key is not None else flow_id)]

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
        command: m.Command,
        hydrate: Hydrate = NO_HYDRATE,
    ) -> Any:
        m.check_id(flow_id)
        shard = self._shards[self.shard_for(flow_id, partition_key)]
        return await self._call(shard, Request(command, hydrate=hydrate))

    async def _each_shard(self, make: Callable[[Shard], Request | None]) -> list[Any]:
        """Send one request to every shard concurrently; results in shard order."""
        results: list[Any] = [None] * len(self._shards)
        errors: list[BaseException] = []

        async def one(i: int, shard: Shard) -> None:
            req = make(shard)
            if req is None:
                return
            try:
                results[i] = await self._call(shard, req)
            except FlowError as exc:
                errors.append(exc)

        async with trio.open_nursery() as nursery:
            for i, shard in enumerate(self._shards):
                nursery.start_soon(one, i, shard)
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
        result: Flow = await self._one(flow_id, partition_key, command)
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
        if not 0 < len(items) <= m.MAX_BATCH_ITEMS:
            raise InvalidArgument(f"create_many takes 1..{m.MAX_BATCH_ITEMS} items")
        m.validate_create_shared(
            m.Create("-", type, state, max_active_ms=max_active_ms, retention_ms=retention_ms)
        )
        commands: list[tuple[int, m.Create]] = []
        seen: set[tuple[str, str | None]] = set()
        table = self._slot_table
        for spec in items:
            part = spec.partition_key if spec.partition_key is not None else partition_key
            command = m.Create(
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
            m.validate_create_item(command)
            if (spec.id, part) in seen:
                raise InvalidArgument(f"duplicate id {spec.id!r} in one create_many call")
            seen.add((spec.id, part))
            commands.append((table[slot_of(part if part is not None else spec.id)], command))
        outcome = await self._grouped(commands, lambda g: Request(m.CreateMany(g)))
        out = []
        cursors = dict.fromkeys(outcome, 0)
        for i, command in commands:
            result = outcome[i]
            if isinstance(result, Exception):
                out.append(ItemResult(command.id, None, result))
            else:
                out.append(ItemResult(command.id, result[cursors[i]]))
                cursors[i] += 1
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
    ) -> list[Flow]:
        """Claim up to `limit` due flows of `type` under a lease of `lease_ms`.

        Each claim moves the flow to `running` (its logical state kept in `run_state`),
        bumps its fencing token and mints a lease token; both must be presented by every
        later mutation. Expired leases are reclaimed in the same call (about
        `reclaim_ratio`% of `limit` first, then normal work, then more reclaims).
        `payload=True` (or a byte cap) and `values=[...]` hydrate bytes from disk.
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
            only_expired=False,
        )

    async def reclaim(
        self,
        type: str,
        worker: str,
        *,
        limit: int = 1,
        lease_ms: int = 30_000,
        payload: bool | int = False,
        values: Sequence[str] = (),
    ) -> list[Flow]:
        """Claim only flows whose lease expired (their worker is presumed dead)."""
        return await self._claim(
            type, worker, None, limit, lease_ms, payload, values, True, 100, None, only_expired=True
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
        wanted = None if states is None else tuple(m.check_state(s) for s in states)
        hyd = _hydrate(payload, values)
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
                ),
                hydrate=hyd,
            )

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
        return m.Transition(
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
        command = m.Complete(
            flow_id,
            lease_token,
            fencing_token,
            m.check_blob(result, "result"),
            m.check_values(values),
        )
        flow: Flow = await self._one(flow_id, partition_key, command)
        return flow

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
        command = m.Fail(
            flow_id,
            lease_token,
            fencing_token,
            m.check_blob(error, "error"),
            m.check_values(values),
        )
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
            flow_id, fencing_token, lease_token, m.check_blob(reason, "reason"), force
        )
        flow: Flow = await self._one(flow_id, partition_key, command)
        return flow

    async def _many(self, commands: list[tuple[str, str | None, m.Command]]) -> list[ItemResult]:
        if not 0 < len(commands) <= m.MAX_BATCH_ITEMS:
            raise InvalidArgument(f"batch commands take 1..{m.MAX_BATCH_ITEMS} items")
        routed = [(self.shard_for(fid, part), command) for fid, part, command in commands]
        outcome = await self._grouped(routed, lambda g: Request(items=g))
        per_shard: dict[int, list[ItemResult]] = {}
        for i, result in outcome.items():
            if isinstance(result, BaseException):
                raise result
            per_shard[i] = list(result)
        out = []
        cursors = dict.fromkeys(per_shard, 0)
        for i, _command in routed:
            out.append(per_shard[i][cursors[i]])
            cursors[i] += 1
        return out

    async def _acks(
        self, items: Sequence[Ack], make: Callable[[Ack], m.Command]
    ) -> list[ItemResult]:
        return await self._many([(a.id, a.partition_key, make(a)) for a in items])

    async def complete_many(self, items: Sequence[Ack]) -> list[ItemResult]:
        """Complete many claimed flows in one round trip (`Ack.data` is the result)."""
        return await self._acks(
            items,
            lambda a: m.Complete(
                m.check_id(a.id), a.lease_token, a.fencing_token, m.check_blob(a.data, "result")
            ),
        )

    async def fail_many(self, items: Sequence[Ack]) -> list[ItemResult]:
        """Fail many claimed flows in one round trip (`Ack.data` is the error)."""
        return await self._acks(
            items,
            lambda a: m.Fail(
                m.check_id(a.id), a.lease_token, a.fencing_token, m.check_blob(a.data, "error")
            ),
        )

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
        return await self._many(
            [
                (
                    a.id,
                    a.partition_key,
                    self._transition_cmd(
                        a.id,
                        from_state,
                        to_state,
                        a.fencing_token,
                        a.lease_token,
                        run_at_ms,
                        delay_ms,
                        None,
                        None,
                        None,
                        None,
                    ),
                )
                for a in items
            ]
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
            m.PutValue(flow_id, m.check_name(name, "value name"), blob, override),
        )
        return flow

    async def get_values(
        self, flow_id: str, names: Sequence[str], *, partition_key: str | None = None
    ) -> dict[str, bytes]:
        """Named values by name (absent names are left out)."""
        checked = [m.check_name(n, "value name") for n in names]
        shard = self._shards[self.shard_for(m.check_id(flow_id), partition_key)]

        def query(state: ShardState) -> Any:
            record = state.get(flow_id)
            if record is None:
                raise FlowNotFound(f"flow {flow_id!r} not found")
            return record

        record = await self._call(shard, Request(query=query))
        return shard.get_values(record, checked)

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
        shard = self._shards[self.shard_for(m.check_id(flow_id), partition_key)]

        def query(state: ShardState) -> Any:
            record = state.get(flow_id)
            if record is None:
                raise FlowNotFound(f"flow {flow_id!r} not found")
            return record

        record = await self._call(shard, Request(query=query))
        return shard.history(record)

    async def info(self, type: str) -> dict[str, int]:
        """Number of flows of `type` per state (running included), across all shards."""
        m.check_type(type)

        def make(shard: Shard) -> Request:
            return Request(query=lambda st: {s: n for (t, s), n in st.counts.items() if t == type})

        totals: dict[str, int] = {}
        for counts in await self._each_shard(make):
            for state, n in counts.items():
                totals[state] = totals.get(state, 0) + n
        return dict(sorted(totals.items()))

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
                assert self.shard_for(record.id, record.partition) == shard.index
                assert record.state not in TERMINAL or record.next_run_at is None

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        for shard in self._shards:
            await shard.send.aclose()


def _read_engine_file(fs: wal.FileSystem, path: str, shards: int) -> int:
    """Check (or, for a new directory, durably record) the engine's shard count."""
    meta_path = os.path.join(path, ENGINE_FILE)
    if fs.exists(meta_path):
        try:
            meta = json.loads(fs.read_file(meta_path))
            count = int(meta["shards"])
        except (ValueError, KeyError, TypeError) as exc:
            raise InvalidArgument(f"{meta_path} is not a flowactors engine file") from exc
        if count != shards:
            raise InvalidArgument(
                f"{path} was created with {count} shards; open it with shards={count}"
            )
        return count
    wal.makedirs_durably(fs, path)
    tmp = meta_path + ".tmp"
    if fs.exists(tmp):
        fs.remove(tmp)
    handle = fs.open(tmp, create=True)
    try:
        handle.append(json.dumps({"format": 1, "shards": shards, "slots": SLOTS}).encode())
        handle.sync()
    finally:
        handle.close()
    fs.rename(tmp, meta_path)
    fs.sync_dir(path)
    return shards


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
    fs: wal.FileSystem | None = None,
) -> AsyncIterator[Engine]:
    """Open (creating if needed) an engine in `path`, inside the running Trio program.

    `clock` returns engine time in ms (default: wall clock; use `trio_clock_ms` with
    Trio's MockClock in tests). `sync` is the wal sync mode (`always` is durable).
    """
    root = os.fspath(path)
    m.check_int(shards, "shards", 1, SLOTS)
    m.check_int(queue_capacity, "queue_capacity", 1, 1 << 20)
    files = fs or wal.OsFileSystem()
    await trio.to_thread.run_sync(_read_engine_file, files, root, shards)
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
                    os.path.join(root, f"shard-{i:03d}"),
                    config,
                    clock_fn,
                    sync=sync,
                    capacity=queue_capacity,
                    segment_max_bytes=segment_max_bytes,
                    fs=files,
                )
            )
    except BaseException:
        with trio.CancelScope(shield=True):
            for shard in opened:
                await shard.aclose()
        raise
    engine = Engine(root, opened, config, clock_fn, queue_timeout_ms)
    body_error: BaseException | None = None
    try:
        async with trio.open_nursery() as nursery:
            for shard in opened:
                nursery.start_soon(shard.run)
            try:
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
