"""The records saved at a clean close: used exactly when the log still stands where they
were saved, ignored (the log is read instead) in every other case."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pytest
from engine_helpers import FakeClock, open_checked

import flowactors as fa
import wal
from flowactors.engine import _checkpoint
from flowactors.engine._shard import recover

SHARDS = 2


async def populate(e: Any, n: int = 40) -> None:
    await e.create_many(
        "job",
        [fa.CreateSpec(f"f{i}", payload=b"p", attributes={"k": str(i)}) for i in range(n)],
    )
    for f in await e.claim_due("job", "w", limit=10):
        await e.complete(f.id, f.lease_token, f.fencing_token, result=b"r")
    await e.put_value("f20", "note", b"v")


def snapshot(e: Any) -> list[dict[str, Any]]:
    return [dict(s.state.records) for s in e.raw._shards]


async def from_log(path: Path) -> list[dict[str, Any]]:
    """Every shard's records as the log alone says (no checkpoint)."""
    out = []
    for i in range(SHARDS):
        async with await wal.Log.open(str(path / f"shard-{i:03d}")) as log:
            out.append(dict(recover(log).state.records))
    return out


def checkpoints(path: Path) -> list[Path]:
    return sorted(path.glob(f"shard-*/{_checkpoint.NAME}"))


async def test_a_clean_close_saves_the_records_and_the_next_open_uses_them(
    tmp_path: Path,
) -> None:
    clock = FakeClock()
    async with open_checked(tmp_path, clock, shards=SHARDS) as e:
        await populate(e)
        before = snapshot(e)
    assert len(checkpoints(tmp_path)) == SHARDS
    async with open_checked(tmp_path, clock, shards=SHARDS) as e:
        assert all(s.from_checkpoint for s in e.raw._shards)
        assert snapshot(e) == before
        flow = await e.get("f20", values=["note"])
        assert flow is not None and flow.values == {"note": b"v"}
        await e.create("late", "job")  # writes after the open: the log moves on
        after = snapshot(e)
    async with open_checked(tmp_path, clock, shards=SHARDS) as e:
        assert snapshot(e) == after


async def test_a_stale_checkpoint_is_ignored(tmp_path: Path) -> None:
    """Saved before later writes (as after a crash that kept them): the log decides."""
    clock = FakeClock()
    async with open_checked(tmp_path, clock, shards=SHARDS) as e:
        await populate(e)
    stale = tmp_path / "stale"
    stale.mkdir()
    for ck in checkpoints(tmp_path):
        shutil.copy(ck, stale / ck.parent.name)
    async with open_checked(tmp_path, clock, shards=SHARDS) as e:
        await e.create_many("job", [fa.CreateSpec(f"new{i}") for i in range(20)])
        after = snapshot(e)
    for ck in checkpoints(tmp_path):
        shutil.copy(stale / ck.parent.name, ck)  # put the older records back
    async with open_checked(tmp_path, clock, shards=SHARDS) as e:
        assert not any(s.from_checkpoint for s in e.raw._shards)
        assert snapshot(e) == after


@pytest.mark.parametrize("damage", ["flip", "truncate", "empty", "header"])
async def test_a_damaged_checkpoint_is_ignored(tmp_path: Path, damage: str) -> None:
    clock = FakeClock()
    async with open_checked(tmp_path, clock, shards=SHARDS) as e:
        await populate(e)
        before = snapshot(e)
    for ck in checkpoints(tmp_path):
        data = bytearray(ck.read_bytes())
        if damage == "flip":
            data[-10] ^= 0x01
        elif damage == "truncate":
            del data[len(data) // 2 :]
        elif damage == "empty":
            data = bytearray()
        else:
            data[10] ^= 0xFF  # the header length
        ck.write_bytes(bytes(data))
    async with open_checked(tmp_path, clock, shards=SHARDS) as e:
        assert not any(s.from_checkpoint for s in e.raw._shards)
        assert snapshot(e) == before


async def test_the_checkpoint_holds_what_the_log_holds(tmp_path: Path) -> None:
    clock = FakeClock()
    async with open_checked(tmp_path, clock, shards=SHARDS) as e:
        await populate(e, 200)
    async with open_checked(tmp_path, clock, shards=SHARDS) as e:
        assert all(s.from_checkpoint for s in e.raw._shards)
        saved = snapshot(e)
    assert saved == await from_log(tmp_path)


def test_load_refuses_every_truncation_and_another_position(tmp_path: Path) -> None:
    fs = wal.OsFileSystem()
    records = [("a",) * len(_checkpoint.FIELDS), ("b",) * len(_checkpoint.FIELDS)]
    position = (7, ((1, 4096),))
    assert _checkpoint.save(fs, str(tmp_path), position, records)  # type: ignore[arg-type]
    path = tmp_path / _checkpoint.NAME
    assert _checkpoint.load(fs, str(tmp_path), position) == records
    assert _checkpoint.load(fs, str(tmp_path), (8, ((1, 4096),))) is None
    assert _checkpoint.load(fs, str(tmp_path), (7, ((1, 4097),))) is None
    data = path.read_bytes()
    for cut in range(len(data)):
        path.write_bytes(data[:cut])
        assert _checkpoint.load(fs, str(tmp_path), position) is None, cut
    assert not os.path.exists(str(path) + ".tmp")


async def test_a_cancelled_engine_saves_no_checkpoint(tmp_path: Path) -> None:
    """Cancelled actors may hold a batch applied in memory but never written: no
    checkpoint is made of such a state (the one from the last clean close stays, and
    its position no longer matches)."""
    import trio

    clock = FakeClock()
    async with open_checked(tmp_path, clock, shards=SHARDS) as e:
        await populate(e)
    saved = [ck.read_bytes() for ck in checkpoints(tmp_path)]
    with trio.CancelScope() as scope:
        async with fa.open_engine(tmp_path, clock=clock, shards=SHARDS) as e:
            await e.create_many("job", [fa.CreateSpec(f"x{i}") for i in range(10)])
            scope.cancel()
            await trio.sleep(1)
    assert [ck.read_bytes() for ck in checkpoints(tmp_path)] == saved
    async with open_checked(tmp_path, clock, shards=SHARDS) as e:
        assert not any(s.from_checkpoint for s in e.raw._shards)
        assert all([await e.get(f"x{i}") for i in range(10)])
