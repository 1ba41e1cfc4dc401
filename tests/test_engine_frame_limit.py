"""No command may poison a shard (issue 14, item 4).

A command whose data could not fit one wal frame is refused with InvalidArgument before it
is decided (MAX_COMMAND_BYTES); frames that fit alone but not together are written in
consecutive commits; and a frame the log refuses anyway leaves the shard working: the
request is answered with InvalidArgument, the others of its batch go through.

The limits are lowered with monkeypatch where a real-size case would need gigabytes."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import trio
from engine_helpers import FakeClock, open_checked, written
from test_engine_input import _setup, snapshot

import flowactors as fa
from flowactors.engine import _coord as c
from flowactors.engine import _machine as m
from flowactors.engine import _shard
from wal import _format as wal_format

TYPE = "t"
KIB = 1024
MIB = 1024 * KIB


async def test_values_past_the_command_limit_are_refused_at_full_size(tmp_path: Path) -> None:
    """17 values of 16 MiB (one shared bytes object: no 272 MiB allocated) pass every
    per-value limit but not the per-command one."""
    big = b"\1" * m.MAX_BLOB_BYTES
    too_many = {f"v{i}": big for i in range(m.MAX_COMMAND_BYTES // m.MAX_BLOB_BYTES + 1)}
    async with open_checked(tmp_path, FakeClock(), shards=1, maintenance_interval_ms=None) as e:
        f = await _setup(e)
        before = await snapshot(e)
        for call in (
            e.create("n", TYPE, values=too_many),
            e.complete("a", f.lease_token, f.fencing_token, values=too_many),
            e.signal("q", "s", values=too_many),
            e.create_many(TYPE, [fa.CreateSpec(f"n{i}", payload=big) for i in range(17)]),
        ):
            with pytest.raises(fa.InvalidArgument, match="at most 268435456"):
                await call
        assert await snapshot(e) == before


Call = Callable[[Any, fa.Flow, bytes], Any]

# Each case carries 3 x 24 KiB of data: over a limit of 64 KiB, under one of 96 KiB.
CHUNK = 24 * KIB
CARRIERS: dict[str, Call] = {
    "create values": lambda e, f, b: e.create("n", TYPE, values={"x": b, "y": b, "z": b}),
    "create payload + values": lambda e, f, b: e.create(
        "n", TYPE, payload=b, values={"x": b, "y": b}
    ),
    "create_many payloads": lambda e, f, b: e.create_many(
        TYPE, [fa.CreateSpec(f"n{i}", payload=b) for i in range(3)]
    ),
    "create_many values": lambda e, f, b: e.create_many(
        TYPE, [fa.CreateSpec("n", values={"x": b, "y": b}), fa.CreateSpec("o", payload=b)]
    ),
    "transition values": lambda e, f, b: e.transition(
        "q", "queued", "x", 0, payload=b, values={"x": b, "y": b}
    ),
    "complete result + values": lambda e, f, b: e.complete(
        "a", f.lease_token, f.fencing_token, result=b, values={"x": b, "y": b}
    ),
    "fail error + values": lambda e, f, b: e.fail(
        "a", f.lease_token, f.fencing_token, error=b, values={"x": b, "y": b}
    ),
    "signal values": lambda e, f, b: e.signal("q", "s", values={"x": b, "y": b, "z": b}),
    "complete_many results": lambda e, f, b: e.complete_many(
        [fa.Ack("a", f.lease_token, f.fencing_token, b)] * 3
    ),
    "fail_many errors": lambda e, f, b: e.fail_many(
        [fa.Ack("a", f.lease_token, f.fencing_token, b)] * 3
    ),
    "retry_many errors": lambda e, f, b: e.retry_many(
        [fa.Ack("a", f.lease_token, f.fencing_token, b)] * 3
    ),
    "spawn_children payloads": lambda e, f, b: e.spawn_children(
        "q",
        None,
        0,
        group_id="g",
        children=[fa.ChildSpec(f"ch{i}", "kid", payload=b) for i in range(3)],
        success_state="joined",
        failure_state="broken",
    ),
}


@pytest.mark.parametrize("case", list(CARRIERS))
async def test_a_command_past_the_limit_is_refused_before_it_is_decided(
    tmp_path: Path, case: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(m, "MAX_COMMAND_BYTES", 64 * KIB)
    async with open_checked(tmp_path, FakeClock(), shards=2, maintenance_interval_ms=None) as e:
        f = await _setup(e)
        before = await snapshot(e)
        with pytest.raises(fa.InvalidArgument, match="split it"):
            await CARRIERS[case](e, f, b"\2" * CHUNK)
        assert await snapshot(e) == before
        # Under the limit, the same call goes through (ItemResult errors aside: the
        # batch cases name one flow three times).
        monkeypatch.setattr(m, "MAX_COMMAND_BYTES", 96 * KIB)
        await CARRIERS[case](e, f, b"\2" * CHUNK)


def test_the_limit_leaves_room_for_everything_else_in_a_frame() -> None:
    """The arithmetic behind MAX_COMMAND_BYTES: the data it allows, plus the largest
    record every item of the largest batch may hold besides (every id and name at its
    byte limit), fits one frame of the log."""
    per_item = 7 * KIB  # measured below: a create of such a record writes < 7 KiB
    assert m.MAX_COMMAND_BYTES + m.MAX_BATCH_ITEMS * per_item < wal_format.MAX_BODY_BYTES
    assert m.MAX_COMMAND_BYTES <= wal_format.MAX_VALUE_BYTES  # a spawn's message to a shard


async def test_the_largest_plain_record_writes_under_7_kib(tmp_path: Path) -> None:
    async with open_checked(tmp_path, FakeClock(), shards=1, maintenance_interval_ms=None) as e:
        raw = e.raw
        before = raw.statistics()["shards"][0]["log"].bytes_written
        n = 20
        await e.create_many(
            "t" * 256,
            [
                fa.CreateSpec(
                    f"{i:04d}" + "i" * 1020,
                    partition_key="p" * 256,
                    parent_id="P" * 1024,
                    root_id="R" * 1024,
                    correlation_id="C" * 1024,
                    priority=2,
                    run_at_ms=(1 << 53) - 1,
                )
                for i in range(n)
            ],
            state="s" * 256,
            max_active_ms=m.MAX_ACTIVE_MS,
            retention_ms=m.MAX_ACTIVE_MS,
        )
        per_item = (raw.statistics()["shards"][0]["log"].bytes_written - before) / n
        assert per_item < 7 * KIB, per_item


# -- the shard, when the log refuses a frame anyway -----------------------------------------


@pytest.fixture
def small_frames(monkeypatch: pytest.MonkeyPatch) -> int:
    """The log takes frames (and commits) of at most 256 KiB; the engine's own limit is
    left as it is, so what the log refuses reaches the shard."""
    monkeypatch.setattr(wal_format, "MAX_BODY_BYTES", 256 * KIB)
    return 256 * KIB


async def _together(*calls: Any) -> list[Any]:
    """Run the calls concurrently; each call's result or exception."""
    out: list[Any] = [None] * len(calls)

    async def one(i: int) -> None:
        try:
            out[i] = await calls[i]
        except fa.FlowError as exc:
            out[i] = exc

    async with trio.open_nursery() as nursery:
        for i in range(len(calls)):
            nursery.start_soon(one, i)
    return out


async def _one_batch(shard: Any, *commands: Any) -> list[Any]:
    """Queue the commands before the shard's actor runs again, so it takes them as one
    batch, in this order; each one's answer or error."""
    requests = [_shard.Request(command) for command in commands]
    for request in requests:
        shard.send.send_nowait(request)
    for request in requests:
        await request.wait()
    return [r.error if r.error is not None else r.result for r in requests]


def _counting(monkeypatch: pytest.MonkeyPatch, name: str) -> list[int]:
    """Count the calls of `Shard.<name>` (still calling it)."""
    calls = [0]
    original = getattr(_shard.Shard, name)

    def counted(self: Any, *args: Any) -> Any:
        calls[0] += 1
        return original(self, *args)

    monkeypatch.setattr(_shard.Shard, name, counted)
    return calls


async def test_a_frame_the_log_refuses_is_answered_and_the_shard_goes_on(
    tmp_path: Path, small_frames: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before: the shard took the log's refusal for a failed commit, answered the whole
    batch with StorageError and refused every later request, reads included, until the
    engine was reopened. Now the request that cannot be written gets InvalidArgument, the
    others of its batch (one depends on an earlier one) are written, and the shard goes
    on."""
    big = b"\3" * (small_frames + 1)
    clock = FakeClock()
    rebuilds = _counting(monkeypatch, "_rebuild")
    async with open_checked(tmp_path, clock, shards=1, maintenance_interval_ms=None) as e:
        await e.create("a", TYPE)
        shard = e.raw._shards[0]
        commits = shard.commits
        got = await _one_batch(
            shard,
            m.Create("d1", TYPE),
            m.Create("big", TYPE, payload=big, values={"v": b"x"}),
            m.PutValue("d1", "v", b"after"),
            m.Read("a"),
        )
        assert isinstance(got[0], fa.Flow) and got[0].id == "d1"
        assert isinstance(got[1], fa.InvalidArgument), got[1]
        assert isinstance(got[2], fa.Flow) and got[2].value_sizes == {"v": 5}
        assert isinstance(got[3], fa.Flow) and got[3].id == "a"
        assert rebuilds[0] == 2  # after the batch, and after the refused request
        assert shard.broken is None
        assert e.raw._records[0] is shard.state.records  # rebuilt in place
        assert shard.commits > commits
        assert await e.get("big") is None
        assert await e.get_values("d1", ["v"]) == {"v": b"after"}
        await e.create("later", TYPE)
        state = await snapshot(e)
    async with open_checked(tmp_path, clock, shards=1, maintenance_interval_ms=None) as e:
        assert await snapshot(e) == (*state[:2], 0)


async def test_frames_that_fit_alone_but_not_together_are_written_in_turn(
    tmp_path: Path, small_frames: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_rebuild(self: Any) -> None:  # pragma: no cover - the failure
        raise AssertionError("nothing was refused: no rebuild")

    monkeypatch.setattr(_shard.Shard, "_rebuild", no_rebuild)
    part = b"\4" * (small_frames // 3)
    clock = FakeClock()
    async with open_checked(tmp_path, clock, shards=1, maintenance_interval_ms=None) as e:
        shard = e.raw._shards[0]
        commits = shard.commits
        got = await _together(
            *(e.create(f"n{i}", TYPE, payload=part, values={"v": b"x"}) for i in range(4))
        )
        assert all(isinstance(g, fa.Flow) for g in got), got
        assert shard.commits - commits >= 2
        assert shard.broken is None
        state = await snapshot(e)
    async with open_checked(tmp_path, clock, shards=1, maintenance_interval_ms=None) as e:
        assert await snapshot(e) == (*state[:2], 0)
        assert (await e.get("n3", payload=True)).payload == part


async def test_messages_too_large_together_are_delivered_one_by_one(
    tmp_path: Path, small_frames: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two spawns send their remote children to one shard; the courier's batch of both
    messages is one frame too many for the log, so it delivers them one at a time."""
    part = b"\5" * (small_frames * 2 // 3)
    redos = _counting(monkeypatch, "_redo")
    async with open_checked(tmp_path, FakeClock(), shards=2, maintenance_interval_ms=None) as e:
        raw = e.raw
        keys = [f"k{i}" for i in range(40)]
        home = [k for k in keys if raw.shard_for("x", k) == 0][:2]
        away = next(k for k in keys if raw.shard_for("x", k) == 1)
        for i, key in enumerate(home):
            await e.create(f"p{i}", "parent", partition_key=key)
        # Both spawns in one batch of their shard: both messages wait in its outbox at once.
        spawns = [
            c.Spawn(
                f"p{i}",
                None,
                0,
                "g",
                [m.Create(f"c{i}", "kid", "queued", part, away)],
                "all",
                "waiting_children",
                "joined",
                "broken",
                True,
                True,
            )
            for i in range(2)
        ]
        got = await _one_batch(raw._shards[0], *spawns)
        assert all(isinstance(g, fa.Flow) for g in got), got
        await e.settle()
        assert redos[0] == 1  # the target refused both messages together
        for i in range(2):
            child = await e.get(f"c{i}", partition_key=away, payload=True)
            assert child is not None and child.payload == part
        assert all(not s["broken"] for s in raw.statistics()["shards"])
        assert written(e) > 0


async def test_a_claim_too_large_for_a_frame_is_refused_and_a_smaller_one_works(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A frame derived from the state, not from the call: each claimed record carries its
    named values' entries, so a claim of many such flows can outgrow a frame although the
    call itself is tiny. The claim is refused; the shard goes on; a smaller claim works."""
    monkeypatch.setattr(wal_format, "MAX_BODY_BYTES", 32 * KIB)
    names = {f"{i:03d}" + "n" * 200: b"" for i in range(50)}  # ~11 KiB per record
    async with open_checked(tmp_path, FakeClock(), shards=1, maintenance_interval_ms=None) as e:
        for i in range(3):
            await e.create(f"f{i}", TYPE, values=names)
        before = await snapshot(e)
        with pytest.raises(fa.InvalidArgument, match="refused"):
            await e.claim_due(TYPE, "w", limit=3)
        assert await snapshot(e) == before
        assert len(await e.claim_due(TYPE, "w", limit=2)) == 2
        assert e.raw._shards[0].broken is None


async def test_after_a_refused_frame_flows_off_their_home_shard_are_still_found(
    tmp_path: Path, small_frames: int
) -> None:
    """The rebuilt state keeps the engine's view of it: a flow created (in the refused
    batch) in a partition that lives away from its id's home shard is found by id."""
    async with open_checked(tmp_path, FakeClock(), shards=2, maintenance_interval_ms=None) as e:
        raw = e.raw
        fid = next(f"f{i}" for i in range(100) if raw.shard_for(f"f{i}") == 1)
        part = next(f"p{i}" for i in range(100) if raw.shard_for("x", f"p{i}") == 0)
        big = b"\6" * (small_frames + 1)
        got = await _one_batch(
            raw._shards[0],
            m.Create(fid, TYPE, partition=part),
            m.Create("big", TYPE, payload=big, values={"v": b"x"}, partition=part),
        )
        assert isinstance(got[0], fa.Flow) and isinstance(got[1], fa.InvalidArgument)
        later = next(f"g{i}" for i in range(100) if raw.shard_for(f"g{i}") == 1)
        await e.create(later, TYPE, partition_key=part)
        for flow_id in (fid, later):
            found = await e.get(flow_id)
            assert found is not None and found.partition_key == part
