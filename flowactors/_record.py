"""The in-memory flow record and its on-disk event encoding.

Every mutation of a flow writes exactly one history event under key `h<id>\\0<version>`
(version as 8 big-endian bytes, so a flow's events sort in order). The event value holds
the full record snapshot after the mutation, plus the bytes that mutation set (payload,
result, error), so:

- the current record is simply the newest event: there is no separate record key, and a
  queued flow costs one keydir entry;
- payload, result and error bytes stay on disk; the record keeps only the *version* of the
  event that carries them (`payload_ver`, `result_ver`, `error_ver`) and their sizes;
- history is append-only by construction; trimming deletes old events, never rewrites one.

Named values live under `v<id>\\0<name>` (they change independently of the record).

Event value (CBOR): `[1, event name, meta map or null, snapshot list, blobs map or null]`
where the snapshot list follows `FIELDS` and blobs maps "p"/"r"/"e" to payload/result/error.
"""

from __future__ import annotations

import sys
from typing import Any

import cbor2

RUNNING = "running"
COMPLETED = "completed"
FAILED = "failed"
CANCELLED = "cancelled"
TERMINAL = frozenset({COMPLETED, FAILED, CANCELLED})

EVENT_FORMAT = 1

FIELDS = (
    "id",
    "type",
    "state",
    "run_state",
    "version",
    "attempts",
    "reclaims",
    "fencing",
    "lease_owner",
    "lease_token",
    "lease_deadline",
    "created_at",
    "updated_at",
    "next_run_at",
    "priority",
    "partition",
    "payload_ver",
    "payload_size",
    "result_ver",
    "error_ver",
    "values",
    "attributes",
    "parent_id",
    "root_id",
    "correlation_id",
    "hist_floor",
    "active_deadline",
    "retention_until",
    "retention_ms",
    "create_digest",
    "last_event",
    "ext",
)


class Record:
    """One flow's current state (no payload bytes). Treated as immutable once published:
    the state machine derives a changed copy with `evolve`, never edits in place."""

    __slots__ = FIELDS

    id: str
    type: str
    state: str
    run_state: str | None
    version: int
    attempts: int
    reclaims: int
    fencing: int
    lease_owner: str | None
    lease_token: str | None
    lease_deadline: int | None
    created_at: int
    updated_at: int
    next_run_at: int | None
    priority: int
    partition: str | None
    payload_ver: int
    payload_size: int
    result_ver: int
    error_ver: int
    values: dict[str, list[int]] | None  # name -> [digest, size]
    attributes: dict[str, str] | None
    parent_id: str | None
    root_id: str | None  # None means the flow is its own root
    correlation_id: str | None
    hist_floor: int  # oldest history version still stored
    active_deadline: int | None  # created_at + max_active_ms
    retention_until: int | None  # terminal flows: deleted after this time
    retention_ms: int | None
    create_digest: int
    last_event: str
    ext: dict[str, Any] | None  # room for coordination data (groups, signals)

    def __init__(self, **fields: Any) -> None:  # slow path; the machine uses `make_record`
        for name in FIELDS:
            setattr(self, name, fields.get(name))

    def evolve(self, **changes: Any) -> Record:
        """A copy with `changes` applied."""
        new: Record = _copy(self)
        for name, value in changes.items():
            setattr(new, name, value)
        return new

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL

    @property
    def leased(self) -> bool:
        return self.lease_token is not None

    def snapshot(self) -> list[Any]:
        snap: list[Any] = _snapshot(self)
        return snap

    @classmethod
    def from_snapshot(cls, values: list[Any]) -> Record:
        if len(values) != len(FIELDS):
            raise ValueError(f"record snapshot has {len(values)} fields, want {len(FIELDS)}")
        new: Record = _from_list(values)
        # Interning keeps one copy of each type and state string across a million records.
        new.type = _intern(new.type)
        new.state = _intern(new.state)
        if new.run_state is not None:
            new.run_state = _intern(new.run_state)
        new.last_event = _intern(new.last_event)
        return new

    def __repr__(self) -> str:
        return f"Record({self.id!r}, {self.type!r}, {self.state!r}, v{self.version})"


def _generate() -> tuple[Any, Any, Any, Any]:
    # Straight-line copy and snapshot functions, generated from FIELDS: a loop of getattr
    # and setattr costs ~3x more, and these run once per mutation.
    copy_src = (
        "def _copy(self):\n    new = _new(_cls)\n"
        + "".join(f"    new.{f} = self.{f}\n" for f in FIELDS)
        + "    return new\n"
    )
    snap_src = "def _snapshot(self):\n    return [" + ", ".join(f"self.{f}" for f in FIELDS) + "]\n"
    make_src = (
        "def make_record(*, " + ", ".join(f"{f}=None" for f in FIELDS) + "):\n"
        "    new = _new(_cls)\n"
        + "".join(f"    new.{f} = {f}\n" for f in FIELDS)
        + "    return new\n"
    )
    from_src = (
        "def _from_list(v):\n    new = _new(_cls)\n"
        + "".join(f"    new.{f} = v[{i}]\n" for i, f in enumerate(FIELDS))
        + "    return new\n"
    )
    namespace: dict[str, Any] = {"_new": object.__new__, "_cls": Record}
    exec(from_src, namespace)
    exec(copy_src, namespace)
    exec(snap_src, namespace)
    exec(make_src, namespace)
    return (
        namespace["_copy"],
        namespace["_snapshot"],
        namespace["make_record"],
        namespace["_from_list"],
    )


_copy, _snapshot, _make, _from_list = _generate()


def make_record(**fields: Any) -> Record:
    """Build a record; unset fields are None. Straight-line generated code."""
    record: Record = _make(**fields)
    return record


_intern = sys.intern


def history_key(flow_id: str, version: int) -> bytes:
    return b"h" + flow_id.encode() + b"\x00" + version.to_bytes(8, "big")


def history_prefix(flow_id: str) -> bytes:
    return b"h" + flow_id.encode() + b"\x00"


def parse_history_key(key: bytes) -> tuple[str, int]:
    # Fixed width from the end: the version bytes themselves may contain NULs.
    return key[1:-9].decode(), int.from_bytes(key[-8:], "big")


def value_key(flow_id: str, name: str) -> bytes:
    return b"v" + flow_id.encode() + b"\x00" + name.encode()


def encode_event(
    record: Record, name: str, meta: dict[str, Any] | None, blobs: dict[str, bytes] | None
) -> bytes:
    data: bytes = cbor2.dumps([EVENT_FORMAT, name, meta, record.snapshot(), blobs])
    return data


def decode_event(
    data: bytes,
) -> tuple[str, dict[str, Any] | None, list[Any], dict[str, bytes] | None]:
    value = cbor2.loads(data)
    if not isinstance(value, list) or len(value) != 5 or value[0] != EVENT_FORMAT:
        raise ValueError("not a flowactors history event")
    return value[1], value[2], value[3], value[4]
