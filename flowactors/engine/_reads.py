"""The engine's reads: one flow, its history and values, counts, paged queries across
shards, and the maintenance passes (retention, compaction)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import wal

from . import _coord as c
from . import _machine as m
from . import _queries as q
from ._errors import (
    FlowNotFound,
    InvalidArgument,
    translate,
)
from ._record import (
    TERMINAL,
)
from ._routing import Routing, _hydrate, slot_of
from ._shard import Request, Shard
from ._state import ShardState
from ._types import (
    Flow,
    HistoryEvent,
    Page,
)


class Reads(Routing):
    """Reads, queries and maintenance."""

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
