"""Recovery from damaged bytes: torn tails at every offset, flipped bytes, broken hints."""

import os
import random
from pathlib import Path

import pytest

import wal
from wal import _format as fmt
from wal.testing import SimulatedFileSystem, writing_manifest

SEG = "0000000001.log"
HINT = "0000000001.hint"


def fold(frames: list[fmt.Frame]) -> dict[bytes, bytes]:
    """The key -> value map that a sequence of frames leaves behind."""
    state: dict[bytes, bytes] = {}
    for frame in frames:
        for e in frame.entries:
            if e.kind == fmt.PUT:
                state[e.key] = e.value
            else:
                state.pop(e.key, None)
    return state


async def write_history(
    log: wal.Log, rng: random.Random, writes: int, sizes: tuple[int, ...] = (0, 1, 5, 40, 120, 300)
) -> None:
    """Puts, overwrites, tombstones, batches, and one multi-frame write at the end."""
    for i in range(writes):
        key = b"k%d" % rng.randrange(6)
        roll = rng.random()
        if roll < 0.15:
            await log.delete(key)
        elif roll < 0.3:
            await log.write([(key, b"b%d" % i), (b"k%d" % rng.randrange(6), None)])
        else:
            await log.put(key, rng.randbytes(rng.choice(sizes)))
    await log.write_frames([[(b"m1", b"first frame")], [(b"m2", b"second"), (b"k0", None)]])


def install(fs: SimulatedFileSystem, path: str, files: dict[str, bytes]) -> None:
    """Put `files` durably into directory `path` of a simulated disk."""
    fs.makedirs(path)
    for name, data in files.items():
        handle = fs.open(os.path.join(path, name), create=True)
        handle.append(data)
        handle.sync()
        handle.close()
    fs.sync_dir(path)


async def test_torn_tail_at_every_offset(tmp_path: Path) -> None:
    async with wal.open_log(tmp_path / "src") as log:
        await write_history(log, random.Random(1), 14)
    data = (tmp_path / "src" / SEG).read_bytes()
    frames = wal.decode_frames(data, segment=1)
    assert len(frames) >= 15 and len({f.size for f in frames}) > 5
    starts = [f.offset for f in frames]
    for k in range(len(data) + 1):
        d = tmp_path / f"cut{k}"
        d.mkdir()
        (d / SEG).write_bytes(data[:k])  # no hint: this is the segment being written
        (d / "MANIFEST").write_bytes(writing_manifest())
        whole = [f for f in frames if f.offset + f.size <= k]
        async with wal.open_log(d) as log:
            assert dict(log.items()) == fold(whole), k
            boundary = max((s for s in starts if s <= k), default=0)
            if k == boundary or k == len(data):
                assert log.recovery.repairs == ()
            else:
                (repair,) = log.recovery.repairs
                assert (repair.kind, repair.offset, repair.dropped_bytes) == (
                    "torn-tail",
                    boundary,
                    k - boundary,
                )
                assert repair.path == os.path.join(str(d), SEG)
            assert log.statistics().total_bytes == boundary if k < len(data) else len(data)
            log._check()


def flip_expectation(frames: list[fmt.Frame], j: int) -> tuple[bool, dict[bytes, bytes]]:
    """Damage in frame j: (is it a torn tail?, the map recovery must then yield)."""
    bad = frames[j].offset
    later_write = any(f.batch_start > bad for f in frames[j + 1 :])
    if later_write:
        return False, fold(frames[:j] + frames[j + 1 :])  # what repair=True salvages
    return True, fold(frames[:j])


async def test_any_flipped_byte_in_the_write_segment_is_detected() -> None:
    fs = SimulatedFileSystem()
    async with wal.open_log("/src", fs=fs) as log:
        await write_history(log, random.Random(2), 7, sizes=(0, 3, 20))
    data = fs.read_file("/src/" + SEG)
    frames = wal.decode_frames(data, segment=1)
    which = [j for j, f in enumerate(frames) for _ in range(f.size)]
    outcomes = {"torn": 0, "corrupt": 0}
    for offset in range(len(data)):
        j = which[offset]
        torn, expected = flip_expectation(frames, j)
        for xor in (0x01, 0x03, 0xFF) if offset % 2 else (0x80,):
            damaged = bytearray(data)
            damaged[offset] ^= xor
            fs = SimulatedFileSystem()
            install(fs, "/log", {SEG: bytes(damaged), "MANIFEST": writing_manifest()})
            if torn:
                outcomes["torn"] += 1
                async with wal.open_log("/log", fs=fs) as log:
                    assert dict(log.items()) == expected
                    (repair,) = log.recovery.repairs
                    assert (repair.kind, repair.offset) == ("torn-tail", frames[j].offset)
                continue
            outcomes["corrupt"] += 1
            with pytest.raises(wal.CorruptLog) as info:
                await wal.Log.open("/log", fs=fs)
            assert (info.value.path, info.value.offset) == ("/log/" + SEG, frames[j].offset)
            async with wal.open_log("/log", fs=fs, repair=True) as log:
                assert dict(log.items()) == expected
                (repair,) = log.recovery.repairs
                assert (repair.kind, repair.offset, repair.dropped_bytes) == (
                    "salvaged",
                    frames[j].offset,
                    frames[j].size,
                )
                log._check()
            async with wal.open_log("/log", fs=fs) as log:  # sealed: opens without repair
                assert dict(log.items()) == expected
    assert outcomes["torn"] and outcomes["corrupt"]


async def test_damage_before_a_later_write_is_not_truncated(tmp_path: Path) -> None:
    async with wal.open_log(tmp_path) as log:
        await log.put(b"a", b"1")
        await log.put(b"b", b"2")
        await log.put(b"c", b"3")
    (tmp_path / HINT).unlink()
    data = bytearray((tmp_path / SEG).read_bytes())
    second = wal.decode_frames(bytes(data), segment=1)[1]
    data[second.offset + second.size - 1] ^= 0x40  # b's value
    (tmp_path / SEG).write_bytes(data)
    with pytest.raises(wal.CorruptLog) as info:
        await wal.Log.open(tmp_path)
    assert info.value.offset == second.offset and "later writes" in str(info.value)
    async with wal.open_log(tmp_path, repair=True) as log:
        assert dict(log.items()) == {b"a": b"1", b"c": b"3"}
        assert [r.kind for r in log.recovery.repairs] == ["salvaged"]
        await log.put(b"d", b"4")
    async with wal.open_log(tmp_path) as log:
        assert dict(log.items()) == {b"a": b"1", b"c": b"3", b"d": b"4"}


async def test_damage_in_a_closed_segment_without_a_hint_is_not_truncated(
    tmp_path: Path,
) -> None:
    async with wal.open_log(tmp_path) as log:
        await log.put(b"a", b"1")
        await log.put(b"b", b"2")
        await log.rotate()
        await log.put(b"c", b"3")
    (tmp_path / HINT).write_bytes(b"junk")
    data = bytearray((tmp_path / SEG).read_bytes())
    data[-1] ^= 1  # the last frame of a closed segment is no torn tail
    (tmp_path / SEG).write_bytes(data)
    with pytest.raises(wal.CorruptLog):
        await wal.Log.open(tmp_path)


async def test_flipped_byte_in_a_closed_segment_is_caught_on_read() -> None:
    fs = SimulatedFileSystem()
    log = await wal.Log.open("/log", fs=fs)
    await log.write([(b"a", b"apple"), (b"b", b""), (b"gone", b"x")])
    await log.put(b"a", b"apricot")
    await log.delete(b"gone")
    await log.put(b"c", b"cherry" * 10)
    await log.rotate()
    await log.put(b"d", b"durian")
    expected = dict(log.items())
    data = fs.read_file("/log/" + SEG)
    owner = {}
    for frame in wal.decode_frames(data, segment=1):
        for e in frame.entries:
            if (
                log._keydir.get(e.key) is not None
                and (e.offset, e.size) == (wal._keydir.unpack(log._keydir.map[e.key])[1:3])
            ):
                owner.update({i: e.key for i in range(e.offset, e.offset + e.size)})
    assert set(owner.values()) == {b"a", b"b", b"c"}
    for offset in range(len(data)):
        masks = range(1, 256) if offset in owner else (0x01, 0x80, 0xFF)
        for xor in masks:
            fs.corrupt("/log/" + SEG, offset, xor)
            if offset in owner:
                with pytest.raises(wal.CorruptLog) as info:
                    log.get(owner[offset])
                assert info.value.path == "/log/" + SEG
            for key, value in expected.items():  # everything else reads back intact
                if key != owner.get(offset):
                    assert log.get(key) == value
            fs.corrupt("/log/" + SEG, offset, xor)
    # merge refuses to copy a damaged value, and leaves the log as it was
    fs.corrupt("/log/" + SEG, max(o for o, k in owner.items() if k == b"c"), 0x20)
    with pytest.raises(wal.CorruptLog):
        await log.merge()
    assert not fs.exists("/log/merge") and not log.broken
    assert log.get(b"a") == b"apricot" and log.get(b"d") == b"durian"
    await log.aclose()


async def test_bad_hint_is_rebuilt_from_a_scan(tmp_path: Path) -> None:
    async with wal.open_log(tmp_path, segment_max_bytes=4096) as log:
        for i in range(40):
            await log.put(b"k%d" % (i % 7), b"%d" % i * 200)
        await log.delete(b"k0")
        expected = dict(log.items())
    hints = sorted(p for p in tmp_path.iterdir() if p.suffix == ".hint")
    assert len(hints) > 2
    damaged = bytearray(hints[0].read_bytes())
    damaged[len(damaged) // 2] ^= 0x10
    hints[0].write_bytes(damaged)
    hints[1].write_bytes(hints[1].read_bytes()[:20])
    seg2 = int(hints[2].stem)  # a valid hint that describes another size
    hints[2].write_bytes(fmt.encode_hint(seg2, 12345, []))
    async with wal.open_log(tmp_path, segment_max_bytes=4096) as log:
        rebuilt = [r for r in log.recovery.repairs if r.kind == "hint-rebuilt"]
        assert sorted(r.path for r in rebuilt) == [str(h) for h in hints[:3]]
        assert [r.reason for r in rebuilt] == [
            "hint checksum mismatch",
            "hint file cut short",
            f"hint describes {seg2}/12345 bytes",
        ]
        assert dict(log.items()) == expected
        assert log.recovery.segments_scanned >= 3
    async with wal.open_log(tmp_path, segment_max_bytes=4096) as log:
        assert log.recovery.repairs == ()
        assert dict(log.items()) == expected


async def test_leftover_temp_files_and_orphan_hints_are_removed(tmp_path: Path) -> None:
    async with wal.open_log(tmp_path) as log:
        await log.put(b"k", b"v")
    (tmp_path / "0000000009.hint").write_bytes(fmt.encode_hint(9, 0, []))
    (tmp_path / "0000000001.hint.tmp").write_bytes(b"half a hint")
    async with wal.open_log(tmp_path) as log:
        assert log.get(b"k") == b"v"
    assert not (tmp_path / "0000000009.hint").exists()
    assert not (tmp_path / "0000000001.hint.tmp").exists()


async def test_torn_write_of_a_value_that_embeds_a_frame_image() -> None:
    # The value holds a genuine frame image (of offset 0 of a segment 1, as a backup of
    # another log would); frame checksums bind segment and offset, so in the torn tail it
    # is no frame, and the tail is truncated as torn instead of refused as CorruptLog.
    fs = SimulatedFileSystem()
    log = await wal.Log.open("/log", fs=fs)
    await log.put(b"a", b"1")
    at = log.statistics().total_bytes
    inner, _refs = fmt.encode_frame([(b"phantom", b"boo")], 999, 0, 0, segment=1, offset=0)
    value = b"<" + inner + b">" * 100
    outer, _refs = fmt.encode_frame([(b"backup", value)], 2, 0, 0, segment=1, offset=at)
    segment = fs.open("/log/" + SEG, create=False)  # the write power loss tore
    segment.append(outer[: outer.index(inner) + len(inner) + 5])
    segment.sync()
    fs.crash(torn=False)
    async with wal.open_log("/log", fs=fs) as log:
        assert dict(log.items()) == {b"a": b"1"}
        assert [r.kind for r in log.recovery.repairs] == ["torn-tail"]
