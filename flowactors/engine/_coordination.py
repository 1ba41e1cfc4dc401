"""The engine's coordination between flows: fanout (spawn_children, children, settle and
the cross-shard courier), signals, rewind, and policies installed on every shard."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace as dataclass_replace
from itertools import islice

import cbor2
import trio

from . import _coord as c
from . import _machine as m
from ._errors import (
    FlowError,
    FlowNotFound,
    IdempotencyConflict,
    InvalidArgument,
    StorageError,
)
from ._policy import decode_policy, encode_policy, merge_policy
from ._record import (
    EXT,
    PARTITION,
    Record,
)
from ._routing import Routing, _require_record, slot_of
from ._shard import Request, Shard
from ._types import (
    ChildSpec,
    ChildStatus,
    Flow,
    FlowPolicy,
    OnChildFailed,
    OnParentClosed,
    WaitMode,
)


class Coordination(Routing):
    """Fanout, signals, rewind, policies and the courier."""

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
        creates = c.child_creates(children, "spawn_children")
        if any(
            ch.wake_parent or ch.retention_ms is not None or ch.lease_ms is not None
            for ch in children
        ):
            raise InvalidArgument(
                "spawn_children: retention_ms, wake_parent and lease_ms are for a "
                "transition's children (a fanout group reports to its parent itself)"
            )
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
        # Where each child will live (as `_coord.decide_spawn` places it), each id held
        # against a create of the same id elsewhere until the spawn landed.
        placed: list[tuple[str, int]] = []
        if record is not None:
            table = self._slot_table
            for ch in creates:
                part = ch.partition if ch.partition is not None else record[PARTITION]
                placed.append((ch.id, home if part is None else table[slot_of(part)]))
        with self._reserving(placed):
            parent: Flow = await self._call(self._shards[home], Request(command))
            targets = {target for _id, target in placed}
            targets.discard(home)
            await self._delivered(
                self._shards[home], [f"s\x00{parent_id}\x00{gid}\x00{t}" for t in targets]
            )
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

    async def _run_couriers(self) -> None:
        with self._background:
            async with trio.open_nursery() as nursery:
                for shard in self._shards:
                    nursery.start_soon(self._courier, shard)
