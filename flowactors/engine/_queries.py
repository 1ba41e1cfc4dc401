"""Paged queries over one shard's indexes, and the cursors that resume them.

Every query orders its results by a key that is comparable across shards (for example
`(phase, -priority, due, id, shard)` for a state listing), so the engine can ask each shard for
up to `limit` entries after the cursor, merge the answers and cut at `limit`: the page is
exact, and the last key of the page is the next cursor. A cursor is that key, CBOR
encoded and base64url'd: opaque to callers, validated on the way back in.

Nothing here reads the log or the clock: `now` is passed in.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable, Iterator
from itertools import islice
from typing import Any

import cbor2

from ._errors import InvalidArgument
from ._record import RUNNING, Record
from ._state import ShardState

Key = tuple[Any, ...]
Entry = tuple[Key, Record]

MAX_PAGE = 10_000


def encode_cursor(key: Key) -> str:
    return base64.urlsafe_b64encode(cbor2.dumps(list(key))).decode().rstrip("=")


# Cursor shapes per query: every key ends with (id, shard), because ids are unique per
# shard only (the same id may live in two partitions); the shard breaks the tie.
LIST_KEY = (int, int, int, str, int)  # (phase, a, b, id, shard)
ID_KEY = (str, int)  # (id, shard)
TIME_KEY = (int, str, int)  # (time, id, shard)


def decode_cursor(cursor: str | None, shape: tuple[type, ...]) -> Key | None:
    if cursor is None:
        return None
    if not isinstance(cursor, str):
        raise InvalidArgument("cursor must be a string from a previous page")
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        key = cbor2.loads(base64.urlsafe_b64decode(padded.encode()))
    except (ValueError, binascii.Error, cbor2.CBORDecodeError, TypeError) as exc:
        raise InvalidArgument("cursor is not one this query returned") from exc
    if (
        not isinstance(key, list)
        or len(key) != len(shape)
        or not all(
            isinstance(v, t) and not isinstance(v, bool) for v, t in zip(key, shape, strict=True)
        )
        or (shape is LIST_KEY and not 0 <= key[0] <= 2)
    ):
        raise InvalidArgument("cursor is not one this query returned")
    return tuple(key)


def _after(items: Iterable[Entry], after: Key | None) -> Iterator[Entry]:
    for entry in items:
        if after is None or entry[0] > after:
            yield entry


def list_state(
    state: ShardState, flow_type: str, name: str, after: Key | None, limit: int
) -> list[Entry]:
    """Flows of (type, state): due ones (priority, then due time), then parked ones (by
    id), then terminal ones (by time reached). Key: (phase, a, b, id, shard)."""
    key = (flow_type, name)
    records = state.records
    me = state.index
    out: list[Entry] = []
    phase = after[0] if after is not None else 0

    def take(entries: Iterable[Entry]) -> None:
        out.extend(islice(_after(entries, after), limit - len(out)))

    if phase <= 0 and (due := state.due.get(key)) is not None:
        low = (after[1], after[2], after[3]) if after is not None and phase == 0 else None
        it = due.irange(minimum=low) if low else iter(due)
        take(((0, p, d, fid, me), records[fid]) for p, d, fid in it)
    if len(out) < limit and phase <= 1 and (parked := state.parked.get(key)) is not None:
        low_id = after[3] if after is not None and phase == 1 else None
        it2 = parked.irange(minimum=low_id) if low_id else iter(parked)
        take(((1, 0, 0, fid, me), records[fid]) for fid in it2)
    if len(out) < limit and (done := state.terminal.get(key)) is not None:
        low2 = (after[2], after[3]) if after is not None and phase == 2 else None
        it3 = done.irange(minimum=low2) if low2 else iter(done)
        take(((2, 0, at, fid, me), records[fid]) for at, fid in it3)
    return out


def by_ids(state: ShardState, ids: Iterable[str], after: Key | None, limit: int) -> list[Entry]:
    """Members of a lineage set, by id. Key: (id, shard)."""
    me = state.index
    low = after[0] if after is not None else None
    chosen = sorted(fid for fid in ids if low is None or fid >= low)
    entries = (((fid, me), state.records[fid]) for fid in chosen)
    return list(islice(_after(entries, after), limit))


def stuck(
    state: ShardState, flow_type: str, deadline: int, after: Key | None, limit: int
) -> list[Entry]:
    """Running flows whose lease deadline is <= `deadline`, not yet reclaimed.
    Key: (lease deadline, id, shard)."""
    running = state.iter_due(flow_type, RUNNING, deadline)
    found = [((d, fid, state.index), state.records[fid]) for _p, d, fid in running]
    found.sort(key=lambda e: e[0])
    return list(islice(_after(found, after), limit))


def terminals(
    state: ShardState,
    flow_type: str,
    names: Iterable[str],
    low: int | None,
    high: int | None,
    after: Key | None,
    limit: int,
) -> list[Entry]:
    """Terminal flows that reached their state in [low, high]. Key: (time, id, shard)."""
    out: list[Entry] = []
    me = state.index
    for name in names:
        index = state.terminal.get((flow_type, name))
        if index is None:
            continue
        start = (low if low is not None else -1, "")
        stop = (high if high is not None else 1 << 62, "\U0010ffff")
        if after is not None and (after[0], after[1]) > start:
            start = (after[0], after[1])
        entries = (((at, fid, me), state.records[fid]) for at, fid in index.irange(start, stop))
        out.extend(islice(_after(entries, after), limit))
    out.sort(key=lambda e: e[0])
    return out[:limit]
