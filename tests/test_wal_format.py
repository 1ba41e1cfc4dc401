"""The byte layout: round trips, and one fuzz invariant for every decoder."""

import contextlib

import pytest
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st
from sizing import examples

import wal
from wal import _format as fmt

keys = st.binary(min_size=1, max_size=40)
ops = st.lists(st.tuples(keys, st.none() | st.binary(max_size=200)), max_size=6)
batches = st.lists(ops, min_size=1, max_size=8)
FUZZ = settings(max_examples=examples(300, 3000))  # 3x the quick profile, 1.5x the long


SEGMENT = 5  # the segment id these images belong to


def encode(frames: list[list[wal.Op]]) -> bytes:
    out = b""
    for i, frame_ops in enumerate(frames):
        ts = 1_700_000_000_000 + i
        data, _refs = fmt.encode_frame(frame_ops, i + 1, ts, 0, segment=SEGMENT, offset=len(out))
        out += data
    return out


def mutate(data: bytes, edits: list[tuple[int, int]], cut: int) -> bytes:
    buf = bytearray(data)
    for pos, xor in edits:
        if buf:
            buf[pos % len(buf)] ^= xor
    return bytes(buf[: max(0, len(buf) - cut)])


def check_decode(data: bytes) -> None:
    """The invariant: a list of valid frames, or CorruptLog; nothing else, ever."""
    try:
        frames = wal.decode_frames(data, segment=SEGMENT)
    except wal.CorruptLog as exc:
        assert 0 <= exc.offset < len(data)
        return
    assert sum(f.size for f in frames) == len(data)


@FUZZ
@given(st.binary(max_size=400))
@example(b"FWAL")
@example(b"FWAL\x01" + bytes(39))
def test_any_bytes_decode_or_raise_corrupt_log(data: bytes) -> None:
    check_decode(data)


@FUZZ
@given(
    batches,
    st.lists(st.tuples(st.integers(0, 10_000), st.integers(1, 255)), max_size=3),
    st.integers(0, 60),
)
def test_damaged_valid_logs_decode_or_raise_corrupt_log(
    frames: list[list[wal.Op]], edits: list[tuple[int, int]], cut: int
) -> None:
    check_decode(mutate(encode(frames), edits, cut))


@FUZZ
@given(
    st.integers(0, 255),
    st.integers(0, 50),
    st.binary(max_size=300),
    st.integers(0, 100),
)
def test_checksummed_frames_with_arbitrary_bodies(
    flags: int, count: int, body: bytes, back: int
) -> None:
    # A correct checksum over a random body reaches the entry parser.
    data = fmt._seal(flags, count, body, back, 7, 0, SEGMENT, 0)
    check_decode(data)
    check_decode(b"\x00" * 50 + data)


@FUZZ
@given(batches, st.binary(min_size=1, max_size=200))
def test_trailing_garbage_is_reported_where_the_valid_prefix_ends(
    frames: list[list[wal.Op]], garbage: bytes
) -> None:
    valid = encode(frames)
    assume(isinstance(fmt._parse_frame(garbage, 0, SEGMENT), str))
    with pytest.raises(wal.CorruptLog) as info:
        wal.decode_frames(valid + garbage, segment=SEGMENT)
    assert info.value.offset == len(valid)
    result = fmt.scan(valid + garbage, SEGMENT)
    assert result.frames == wal.decode_frames(valid, segment=SEGMENT)
    assert result.end == len(valid) and result.error is not None


@FUZZ
@given(batches)
def test_frames_round_trip(frames: list[list[wal.Op]]) -> None:
    decoded = wal.decode_frames(encode(frames), segment=SEGMENT)
    assert len(decoded) == len(frames)
    for i, (frame, frame_ops) in enumerate(zip(decoded, frames, strict=True)):
        assert frame.seq == i + 1 and frame.batch_start == frame.offset
        got = [(e.key, e.value if e.kind == fmt.PUT else None) for e in frame.entries]
        assert got == list(frame_ops)


@given(ops, st.integers(0, 1000))
def test_entry_refs_point_at_entries_that_decode(frame_ops: list[wal.Op], base: int) -> None:
    data, refs = fmt.encode_frame(frame_ops, 1, 0, 0, segment=1, offset=0)
    assert len(refs) == len(frame_ops)
    for (key, value), (rkey, kind, offset, size) in zip(frame_ops, refs, strict=True):
        assert rkey == key and kind == (fmt.TOMBSTONE if value is None else fmt.PUT)
        assert fmt.decode_entry_value("p", data[offset : offset + size], base, key) == value


@given(st.lists(st.tuples(keys, st.integers(1, 2**40), st.binary(max_size=100)), max_size=6))
def test_merged_entries_decode_with_their_own_sequence(
    entries: list[tuple[bytes, int, bytes]],
) -> None:
    data, refs = fmt.encode_merged_frame(entries, 0, 0, segment=1, offset=0)
    (frame,) = wal.decode_frames(data, segment=1)
    assert frame.flags & fmt.FLAG_MERGED
    assert [(e.key, e.seq, e.value) for e in frame.entries] == entries
    for (key, _seq, value), (_k, _kind, offset, size) in zip(entries, refs, strict=True):
        assert fmt.decode_entry_value("p", data[offset : offset + size], 0, key) == value


@given(ops, st.integers(0, 2**24 - 1), st.integers(0, 2**40 - 1))
def test_a_frame_is_valid_only_at_its_own_segment_and_offset(
    frame_ops: list[wal.Op], segment: int, offset: int
) -> None:
    data, _refs = fmt.encode_frame(frame_ops, 1, 0, 0, segment=segment, offset=offset)
    shift = 7 if offset != 7 else 8  # any offset but its own
    assert isinstance(fmt._parse_frame(b"\x00" * shift + data, shift, segment), str)
    assert isinstance(fmt._parse_frame(data, 0, segment ^ 1), str)
    if offset == 0:
        (frame,) = wal.decode_frames(data, segment=segment)
        assert len(frame.entries) == len(frame_ops)


def test_decode_entry_value_rejects_a_put_turned_tombstone() -> None:
    # kind 1 -> 2 is a one-byte change that passes every structural check; a tombstone
    # entry carries no value, so a stored length or hash gives it away.
    for value in (b"", b"value"):
        data, [(_k, _kind, offset, size)] = fmt.encode_frame(
            [(b"key", value)], 1, 0, 0, segment=1, offset=0
        )
        entry = bytearray(data[offset : offset + size])
        entry[0] = fmt.TOMBSTONE
        with pytest.raises(wal.CorruptLog):
            fmt.decode_entry_value("p", bytes(entry), offset, b"key")


@FUZZ
@given(st.binary(max_size=300), st.integers(0, 100))
def test_any_bytes_as_an_entry_decode_or_raise(data: bytes, key_len: int) -> None:
    key = data[11 : 11 + key_len] or b"k"
    with contextlib.suppress(wal.CorruptLog):
        fmt.decode_entry_value("p", data, 0, key)
    with contextlib.suppress(wal.CorruptLog):
        fmt.entry_value_length("p", data, 0)


hint_entries = st.lists(
    st.tuples(
        keys,
        st.sampled_from([fmt.PUT, fmt.TOMBSTONE]),
        st.integers(0, 2**40),
        st.integers(1, 2**32 - 1),
        st.integers(0, 2**63),
    ),
    max_size=10,
    unique_by=lambda e: e[0],
)


@given(st.integers(0, 2**24 - 1), st.integers(0, 2**40), hint_entries)
def test_hint_round_trip(seg: int, size: int, entries: list[fmt.HintEntry]) -> None:
    got_seg, got_size, got = fmt.decode_hint(fmt.encode_hint(seg, size, entries), "h")
    assert (got_seg, got_size, list(got)) == (seg, size, entries)


@FUZZ
@given(
    hint_entries,
    st.lists(st.tuples(st.integers(0, 10_000), st.integers(1, 255)), max_size=3),
    st.integers(0, 30),
    st.binary(max_size=100),
)
def test_damaged_hints_raise_corrupt_log(
    entries: list[fmt.HintEntry], edits: list[tuple[int, int]], cut: int, junk: bytes
) -> None:
    blob = fmt.encode_hint(3, 100, entries)
    for data in (mutate(blob, edits, cut), junk):
        if data == blob:
            continue
        with pytest.raises(wal.CorruptLog):
            _seg, _size, it = fmt.decode_hint(data, "h")
            list(it)


def _prepared(p: fmt.Prepared) -> tuple[object, ...]:
    return (p.body, p.keys, p.kinds, p.klens, p.positions, p.sizes, p.unique)


@given(ops, st.integers(1, 40))
def test_a_columns_frame_is_the_frame_of_its_ops(frame_ops: list[wal.Op], copies: int) -> None:
    """`Columns(keys, values)` encodes exactly as the ops list `zip(keys, values)`, on the
    small-frame loop and on the column-wise path (frames of 16 and more puts)."""
    for candidate in (frame_ops, frame_ops * copies):
        want = _prepared(fmt.prepare(candidate))
        keys = [k for k, _ in candidate]
        values = [v for _, v in candidate]
        assert _prepared(fmt.prepare(wal.Columns(keys, values))) == want
        assert keys == [k for k, _ in candidate]  # the caller's lists are left alone


def test_a_columns_frame_is_checked_like_ops() -> None:
    for keys, values in (([b"a", b"b"], [b"1"]), ([b"a"], []), ([], [b"1"])):
        with pytest.raises(wal.InvalidArgument):
            fmt.prepare(wal.Columns(keys, values))  # a value short, or a key
    for bad in ([b""] * 20, [b"k"] * 19 + ["text"]):  # an empty key; a key of the wrong type
        with pytest.raises(wal.InvalidArgument):
            fmt.prepare(wal.Columns(list(bad), [b"v"] * 20))  # type: ignore[arg-type]
    with pytest.raises(wal.InvalidArgument):
        fmt.prepare(wal.Columns([b"k%d" % i for i in range(20)], [b"v"] * 19 + ["text"]))
