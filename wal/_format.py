"""On-disk format of segments and hint files. Pure: bytes in, bytes or records out.

Segment files (`NNNNNNNNNN.log`) are a sequence of frames. One frame is one atomic batch of
puts and tombstones: after a crash it is either wholly there or treated as absent.
All integers are little-endian.

Frame (44-byte header, then the body)::

    0  4  magic  b"FWAL"        lets recovery find frame starts after damage
    4  1  format version (2)
    5  1  flags                 bit 0 MERGED: every entry carries its own sequence number
    6  2  reserved (0)
    8  4  entry count
    12 4  body length in bytes
    16 4  batch back-distance   this frame's offset minus the offset where the write(2)
                                that carried it began (0 for the first frame of a write)
    20 8  sequence number       per log, strictly increasing from frame to frame
    28 8  timestamp, ms since the Unix epoch (the writer's clock)
    36 8  xxh3-64 of header bytes 0..36 followed by the body, seeded with the frame's
          position: (segment id << 40) | file offset (segment ids fit 24 bits, offsets
          40). A frame checks only where it was written: the image of a frame stored
          inside a value (or copied from another file or offset) is no valid frame
          there, so recovery never takes it for a frame of a later write.

Entry (11-byte header; 19 bytes in MERGED frames)::

    0  1  kind                  1 put, 2 tombstone
    1  2  key length            keys are 1..65535 bytes
    3  4  value length          0 for a tombstone
    7  4  xxh32 of the value    checked again on every read
    [11 8 sequence number]      MERGED frames only
    key bytes, value bytes

The keydir points at whole entries, so a read is one pread that re-checks kind, key and
value hash: a misdirected or rotted read raises `CorruptLog` instead of returning bytes.

Hint file (`NNNNNNNNNN.hint`), one per closed segment, so opening never reads values::

    header (32 bytes): magic b"FWHT", version u8, 3 reserved, segment id u64,
                       segment size u64, entry count u64
    entries: kind u8, key length u16, entry size u32, entry offset u64, sequence u64, key
    trailer: xxh3-64 of everything before it

A hint holds the last operation per key within its segment, tombstones included, so a
delete is never forgotten by a fast open (the classic Bitcask resurrection bug).
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import accumulate, chain, repeat
from operator import add, itemgetter
from typing import Any

import xxhash

from ._errors import CorruptLog, InvalidArgument

MAGIC = b"FWAL"
HINT_MAGIC = b"FWHT"
VERSION = 2  # 2: frame checksums bind the frame's segment id and offset
FLAG_MERGED = 1

PUT = 1
TOMBSTONE = 2

_HEAD = struct.Struct("<4sBBHIIIQQ")  # up to (not including) the checksum
_CHECKSUM = struct.Struct("<Q")
HEADER_SIZE = _HEAD.size + _CHECKSUM.size  # 44
_ENTRY = struct.Struct("<BHII")
_MERGED_ENTRY = struct.Struct("<BHIIQ")
ENTRY_HEADER_SIZE = _ENTRY.size  # 11
MERGED_ENTRY_HEADER_SIZE = _MERGED_ENTRY.size  # 19

_HINT_HEAD = struct.Struct("<4sB3xQQQ")
_HINT_ENTRY = struct.Struct("<BHIQQ")

MAX_KEY_BYTES = 0xFFFF
MAX_VALUE_BYTES = 256 * 1024 * 1024
MAX_BODY_BYTES = 1 << 30

_xxh3 = xxhash.xxh3_64
_xxh32 = xxhash.xxh32_intdigest

Op = tuple[bytes, bytes | None]
"""One operation of a batch: (key, value) is a put, (key, None) a tombstone."""


class Columns:
    """One frame's operations as two columns: `values[i]` (None: a tombstone) goes under
    `keys[i]`. Written exactly as the ops list `zip(keys, values)` would be, without a
    tuple per operation: a caller that builds large frames fills the two lists directly."""

    __slots__ = ("keys", "values")

    def __init__(
        self, keys: list[bytes] | None = None, values: list[bytes | None] | None = None
    ) -> None:
        self.keys: list[bytes] = [] if keys is None else keys
        self.values: list[Any] = [] if values is None else values

    def __len__(self) -> int:
        return len(self.keys)

    def __getitem__(self, i: int) -> Op:
        return (self.keys[i], self.values[i])

    def ops(self) -> list[Op]:
        """The same frame as a list of operations."""
        return list(zip(self.keys, self.values, strict=True))


EntryRef = tuple[bytes, int, int, int]
"""Where one entry of an encoded frame sits: (key, kind, offset from frame start, size).
A plain tuple: it is built once per record on the hot path."""


@dataclass(frozen=True, slots=True)
class Entry:
    """A decoded entry: its absolute offset and size within the segment."""

    key: bytes
    kind: int
    offset: int
    size: int
    seq: int
    value: bytes


@dataclass(frozen=True, slots=True)
class Frame:
    offset: int
    size: int
    seq: int
    timestamp_ms: int
    flags: int
    batch_start: int
    entries: tuple[Entry, ...]


def position_seed(segment: int, offset: int) -> int:
    """The checksum seed that binds a frame to where it is written."""
    return (segment << 40) | offset


class Prepared:
    """One frame's operations, checked and encoded, waiting for its place in a commit.

    The body is final; the header (sequence number, offset, checksum) is sealed at commit
    time by `seal`. The columns say where each entry sits, for publishing into the keydir:
    `positions` are offsets from the frame start. `kinds` is None when every entry is a
    put, and `unique` says whether the frame's keys are distinct (the publish loop's fast
    path needs both).
    """

    __slots__ = ("body", "keys", "kinds", "klens", "positions", "sizes", "unique")

    def __init__(
        self,
        body: bytes,
        keys: list[bytes],
        kinds: list[int] | None,
        klens: list[int],
        positions: list[int],
        sizes: list[int],
        unique: bool,
    ) -> None:
        self.body = body
        self.keys = keys
        self.kinds = kinds
        self.klens = klens
        self.positions = positions
        self.sizes = sizes
        self.unique = unique


_first = itemgetter(0)
_second = itemgetter(1)
_TUPLE = {tuple}
_TWO = {2}
_BYTES = {bytes}
_COLUMNS_FROM = 16  # smaller frames: the plain loop has less fixed cost


def prepare(ops: Sequence[Op] | Columns) -> Prepared:
    """Check a batch of operations (`InvalidArgument` before anything is written) and
    encode its frame body.

    The common case, a batch of puts of plain bytes, runs column-wise in C loops (map,
    zip, join): per record that is several times cheaper than a Python loop, and this is
    the log's hottest code. Anything else takes the plain loop, which also words the
    errors."""
    n = len(ops)
    if n == 1:  # one put (a single `put()` call): no per-frame lists beyond the result's
        try:
            op = ops[0]
        except IndexError:  # Columns with no value for its one key
            raise InvalidArgument("1 key but 0 values in one frame") from None
        if type(op) is tuple and len(op) == 2:
            key, value = op
            if (
                type(key) is bytes
                and type(value) is bytes
                and 0 < len(key) <= MAX_KEY_BYTES
                and len(value) <= MAX_VALUE_BYTES
            ):
                klen = len(key)
                size = ENTRY_HEADER_SIZE + klen + len(value)
                head = _ENTRY.pack(PUT, klen, len(value), _xxh32(value))
                body = b"".join((head, key, value))
                return Prepared(body, [key], None, [klen], [HEADER_SIZE], [size], True)
    if isinstance(ops, Columns):
        keys, values = ops.keys, ops.values
        if len(keys) != len(values):
            raise InvalidArgument(f"{len(keys)} keys but {len(values)} values in one frame")
        if n >= _COLUMNS_FROM:
            done = _prepare_columns(list(keys), values)
            if done is not None:
                return done
        return _prepare_slow(ops.ops())
    if n >= _COLUMNS_FROM and set(map(type, ops)) == _TUPLE and set(map(len, ops)) == _TWO:
        done = _prepare_columns(list(map(_first, ops)), list(map(_second, ops)))
        if done is not None:
            return done
    return _prepare_slow(ops)


def _prepare_columns(keys: list[bytes], values: list[Any]) -> Prepared | None:
    """The column-wise encoding of a frame of puts of plain bytes within the limits; None
    when it is anything else (the plain loop then checks and words the error). `keys`
    becomes the frame's key column: the caller hands over a list of its own."""
    if set(map(type, keys)) != _BYTES or set(map(type, values)) != _BYTES:
        return None
    klens = list(map(len, keys))
    vlens = list(map(len, values))
    if not (min(klens) > 0 and max(klens) <= MAX_KEY_BYTES and max(vlens) <= MAX_VALUE_BYTES):
        return None
    sizes = list(map(add, map(add, klens, vlens), repeat(ENTRY_HEADER_SIZE)))
    positions = list(accumulate(sizes, initial=HEADER_SIZE))
    if positions.pop() - HEADER_SIZE > MAX_BODY_BYTES:
        raise InvalidArgument(f"one frame holds at most {MAX_BODY_BYTES} bytes")
    heads = map(_ENTRY.pack, repeat(PUT), klens, vlens, map(_xxh32, values))
    body = b"".join(chain.from_iterable(zip(heads, keys, values, strict=True)))
    return Prepared(body, keys, None, klens, positions, sizes, len(set(keys)) == len(keys))


def _prepare_slow(ops: Sequence[Op]) -> Prepared:
    parts: list[bytes] = []
    keys: list[bytes] = []
    kinds: list[int] = []
    klens: list[int] = []
    positions: list[int] = []
    sizes: list[int] = []
    pos = HEADER_SIZE
    pack = _ENTRY.pack
    for op in ops:
        if not isinstance(op, tuple) or len(op) != 2:
            raise InvalidArgument("an operation is a (key, value-or-None) tuple")
        key, value = op
        if not isinstance(key, bytes) or not 0 < len(key) <= MAX_KEY_BYTES:
            raise InvalidArgument(f"keys are 1..{MAX_KEY_BYTES} bytes, got {key!r:.60}")
        key = bytes(key)  # a bytes subclass is stored as plain bytes
        if value is None:
            parts.append(pack(TOMBSTONE, len(key), 0, 0))
            parts.append(key)
            size = ENTRY_HEADER_SIZE + len(key)
            kinds.append(TOMBSTONE)
        else:
            if not isinstance(value, bytes):
                raise InvalidArgument(f"values are bytes or None, got {type(value).__name__}")
            if len(value) > MAX_VALUE_BYTES:
                raise InvalidArgument(f"values are at most {MAX_VALUE_BYTES} bytes")
            parts.append(pack(PUT, len(key), len(value), _xxh32(value)))
            parts.append(key)
            parts.append(value)
            size = ENTRY_HEADER_SIZE + len(key) + len(value)
            kinds.append(PUT)
        keys.append(key)
        klens.append(len(key))
        positions.append(pos)
        sizes.append(size)
        pos += size
    if pos - HEADER_SIZE > MAX_BODY_BYTES:
        raise InvalidArgument(f"one frame holds at most {MAX_BODY_BYTES} bytes")
    unique = len(set(keys)) == len(keys)
    return Prepared(b"".join(parts), keys, kinds, klens, positions, sizes, unique)


def seal(
    prepared: Prepared, seq: int, timestamp_ms: int, batch_back: int, segment: int, offset: int
) -> bytes:
    """The header of a prepared frame written at `offset` of segment `segment`."""
    body = prepared.body
    return _seal_head(0, len(prepared.keys), body, batch_back, seq, timestamp_ms, segment, offset)


def encode_frame(
    ops: Sequence[Op],
    seq: int,
    timestamp_ms: int,
    batch_back: int,
    *,
    segment: int,
    offset: int,
) -> tuple[bytes, list[EntryRef]]:
    """Encode one whole frame for `offset` of `segment`; return its bytes and where each
    entry sits inside it."""
    p = prepare(ops)
    head = seal(p, seq, timestamp_ms, batch_back, segment, offset)
    kinds = p.kinds if p.kinds is not None else [PUT] * len(p.keys)
    return head + p.body, list(zip(p.keys, kinds, p.positions, p.sizes, strict=True))


def encode_merged_frame(
    entries: Sequence[tuple[bytes, int, bytes]],
    batch_back: int,
    timestamp_ms: int,
    *,
    segment: int,
    offset: int,
) -> tuple[bytes, list[EntryRef]]:
    """Encode a merge output frame: puts that keep their original sequence numbers."""
    parts: list[bytes] = []
    refs: list[EntryRef] = []
    pos = HEADER_SIZE
    pack = _MERGED_ENTRY.pack
    top = 0
    for key, seq, value in entries:
        parts.append(pack(PUT, len(key), len(value), _xxh32(value), seq))
        parts.append(key)
        parts.append(value)
        size = MERGED_ENTRY_HEADER_SIZE + len(key) + len(value)
        refs.append((key, PUT, pos, size))
        pos += size
        top = max(top, seq)
    body = b"".join(parts)
    head = _seal_head(
        FLAG_MERGED, len(entries), body, batch_back, top, timestamp_ms, segment, offset
    )
    return head + body, refs


def _seal_head(
    flags: int,
    count: int,
    body: bytes,
    batch_back: int,
    seq: int,
    ts: int,
    segment: int,
    offset: int,
) -> bytes:
    """Header and checksum of a frame with this body, bound to (segment, offset)."""
    head = _HEAD.pack(MAGIC, VERSION, flags, 0, count, len(body), batch_back, seq, ts)
    hasher = _xxh3(head, position_seed(segment, offset))
    hasher.update(body)
    return head + _CHECKSUM.pack(hasher.intdigest())


def _seal(
    flags: int,
    count: int,
    body: bytes,
    batch_back: int,
    seq: int,
    ts: int,
    segment: int = 0,
    offset: int = 0,
) -> bytes:
    """A whole frame (tests: arbitrary bodies behind a correct checksum)."""
    return _seal_head(flags, count, body, batch_back, seq, ts, segment, offset) + body


def decode_entry_value(path: str, data: bytes, offset: int, key: bytes) -> bytes | None:
    """Check one entry read back from `offset` and return its value (None: tombstone)."""
    if len(data) < ENTRY_HEADER_SIZE:
        raise CorruptLog(path, offset, "entry cut short")
    kind, key_len, value_len, value_hash = _ENTRY.unpack_from(data)
    # Entries of MERGED frames carry 8 more header bytes; the size the keydir recorded
    # tells the two layouts apart (their first 11 bytes are the same).
    header = ENTRY_HEADER_SIZE
    if len(data) == MERGED_ENTRY_HEADER_SIZE + key_len + value_len:
        header = MERGED_ENTRY_HEADER_SIZE
    if kind not in (PUT, TOMBSTONE) or header + key_len + value_len != len(data):
        raise CorruptLog(path, offset, "entry header does not match the keydir")
    if data[header : header + key_len] != key:
        raise CorruptLog(path, offset, "entry holds another key")
    if kind == TOMBSTONE:
        if value_len or value_hash:  # a put whose kind byte rotted must not read as absent
            raise CorruptLog(path, offset, "tombstone entry carries a value")
        return None
    value = data[header + key_len :]
    if _xxh32(value) != value_hash:
        raise CorruptLog(path, offset, "value checksum mismatch")
    return value


def entry_value_length(path: str, head: bytes, offset: int) -> int:
    """The value length recorded in an entry header read back from `offset`."""
    if len(head) < ENTRY_HEADER_SIZE:
        raise CorruptLog(path, offset, "entry cut short")
    _kind, _key_len, value_len, _hash = _ENTRY.unpack_from(head)
    return int(value_len)


def _parse_frame(data: bytes, offset: int, segment: int) -> Frame | str:
    """Parse the frame at `offset` of segment `segment`, or return why it is not a valid
    frame there."""
    end_head = offset + HEADER_SIZE
    if end_head > len(data):
        return "frame header cut short"
    magic, version, flags, _res, count, body_len, back, seq, ts = _HEAD.unpack_from(data, offset)
    if magic != MAGIC:
        return "bad frame magic"
    if version != VERSION:
        return f"unknown frame version {version}"
    end = end_head + body_len
    if end > len(data):
        return "frame body cut short"
    hasher = _xxh3(data[offset : offset + _HEAD.size], position_seed(segment, offset))
    hasher.update(data[end_head:end])
    (checksum,) = _CHECKSUM.unpack_from(data, offset + _HEAD.size)
    if hasher.intdigest() != checksum:
        return "frame checksum mismatch"
    if back > offset:
        return "frame batch start before the file start"
    merged = bool(flags & FLAG_MERGED)
    eh = _MERGED_ENTRY if merged else _ENTRY
    entries: list[Entry] = []
    pos = end_head
    for _ in range(count):
        if pos + eh.size > end:
            return "entry header beyond the frame body"
        if merged:
            kind, key_len, value_len, value_hash, eseq = _MERGED_ENTRY.unpack_from(data, pos)
        else:
            kind, key_len, value_len, value_hash = _ENTRY.unpack_from(data, pos)
            eseq = seq
        if kind not in (PUT, TOMBSTONE) or key_len == 0:
            return "bad entry kind or empty key"
        kstart = pos + eh.size
        vstart = kstart + key_len
        vend = vstart + value_len
        if vend > end:
            return "entry beyond the frame body"
        value = data[vstart:vend]
        if kind == PUT and _xxh32(value) != value_hash:
            return "entry value checksum mismatch"
        entries.append(Entry(data[kstart:vstart], kind, pos, vend - pos, eseq, value))
        pos = vend
    if pos != end:
        return "frame body longer than its entries"
    return Frame(offset, end - offset, seq, ts, flags, offset - back, tuple(entries))


@dataclass(frozen=True, slots=True)
class ScanResult:
    """What a scan of one segment found.

    `frames` is the longest valid prefix. When `end < file size`, `error` says why the frame
    at `end` is bad and `later_frames` holds any valid frames found after the damage.
    """

    frames: list[Frame]
    end: int
    error: str | None
    later_frames: list[Frame]


def scan(data: bytes, segment: int) -> ScanResult:
    """Decode the frames of the image of segment `segment`, stopping at the first bad
    frame."""
    frames: list[Frame] = []
    offset = 0
    size = len(data)
    while offset < size:
        parsed = _parse_frame(data, offset, segment)
        if isinstance(parsed, str):
            return ScanResult(frames, offset, parsed, _resync(data, offset + 1, segment))
        frames.append(parsed)
        offset += parsed.size
    return ScanResult(frames, offset, None, [])


def _resync(data: bytes, start: int, segment: int) -> list[Frame]:
    """Every valid frame after damage, found by searching for the frame magic."""
    found: list[Frame] = []
    pos = data.find(MAGIC, start)
    while pos >= 0:
        parsed = _parse_frame(data, pos, segment)
        if isinstance(parsed, Frame):
            found.append(parsed)
            pos = data.find(MAGIC, pos + parsed.size)
        else:
            pos = data.find(MAGIC, pos + 1)
    return found


def decode_frames(data: bytes, path: str = "<bytes>", *, segment: int) -> list[Frame]:
    """Strict decode of the image of segment `segment` (its file name's number): every
    byte must belong to a valid frame, else `CorruptLog`."""
    result = scan(data, segment)
    if result.error is not None:
        raise CorruptLog(path, result.end, result.error)
    return result.frames


# -- hint files --------------------------------------------------------------------------

HintEntry = tuple[bytes, int, int, int, int]
"""(key, kind, entry offset, entry size, seq)"""


def last_ops(frames: Sequence[Frame]) -> dict[bytes, HintEntry]:
    """The last operation per key within one segment, in file order."""
    last: dict[bytes, HintEntry] = {}
    for frame in frames:
        for e in frame.entries:
            last[e.key] = (e.key, e.kind, e.offset, e.size, e.seq)
    return last


hint_entry_head = _HINT_ENTRY.pack
"""`hint_entry_head(kind, key length, entry size, entry offset, seq)`: the fixed part of one
hint entry (the key follows). The log appends these as it publishes, so sealing a segment
never re-reads it."""


def encode_hint_entries(entries: Iterable[HintEntry]) -> tuple[bytes, int]:
    parts = []
    for key, kind, offset, size, seq in entries:
        parts.append(hint_entry_head(kind, len(key), size, offset, seq))
        parts.append(key)
    return b"".join(parts), len(parts) // 2


def seal_hint(segment_id: int, segment_size: int, count: int, body: bytes | bytearray) -> bytes:
    """A whole hint file from its entries' bytes. Entries may repeat a key: loading
    resolves them by sequence number (and file order within one frame), so the log can
    append as it writes instead of deduplicating."""
    head = _HINT_HEAD.pack(HINT_MAGIC, VERSION, segment_id, segment_size, count)
    hasher = _xxh3(head)
    hasher.update(body)
    return b"".join((head, body, _CHECKSUM.pack(hasher.intdigest())))


def encode_hint(segment_id: int, segment_size: int, entries: Sequence[HintEntry]) -> bytes:
    body, count = encode_hint_entries(entries)
    return seal_hint(segment_id, segment_size, count, body)


def decode_hint(data: bytes, path: str) -> tuple[int, int, Iterator[HintEntry]]:
    """Check a hint file; return (segment id, segment size, entries iterator)."""
    if len(data) < _HINT_HEAD.size + _CHECKSUM.size:
        raise CorruptLog(path, 0, "hint file cut short")
    (checksum,) = _CHECKSUM.unpack_from(data, len(data) - _CHECKSUM.size)
    body = memoryview(data)[: len(data) - _CHECKSUM.size]
    if _xxh3(body).intdigest() != checksum:
        raise CorruptLog(path, 0, "hint checksum mismatch")
    magic, version, seg_id, seg_size, count = _HINT_HEAD.unpack_from(data)
    if magic != HINT_MAGIC or version != VERSION:
        raise CorruptLog(path, 0, "bad hint magic or version")

    def entries() -> Iterator[HintEntry]:
        pos = _HINT_HEAD.size
        unpack = _HINT_ENTRY.unpack_from
        hsize = _HINT_ENTRY.size
        for _ in range(count):
            kind, key_len, size, offset, seq = unpack(data, pos)
            pos += hsize
            yield data[pos : pos + key_len], kind, offset, size, seq
            pos += key_len

    return seg_id, seg_size, entries()
