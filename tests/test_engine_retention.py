"""Engine: retention passes (deleting expired terminal flows with every key they own),
max_active_ms deadlines, the `limit` bound, compaction afterwards, and the maintenance
pass that rides on traffic."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from engine_helpers import FakeClock, open_checked

import flowactors as fa

DAY = 24 * 3600 * 1000
WEEK = 7 * DAY
NOTHING = {"active_timeouts": 0, "deleted": 0, "more": 0}


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def keys_of(e: Any, fid: str, partition_key: str | None = None) -> list[bytes]:
    """Every live log key that belongs to flow `fid` on its shard."""
    raw = e.raw if hasattr(e, "raw") else e
    log = raw._shards[raw.shard_for(fid, partition_key)].log
    own = fid.encode() + b"\x00"
    return sorted(k for tag in (b"h", b"v", b"n", b"g") for k in log.keys(tag + own))


def disk_bytes(e: Any) -> int:
    return sum(s["log"].total_bytes for s in e.statistics()["shards"])


async def finish(
    e: Any, fid: str, how: str = "complete", flow_type: str = "t", **create: Any
) -> fa.Flow:
    """Create `fid`, claim it and end it (`complete`, `fail` or `cancel`)."""
    await e.create(fid, flow_type, **create)
    [f] = await e.claim_due(flow_type, "w")
    assert f.id == fid
    if how == "complete":
        return await e.complete(fid, f.lease_token, f.fencing_token, result=b"R")  # type: ignore[no-any-return]
    if how == "fail":
        return await e.fail(fid, f.lease_token, f.fencing_token, error=b"E")  # type: ignore[no-any-return]
    return await e.cancel(fid, lease_token=f.lease_token, reason=b"C")  # type: ignore[no-any-return]


# -- retention_cleanup ------------------------------------------------------------------


async def test_cleanup_deletes_terminal_flows_after_their_retention(
    tmp_path: Path, clock: FakeClock
) -> None:
    async with open_checked(tmp_path, clock, shards=4, maintenance_interval_ms=None) as e:
        await finish(e, "done", payload=b"P", values={"v": b"1", "w": b"2"})
        await finish(e, "failed", "fail")
        await finish(e, "cancelled", "cancel")
        await finish(e, "short", retention_ms=1_000)
        await finish(e, "now", retention_ms=0)
        await e.create("live", "t", values={"v": b"x"}, run_at_ms=clock.now + 2 * WEEK)
        assert keys_of(e, "done")  # history and values are on disk
        assert await e.retention_cleanup() == {**NOTHING, "deleted": 1}  # retention 0
        assert await e.get("now") is None and keys_of(e, "now") == []
        clock.advance(999)
        assert await e.retention_cleanup() == NOTHING
        clock.advance(1)
        assert await e.retention_cleanup() == {**NOTHING, "deleted": 1}
        assert await e.get("short") is None
        clock.advance(WEEK - 1_001)
        assert await e.retention_cleanup() == NOTHING
        assert await e.info("t") == {"cancelled": 1, "completed": 1, "failed": 1, "queued": 1}
        clock.advance(1)
        assert await e.retention_cleanup() == {**NOTHING, "deleted": 3}
        for fid in ("done", "failed", "cancelled"):
            assert await e.get(fid) is None
            assert keys_of(e, fid) == []
            with pytest.raises(fa.FlowNotFound):
                await e.history(fid)
            with pytest.raises(fa.FlowNotFound):
                await e.get_values(fid, ["v"])
        assert await e.info("t") == {"queued": 1}
        assert await e.get_values("live", ["v"]) == {"v": b"x"}
        clock.advance(10 * WEEK)
        assert await e.retention_cleanup() == NOTHING  # live flows are never deleted
        # The id is free again.
        again = await e.create("done", "t")
        assert again.version == 1 and again.value_sizes == {}


async def test_cleanup_deletes_fanout_keys_with_the_parent(
    tmp_path: Path, clock: FakeClock
) -> None:
    async with open_checked(tmp_path, clock, shards=4, maintenance_interval_ms=None) as e:
        await e.create("p", "t", partition_key="k")
        [f] = await e.claim_due("t", "w")
        await e.spawn_children(
            "p",
            f.lease_token,
            f.fencing_token,
            group_id="g",
            children=[fa.ChildSpec("c1", "child"), fa.ChildSpec("c2", "child", partition_key="z")],
            success_state="completed",
            failure_state="failed",
            partition_key="k",
        )
        for c in await e.claim_due("child", "w", limit=2):
            await e.complete(c.id, c.lease_token, c.fencing_token, partition_key=c.partition_key)
        await e.settle()
        parent = await e.get("p", partition_key="k")
        assert parent is not None and parent.state == "completed"
        assert any(k.startswith(b"n") for k in keys_of(e, "p", "k"))
        assert any(k.startswith(b"g") for k in keys_of(e, "p", "k"))
        clock.advance(WEEK)
        assert (await e.retention_cleanup())["deleted"] == 3
        assert keys_of(e, "p", "k") == []
        assert keys_of(e, "c1", "k") == [] and keys_of(e, "c2", "z") == []


async def test_cleanup_fails_live_flows_past_max_active_ms(
    tmp_path: Path, clock: FakeClock
) -> None:
    async with open_checked(tmp_path, clock, shards=4, maintenance_interval_ms=None) as e:
        await e.create("queued", "t", max_active_ms=1_000)
        await e.create("later", "t", max_active_ms=1_000, run_at_ms=clock.now + DAY)
        await e.create("running", "t", max_active_ms=1_000, state="busy")
        [r] = await e.claim_due("t", "w", states=["busy"], lease_ms=DAY)
        await e.create("parent", "t", max_active_ms=1_000, state="fan")
        [p] = await e.claim_due("t", "w", states=["fan"])
        await e.spawn_children(
            "parent",
            p.lease_token,
            p.fencing_token,
            group_id="g",
            children=[fa.ChildSpec("kid", "child")],
            success_state="next",
            failure_state="failed",
        )
        await e.create("slow", "t", max_active_ms=2_000)
        await e.create("free", "t")
        clock.advance(999)
        assert await e.retention_cleanup() == NOTHING
        clock.advance(1)
        assert await e.retention_cleanup() == {**NOTHING, "active_timeouts": 4}
        await e.settle()
        for fid in ("queued", "later", "running", "parent"):
            f = await e.get(fid)
            assert f is not None and f.state == "failed", fid
            assert f.error == b"max_active_ms exceeded"
            failed = [ev for ev in await e.history(fid) if ev.name == "failed"]
            assert [ev.meta for ev in failed] == [{"reason": "max_active_ms"}]
        kid = await e.get("kid")
        assert kid is not None and kid.state == "cancelled"  # the parent closed
        with pytest.raises(fa.FlowTerminal):  # the worker's lease is dead
            await e.complete("running", r.lease_token, r.fencing_token)
        assert await e.retention_cleanup() == NOTHING  # each timeout happens once
        clock.advance(1_000)
        assert await e.retention_cleanup() == {**NOTHING, "active_timeouts": 1}
        free = await e.get("free")
        assert free is not None and free.state == "queued"
        # Timed-out flows then follow the retention of failed flows.
        clock.advance(WEEK - 1_001)
        assert await e.retention_cleanup() == NOTHING
        clock.advance(1)
        assert (await e.retention_cleanup())["deleted"] == 5  # 4 failed + the kid
        clock.advance(1_000)
        assert (await e.retention_cleanup())["deleted"] == 1


async def test_cleanup_is_bounded_by_limit(tmp_path: Path, clock: FakeClock) -> None:
    async with open_checked(tmp_path, clock, shards=1, maintenance_interval_ms=None) as e:
        for i in range(4):
            await finish(e, f"d{i}", retention_ms=0)
        for i in range(3):
            await e.create(f"a{i}", "u", max_active_ms=1)
        clock.advance(1)
        assert await e.retention_cleanup(limit=2) == {
            "active_timeouts": 2,
            "deleted": 2,
            "more": 1,
        }
        assert await e.retention_cleanup(limit=2) == {
            "active_timeouts": 1,
            "deleted": 2,
            "more": 0,  # exactly `limit` left: nothing more
        }
        assert await e.info("t") == {}
        assert await e.info("u") == {"failed": 3}
        for bad in (0, -1, True, 10**9):
            with pytest.raises(fa.InvalidArgument):
                await e.retention_cleanup(limit=bad)


async def test_cleanup_limit_is_per_shard(tmp_path: Path, clock: FakeClock) -> None:
    async with open_checked(tmp_path, clock, shards=4, maintenance_interval_ms=None) as e:
        ids = [f"d{i}" for i in range(40)]
        for fid in ids:
            await finish(e, fid, retention_ms=0)
        per_shard = [sum(1 for f in ids if e.shard_for(f) == s) for s in range(4)]
        report = await e.retention_cleanup(limit=3)
        assert report["deleted"] == sum(min(3, n) for n in per_shard)
        assert report["more"] == 1
        total = report["deleted"]
        while report["more"]:
            report = await e.retention_cleanup(limit=3)
            total += report["deleted"]
        assert total == 40 and await e.info("t") == {}


async def test_compact_after_cleanup_reclaims_disk(tmp_path: Path, clock: FakeClock) -> None:
    async with open_checked(tmp_path, clock, shards=4, maintenance_interval_ms=None) as e:
        for i in range(40):
            await finish(e, f"f{i}", payload=bytes(2_000), values={"v": bytes(1_000)})
        await e.create("keep", "t", payload=b"K")
        full = disk_bytes(e)
        clock.advance(WEEK)
        assert (await e.retention_cleanup())["deleted"] == 40
        assert disk_bytes(e) >= full  # tombstones only add bytes until a merge
        report = await e.compact()
        assert report["bytes_reclaimed"] > 40 * 3_000
        assert disk_bytes(e) < full - 40 * 3_000
        got = await e.get("keep", payload=True)
        assert got is not None and got.payload == b"K"
    async with open_checked(tmp_path, clock, shards=4, maintenance_interval_ms=None) as e:
        assert await e.info("t") == {"queued": 1}
        assert await e.get("f0") is None


async def test_deleted_flows_stay_deleted_after_restart(tmp_path: Path, clock: FakeClock) -> None:
    async with open_checked(tmp_path, clock, shards=4, maintenance_interval_ms=None) as e:
        for i in range(6):
            await finish(e, f"f{i}", values={"v": b"x"})
        await finish(e, "young", retention_ms=2 * WEEK)
        clock.advance(WEEK)
        assert (await e.retention_cleanup())["deleted"] == 6
    async with open_checked(tmp_path, clock, shards=4, maintenance_interval_ms=None) as e:
        for i in range(6):
            assert await e.get(f"f{i}") is None and keys_of(e, f"f{i}") == []
        assert await e.info("t") == {"completed": 1}
        # The survivor's retention is recovered too.
        clock.advance(WEEK - 1)
        assert await e.retention_cleanup() == NOTHING
        clock.advance(1)
        assert (await e.retention_cleanup())["deleted"] == 1


async def test_deleting_a_once_trimmed_flow_leaves_no_history(
    tmp_path: Path, clock: FakeClock
) -> None:
    async with open_checked(tmp_path, clock, shards=1, maintenance_interval_ms=None) as e:
        await e.install_policy("t", fa.FlowPolicy(history_max_events=2))
        await e.create("a", "t", payload=b"old")  # v1, pinned below the floor
        for state in ("s1", "s2"):
            [f] = await e.claim_due("t", "w")
            await e.transition("a", "running", state, f.fencing_token, lease_token=f.lease_token)
        await e.install_policy("t", fa.FlowPolicy(), replace=True)  # the cap is lifted
        [f] = await e.claim_due("t", "w")
        await e.transition(
            "a", "running", "s3", f.fencing_token, lease_token=f.lease_token, payload=b"new"
        )
        [f] = await e.claim_due("t", "w")
        await e.complete("a", f.lease_token, f.fencing_token)
        clock.advance(WEEK)
        assert (await e.retention_cleanup())["deleted"] == 1
        assert keys_of(e, "a") == []
    async with open_checked(tmp_path, clock, shards=1, maintenance_interval_ms=None) as e:
        assert await e.get("a") is None  # not back from the dead as a queued flow


# -- maintenance riding on traffic -----------------------------------------------------


async def test_maintenance_runs_with_traffic(tmp_path: Path, clock: FakeClock) -> None:
    async with open_checked(tmp_path, clock, shards=4, maintenance_interval_ms=1_000) as e:
        ids = [f"f{i}" for i in range(8)]
        for fid in ids:
            await finish(e, fid)
        await e.create("late", "u", max_active_ms=WEEK)
        clock.advance(WEEK)
        # The pass runs first in the batch that carries it: the answer sees its result.
        assert await e.info("t") == {}
        assert all(keys_of(e, fid) == [] for fid in ids)
        late = await e.get("late")
        assert late is not None and late.state == "failed"
        stats = [s.maintenance for s in e.raw._shards]
        assert sum(s["deleted"] for s in stats) == 8
        assert sum(s["active_timeouts"] for s in stats) == 1
        assert all(s["passes"] >= 1 for s in stats)
        # No second pass before the interval has passed again.
        passes = sum(s["passes"] for s in stats)
        await e.info("t")
        assert sum(s.maintenance["passes"] for s in e.raw._shards) == passes


async def test_maintenance_touches_only_shards_with_traffic(
    tmp_path: Path, clock: FakeClock
) -> None:
    async with open_checked(tmp_path, clock, shards=4, maintenance_interval_ms=1_000) as e:
        ids = [f"f{i}" for i in range(12)]
        for fid in ids:
            await finish(e, fid)
        clock.advance(WEEK)
        target = e.shard_for("ping")
        assert 0 < sum(e.shard_for(fid) == target for fid in ids) < len(ids)
        await e.create("ping", "other")  # one command, on one shard
        for fid in ids:
            gone = not keys_of(e, fid)
            assert gone == (e.shard_for(fid) == target), fid


async def test_maintenance_continues_while_more_is_left(tmp_path: Path, clock: FakeClock) -> None:
    async with open_checked(tmp_path, clock, shards=1, maintenance_interval_ms=1_000) as e:
        await e.create_many("t", [fa.CreateSpec(f"f{i:03}") for i in range(300)], retention_ms=0)
        done = 0
        while done < 300:
            got = await e.claim_due("t", "w", limit=100)
            await e.complete_many([fa.Ack(f.id, f.lease_token, f.fencing_token) for f in got])
            done += len(got)
        clock.advance(1_000)
        await e.info("t")  # pass 1: 256 (the per-pass bound), more left
        shard = e.raw._shards[0]
        assert shard.maintenance["deleted"] == 256
        await e.info("t")  # the next batch goes on at once, without waiting an interval
        assert shard.maintenance["deleted"] == 300
        assert await e.info("t") == {}


async def test_no_maintenance_when_disabled(tmp_path: Path, clock: FakeClock) -> None:
    async with open_checked(tmp_path, clock, shards=4, maintenance_interval_ms=None) as e:
        for i in range(8):
            await finish(e, f"f{i}")
        await e.create("late", "u", max_active_ms=1_000)
        clock.advance(10 * WEEK)
        for _ in range(3):
            assert await e.info("t") == {"completed": 8}
        late = await e.get("late")
        assert late is not None and late.state == "queued"
        assert all(s.maintenance["passes"] == 0 for s in e.raw._shards)
        assert await e.retention_cleanup() == {"active_timeouts": 1, "deleted": 8, "more": 0}
    with pytest.raises(fa.InvalidArgument):
        async with fa.open_engine(tmp_path, clock=clock, maintenance_interval_ms=0):
            pass  # pragma: no cover


async def test_maintenance_after_restart(tmp_path: Path, clock: FakeClock) -> None:
    async with open_checked(tmp_path, clock, shards=1, maintenance_interval_ms=None) as e:
        await finish(e, "a")
    clock.advance(WEEK)
    async with open_checked(tmp_path, clock, shards=1, maintenance_interval_ms=1_000) as e:
        await e.info("t")  # the interval starts at open: no pass yet
        assert await e.get("a") is not None
        clock.advance(1_000)
        await e.info("t")
        assert await e.get("a") is None


async def test_get_that_triggers_maintenance_does_not_fail(
    tmp_path: Path, clock: FakeClock
) -> None:
    async with open_checked(tmp_path, clock, shards=1, maintenance_interval_ms=1_000) as e:
        await finish(e, "a")  # completed with a result
        clock.advance(WEEK)
        got = await e.get("a")  # either answer is fine; an error is not
        assert got is None or got.result == b"R"
        assert await e.get("a") is None
