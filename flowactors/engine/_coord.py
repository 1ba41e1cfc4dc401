"""Flow coordination, decided purely: fanout groups, child outcomes, cancel cascades,
signals, rewind, retention passes, policy installs; and the hooks every decision goes
through before the shard applies it.

`decide` here wraps `_machine.decide`: core commands are decided there, coordination
commands here, and then `_settle` walks the resulting mutations once more. Whenever a
record becomes terminal it (1) reports its outcome to its parent's group, when it is a
fanout child, and (2) cancels its own children in groups with `on_parent_closed =
cancel_children`. A parent that resolves may itself become terminal, so `_settle` works
through a list that grows as it goes: the whole cascade is one decision, one wal frame,
all or nothing.

Cross-shard work cannot be part of that frame. It becomes a `Send`: a message stored
under `o<msg_id>` in the *sender's* log in the same frame as the mutation that caused it.
After the commit the engine's courier delivers it to the target shard (`Deliver`), which
applies it idempotently; only then is the `o` key tombstoned (`Acked`). A crash anywhere
re-sends from the `o` keys found at recovery, and the receiver's idempotency (the parent's
`noted` set, kept durable as `n<parent>\\0<child>` keys) makes a second delivery a no-op:
no outcome lost, none counted twice.

On-record layout (the record's `ext` dict, copied, never edited in place):
- a fanout child: `{"g": group id, "ps": parent's shard index}`;
- a parent: `{"groups": {group id: group}}`, a group being the small dict built in
  `decide_spawn` (settings, request digest, counters, resolution, other shards used);
- signal idempotency keys: `{"sig": {key: request digest}}`;
- a trimmed history: `hist_floor` moves up; events pinned by payload/result/error stay.
Child lists live on disk (`g<parent>\\0<group>`), read only by queries and cleanup.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from dataclasses import replace as dataclass_replace
from typing import Any

import cbor2
import xxhash

from . import _machine as m
from ._errors import FlowExists, FlowTerminal, IdempotencyConflict, InvalidArgument, WrongState
from ._machine import Write
from ._record import (
    ACTIVE_DEADLINE,
    ATTEMPTS,
    ATTRIBUTES,
    CANCELLED,
    COMPLETED,
    CORRELATION_ID,
    CREATED_AT,
    ERROR_VER,
    EXT,
    FENCING,
    HIST_FLOOR,
    ID,
    LEASE_OWNER,
    NEXT_RUN_AT,
    PARENT_ID,
    PARTITION,
    PAYLOAD_VER,
    PRIORITY,
    RECLAIMS,
    RESULT_VER,
    ROOT_ID,
    RUN_STATE,
    RUNNING,
    STATE,
    TERMINAL,
    TYPE,
    UPDATED_AT,
    VALUES,
    VERSION,
    Record,
    evolve,
    history_key,
    leased,
    terminal,
    value_key,
)
from ._state import ShardState
from ._types import ChildSpec

# -- mutations beyond Write -------------------------------------------------------------


@dataclass(slots=True)
class Put:
    """A raw key write; `value=None` is a tombstone."""

    key: bytes
    value: bytes | None


@dataclass(slots=True)
class Drop:
    """Remove a record from the state (its keys are tombstoned by `Put`s)."""

    id: str


@dataclass(slots=True)
class Note:
    """The parent has counted the child's outcome (idempotency of fanout)."""

    parent_id: str
    child_id: str


@dataclass(slots=True)
class Send:
    """A durable message to shard `target`, stored in this shard's log until acked."""

    msg_id: str
    target: int
    message: list[Any]


@dataclass(slots=True)
class Unsend:
    """A message its target has applied: tombstone it here."""

    msg_id: str


Mutation = Write | Put | Drop | Note | Send | Unsend

# -- keys -------------------------------------------------------------------------------


def noted_key(parent_id: str, child_id: str) -> bytes:
    return b"n" + parent_id.encode() + b"\x00" + child_id.encode()


def group_key(parent_id: str, group_id: str) -> bytes:
    return b"g" + parent_id.encode() + b"\x00" + group_id.encode()


def outbox_key(msg_id: str) -> bytes:
    return b"o" + msg_id.encode()


def policy_key(flow_type: str) -> bytes:
    return b"P" + flow_type.encode()


# -- commands ---------------------------------------------------------------------------


@dataclass(slots=True)
class Spawn:
    id: str
    lease_token: str | None
    fencing: int
    group: str
    children: list[m.Create]  # partition None: the parent's
    wait: str = "all"
    wait_state: str = "waiting_children"
    success: str = COMPLETED
    failure: str = "failed"
    fail_parent: bool = True
    cancel_children: bool = True


@dataclass(slots=True)
class TransitionWithChildren:
    """`Engine.transition(children=)`: the transition, and children created in the same
    decision on the parent's shard; `wakes[i]`: child i wakes its parent when it ends;
    `leases[i]`: child i is created claimed by the parent's lease owner, for that many
    ms (`transition_claiming`; None: not claimed)."""

    transition: m.Transition
    children: list[m.Create]
    wakes: list[bool]
    leases: list[int | None]


def child_creates(children: Sequence[ChildSpec], what: str, carried: int = 0) -> list[m.Create]:
    """The creates of a command's children, each checked, ids distinct, their bytes with
    the `carried` bytes of the rest of the command within a command's; parent, root and
    (by default) correlation are filled in when decided."""
    m.check_items(children, ChildSpec, what)
    creates: list[m.Create] = []
    seen: set[str] = set()
    for spec in children:
        if not isinstance(spec, ChildSpec):
            raise InvalidArgument(f"{what}: children must be ChildSpec items")
        if spec.retention_ms is not None:
            m.check_int(spec.retention_ms, "retention_ms", 0, m.MAX_ACTIVE_MS)
        m.check_bool(spec.wake_parent, "wake_parent")
        if spec.lease_ms is not None:
            m.check_int(spec.lease_ms, "lease_ms", 1, m.MAX_DELAY_MS)
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
            retention_ms=spec.retention_ms,
        )
        m.validate_create_item(create)
        if create.id in seen:
            raise InvalidArgument(f"duplicate child id {create.id!r}")
        seen.add(create.id)
        creates.append(create)
        carried += m.create_bytes(create)
    m.check_command_bytes(carried, what)
    return creates


@dataclass(slots=True)
class Signal:
    id: str
    name: str
    values: Mapping[str, bytes] | None = None
    if_state: tuple[str, ...] | None = None
    transition_to: str | None = None
    run_at: int | None = None
    key: str | None = None


@dataclass(slots=True)
class Rewind:
    id: str
    to_version: int
    expect_state: str | None = None
    # Filled by the shard from its log before deciding (the machine does no I/O):
    snapshot: Record | None = None
    blobs: dict[str, bytes] | None = None


@dataclass(slots=True)
class Cleanup:
    limit: int = 1000


@dataclass(slots=True)
class PutPolicy:
    type: str
    data: bytes


@dataclass(slots=True)
class Deliver:
    msg_id: str
    message: list[Any]


@dataclass(slots=True)
class Acked:
    msg_ids: list[str]


CoordCommand = (
    Spawn | TransitionWithChildren | Signal | Rewind | Cleanup | PutPolicy | Deliver | Acked
)
AnyCommand = m.Command | CoordCommand
Decision = tuple[Any, list[Any]]

# -- the transaction overlay ------------------------------------------------------------


class _Tx:
    """Mutations of one decision, with the newest version of every record they touch."""

    __slots__ = ("config", "latest", "mutations", "noted", "now", "spawned", "state")

    def __init__(self, state: ShardState, now: int, config: m.Config, mutations: list[Any]) -> None:
        self.state = state
        self.now = now
        self.config = config
        self.mutations = mutations
        self.latest: dict[str, Record | None] = {}
        self.noted: set[tuple[str, str]] = set()
        self.spawned: dict[str, list[str]] = {}  # parent -> children created in this tx

    def get(self, flow_id: str) -> Record | None:
        if flow_id in self.latest:
            return self.latest[flow_id]
        return self.state.get(flow_id)

    def write(self, w: Write) -> None:
        self.latest[w.record[ID]] = w.record
        self.mutations.append(w)


# -- dispatch and hooks -----------------------------------------------------------------


def decide(state: ShardState, command: AnyCommand, now: int, config: m.Config) -> Decision:
    """Decide one command (core or coordination), then settle its consequences."""
    decider = _ALL_DECIDERS.get(type(command))
    if decider is None:
        raise InvalidArgument(f"unknown command {type(command).__name__}")
    result, mutations = decider(state, command, now, config)
    if mutations and _needs_settle(mutations, config):
        mutations = _settle(state, mutations, now, config)
    return result, mutations


def _needs_settle(mutations: list[Any], config: m.Config) -> bool:
    settled = config.settled
    for mut in mutations:
        kind = type(mut)
        if kind is m.Writes:
            continue  # no policy settles its types, no record in it closes with ext
        if kind is not Write:
            return True
        rec = mut.record
        if rec[EXT] is not None or rec[HIST_FLOOR] != 1 or (settled and rec[TYPE] in settled):
            return True
    return False


def _settle(state: ShardState, mutations: list[Any], now: int, config: m.Config) -> list[Any]:
    tx = _Tx(state, now, config, [])
    for mut in mutations:
        if type(mut) is Write:
            tx.write(mut)
        else:
            tx.mutations.append(mut)
    previous: dict[str, Record | None] = {}
    i = 0
    while i < len(tx.mutations):
        mut = tx.mutations[i]
        i += 1
        if type(mut) is not Write:
            continue
        rec = mut.record
        before = previous[rec[ID]] if rec[ID] in previous else state.get(rec[ID])
        if rec[TYPE] in config.settled or rec[HIST_FLOOR] != 1:
            rec = _apply_policy(tx, mut, before)  # (a trimmed history keeps trimming pins)
        previous[rec[ID]] = rec
        if terminal(rec) and (before is None or not terminal(before)) and rec[EXT] is not None:
            if "g" in rec[EXT]:
                _report_to_parent(tx, rec, mut)
            elif "wp" in rec[EXT]:
                _wake_parent(tx, rec)
            groups = rec[EXT].get("groups")
            if groups:
                gids = [gid for gid, g in groups.items() if g["opc"]]
                if gids:
                    _cascade(tx, rec, gids, "parent_closed")
    return tx.mutations


def _apply_policy(tx: _Tx, w: Write, before: Record | None) -> Record:
    """Policy effects on any write: max_active_ms on creation, the history cap. Returns
    the write's record, replaced (in `w` and as the transaction's newest version) when a
    policy changed it.

    Trimming keeps the events that hold the current payload, result and error below the
    floor ("pinned"); once a later write stops pinning one, it is deleted, whether or not
    a cap is still in force, so nothing of a flow outlives the window but its pins (and
    deleting the flow finds every event: the window plus the pins)."""
    rec, config = w.record, tx.config
    changes: dict[str, int] = {}
    if before is None and w.event == "created" and rec[ACTIVE_DEADLINE] is None:
        max_active = config.setting("max_active_ms", rec[TYPE])
        if max_active is not None:
            changes["active_deadline"] = rec[CREATED_AT] + max_active
    pinned = {rec[PAYLOAD_VER], rec[RESULT_VER], rec[ERROR_VER]}
    drop: list[int] = []
    if before is not None and before[HIST_FLOOR] > 1:
        for v in (before[PAYLOAD_VER], before[RESULT_VER], before[ERROR_VER]):
            if v and v < before[HIST_FLOOR] and v not in pinned:
                drop.append(v)
    cap = config.setting("history_max_events", rec[TYPE])
    if cap is not None and rec[VERSION] - rec[HIST_FLOOR] + 1 > cap:
        floor = rec[VERSION] - cap + 1
        drop.extend(v for v in range(rec[HIST_FLOOR], floor) if v not in pinned)
        changes["hist_floor"] = floor
    tx.mutations.extend(Put(history_key(rec[ID], v), None) for v in sorted(set(drop)))
    if not changes:
        return rec
    new = w.record = evolve(rec, **changes)
    if tx.latest.get(rec[ID]) is rec:  # nothing derived from `rec` yet: later reads see `new`
        tx.latest[rec[ID]] = new
    return new


# -- fanout -----------------------------------------------------------------------------


def _request_digest(c: Spawn) -> int:
    items: list[list[Any]] = [
        [
            ch.id,
            ch.type,
            ch.state,
            ch.partition,
            ch.priority,
            ch.run_at,
            ch.correlation_id,
            None if ch.payload is None else xxhash.xxh3_64_intdigest(ch.payload),
            sorted((k, xxhash.xxh3_64_intdigest(v)) for k, v in (ch.values or {}).items()),
            sorted((ch.attributes or {}).items()),
        ]
        for ch in c.children
    ]
    items.sort(key=lambda item: item[0])
    head = [c.wait, c.wait_state, c.success, c.failure, c.fail_parent, c.cancel_children]
    return xxhash.xxh3_64_intdigest(cbor2.dumps([head, items]))


def decide_spawn(state: ShardState, c: Spawn, now: int, config: m.Config) -> Decision:
    parent = m._require(state, c.id)
    digest = _request_digest(c)
    groups: dict[str, Any] = (parent[EXT] or {}).get("groups") or {}
    existing = groups.get(c.group)
    if existing is not None:
        if existing["d"] == digest:
            return parent, []  # exact replay
        raise IdempotencyConflict(
            f"flow {c.id!r}: group {c.group!r} exists with a different spawn request"
        )
    m.check_tokens(c.fencing, c.lease_token)
    m._check_lease(parent, c.fencing, c.lease_token, command="spawn_children")
    tx = _Tx(state, now, config, [])
    own = state.index
    root = parent[ROOT_ID] or parent[ID]
    remote: dict[int, list[list[Any]]] = {}
    listing: list[list[Any]] = []
    for ch in c.children:
        if ch.id == parent[ID]:
            raise InvalidArgument(f"flow {c.id!r} cannot be its own child")
        partition = ch.partition if ch.partition is not None else parent[PARTITION]
        # A child without a partition of its own lives with its parent (found by its id
        # through the shard's `foreign` index), so its outcome resolves the fanout in
        # the child's own commit; only a child given another partition lives elsewhere.
        shard = state.route(partition) if partition is not None else own
        listing.append([ch.id, ch.type, shard])
        spec = [
            ch.id,
            ch.type,
            ch.state,
            ch.payload,
            partition,
            ch.priority,
            ch.run_at,
            dict(ch.values) if ch.values else None,
            dict(ch.attributes) if ch.attributes else None,
            ch.correlation_id if ch.correlation_id is not None else parent[CORRELATION_ID],
        ]
        if shard == own:
            if state.get(ch.id) is not None:
                raise FlowExists(f"child {ch.id!r} already exists")
            _create_child(tx, spec, parent[ID], root, c.group, own)
        else:
            remote.setdefault(shard, []).append(spec)
    for target, specs in sorted(remote.items()):
        msg_id = f"s\x00{parent[ID]}\x00{c.group}\x00{target}"
        tx.mutations.append(Send(msg_id, target, ["spawn", parent[ID], root, c.group, own, specs]))
    tx.mutations.append(Put(group_key(parent[ID], c.group), cbor2.dumps(listing)))
    group = {
        "d": digest,
        "w": c.wait,
        "ws": c.wait_state,
        "s": c.success,
        "f": c.failure,
        "ocf": c.fail_parent,
        "opc": c.cancel_children,
        "n": len(c.children),
        "c": 0,
        "x": 0,
        "k": 0,
        "r": "success" if c.wait == "none" else None,
        "t": sorted(remote),
    }
    ext = dict(parent[EXT] or {})
    ext["groups"] = {**groups, c.group: group}
    version = parent[VERSION] + 1
    meta = {"group": c.group, "children": len(c.children), "wait": c.wait}
    if c.wait == "none":
        new = _move(parent, c.success, now, config, ext=ext, last_event="children_spawned")
    else:
        new = evolve(
            parent,
            state=c.wait_state,
            run_state=None,
            version=version,
            lease_owner=None,
            lease_token=None,
            lease_deadline=None,
            next_run_at=None,  # parked until the group resolves
            updated_at=now,
            ext=ext,
            last_event="children_spawned",
        )
    tx.write(Write(new, "children_spawned", meta))
    return new, tx.mutations


def decide_transition_children(
    state: ShardState, c: TransitionWithChildren, now: int, config: m.Config
) -> Decision:
    """The transition, then its children: created on this shard, under the parent, in the
    same decision (so in the same frame: they exist exactly when the move is durable). Any
    child refused (its id taken, a partition not the parent's) refuses the whole command.

    A child with a lease (`c.leases`) is created claimed by the parent's lease owner: its
    one `created` event holds the record a claim would have made of it (running, fencing
    1, leased), so it is never due to anyone else while that lease holds. The result is
    then the moved parent followed by those children."""
    before = state.get(c.transition.id)
    parent, writes = m.decide_transition(state, c.transition, now, config)
    if not writes:
        return parent, []  # an exact replay: the children came with the first one
    owner = before[LEASE_OWNER] if before is not None else None
    if owner is None and any(lease is not None for lease in c.leases):
        raise InvalidArgument(
            f"flow {c.transition.id!r} is not claimed: only a claimed flow's children "
            "can be created claimed (by its lease owner)"
        )
    tx = _Tx(state, now, config, [])
    (moved,) = writes
    assert type(moved) is Write
    tx.write(moved)
    root = parent[ROOT_ID] or parent[ID]
    claimed: list[Record] = []
    for create, wake, lease in zip(c.children, c.wakes, c.leases, strict=True):
        if create.id == parent[ID]:
            raise InvalidArgument(f"flow {parent[ID]!r} cannot be its own child")
        if create.partition is not None and create.partition != parent[PARTITION]:
            raise InvalidArgument(
                f"child {create.id!r}: a transition's children live in their parent's "
                f"partition ({parent[PARTITION]!r}), not {create.partition!r}"
            )
        if tx.get(create.id) is not None:
            raise FlowExists(f"child {create.id!r} already exists")
        corr = create.correlation_id
        child = dataclass_replace(
            create,
            partition=parent[PARTITION],
            parent_id=parent[ID],
            root_id=root,
            correlation_id=corr if corr is not None else parent[CORRELATION_ID],
        )
        record, (w,) = m.decide_create(state, child, now)
        if wake:
            record = w.record = evolve(record, ext={"wp": 1})
        if lease is not None:
            assert owner is not None
            w.record = m.claimed_at_creation(record, owner, lease, now)
            w.meta = {"worker": owner}
            claimed.append(w.record)
        tx.write(w)
    if claimed:
        return [parent, *claimed], tx.mutations
    return parent, tx.mutations


def _wake_parent(tx: _Tx, child: Record) -> None:
    """A `wake_parent` child ended: its parent, if waiting unleased for a later due time,
    is due now. Anything else (leased, due already, parked with no due time, gone) is
    left alone: the runtime that waits this way checks its children itself then."""
    parent = tx.get(child[PARENT_ID])
    if parent is None or terminal(parent) or leased(parent):
        return
    due = parent[NEXT_RUN_AT]
    if due is None or due <= tx.now:
        return
    new = evolve(
        parent,
        version=parent[VERSION] + 1,
        next_run_at=tx.now,
        updated_at=tx.now,
        last_event="child_ended",
    )
    tx.write(Write(new, "child_ended", {"child": child[ID], "state": child[STATE]}))


def _move(r: Record, target: str, now: int, config: m.Config, **changes: Any) -> Record:
    """An unleased version of `r` in `target`: terminal (with its retention), or live and
    due at once (better than the reference: a resolved parent is claimable)."""
    if target in TERMINAL:
        return m._terminal(r, target, now, config, **changes)
    return evolve(
        r,
        state=target,
        run_state=None,
        version=r[VERSION] + 1,
        lease_owner=None,
        lease_token=None,
        lease_deadline=None,
        next_run_at=now,
        updated_at=now,
        retention_until=None,
        **changes,
    )


def _create_child(
    tx: _Tx, spec: list[Any], parent_id: str, root: str, group: str, parent_shard: int
) -> None:
    cid, ctype, cstate, payload, partition, priority, run_at, values, attrs, corr = spec
    create = m.Create(
        cid,
        ctype,
        cstate,
        payload,
        partition,
        run_at,
        priority if priority is not None else 0,
        values,
        attrs,
        parent_id,
        root,
        corr,
    )
    record, writes = m.decide_create(tx.state, create, tx.now)
    (w,) = writes  # the "created" event, which carries the child's group
    w.record = evolve(record, ext={"g": group, "ps": parent_shard})
    tx.write(w)
    tx.spawned.setdefault(parent_id, []).append(cid)


def _resolve(g: dict[str, Any]) -> str | None:
    done = g["c"] + g["x"] + g["k"]
    bad = g["x"] + g["k"]
    if g["w"] == "any":
        if g["c"]:
            return "success"
        if bad and g["ocf"]:
            return "failure"
        return "failure" if done == g["n"] else None
    if bad and g["ocf"]:
        return "failure"
    return "success" if done == g["n"] else None


_COUNTER = {COMPLETED: "c", "failed": "x", CANCELLED: "k"}


def apply_outcome(
    tx: _Tx,
    parent_id: str,
    gid: str,
    child_id: str,
    status: str,
    result: bytes | None,
    error: bytes | None,
) -> None:
    """Count one child's terminal outcome in its parent's group (once), resolving it."""
    if (parent_id, child_id) in tx.noted or tx.state.noted_child(parent_id, child_id):
        return
    parent = tx.get(parent_id)
    if parent is None:
        return  # the parent is gone (retention): nobody left to tell
    groups = (parent[EXT] or {}).get("groups") or {}
    g = groups.get(gid)
    if g is None:
        return
    tx.noted.add((parent_id, child_id))
    tx.mutations.append(
        Put(noted_key(parent_id, child_id), cbor2.dumps([gid, status, result, error]))
    )
    tx.mutations.append(Note(parent_id, child_id))
    g = dict(g)
    g[_COUNTER[status]] += 1
    resolution = _resolve(g) if g["r"] is None else None
    # One event per parent, group and frame: an outcome event of this group written
    # earlier in the frame being built is extended in place (same version), so a batch
    # of 1000 children costs the parent one event, not 1000. Its meta counts the
    # outcomes per status; each child's own outcome is in its `n` key.
    base = parent
    meta: dict[str, Any] = {"group": gid}
    opened = None if parent_id in tx.latest else tx.state.open_outcomes.get(parent_id)
    if opened is not None and opened[0] == parent[VERSION] and opened[1]["group"] == gid:
        base = evolve(parent, version=parent[VERSION] - 1)  # re-derive the open event
        meta = dict(opened[1])
    meta[status] = meta.get(status, 0) + 1
    if resolution is not None:
        g["r"] = resolution
        meta["resolved"] = resolution
    ext = {**(parent[EXT] or {}), "groups": {**groups, gid: g}}
    event = "children_reported"
    if resolution is not None and parent[STATE] == g["ws"] and not leased(parent):
        target = g["s"] if resolution == "success" else g["f"]
        meta["to"] = target
        new = _move(base, target, tx.now, tx.config, ext=ext, last_event=event)
    else:
        # A terminal parent keeps its end time: late outcomes are recorded, but it stays
        # where it ended in the terminal index (and in time-window queries).
        updated = parent[UPDATED_AT] if terminal(parent) else tx.now
        version = base[VERSION] + 1
        new = evolve(parent, version=version, updated_at=updated, ext=ext, last_event=event)
    tx.write(Write(new, event, meta, open=True))
    if resolution is not None and g["opc"]:
        _cascade(tx, new, [gid], "group_resolved")


def _report_to_parent(tx: _Tx, rec: Record, w: Write) -> None:
    assert rec[EXT] is not None and rec[PARENT_ID] is not None
    blobs = w.blobs or {}
    result = blobs.get("r") if rec[STATE] == COMPLETED else None
    error = blobs.get("e") if rec[STATE] != COMPLETED else None
    gid, parent_shard = rec[EXT]["g"], rec[EXT]["ps"]
    if parent_shard == tx.state.index:
        apply_outcome(tx, rec[PARENT_ID], gid, rec[ID], rec[STATE], result, error)
    else:
        msg = ["child", rec[PARENT_ID], gid, rec[ID], rec[STATE], result, error]
        msg_id = f"c\x00{rec[PARENT_ID]}\x00{rec[ID]}\x00{rec[VERSION]}"
        tx.mutations.append(Send(msg_id, parent_shard, msg))


def _cascade(tx: _Tx, parent: Record, gids: list[str], reason: str) -> None:
    """Cancel the parent's live children in `gids`: here at once, elsewhere by message."""
    _cancel_children(tx, parent[ID], set(gids), reason)
    groups = (parent[EXT] or {}).get("groups") or {}
    targets = sorted({t for gid in gids for t in groups[gid]["t"]})
    for t in targets:
        msg_id = f"k\x00{parent[ID]}\x00{parent[VERSION]}\x00{t}"
        tx.mutations.append(Send(msg_id, t, ["cascade", parent[ID], gids, reason]))


def _cancel_children(tx: _Tx, parent_id: str, gids: set[str], reason: str) -> None:
    kids = set(tx.state.children.get(parent_id, ())) | set(tx.spawned.get(parent_id, ()))
    for cid in sorted(kids):
        child = tx.get(cid)
        if child is None or terminal(child) or child[EXT] is None:
            continue
        if child[EXT].get("g") not in gids:
            continue
        new = m._terminal(child, CANCELLED, tx.now, tx.config, last_event="cancelled")
        tx.write(Write(new, "cancelled", {"reason": reason, "parent": parent_id}))


def decide_deliver(state: ShardState, c: Deliver, now: int, config: m.Config) -> Decision:
    """Apply a message from another shard. Idempotent: a re-delivery changes nothing."""
    tx = _Tx(state, now, config, [])
    msg = c.message
    kind = msg[0]
    if kind == "child":
        _, parent_id, gid, child_id, status, result, error = msg
        apply_outcome(tx, parent_id, gid, child_id, status, result, error)
    elif kind == "cascade":
        _, parent_id, gids, reason = msg
        _cancel_children(tx, parent_id, set(gids), reason)
    elif kind == "spawn":
        _, parent_id, root, gid, parent_shard, specs = msg
        for spec in specs:
            existing = tx.get(spec[0])
            if existing is None:
                _create_child(tx, spec, parent_id, root, gid, parent_shard)
            elif existing[PARENT_ID] != parent_id or (existing[EXT] or {}).get("g") != gid:
                # Another flow holds the id: the child cannot exist, so it failed.
                error = f"child id {spec[0]!r} already exists".encode()
                out = ["child", parent_id, gid, spec[0], "failed", None, error]
                tx.mutations.append(Send(f"x\x00{parent_id}\x00{spec[0]}", parent_shard, out))
    else:
        raise InvalidArgument(f"unknown message kind {kind!r}")
    return None, tx.mutations


def decide_acked(state: ShardState, c: Acked, now: int, config: m.Config) -> Decision:
    return None, [Unsend(msg_id) for msg_id in c.msg_ids]


# -- signals ----------------------------------------------------------------------------


def _signal_digest(c: Signal) -> int:
    values = sorted((k, xxhash.xxh3_64_intdigest(v)) for k, v in (c.values or {}).items())
    return xxhash.xxh3_64_intdigest(
        cbor2.dumps([c.name, list(c.if_state or ()), c.transition_to, c.run_at, values])
    )


def decide_signal(state: ShardState, c: Signal, now: int, config: m.Config) -> Decision:
    r = m._require(state, c.id)
    ext = r[EXT] or {}
    digest = None
    if c.key is not None:
        digest = _signal_digest(c)
        seen = (ext.get("sig") or {}).get(c.key)
        if seen is not None:
            if seen == digest:
                return r, []  # exact replay: no second event
            raise IdempotencyConflict(
                f"flow {r[ID]!r}: signal key {c.key!r} was used for a different signal"
            )
    if terminal(r):
        raise FlowTerminal(f"flow {r[ID]!r} is {r[STATE]}; rewind it to signal it")
    changes: dict[str, Any] = {}
    meta: dict[str, Any] = {"signal": c.name}
    if c.transition_to is not None:
        assert c.if_state is not None  # the engine requires it
        if r[STATE] not in c.if_state:
            raise WrongState(f"flow {r[ID]!r} is {r[STATE]!r}, not one of {list(c.if_state)}")
        changes.update(
            state=c.transition_to,
            run_state=None,
            lease_owner=None,
            lease_token=None,
            lease_deadline=None,
            next_run_at=c.run_at if c.run_at is not None else now,
        )
        meta["from"] = r[STATE]
        meta["to"] = c.transition_to
    if digest is not None:
        new_ext = dict(ext)
        new_ext["sig"] = {**(ext.get("sig") or {}), c.key: digest}
        changes["ext"] = new_ext
    values = dict(c.values) if c.values else None
    new = evolve(
        r,
        version=r[VERSION] + 1,
        updated_at=now,
        values=m._values_meta(r, values),
        last_event="signaled",
        **changes,
    )
    return new, [Write(new, "signaled", meta, None, values)]


# -- rewind -----------------------------------------------------------------------------


def decide_rewind(state: ShardState, c: Rewind, now: int, config: m.Config) -> Decision:
    r = m._require(state, c.id)
    if leased(r):
        raise WrongState(f"flow {r[ID]!r} is leased; rewind needs it released first")
    if c.expect_state is not None and r[STATE] != c.expect_state:
        raise WrongState(f"flow {r[ID]!r} is {r[STATE]!r}, not {c.expect_state!r}")
    s = c.snapshot
    if s is None or not r[HIST_FLOOR] <= c.to_version <= r[VERSION]:
        raise InvalidArgument(f"flow {r[ID]!r} has no stored event at version {c.to_version}")
    target = s[RUN_STATE] if s[STATE] == RUNNING and s[RUN_STATE] else s[STATE]
    if target == RUNNING:
        target = "queued"
    version = r[VERSION] + 1
    blobs = c.blobs or {}
    p, res, err = blobs.get("p"), blobs.get("r"), blobs.get("e")
    changes: dict[str, Any] = dict(
        attempts=s[ATTEMPTS],
        reclaims=s[RECLAIMS],
        fencing=r[FENCING] + 1,
        priority=s[PRIORITY],
        attributes=s[ATTRIBUTES],
        payload_ver=version if p is not None else 0,
        payload_size=len(p) if p is not None else 0,
        result_ver=version if res is not None else 0,
        error_ver=version if err is not None else 0,
        last_event="rewound",
    )
    new = _move(r, target, now, config, **changes)
    meta = {"to_version": c.to_version, "from": r[STATE], "to": target}
    return new, [Write(new, "rewound", meta, blobs or None)]


# -- retention and deadlines ------------------------------------------------------------


def decide_cleanup(state: ShardState, c: Cleanup, now: int, config: m.Config) -> Decision:
    """One bounded pass: fail live flows past max_active_ms, then delete terminal flows
    whose retention has passed, with their history, values and fanout keys."""
    tx = _Tx(state, now, config, [])
    timeouts = 0
    overdue = list(state.deadlines.irange(maximum=(now, "\U0010ffff")))
    for _deadline, fid in overdue[: c.limit]:
        r = tx.get(fid)
        if r is None or terminal(r):
            continue
        tx.write(m._timeout(r, now, config))
        timeouts += 1
    deleted = 0
    expired = list(state.retention.irange(maximum=(now, "\U0010ffff")))
    for _until, fid in expired[: c.limit]:
        r = state.get(fid)
        if r is None:
            continue
        _delete(tx, r)
        deleted += 1
    more = len(overdue) > c.limit or len(expired) > c.limit
    report = {"active_timeouts": timeouts, "deleted": deleted, "more": int(more)}
    return report, tx.mutations


def _delete(tx: _Tx, r: Record) -> None:
    put = tx.mutations.append
    versions = set(range(r[HIST_FLOOR], r[VERSION] + 1))
    versions.update(v for v in (r[PAYLOAD_VER], r[RESULT_VER], r[ERROR_VER]) if v)
    for v in sorted(versions):
        put(Put(history_key(r[ID], v), None))
    for name in r[VALUES] or ():
        put(Put(value_key(r[ID], name), None))
    for child in sorted(tx.state.noted.get(r[ID], ())):
        put(Put(noted_key(r[ID], child), None))
    for gid in (r[EXT] or {}).get("groups") or {}:
        put(Put(group_key(r[ID], gid), None))
    put(Drop(r[ID]))
    tx.latest[r[ID]] = None


# -- policies ---------------------------------------------------------------------------


def decide_put_policy(state: ShardState, c: PutPolicy, now: int, config: m.Config) -> Decision:
    return None, [Put(policy_key(c.type), c.data)]


_DECIDERS: dict[type, Any] = {
    Spawn: decide_spawn,
    TransitionWithChildren: decide_transition_children,
    Signal: decide_signal,
    Rewind: decide_rewind,
    Cleanup: decide_cleanup,
    PutPolicy: decide_put_policy,
    Deliver: decide_deliver,
    Acked: decide_acked,
}
_ALL_DECIDERS: dict[type, Any] = {**m.DECIDERS, **_DECIDERS}
