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

In memory a record is an exact `tuple` in `FIELDS` order, read by index constants
(`r[STATE]`), built by generated functions (`make_record`, `evolve`, `from_snapshot`,
written out in `_record_gen.py` by `python -m flowactors.engine._codegen`) and never edited.
Why not a class: the cyclic garbage collector. Every live flow holds one record, and a
`__slots__` instance stays GC-tracked for life, so each full collection (CPython runs
one whenever the long-lived objects have grown by a quarter, i.e. every ~n/4 mutations)
walked all 32 slots of every live record: 20-30% of a bulk lifecycle run.
An exact tuple whose items are all untracked (str, int, None) is untracked by the first
young collection that sees it (`_PyTuple_MaybeUntrack`; exact tuples only, not
subclasses or NamedTuples), and then costs full collections nothing. A record that holds
a dict (values, attributes, ext) stays tracked, which is fine. The codec stores the same
items as a list, so `snapshot` is `list(r)` and `from_snapshot` one tuple display.

Event value (format 2). Its codec is generated from `FIELDS` and the `Fields` annotations
(`_record_base.py`) into `_record_gen.py`, checked in and readable: a field added later is
encoded by running the generator, without touching the codec. All integers
little-endian::

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
from collections.abc import Callable, Mapping
from typing import Any

import cbor2

from . import _record_gen as gen
from ._record_base import (
    EVENT_FORMAT,
    FIELDS,
    FLAG_CBOR,
    KEEP,
    SPECS,
    Fields,
    Record,
    meta_tail,
)

__all__ = ["EVENT_FORMAT", "FIELDS", "KEEP", "Fields", "Record"]

RUNNING = "running"
COMPLETED = "completed"
FAILED = "failed"
CANCELLED = "cancelled"
TERMINAL = frozenset({COMPLETED, FAILED, CANCELLED})

# Index of each field in a record: FIELDS[STATE] == "state". Spelled out so that type
# checkers and readers see them; the check below keeps them equal to FIELDS.
ID = 0
TYPE = 1
STATE = 2
RUN_STATE = 3
VERSION = 4
ATTEMPTS = 5
RECLAIMS = 6
FENCING = 7
LEASE_OWNER = 8
LEASE_TOKEN = 9
LEASE_DEADLINE = 10
CREATED_AT = 11
UPDATED_AT = 12
NEXT_RUN_AT = 13
PRIORITY = 14
PARTITION = 15
PAYLOAD_VER = 16
PAYLOAD_SIZE = 17
RESULT_VER = 18
ERROR_VER = 19
VALUES = 20
ATTRIBUTES = 21
PARENT_ID = 22
ROOT_ID = 23
CORRELATION_ID = 24
HIST_FLOOR = 25
ACTIVE_DEADLINE = 26
RETENTION_UNTIL = 27
RETENTION_MS = 28
CREATE_DIGEST = 29
LAST_EVENT = 30
EXT = 31

if [globals().get(f.upper()) for f in FIELDS] != list(range(len(FIELDS))):
    raise AssertionError("the record index constants do not match FIELDS")


def terminal(r: Record) -> bool:
    return r[STATE] in TERMINAL


def leased(r: Record) -> bool:
    return r[LEASE_TOKEN] is not None


def is_record(value: object) -> bool:
    """Whether a decision's result is a record. A decision answers with a record, a list
    of records, or a plain value (None, a report dict, an error), never another tuple:
    so an exact tuple is a record."""
    return type(value) is tuple


def snapshot(r: Record) -> list[Any]:
    """The record as the list the event codec stores (FIELDS order)."""
    return list(r)


def from_snapshot(values: list[Any]) -> Record:
    """A record from a stored snapshot list. Interns type, state, run_state and
    last_event: one copy of each such string across a million records."""
    if len(values) != len(FIELDS):
        raise ValueError(f"record snapshot has {len(values)} fields, want {len(FIELDS)}")
    record: Record = _from_list(values)
    return record


def describe(r: Record) -> str:
    return f"Record({r[ID]!r}, {r[TYPE]!r}, {r[STATE]!r}, v{r[VERSION]})"


# The generated functions themselves, called directly: a typed wrapper that forwarded
# `**changes` cost as much again as the copy (it ran three times per flow lifecycle).
make_record: Callable[..., Record] = gen.make_record
"""Build a record from keywords, one per field; unset fields are None."""
evolve: Callable[..., Record] = gen.evolve
"""`evolve(r, state=..., ...)`: a copy of `r` with the given fields replaced."""
_from_list = gen.from_list


def evolver(
    *fields: str,
    optional: tuple[str, ...] = (),
    positional: bool = False,
    fixed: Mapping[str, Any] | None = None,
) -> Callable[..., Record]:
    """A generated `evolve` for one hot mutation: `f(r, *, <fields>, <optional>)` returns
    `r` with every field in `fields` (all required keywords) and any `optional` one given
    replaced. `evolve` matches its keywords against all 32 fields and tests each for
    "kept"; this matches only its own few and copies the rest by index: about half the
    cost (~0.5 us instead of ~1 us for a claim). With `positional`, `fields` are taken
    in order without keywords (batch paths: matching keywords is most of what is left);
    `fixed` fields are set to constants without being passed at all.

    The function itself is written out in `_record_gen.py`; each call notes its spec in
    `_record_base.SPECS`, which is what the generator writes. A spec missing there (the
    generator was not run after a change) gets a slower equivalent, and the test that
    the generated file is current fails."""
    fixed = dict(fixed or {})
    named = (*fields, *optional, *fixed)
    unknown = [f for f in named if f not in FIELDS]
    if unknown or len(set(named)) != len(named):
        raise ValueError(f"evolver fields must be distinct record fields: {unknown}")
    if positional and optional:
        raise ValueError("a positional evolver takes no optional fields")
    spec = (tuple(fields), tuple(optional), positional, tuple(fixed.items()))
    SPECS.append(spec)
    made = gen.EVOLVERS.get(spec)
    if made is not None:
        return made

    allowed = {*fields, *optional}

    def slow(r: Record, *args: Any, **changes: Any) -> Record:
        if positional:
            if changes or len(args) != len(fields):
                raise TypeError(f"takes the {len(fields)} fields {fields} positionally")
            changes = dict(zip(fields, args, strict=True))
        elif args or not allowed.issuperset(changes) or not set(fields) <= changes.keys():
            raise TypeError(f"takes the keywords {fields} (and optionally {optional})")
        return evolve(r, **fixed, **changes)

    return slow


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
        fallback: bytes = cbor2.dumps([name, meta, list(record), blobs])
        return _FALLBACK_HEAD + fallback


def decode_event(
    data: bytes,
) -> tuple[str, dict[str, Any] | None, list[Any], dict[str, bytes] | None]:
    """(event name, meta, snapshot list in FIELDS order, blobs); ValueError if `data` is
    not a history event."""
    try:
        if data[0] != EVENT_FORMAT:
            raise ValueError(f"unknown event format {data[0]}")
        if data[1] & FLAG_CBOR:
            value = cbor2.loads(data[2:])
            if not isinstance(value, list) or len(value) != 4:
                raise ValueError("bad CBOR event")
            return value[0], value[1], value[2], value[3]
        decoded: tuple[str, dict[str, Any] | None, list[Any], dict[str, bytes] | None]
        decoded = _decode_packed(data)
        return decoded
    except (struct.error, IndexError, TypeError, cbor2.CBORDecodeError) as exc:
        raise ValueError(f"not a flowactors history event: {exc}") from exc


_FALLBACK_HEAD = bytes((EVENT_FORMAT, FLAG_CBOR))
_encode_packed = gen.encode_packed
_encode_given = gen.encode_given
_decode_packed = gen.decode_packed
_meta_tail = meta_tail


def encode_run(
    records: list[Record],
    name: str,
    meta: dict[str, Any] | None,
    metas: list[dict[str, Any] | None] | None = None,
) -> list[bytes]:
    """`encode_event(r, name, meta or metas[i], None)` for every record of a run, with
    each distinct meta's CBOR tail encoded once (metas are shared dicts: one per run, or
    one per value of what differs, like a completion's `{"from": state}`)."""
    out: list[bytes] = []
    append = out.append
    tails: dict[int, bytes | None] = {}
    if metas is None:
        tail = None if meta is None else _meta_tail(meta)
    for i, r in enumerate(records):
        if metas is not None:
            meta = metas[i]
            key = id(meta)
            if key in tails:
                tail = tails[key]
            else:
                tail = tails[key] = None if meta is None else _meta_tail(meta)
        try:
            data: bytes | None = _encode_given(r, name, tail)
        except (struct.error, TypeError, ValueError):  # outside the fixed layout
            data = None
        append(data if data is not None else encode_event(r, name, meta, None))
    return out
