"""The keydir: packed locations and the live-bytes invariant."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wal import _keydir as kd
from wal._log import _file_position

segments = st.integers(0, kd.MAX_SEGMENT_ID)
offsets = st.integers(0, kd.MAX_SEGMENT_BYTES - 1)
sizes = st.integers(0, 2**32 - 1)
seqs = st.integers(0, 2**80)
locations = st.tuples(segments, offsets, sizes, seqs)


@given(locations)
def test_pack_unpack_round_trip(loc: tuple[int, int, int, int]) -> None:
    packed = kd.pack(*loc)
    assert kd.unpack(packed) == kd.Location(*loc)
    seg, _offset, size, seq = loc
    assert (kd.segment_of(packed), kd.size_of(packed), kd.seq_of(packed)) == (seg, size, seq)


@given(st.lists(locations, min_size=2, max_size=20))
def test_file_position_orders_by_segment_then_offset(locs: list[tuple[int, int, int, int]]) -> None:
    items = [(b"k", kd.pack(*loc)) for loc in locs]
    by_position = sorted(items, key=_file_position)
    positions = [(kd.unpack(p).segment, kd.unpack(p).offset) for _k, p in by_position]
    assert positions == sorted(positions)


@given(
    st.lists(
        st.tuples(
            st.sampled_from([b"a", b"b", b"c"]),
            st.integers(1, 3),
            st.integers(0, 100),
            st.integers(1, 50),
            st.booleans(),
        )
    )
)
def test_live_bytes_follow_sets_and_deletes(
    steps: list[tuple[bytes, int, int, int, bool]],
) -> None:
    keydir = kd.Keydir()
    sizes = {1: 200, 2: 200, 3: 200}
    for seq, (key, seg, offset, size, delete) in enumerate(steps):
        if delete:
            keydir.delete(key)
        else:
            keydir.set(key, kd.pack(seg, offset, size, seq))
        keydir._check(sizes)
        assert sum(keydir.live.values()) == sum(kd.size_of(v) for v in keydir.map.values())


def test_replace_if_is_compare_and_swap() -> None:
    keydir = kd.Keydir()
    old, new, newer = kd.pack(1, 0, 10, 1), kd.pack(2, 0, 12, 1), kd.pack(3, 0, 5, 2)
    keydir.set(b"k", old)
    assert keydir.replace_if(b"k", old, new)
    keydir.set(b"k", newer)
    assert not keydir.replace_if(b"k", new, old)
    assert keydir.get(b"k") == newer
    keydir._check({1: 100, 2: 100, 3: 100})


def test_check_catches_drift() -> None:
    keydir = kd.Keydir()
    keydir.set(b"a", kd.pack(1, 0, 10, 1))
    keydir.set(b"b", kd.pack(1, 10, 10, 2))
    keydir._check({1: 20})
    keydir.live[1] += 1
    with pytest.raises(AssertionError, match="live bytes"):
        keydir._check({1: 20})
    keydir.live[1] -= 1
    with pytest.raises(AssertionError, match="past the end"):
        keydir._check({1: 19})
    with pytest.raises(AssertionError, match="unknown segment"):
        keydir._check({2: 100})
    keydir.live[7] = 0
    keydir._check({1: 20})  # an emptied segment may keep a zero count
