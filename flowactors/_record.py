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

Event value (format 2), generated from `FIELDS` and the `Record` annotations, so a field
added later is encoded without touching the codec. All integers little-endian::

    u8   format (2)
    u8   flags: bit 0 a CBOR tail follows, bit 1 the whole event is CBOR (fallback)
    u64  none mask: bit k set when the k-th optional field (`str | None`, `int | None`)
         is None
    u64  each `int` and `int | None` field, in FIELDS order (0 when None)
    u32  length of the text
    text UTF-8 of the event name and every `str` / `str | None` field, in FIELDS order,
         joined with NUL ("" when None; ids and names never hold NUL)
    tail CBOR `[meta, blobs, <every other field in FIELDS order>]`, present only when one
         of them is not None; blobs maps "p"/"r"/"e" to payload/result/error bytes

A record the fixed layout cannot hold (an int outside 0..2**64-1, a NUL inside a string,
a value of an unexpected type) is written as flags bit 1 and the CBOR list
`[event name, meta, snapshot list in FIELDS order, blobs]`. One `struct` call and one
UTF-8 encode per event: several times cheaper than CBOR for the whole snapshot, and
cheaper to decode, which bounds restart time.
"""

from __future__ import annotations

import struct
import sys
from typing import Any

import cbor2

RUNNING = "running"
COMPLETED = "completed"
FAILED = "failed"
CANCELLED = "cancelled"
TERMINAL = frozenset({COMPLETED, FAILED, CANCELLED})

EVENT_FORMAT = 2

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
        """A copy with `changes` applied (generated: one keyword per field)."""
        new: Record = _evolve(self, **changes)
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


def _generate() -> tuple[Any, Any, Any, Any, Any]:
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
    evolve_src = (
        "def _evolve(self, *, " + ", ".join(f"{f}=_KEEP" for f in FIELDS) + "):\n"
        "    new = _new(_cls)\n"
        + "".join(f"    new.{f} = self.{f} if {f} is _KEEP else {f}\n" for f in FIELDS)
        + "    return new\n"
    )
    namespace: dict[str, Any] = {"_new": object.__new__, "_cls": Record, "_KEEP": object()}
    exec(evolve_src, namespace)
    exec(from_src, namespace)
    exec(copy_src, namespace)
    exec(snap_src, namespace)
    exec(make_src, namespace)
    return (
        namespace["_copy"],
        namespace["_snapshot"],
        namespace["make_record"],
        namespace["_from_list"],
        namespace["_evolve"],
    )


_copy, _snapshot, _make, _from_list, _evolve = _generate()


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
    try:
        data: bytes = _encode_packed(record, name, meta, blobs)
        return data
    except (struct.error, TypeError, ValueError):  # outside the fixed layout
        fallback: bytes = cbor2.dumps([name, meta, record.snapshot(), blobs])
        return _FALLBACK_HEAD + fallback


def decode_event(
    data: bytes,
) -> tuple[str, dict[str, Any] | None, list[Any], dict[str, bytes] | None]:
    """(event name, meta, snapshot list in FIELDS order, blobs); ValueError if `data` is
    not a history event."""
    try:
        if data[0] != EVENT_FORMAT:
            raise ValueError(f"unknown event format {data[0]}")
        if data[1] & _FLAG_CBOR:
            value = cbor2.loads(data[2:])
            if not isinstance(value, list) or len(value) != 4:
                raise ValueError("bad CBOR event")
            return value[0], value[1], value[2], value[3]
        decoded: tuple[str, dict[str, Any] | None, list[Any], dict[str, bytes] | None]
        decoded = _decode_packed(data)
        return decoded
    except (struct.error, IndexError, TypeError, cbor2.CBORDecodeError) as exc:
        raise ValueError(f"not a flowactors history event: {exc}") from exc


_FLAG_TAIL = 1
_FLAG_CBOR = 2
_NO_OTHERS: tuple[None, ...] = ()  # set by _generate_codec: None per tail field
_FALLBACK_HEAD = bytes((EVENT_FORMAT, _FLAG_CBOR))


_TAILS: dict[Any, bytes] = {}
_TAILS_MAX = 4096


def _meta_tail(meta: dict[str, Any]) -> bytes:
    """The CBOR tail of an event whose only extra is `meta`, memoised: a batch repeats the
    same few metas ({"worker": w}, {"from": state}), and cbor2.dumps costs ~2 us a call.
    The key holds the value types too, so 1 and True never share an encoding."""
    try:
        key = (tuple(meta.items()), tuple(map(type, meta.values())))
        tail = _TAILS.get(key)
    except TypeError:  # an unhashable value
        data: bytes = cbor2.dumps([meta, None, *_NO_OTHERS])
        return data
    if tail is None:
        if len(_TAILS) >= _TAILS_MAX:
            _TAILS.clear()
        tail = _TAILS[key] = cbor2.dumps([meta, None, *_NO_OTHERS])
    return tail


def _generate_codec() -> tuple[Any, Any]:
    """Encoder and decoder of the packed event layout, generated from FIELDS and the
    annotations of `Record` (straight-line code: no per-field loop or dispatch)."""
    kinds = {}
    for f in FIELDS:
        ann = Record.__annotations__[f].replace(" ", "")
        kinds[f] = {"str": "s", "str|None": "os", "int": "i", "int|None": "oi"}.get(ann, "a")
    optional = [f for f in FIELDS if kinds[f] in ("os", "oi")]
    ints = [f for f in FIELDS if kinds[f] in ("i", "oi")]
    texts = [f for f in FIELDS if kinds[f] in ("s", "os")]
    others = [f for f in FIELDS if kinds[f] == "a"]
    assert len(optional) <= 64, "the none mask holds 64 optional fields"
    global _NO_OTHERS
    _NO_OTHERS = (None,) * len(others)
    bit = {f: 1 << k for k, f in enumerate(optional)}
    head = struct.Struct("<BBQ" + "Q" * len(ints) + "I")
    enc = ["def _encode_packed(r, name, meta, blobs):"]
    enc += [f"    {f} = r.{f}" for f in FIELDS]
    enc.append("    mask = 0")
    for f in optional:
        enc += [f"    if {f} is None:", f"        mask |= {bit[f]}"]
        enc.append(f"        {f} = {'0' if kinds[f] == 'oi' else repr('')}")
    enc.append("    text = '\\0'.join((name, " + "".join(f"{f}, " for f in texts) + "))")
    enc.append(f"    if text.count('\\0') != {len(texts)}:")
    enc.append("        raise ValueError('NUL inside a string field')")
    enc.append("    raw = text.encode()")
    cond = " and ".join(["meta is None", "blobs is None"] + [f"{f} is None" for f in others])
    enc.append(f"    if {cond}:")
    args = ", ".join(["mask", *ints, "len(raw)"])
    enc.append(f"        return _pack({EVENT_FORMAT}, 0, {args}) + raw")
    tail = ", ".join(["meta", "blobs", *others])
    cond = " and ".join(["blobs is None"] + [f"{f} is None" for f in others])
    enc.append(f"    if {cond}:")
    enc.append("        tail = _meta_tail(meta)")
    enc.append("    else:")
    enc.append(f"        tail = _dumps([{tail}])")
    enc.append(f"    return b''.join((_pack({EVENT_FORMAT}, {_FLAG_TAIL}, {args}), raw, tail))")
    dec = ["def _decode_packed(data):"]
    dec.append(f"    _fmt, flags, mask, {''.join(f'{f}, ' for f in ints)}size = _unpack(data)")
    dec.append(f"    end = {head.size} + size")
    dec.append(
        f"    name, {''.join(f'{f}, ' for f in texts)}= data[{head.size}:end].decode().split('\\0')"
    )
    dec.append("    if flags & 1:")
    dec.append(f"        meta, blobs, {''.join(f'{f}, ' for f in others)}= _loads(data[end:])")
    dec.append("    else:")
    dec.append(f"        meta = blobs = {''.join(f'{f} = ' for f in others)}None")
    for f in optional:
        dec.append(f"    if mask & {bit[f]}:")
        dec.append(f"        {f} = None")
    dec.append("    return name, meta, [" + ", ".join(FIELDS) + "], blobs")
    namespace: dict[str, Any] = {
        "_pack": head.pack,
        "_unpack": head.unpack_from,
        "_dumps": cbor2.dumps,
        "_loads": cbor2.loads,
        "_meta_tail": _meta_tail,
    }
    exec("\n".join(enc) + "\n", namespace)
    exec("\n".join(dec) + "\n", namespace)
    return namespace["_encode_packed"], namespace["_decode_packed"]


_encode_packed, _decode_packed = _generate_codec()
