"""The record schema and what the generated record code (`_record_gen.py`) needs at run
time: the fields, the KEEP marker, the evolver specs the engine asked for, and the memo
of CBOR event tails. Static code only: `_codegen` reads the schema from here to write
`_record_gen.py`, which imports from here (so neither needs the other's import to run).
"""

from __future__ import annotations

from typing import Any

import cbor2

EVENT_FORMAT = 2
FLAG_TAIL = 1  # a CBOR tail follows the packed head and text
FLAG_CBOR = 2  # the whole event is CBOR (the fallback for what the layout cannot hold)

# One flow's current state (no payload bytes): an exact tuple in FIELDS order, read as
# `r[STATE]`. Never edited: the machine derives a changed copy with `evolve`.
Record = tuple[Any, ...]

# (fields, optional, positional, fixed items): one generated evolver (see `_record.evolver`)
EvolverSpec = tuple[tuple[str, ...], tuple[str, ...], bool, tuple[tuple[str, Any], ...]]

# Every evolver spec asked for since import, in order: what `_codegen` generates.
SPECS: list[EvolverSpec] = []

# The default of an optional `evolver` keyword: that field keeps its current value.
KEEP: Any = object()


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


def tail_fields() -> list[str]:
    """The fields the packed layout cannot hold (neither str nor int, optional or not):
    they travel in the event's CBOR tail."""
    plain = {"str", "str|None", "int", "int|None"}
    return [f for f in FIELDS if Fields.__annotations__[f].replace(" ", "") not in plain]


_NO_OTHERS: tuple[None, ...] = (None,) * len(tail_fields())


_TAILS: dict[Any, bytes] = {}
_TAILS_MAX = 4096


def meta_tail(meta: dict[str, Any]) -> bytes:
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
