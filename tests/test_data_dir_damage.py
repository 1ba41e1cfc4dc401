"""A damaged data directory never opens as a smaller state: whole files deleted, cut at a
frame boundary, replaced by older copies, duplicated or renamed, and ENGINE, SHARD,
MANIFEST, hints and checkpoints deleted in any combination. Open either yields every
acknowledged write or raises a FlowError naming what is wrong (issue 14)."""

from __future__ import annotations

import errno
import logging
import os
import shutil
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import trio
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import flowactors as fa
import wal
from wal.testing import SimulatedFileSystem

SEGMENT = 4096  # the smallest segment: many sealed segments from few flows


async def _build(path: Path, flows: int = 300, completed: int = 100, shards: int = 2) -> None:
    async with fa.open_engine(path, shards=shards, segment_max_bytes=SEGMENT) as engine:
        if flows:
            await engine.create_many(
                "job", [fa.CreateSpec(f"f-{i}", payload=b"x" * 40) for i in range(flows)]
            )
        done = 0
        while done < completed:
            jobs = await engine.claim_due("job", "w", limit=completed - done)
            await engine.complete_many([fa.Ack(j.id, j.lease_token, j.fencing_token) for j in jobs])
            done += len(jobs)


async def _snapshot(path: Path, shards: int = 2) -> dict[str, tuple[str, int]]:
    async with fa.open_engine(path, shards=shards, segment_max_bytes=SEGMENT) as engine:
        out: dict[str, tuple[str, int]] = {}
        for state in ("queued", "running", "completed"):
            cursor = None
            while True:
                page = await engine.list_flows("job", state, limit=1000, cursor=cursor)
                for flow in page.items:
                    out[flow.id] = (flow.state, flow.version)
                cursor = page.cursor
                if cursor is None:
                    break
        return out


def _sealed_segments(shard: Path) -> list[Path]:
    """Segments with a hint: sealed by a rotation or the clean close."""
    return sorted(p for p in shard.glob("*.log") if p.with_suffix(".hint").exists())


def _frame_boundaries(seg: Path) -> list[int]:
    """Where the segment's frames start ([0] for a file that is no valid segment under
    its name, such as a copy renamed to another id)."""
    data = seg.read_bytes()
    try:
        frames = wal.decode_frames(data, segment=int(seg.stem))
    except wal.CorruptLog:
        return [0]
    return [f.offset for f in frames]


# -- the reported cases ------------------------------------------------------------------


@pytest.mark.parametrize("cut", ["zero", "boundary"])
async def test_a_sealed_segment_cut_at_a_frame_boundary_is_corrupt_log(
    tmp_path: Path, cut: str
) -> None:
    await _build(tmp_path)
    shard = tmp_path / "shard-001"
    seg = _sealed_segments(shard)[1]
    size = seg.stat().st_size
    at = 0 if cut == "zero" else _frame_boundaries(seg)[-1]
    os.truncate(seg, at)
    with pytest.raises(fa.CorruptLog) as info:
        async with fa.open_engine(tmp_path, shards=2, segment_max_bytes=SEGMENT):
            pass  # pragma: no cover
    message = str(info.value)
    assert info.value.path == str(seg)
    assert f"{at} bytes" in message and f"{size} bytes" in message


async def test_a_missing_middle_segment_is_corrupt_log(tmp_path: Path) -> None:
    await _build(tmp_path)
    seg = _sealed_segments(tmp_path / "shard-000")[2]
    seg.unlink()
    with pytest.raises(fa.CorruptLog, match="missing"):
        async with fa.open_engine(tmp_path, shards=2, segment_max_bytes=SEGMENT):
            pass  # pragma: no cover


async def test_a_segment_replaced_by_an_older_copy_is_corrupt_log(tmp_path: Path) -> None:
    async with fa.open_engine(tmp_path, shards=1) as engine:
        for i in range(10):
            await engine.create(f"a-{i}", "job")
        active = max((tmp_path / "shard-000").glob("*.log"))
        older = active.read_bytes()  # an acknowledged state, copied while running
        for i in range(10):
            await engine.create(f"b-{i}", "job")
    active.write_bytes(older)
    with pytest.raises(fa.CorruptLog, match="sealed at"):
        async with fa.open_engine(tmp_path, shards=1):
            pass  # pragma: no cover


async def test_a_deleted_engine_file_is_refused_whatever_the_shard_count(
    tmp_path: Path,
) -> None:
    await _build(tmp_path)
    (tmp_path / "ENGINE").unlink()
    for shards in (2, 4):
        with pytest.raises(fa.DataDirDamaged, match="ENGINE is missing"):
            async with fa.open_engine(tmp_path, shards=shards):
                pass  # pragma: no cover
    assert not (tmp_path / "shard-002").exists()  # refused before anything was created


async def test_a_deleted_shard_directory_is_refused(tmp_path: Path) -> None:
    await _build(tmp_path)
    shutil.rmtree(tmp_path / "shard-001")
    with pytest.raises(fa.DataDirDamaged, match="shard-001 is missing"):
        async with fa.open_engine(tmp_path, shards=2):
            pass  # pragma: no cover
    assert not (tmp_path / "shard-001").exists()


async def test_a_foreign_or_swapped_shard_is_refused(tmp_path: Path) -> None:
    await _build(tmp_path / "a")
    await _build(tmp_path / "b")
    shutil.rmtree(tmp_path / "a" / "shard-001")
    shutil.copytree(tmp_path / "b" / "shard-001", tmp_path / "a" / "shard-001")
    with pytest.raises(fa.DataDirDamaged, match="another engine"):
        async with fa.open_engine(tmp_path / "a", shards=2):
            pass  # pragma: no cover
    # two shards of one engine swapped
    a0, a1 = tmp_path / "b" / "shard-000", tmp_path / "b" / "shard-001"
    a0.rename(tmp_path / "b" / "tmp")
    a1.rename(a0)
    (tmp_path / "b" / "tmp").rename(a1)
    with pytest.raises(fa.DataDirDamaged, match="shard 0 of 2"):
        async with fa.open_engine(tmp_path / "b", shards=2):
            pass  # pragma: no cover


async def test_an_extra_shard_directory_is_refused(tmp_path: Path) -> None:
    await _build(tmp_path)
    shutil.copytree(tmp_path / "shard-001", tmp_path / "shard-002")
    with pytest.raises(fa.DataDirDamaged, match="does not belong"):
        async with fa.open_engine(tmp_path, shards=2):
            pass  # pragma: no cover


async def test_a_creation_cut_short_before_engine_is_finished(tmp_path: Path) -> None:
    await _build(tmp_path, flows=5, completed=0)
    for shard in tmp_path.glob("shard-*"):
        for name in os.listdir(shard):
            if name != "SHARD":
                (shard / name).unlink()
    (tmp_path / "ENGINE").unlink()  # as if the first open died before writing ENGINE
    async with fa.open_engine(tmp_path, shards=3) as engine:
        assert engine.recovery.created and engine.shard_count == 3
        assert await engine.counts() == {}


async def test_flipped_byte_without_checkpoint_raises_flowactors_corrupt_log(
    tmp_path: Path,
) -> None:
    await _build(tmp_path, completed=0)  # every event is a live flow's newest: all are read
    shard = tmp_path / "shard-000"
    (shard / "records.ckpt").unlink()
    seg = _sealed_segments(shard)[0]
    data = bytearray(seg.read_bytes())
    data[len(data) // 2] ^= 0x10
    seg.write_bytes(data)
    with pytest.raises(fa.CorruptLog) as info:
        async with fa.open_engine(tmp_path, shards=2, segment_max_bytes=SEGMENT):
            pass  # pragma: no cover
    assert isinstance(info.value, fa.FlowError) and isinstance(info.value, wal.CorruptLog)


async def test_close_on_a_full_disk_does_not_fail_and_leaves_no_temp_file() -> None:
    fs = SimulatedFileSystem()
    async with fa.open_engine("/data", shards=1, fs=fs, io_threads=False) as engine:
        await engine.create("a", "job")
        # the checkpoint, then the hint: each fails with ENOSPC (the manifest is not tried)
        fs.fail_next("append", errno.ENOSPC, count=2)
    names = fs.listdir("/data/shard-000")
    assert not [n for n in names if n.endswith(".tmp")], names
    async with fa.open_engine("/data", shards=1, fs=fs, io_threads=False) as engine:
        assert (await engine.get("a")) is not None


async def test_a_failed_sync_at_close_is_a_storage_error() -> None:
    fs = SimulatedFileSystem()
    with pytest.raises(fa.StorageError):
        async with fa.open_engine(
            "/data", shards=1, fs=fs, io_threads=False, sync="never"
        ) as engine:
            await engine.create("a", "job")
            fs.fail_next("sync", errno.EIO, count=10)


async def test_repairs_are_reported_and_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    await _build(tmp_path, flows=10, completed=0, shards=1)
    shard = tmp_path / "shard-000"
    (shard / "records.ckpt").unlink()
    active = max(shard.glob("*.log"))
    active.with_suffix(".hint").unlink()
    manifest = shard / "MANIFEST"
    # as after a crash mid-write: the active segment unsealed, its tail torn
    manifest.write_bytes(_writing_manifest(shard, int(active.stem)))
    with active.open("ab") as f:
        f.write(b"FWAL\x02torn")
    with caplog.at_level(logging.WARNING, logger="flowactors"):
        async with fa.open_engine(tmp_path, shards=1, segment_max_bytes=SEGMENT) as engine:
            kinds = [r.kind for r in engine.recovery.repairs]
            assert kinds == ["torn-tail"]
            (report,) = engine.recovery.shards
            assert report.flows == 10 and not report.from_checkpoint
            assert report.segments_scanned >= 1
    assert "torn-tail" in caplog.text and str(active) in caplog.text


def _writing_manifest(shard: Path, active: int) -> bytes:
    """The manifest as it was before the clean close: every other segment sealed."""
    from wal import _log

    sealed = {
        int(p.stem): p.stat().st_size
        for p in shard.glob("*.log")
        if int(p.stem) != active and p.stat().st_size
    }
    return _log._encode_manifest(sealed, active, 0, False)


async def test_data_files_are_private_by_default(tmp_path: Path) -> None:
    data = tmp_path / "data"
    await _build(data, flows=5, completed=0)
    for root, dirs, files in os.walk(data):
        for d in dirs:
            assert stat.S_IMODE(os.stat(os.path.join(root, d)).st_mode) == 0o700, d
        for f in files:
            assert stat.S_IMODE(os.stat(os.path.join(root, f)).st_mode) == 0o600, f
    shared = tmp_path / "shared"
    fs = wal.OsFileSystem(file_mode=0o640, dir_mode=0o750)
    async with fa.open_engine(shared, shards=1, fs=fs) as engine:
        await engine.create("a", "job")
    assert stat.S_IMODE(os.stat(shared / "shard-000" / "SHARD").st_mode) == 0o640 & ~_umask()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


async def test_a_directory_made_before_identities_is_adopted_once(tmp_path: Path) -> None:
    await _build(tmp_path, flows=30, completed=10)
    want = await _snapshot(tmp_path)
    # turn it into what an older flowactors left: ENGINE format 1, no SHARD, no MANIFEST
    (tmp_path / "ENGINE").write_text('{"format": 1, "shards": 2, "slots": 1024}')
    for shard in tmp_path.glob("shard-*"):
        (shard / "SHARD").unlink()
        (shard / "MANIFEST").unlink()
    async with fa.open_engine(tmp_path, shards=2, segment_max_bytes=SEGMENT) as engine:
        assert engine.recovery.adopted
    assert await _snapshot(tmp_path) == want
    async with fa.open_engine(tmp_path, shards=2, segment_max_bytes=SEGMENT) as engine:
        assert not engine.recovery.adopted
    shutil.rmtree(tmp_path / "shard-001")  # the checks apply from now on
    with pytest.raises(fa.DataDirDamaged):
        async with fa.open_engine(tmp_path, shards=2):
            pass  # pragma: no cover


# -- any whole-file damage: never a smaller state, silently ---------------------------------


class _Base:
    """One data directory, built once: an older copy of it, and its acknowledged state."""

    def __init__(self) -> None:
        self.dir = tempfile.TemporaryDirectory(prefix="fa-damage-")
        root = Path(self.dir.name)
        self.old = root / "old"
        self.current = root / "current"

        async def build() -> dict[str, tuple[str, int]]:
            await _build(self.current, flows=120, completed=0)
            shutil.copytree(self.current, self.old)
            await _build(self.current, flows=0, completed=50)
            async with fa.open_engine(self.current, shards=2, segment_max_bytes=SEGMENT) as engine:
                await engine.create_many(
                    "job", [fa.CreateSpec(f"g-{i}", payload=b"y" * 300) for i in range(40)]
                )
            return await _snapshot(self.current)

        self.acknowledged = trio.run(build)


_BASE: _Base | None = None


def _base() -> _Base:
    global _BASE
    if _BASE is None:
        _BASE = _Base()
    return _BASE


Damage = Callable[[Path, Path], None]


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


@st.composite
def damages(draw: st.DrawFn) -> list[tuple[str, int, int]]:
    kinds = ["delete", "truncate", "older", "duplicate", "rename", "metadata"]
    return draw(
        st.lists(
            st.tuples(st.sampled_from(kinds), st.integers(0, 10_000), st.integers(0, 10_000)),
            min_size=1,
            max_size=3,
        )
    )


def _apply(root: Path, old: Path, kind: str, a: int, b: int) -> str:
    files = _files(root)
    logs = [p for p in files if p.suffix == ".log"]
    if kind == "metadata":
        names = [
            p
            for p in files
            if p.name in ("ENGINE", "SHARD", "MANIFEST", "records.ckpt") or p.suffix == ".hint"
        ]
        if not names:
            return "nothing"
        victim = names[a % len(names)]
        victim.unlink()
        return f"delete {victim.relative_to(root)}"
    if kind == "delete":
        victim = files[a % len(files)]
        victim.unlink()
        return f"delete {victim.relative_to(root)}"
    if not logs:
        return "nothing"
    seg = logs[a % len(logs)]
    rel = seg.relative_to(root)
    if kind == "truncate":
        bounds = [*_frame_boundaries(seg), seg.stat().st_size]
        at = bounds[b % len(bounds)]
        os.truncate(seg, at)
        return f"truncate {rel} at {at}"
    if kind == "older":
        source = old / rel
        if source.exists():
            shutil.copyfile(source, seg)
            return f"older {rel}"
        seg.unlink()
        return f"older (absent) {rel}"
    target = seg.with_name(f"{int(seg.stem) + 1 + b % 5:010d}.log")
    if kind == "duplicate":
        if not target.exists():
            shutil.copyfile(seg, target)
        return f"duplicate {rel} as {target.name}"
    if target.exists():
        target.unlink()
    seg.rename(target)
    return f"rename {rel} to {target.name}"


@settings(
    max_examples=max(20, settings().max_examples // 2),
    suppress_health_check=[HealthCheck.too_slow],
    deadline=None,
)
@given(damages())
@example([("duplicate", 0, 4), ("truncate", 4427, 0)])  # a renamed copy is no segment
def test_whole_file_damage_is_loud_or_harmless(plan: list[tuple[str, int, int]]) -> None:
    base = _base()
    with tempfile.TemporaryDirectory(prefix="fa-case-") as tmp:
        root = Path(tmp) / "data"
        shutil.copytree(base.current, root)
        done = [_apply(root, base.old, kind, a, b) for kind, a, b in plan]

        async def reopen() -> dict[str, tuple[str, int]] | None:
            try:
                return await _snapshot(root)
            except fa.FlowError:
                return None

        got = trio.run(reopen)
        if got is not None:
            assert got == base.acknowledged, done


def test_every_open_error_is_a_flow_error_under_damage() -> None:
    """A sample of the damage above, checked for the error type alone (any exception that
    escaped `reopen` would fail the property; this keeps the reason visible)."""
    base = _base()
    with tempfile.TemporaryDirectory(prefix="fa-case-") as tmp:
        root = Path(tmp) / "data"
        shutil.copytree(base.current, root)
        for p in _files(root):
            if p.suffix == ".log":
                p.write_bytes(b"garbage" * 10)

        async def reopen() -> Any:
            return await _snapshot(root)

        with pytest.raises(fa.FlowError):
            trio.run(reopen)
