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
(`r[STATE]`), built by generated functions (`make_record`, `evolve`, `from_snapshot`) and
never edited. Why not a class: the cyclic garbage collector. Every live flow holds one
record, and a `__slots__` instance stays GC-tracked for life, so each full collection
(CPython runs one whenever the long-lived objects have grown by a quarter, i.e. every
~n/4 mutations) walked all 32 slots of every live record: 20-30% of a bulk lifecycle run.
An exact tuple whose items are all untracked (str, int, None) is untracked by the first
young collection that sees it (`_PyTuple_MaybeUntrack`; exact tuples only, not
subclasses or NamedTuples), and then costs full collections nothing. A record that holds
a dict (values, attributes, ext) stays tracked, which is fine. The codec stores the same
items as a list, so `snapshot` is `list(r)` and `from_snapshot` one tuple display.

Event value (format 2), generated from `FIELDS` and the `Fields` annotations, so a field
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
from collections.abc import Callable, Mapping
from typing import Any

import cbor2

RUNNING = "running"
COMPLETED = "completed"
FAILED = "failed"
CANCELLED = "cancelled"
TERMINAL = frozenset({COMPLETED, FAILED, CANCELLED})

EVENT_FORMAT = 2


class Fields:
    """The record's fields, in tuple order, with their types: the schema `FIELDS`, the
    index constants and the event codec are derived from. Never instantiated."""

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


FIELDS: tuple[str, ...] = tuple(Fields.__annotations__)

# One flow's current state (no payload bytes): an exact tuple in FIELDS order, read as
# `r[STATE]`. Never edited: the machine derives a changed copy with `evolve`.
Record = tuple[Any, ...]

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


# The default of an optional `evolver` keyword: that field keeps its current value.
KEEP: Any = object()


def _generate() -> tuple[Any, Any, Any]:
    # Straight-line functions generated from FIELDS, each building its tuple in one
    # expression: a loop over the fields costs ~3x more, and these run once per mutation
    # (evolve, make_record) or once per flow at recovery (from_snapshot).
    interned = {"type", "state", "last_event"}
    optional_interned = {"run_state"}

    def item(i: int, f: str) -> str:
        if f in interned:
            return f"_intern(v[{i}])"
        if f in optional_interned:
            return f"(None if v[{i}] is None else _intern(v[{i}]))"
        return f"v[{i}]"

    from_src = (
        "def _from_list(v):\n    return ("
        + ", ".join(item(i, f) for i, f in enumerate(FIELDS))
        + ",)\n"
    )
    make_src = (
        "def make_record(*, " + ", ".join(f"{f}=None" for f in FIELDS) + "):\n"
        "    return (" + ", ".join(FIELDS) + ",)\n"
    )
    # Per field, the new value when given, else the old one (as fast as the attribute
    # copy of a __slots__ object was; unpacking `r` first is no faster).
    evolve_src = (
        "def evolve(r, *, " + ", ".join(f"{f}=_KEEP" for f in FIELDS) + "):\n"
        "    keep = _KEEP\n"
        "    return ("
        + ", ".join(f"r[{i}] if {f} is keep else {f}" for i, f in enumerate(FIELDS))
        + ",)\n"
    )
    namespace: dict[str, Any] = {"_KEEP": KEEP, "_intern": sys.intern}
    exec(from_src, namespace)
    exec(make_src, namespace)
    exec(evolve_src, namespace)
    return namespace["_from_list"], namespace["make_record"], namespace["evolve"]


_from_list, _make, _evolve = _generate()

# The generated functions themselves, called directly: a typed wrapper that forwarded
# `**changes` cost as much again as the copy (it ran three times per flow lifecycle).
make_record: Callable[..., Record] = _make
"""Build a record from keywords, one per field; unset fields are None."""
evolve: Callable[..., Record] = _evolve
"""`evolve(r, state=..., ...)`: a copy of `r` with the given fields replaced."""


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
    `fixed` fields are set to constants without being passed at all."""
    fixed = dict(fixed or {})
    named = (*fields, *optional, *fixed)
    unknown = [f for f in named if f not in FIELDS]
    if unknown or len(set(named)) != len(named):
        raise ValueError(f"evolver fields must be distinct record fields: {unknown}")
    if positional and optional:
        raise ValueError("a positional evolver takes no optional fields")
    params = [*fields, *(f"{f}=_KEEP" for f in optional)]
    items = []
    namespace: dict[str, Any] = {"_KEEP": KEEP}
    for i, f in enumerate(FIELDS):
        if f in fixed:
            namespace[f"_fixed_{f}"] = fixed[f]
            items.append(f"_fixed_{f}")
        elif f in fields:
            items.append(f)
        elif f in optional:
            items.append(f"r[{i}] if {f} is _KEEP else {f}")
        else:
            items.append(f"r[{i}]")
    star = "" if positional else "*, "
    src = f"def evolve_some(r, {star}{', '.join(params)}):\n    return ({', '.join(items)},)\n"
    exec(src, namespace)
    fn: Callable[..., Record] = namespace["evolve_some"]
    return fn


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
    The key holds the value types too, so 1 and True never share an encoding; a lone
    text value (claims, completions) is keyed by (name, text) alone, half the cost."""
    if len(meta) == 1:
        for name, value in meta.items():
            if type(value) is str:
                key1 = (name, value)
                tail = _TAILS.get(key1)
                if tail is None:
                    if len(_TAILS) >= _TAILS_MAX:
                        _TAILS.clear()
                    tail = _TAILS[key1] = cbor2.dumps([meta, None, *_NO_OTHERS])
                return tail
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


def _generate_codec() -> tuple[Any, Any, Any]:
    """Encoder and decoder of the packed event layout, generated from FIELDS and the
    annotations of `Fields` (straight-line code: no per-field loop or dispatch)."""
    kinds = {}
    for f in FIELDS:
        ann = Fields.__annotations__[f].replace(" ", "")
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
    enc.append("    " + ", ".join(FIELDS) + " = r")
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
    # The same layout with the tail given (a run's shared meta, encoded once); None when
    # the record's own fields need a tail of their own (the caller encodes it fully).
    run = [
        line.replace("_encode_packed(r, name, meta, blobs)", "_encode_given(r, name, tail)")
        for line in enc[: enc.index("    raw = text.encode()") + 1]
    ]
    cond = " or ".join(f"{f} is not None" for f in others)
    run.append(f"    if {cond}:")
    run.append("        return None")
    run.append("    if tail is None:")
    run.append(f"        return _pack({EVENT_FORMAT}, 0, {args}) + raw")
    run.append(f"    return b''.join((_pack({EVENT_FORMAT}, {_FLAG_TAIL}, {args}), raw, tail))")
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
    exec("\n".join(run) + "\n", namespace)
    exec("\n".join(dec) + "\n", namespace)
    return namespace["_encode_packed"], namespace["_encode_given"], namespace["_decode_packed"]


_encode_packed, _encode_given, _decode_packed = _generate_codec()


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
