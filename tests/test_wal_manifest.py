"""The wal's MANIFEST: whole segments lost, cut, copied or renamed are CorruptLog."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import wal


async def _log_with_segments(path: Path, segments: int = 3) -> list[Path]:
    async with wal.open_log(path, segment_max_bytes=4096) as log:
        for s in range(segments):
            for i in range(5):
                await log.put(b"k%d-%d" % (s, i), b"v" * 100)
            await log.rotate()
        await log.put(b"last", b"x")
    return sorted(path.glob("*.log"))


async def _items(path: Path, **options: bool) -> dict[bytes, bytes]:
    async with wal.open_log(path, segment_max_bytes=4096, **options) as log:
        return dict(log.items())


async def test_a_clean_log_reopens_and_its_manifest_lists_every_sealed_segment(
    tmp_path: Path,
) -> None:
    segs = await _log_with_segments(tmp_path)
    assert len(await _items(tmp_path)) == 16
    text = (tmp_path / "MANIFEST").read_bytes().split(b"\n")[0]
    for seg in segs:
        if seg.stat().st_size:
            assert b"[%d, %d]" % (int(seg.stem), seg.stat().st_size) in text


async def test_a_missing_manifest_is_refused_unless_adopted(tmp_path: Path) -> None:
    await _log_with_segments(tmp_path)
    want = await _items(tmp_path)
    (tmp_path / "MANIFEST").unlink()
    with pytest.raises(wal.CorruptLog, match="MANIFEST"):
        await _items(tmp_path)
    async with wal.open_log(tmp_path, adopt=True) as log:
        assert dict(log.items()) == want
        assert [r.kind for r in log.recovery.repairs] == ["manifest-rebuilt"]
    assert await _items(tmp_path) == want  # written again by that open


async def test_a_sealed_segment_cut_short_names_both_sizes(tmp_path: Path) -> None:
    segs = await _log_with_segments(tmp_path)
    size = segs[1].stat().st_size
    frames = wal.decode_frames(segs[1].read_bytes(), segment=int(segs[1].stem))
    os.truncate(segs[1], frames[-1].offset)
    with pytest.raises(wal.CorruptLog) as info:
        await _items(tmp_path)
    assert info.value.path == str(segs[1])
    assert f"{frames[-1].offset} bytes" in str(info.value) and f"{size} bytes" in str(info.value)
    async with wal.open_log(tmp_path, repair=True) as log:  # repair: reported, goes on
        assert "manifest" in [r.kind for r in log.recovery.repairs]


async def test_an_unknown_segment_holding_bytes_is_refused(tmp_path: Path) -> None:
    segs = await _log_with_segments(tmp_path)
    (tmp_path / "0000000099.log").write_bytes(segs[0].read_bytes())
    with pytest.raises(wal.CorruptLog, match="does not list it"):
        await _items(tmp_path)


async def test_an_empty_unknown_segment_is_a_rotation_cut_short(tmp_path: Path) -> None:
    await _log_with_segments(tmp_path)
    want = await _items(tmp_path)
    (tmp_path / "0000000099.log").write_bytes(b"")
    assert await _items(tmp_path) == want


async def test_the_active_segment_below_its_durable_floor_is_refused(tmp_path: Path) -> None:
    async with wal.open_log(tmp_path) as log:
        for i in range(20):
            await log.put(b"k%d" % i, b"v" * 50)
    seg = max(tmp_path.glob("*.log"))
    (tmp_path / seg.with_suffix(".hint").name).unlink()
    # Reopen: the segment (now without a hint) becomes the active one again, and that
    # open records its size as durable. Then lose frames of it.
    async with wal.open_log(tmp_path) as log:
        assert len(log) == 20
        log._release()  # a crash: no clean close, the manifest keeps active_min
    frames = wal.decode_frames(seg.read_bytes(), segment=int(seg.stem))
    os.truncate(seg, frames[-3].offset)
    with pytest.raises(wal.CorruptLog, match="durable"):
        await _items(tmp_path)


async def test_a_merge_keeps_the_manifest_true(tmp_path: Path) -> None:
    async with wal.open_log(tmp_path, segment_max_bytes=4096) as log:
        for r in range(4):
            for i in range(10):
                await log.put(b"k%d" % i, b"%d" % r * 200)
        await log.merge()
        want = dict(log.items())
    assert await _items(tmp_path) == want
