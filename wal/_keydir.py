"""The keydir: key -> location of its latest entry, packed into one int to stay small.

A location is (segment id, entry offset, entry size, sequence number). A tuple of four ints
costs ~170 bytes per key in CPython; one packed int of ~130 bits costs 44, so the keydir's
overhead is the dict slot (~40 bytes amortised) plus that int: ~85 bytes beyond the key.

Bit layout, low to high: size 32 | offset 40 | segment 24 | sequence (the rest).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple

_SIZE_BITS = 32
_OFFSET_BITS = 40
_SEGMENT_BITS = 24
_SIZE_MASK = (1 << _SIZE_BITS) - 1
_OFFSET_MASK = (1 << _OFFSET_BITS) - 1
_SEGMENT_MASK = (1 << _SEGMENT_BITS) - 1
_OFFSET_SHIFT = _SIZE_BITS
_SEGMENT_SHIFT = _SIZE_BITS + _OFFSET_BITS
SEQ_SHIFT = _SIZE_BITS + _OFFSET_BITS + _SEGMENT_BITS
assert (_SEGMENT_SHIFT, SEQ_SHIFT) == (72, 96)  # the publish loop in _log.py inlines these

MAX_SEGMENT_ID = _SEGMENT_MASK
MAX_SEGMENT_BYTES = 1 << _OFFSET_BITS


class Location(NamedTuple):
    segment: int
    offset: int
    size: int
    seq: int


def pack(segment: int, offset: int, size: int, seq: int) -> int:
    return (seq << SEQ_SHIFT) | (segment << _SEGMENT_SHIFT) | (offset << _OFFSET_SHIFT) | size


def unpack(loc: int) -> Location:
    return Location(
        (loc >> _SEGMENT_SHIFT) & _SEGMENT_MASK,
        (loc >> _OFFSET_SHIFT) & _OFFSET_MASK,
        loc & _SIZE_MASK,
        loc >> SEQ_SHIFT,
    )


def segment_of(loc: int) -> int:
    return (loc >> _SEGMENT_SHIFT) & _SEGMENT_MASK


def size_of(loc: int) -> int:
    return loc & _SIZE_MASK


def seq_of(loc: int) -> int:
    return loc >> SEQ_SHIFT


class Keydir:
    """key -> packed location, plus the live byte count per segment.

    `live` counts, per segment, the bytes of entries the keydir points at: the rest of the
    segment is dead and merge can reclaim it.
    """

    __slots__ = ("live", "map")

    def __init__(self) -> None:
        self.map: dict[bytes, int] = {}
        self.live: dict[int, int] = {}

    def __len__(self) -> int:
        return len(self.map)

    def get(self, key: bytes) -> int | None:
        return self.map.get(key)

    def set(self, key: bytes, loc: int) -> None:
        old = self.map.get(key)
        live = self.live
        if old is not None:
            seg = segment_of(old)
            live[seg] -= size_of(old)
        self.map[key] = loc
        seg = segment_of(loc)
        live[seg] = live.get(seg, 0) + size_of(loc)

    def delete(self, key: bytes) -> None:
        old = self.map.pop(key, None)
        if old is not None:
            self.live[segment_of(old)] -= size_of(old)

    def replace_if(self, key: bytes, expected: int, loc: int) -> bool:
        """Point `key` at `loc` only if it still points at `expected` (merge's CAS)."""
        if self.map.get(key) != expected:
            return False
        self.set(key, loc)
        return True

    def keys_with_prefix(self, prefix: bytes) -> list[bytes]:
        if not prefix:
            return list(self.map)
        return [k for k in self.map if k.startswith(prefix)]

    def items(self) -> Iterator[tuple[bytes, int]]:
        return iter(self.map.items())

    def _check(self, segment_sizes: dict[int, int]) -> None:
        """Invariant: every location lies inside a known segment; live bytes add up."""
        live: dict[int, int] = {}
        for key, loc in self.map.items():
            seg, offset, size, _seq = unpack(loc)
            assert key, "empty key in keydir"
            assert seg in segment_sizes, f"key {key!r} points at unknown segment {seg}"
            assert size > 0 and offset + size <= segment_sizes[seg], (
                f"key {key!r} points past the end of segment {seg}"
            )
            live[seg] = live.get(seg, 0) + size
        for seg, count in self.live.items():
            assert count == live.get(seg, 0), f"live bytes of segment {seg} drifted"
        for seg in live:
            assert seg in self.live
