"""The engine's commands on flows: create, claim, extend, transition, complete, fail,
retry, cancel, their batch forms, and named values. Each checks its input, builds the
machine's command and sends it to the shard that holds the flow (see `_routing`)."""

from __future__ import annotations

from collections.abc import Callable, Container, Mapping, Sequence
from typing import Any

import trio

from . import _coord as c
from . import _machine as m
from ._errors import (
    EngineClosed,
    FlowError,
    InvalidArgument,
)
from ._record import (
    COMPLETED,
    FAILED,
)
from ._routing import Routing, _hydrate, _tuple_new, slot_of
from ._shard import Request
from ._types import (
    Ack,
    ChildSpec,
    ContinueSpec,
    CreateSpec,
    Flow,
    ItemResult,
)


class Commands(Routing):
    """Creating flows and moving them through their lifecycle."""

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
        held: Container[str] | None = None,
    ) -> list[Flow]:
        """Claim up to `limit` due flows of `type` under a lease of `lease_ms`.

        Each claim moves the flow to `running` (its logical state kept in `run_state`),
        bumps its fencing token and mints a lease token; both must be presented by every
        later mutation. Expired leases are reclaimed in the same call (about
        `reclaim_ratio`% of `limit` first, then normal work, then more reclaims).
        `payload=True` (or a byte cap) and `values=[...]` hydrate bytes from disk, except
        for flows whose id is in `held` (a set, a dict: what the caller already holds,
        looked up as the answer is made), which come back with neither read.
        `partition_key` claims only that partition's flows (a tenant's worker).
        """
        return await self._claim(
            type, worker, states, limit, lease_ms, payload, values, reclaim, reclaim_ratio,
            priority, partition_key, held, only_expired=False,
        )  # fmt: skip

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
        held: Container[str] | None = None,
    ) -> list[Flow]:
        """Claim only flows whose lease expired (their worker is presumed dead); the
        filters and `held` are claim_due's (`states` are the logical states they were
        running in)."""
        return await self._claim(
            type, worker, states, limit, lease_ms, payload, values, True, 100, priority,
            partition_key, held, only_expired=True,
        )  # fmt: skip

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
        held: Container[str] | None,
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
        hyd = _hydrate(payload, values, held=held)
        if partition_key is not None:
            m.check_name(partition_key, "partition_key")
        n = len(self._shards)

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

        # Only shards whose indexes show something due of this type are asked (a shard's
        # state is read here, never changed; it may run ahead of its log, which only
        # means the claim is decided after what it saw is durable). Nothing due anywhere
        # answers at once, after a checkpoint: a polling worker still yields.
        now = self._clock()
        if partition_key is not None:  # a partition lives on one shard
            candidates = [self._slot_table[slot_of(partition_key)]]
        else:
            self._claim_cursor = (self._claim_cursor + 1) % n
            candidates = self._rotations[self._claim_cursor]
        # Without a `priority` filter, shards are asked highest due band first (in turn
        # within a band), so the priority order holds across shards, not only in each.
        order = []
        bands = []
        for i in candidates:
            shard = self._shards[i]
            state = shard.state
            if shard.broken is not None:
                order.append(i)
                bands.append(3)  # asked first: it answers with its error
            elif type in state.due_types:
                band = state.claim_band(type, wanted, reclaim, only_expired, priority, now)
                if band >= 0:
                    order.append(i)
                    bands.append(band)
        if len(order) > 1 and bands.count(bands[0]) != len(bands):
            ranked = sorted(range(len(order)), key=lambda k: (-bands[k], k))
            order = [order[k] for k in ranked]
        if not order:
            if self._closed:
                raise EngineClosed("the engine is closed")
            await trio.lowlevel.checkpoint()
            return []
        if partition_key is not None:
            one: list[Flow] = await self._call(self._shards[order[0]], command(limit))
            return one
        if limit == 1 or len(order) == 1:
            # The common single claim (or one shard with work): ask the candidates in
            # turn until they have given `limit` flows.
            claimed: list[Flow] = []
            for i in order:
                claimed += await self._call(self._shards[i], command(limit - len(claimed)))
                if len(claimed) >= limit:
                    break
            return claimed
        # Exact shares that add up to `limit`, the remainder rotating between calls, so a
        # claim never takes more than `limit` flows; then shards that filled their share
        # (or had none) are asked, one by one, for whatever is still missing.
        asked = len(order)
        shares = [0] * n
        for k, i in enumerate(order):
            shares[i] = limit // asked + (1 if k < limit % asked else 0)
        results = await self._each_shard(
            lambda shard: command(shares[shard.index]) if shares[shard.index] else None
        )
        claimed = []
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

    async def step_continue(
        self,
        flow_id: str,
        lease_token: str,
        fencing_token: int,
        *,
        from_state: str | None = None,
        to_state: str | None = None,
        lease_ms: int = 30_000,
        worker: str | None = None,
        payload: bytes | None = None,
        values: Mapping[str, bytes] | None = None,
        attributes: Mapping[str, str] | None = None,
        partition_key: str | None = None,
    ) -> Flow:
        """Store a claimed flow's step (payload, values, attributes) and keep working on
        it: the flow stays running, now at step `to_state` (default: the same), under a
        new lease of `lease_ms` held by `worker` (default: the current holder). The
        fencing token goes up by one, so the reply's tokens are the ones to present next
        and the old ones are stale. `from_state`, if given, must be the current step. One
        command where a transition and a claim would take two (FerricStore's
        FLOW.STEP_CONTINUE)."""
        command = _step_continue(
            flow_id, lease_token, fencing_token, from_state, to_state, lease_ms, worker,
            payload, values, attributes,
        )  # fmt: skip
        m.check_carried(
            "step_continue", command.values, command.payload, attributes=command.attributes
        )
        result: Flow = await self._one(flow_id, partition_key, command)
        return result

    async def step_continue_many(self, items: Sequence[ContinueSpec]) -> list[ItemResult]:
        """`step_continue` for many claimed flows in one round trip per shard: each item
        succeeds or fails on its own (its `ItemResult`), all of a shard's in one commit.
        Bad input (a wrong type, a bad name, too many bytes) refuses the whole call
        before anything is sent."""
        checked = m.check_items(items, ContinueSpec, "step_continue_many")
        commands: list[tuple[str, str | None, m.Command]] = []
        carried = 0
        for a in checked:
            command = _step_continue(
                a.id, a.lease_token, a.fencing_token, None, a.to_state, a.lease_ms, None,
                a.payload, a.values, None,
            )  # fmt: skip
            m.check_tokens(a.fencing_token, a.lease_token)
            if command.values:
                carried += m.values_bytes(command.values)
            carried += len(command.payload or b"")
            commands.append((a.id, a.partition_key, command))
        m.check_command_bytes(carried, "the batch")
        return await self._many(commands)

    async def reclaim_expired(
        self, type: str, worker: str, *, limit: int = 1, lease_ms: int = 30_000
    ) -> list[Flow]:
        """Claim only flows whose lease expired (alias of `reclaim`)."""
        return await self.reclaim(type, worker, limit=limit, lease_ms=lease_ms)

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
        children: Sequence[ChildSpec] = (),
    ) -> Flow:
        """Move a flow from `from_state` (`running` for a claimed flow) to `to_state`,
        due at `run_at_ms`/after `delay_ms` (default now). Releases the lease.

        `children` are created by the same command, on the flow's shard, with the flow as
        their parent: they exist exactly when the move is durable, and a child whose id is
        taken refuses the whole command (FlowExists). A child with `wake_parent` makes the
        flow due at once when it ends, if the flow is then waiting unleased. (Children
        with `lease_ms` are for `transition_claiming`, which returns them.)"""
        command = self._transition_cmd(
            flow_id, from_state, to_state, fencing_token, lease_token, run_at_ms, delay_ms,
            priority, payload, values, attributes,
        )  # fmt: skip
        creates: list[m.Create] = []
        if not (type(children) is tuple and not children):  # (the default: none)
            carried = m.values_bytes(command.values or {})
            creates = c.child_creates(children, "transition", carried)
            if any(ch.lease_ms is not None for ch in children):
                raise InvalidArgument(
                    "transition: children with lease_ms are created claimed, for the "
                    "caller to run: use transition_claiming, which returns them"
                )
        if not creates:
            result: Flow = await self._one(flow_id, partition_key, command)
            return result
        moved: Flow = await self._with_children(command, partition_key, creates, children)
        return moved

    async def transition_claiming(
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
        children: Sequence[ChildSpec],
    ) -> tuple[Flow, list[Flow]]:
        """`transition(children=)` of a claimed flow, whose children with `lease_ms` are
        created already claimed by the flow's lease owner (one `created` event each,
        leased for their `lease_ms`, fencing token 1): the caller runs them at once, as
        if its worker had claimed them, and they cost no claim command and no read.

        Returns the moved flow and those children, in order, as `claim_due` would have
        returned them but with neither payload nor values read (the caller sent them).
        An exact replay of the command returns the flow and no children (the first one
        claimed them)."""
        command = self._transition_cmd(
            flow_id, from_state, to_state, fencing_token, lease_token, run_at_ms, delay_ms,
            priority, payload, values, attributes,
        )  # fmt: skip
        carried = m.values_bytes(command.values or {})
        creates = c.child_creates(children, "transition_claiming", carried)
        if not creates:
            return await self._one(flow_id, partition_key, command), []
        got = await self._with_children(command, partition_key, creates, children)
        if isinstance(got, list):
            return got[0], got[1:]
        return got, []

    async def _with_children(
        self,
        command: m.Transition,
        partition_key: str | None,
        creates: list[m.Create],
        children: Sequence[ChildSpec],
    ) -> Any:
        home = self._locate(command.id, partition_key)
        with self._reserving((ch.id, home) for ch in creates):
            return await self._call(
                self._shards[home],
                Request(
                    c.TransitionWithChildren(
                        command,
                        creates,
                        [s.wake_parent for s in children],
                        [s.lease_ms for s in children],
                    )
                ),
            )

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
            if a.values is not None:
                raise InvalidArgument("retry_many takes no values (Ack.values)")
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
        data and values) are checked here, for the whole call, before anything is sent.
        Only outcomes (`what` given) carry values."""
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
            values = a.values
            if values is not None:
                if what is None:
                    raise InvalidArgument("transition_many takes no values (Ack.values)")
                values = m.check_values(values)
                if values:
                    carried += m.values_bytes(values)
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
            if data is a.data and values is a.values:
                group.append(a)
            else:
                group.append((fid, a.lease_token, a.fencing_token, data, part, values))
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


def _step_continue(
    flow_id: str,
    lease_token: object,
    fencing_token: int,
    from_state: str | None,
    to_state: str | None,
    lease_ms: int,
    worker: str | None,
    payload: bytes | None,
    values: Mapping[str, bytes] | None,
    attributes: Mapping[str, str] | None,
) -> m.StepContinue:
    """A checked StepContinue (`step_continue` and each item of `step_continue_many`)."""
    m.check_int(lease_ms, "lease_ms", 1, m.MAX_DELAY_MS)
    if type(lease_token) is not str:
        raise InvalidArgument(f"lease_token must be a string, got {type(lease_token).__name__}")
    return m.StepContinue(
        flow_id,
        lease_token,
        fencing_token,
        None if from_state is None else m.check_name(from_state, "from_state"),
        None if to_state is None else m.check_active_state(to_state, "to_state"),
        lease_ms,
        None if worker is None else m.check_name(worker, "worker"),
        m.check_blob(payload, "payload"),
        m.check_values(values),
        m.check_attributes(attributes),
    )
