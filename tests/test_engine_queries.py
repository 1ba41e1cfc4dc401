"""Engine: paged queries across shards (state listings, lineage, stuck leases, terminal
windows, per-state and per-partition counts), their cursors and their answers after a
restart."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from engine_helpers import START_MS, FakeClock, open_checked

import flowactors as fa
from flowactors.engine import _queries as q


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


async def pages(
    query: Any, *args: Any, limit: int, start: str | None = None, **kwargs: Any
) -> list[list[fa.Flow]]:
    """Every page of a query (from cursor `start`), following cursors until None."""
    out: list[list[fa.Flow]] = []
    cursor = start
    while True:
        page = await query(*args, limit=limit, cursor=cursor, **kwargs)
        assert isinstance(page, fa.Page)
        assert len(page.items) <= limit
        out.append(page.items)
        if page.cursor is None:
            return out
        assert page.items, "a cursor after an empty page"
        cursor = page.cursor
        assert len(out) < 1_000


async def walk(
    query: Any, *args: Any, limit: int, start: str | None = None, **kwargs: Any
) -> list[str]:
    """Ids of every page concatenated (checked free of duplicates)."""
    found = await pages(query, *args, limit=limit, start=start, **kwargs)
    flows = [(f.id, f.partition_key) for page in found for f in page]
    assert len(flows) == len(set(flows)), f"duplicates across pages: {flows}"
    return [fid for fid, _part in flows]


def shards_used(e: Any, ids: list[str]) -> int:
    return len({e.shard_for(i) for i in ids})


async def end(e: Any, fid: str, how: str, flow_type: str = "t") -> None:
    [f] = await e.claim_due(flow_type, "w", states=[f"go-{fid}"])
    assert f.id == fid
    if how == "completed":
        await e.complete(fid, f.lease_token, f.fencing_token)
    elif how == "failed":
        await e.fail(fid, f.lease_token, f.fencing_token)
    else:
        await e.cancel(fid, lease_token=f.lease_token)


# -- list_flows -------------------------------------------------------------------------


async def test_list_due_flows_in_order_across_shards(tmp_path: Path, clock: FakeClock) -> None:
    async with open_checked(tmp_path, clock, shards=4) as e:
        expected = []
        for i in range(30):
            fid = f"f{(i * 7) % 30:02}"
            priority, due = i % 3, START_MS + ((i * 5) % 4) * 10
            await e.create(fid, "t", priority=priority, run_at_ms=due)
            expected.append((-priority, due, fid))
        await e.create("other-state", "t", state="s")
        await e.create("other-type", "u")
        want = [fid for _p, _d, fid in sorted(expected)]
        assert shards_used(e, want) == 4
        for limit in (1, 2, 7, 29, 30, 31, 100):
            assert await walk(e.list_flows, "t", "queued", limit=limit) == want, limit
        # One page when everything fits; an exact fit ends with an empty last page.
        assert [len(p) for p in await pages(e.list_flows, "t", "queued", limit=31)] == [30]
        assert [len(p) for p in await pages(e.list_flows, "t", "queued", limit=30)] == [30, 0]
        empty = await e.list_flows("t", "nothing")
        assert empty == fa.Page([], None)
        assert await e.list_flows("nobody", "queued") == fa.Page([], None)


async def test_list_flows_is_stable_while_flows_come_and_go(
    tmp_path: Path, clock: FakeClock
) -> None:
    async with open_checked(tmp_path, clock, shards=4) as e:
        for i in range(10):
            await e.create(f"b{i}", "t")
        first = await e.list_flows("t", "queued", limit=4)
        assert [f.id for f in first.items] == [f"b{i}" for i in range(4)]
        await e.create("a-before", "t")  # sorts before the cursor: not seen
        await e.create("z-after", "t")  # sorts after it: seen
        rest = await walk(e.list_flows, "t", "queued", limit=3, start=first.cursor)
        assert rest == [*(f"b{i}" for i in range(4, 10)), "z-after"]


async def test_list_parked_after_due_and_terminal_by_time(tmp_path: Path, clock: FakeClock) -> None:
    async with open_checked(tmp_path, clock, shards=4) as e:
        # Parents parked in "waiting_children" by spawn_children (no due time).
        for pid in ("p3", "p1", "p2"):
            await e.create(pid, "t", state=f"go-{pid}")
            [f] = await e.claim_due("t", "w", states=[f"go-{pid}"])
            await e.spawn_children(
                pid,
                f.lease_token,
                f.fencing_token,
                group_id="g",
                children=[fa.ChildSpec(f"{pid}-kid", "kid")],
                success_state="done",
                failure_state="failed",
            )
        # Due flows in the same state, which come first.
        await e.create("d-late", "t", state="waiting_children", run_at_ms=START_MS + 50)
        await e.create("d-urgent", "t", state="waiting_children", priority=2, run_at_ms=START_MS)
        await e.create("d-now", "t", state="waiting_children")
        want = ["d-urgent", "d-now", "d-late", "p1", "p2", "p3"]
        for limit in (1, 2, 4, 10):
            assert await walk(e.list_flows, "t", "waiting_children", limit=limit) == want
        # Terminal flows: by the time they ended, then by id.
        for fid in ("x", "y", "w", "v"):
            await e.create(fid, "t", state=f"go-{fid}")
        for fid in ("y", "x"):
            await end(e, fid, "completed")
        clock.advance(10)
        await end(e, "w", "completed")
        clock.advance(10)
        await end(e, "v", "completed")
        for limit in (1, 3, 10):
            assert await walk(e.list_flows, "t", "completed", limit=limit) == ["x", "y", "w", "v"]


async def test_list_flows_lists_running_flows_by_lease_deadline(
    tmp_path: Path, clock: FakeClock
) -> None:
    async with open_checked(tmp_path, clock, shards=4) as e:
        for i in range(6):
            await e.create(f"r{i}", "t")
        for i in range(6):
            await e.claim_due("t", "w", limit=1, lease_ms=1_000 + i)
        page = await e.list_flows("t", "running", limit=10)
        assert len(page.items) == 6
        deadlines = [f.lease_deadline_ms for f in page.items]
        assert deadlines == sorted(deadlines)


async def test_list_flows_rejects_bad_cursors_and_limits(tmp_path: Path, clock: FakeClock) -> None:
    async with open_checked(tmp_path, clock, shards=4) as e:
        for i in range(5):
            await e.create(f"f{i}", "t", correlation_id="c")
        other = (await e.by_correlation("c", limit=1)).cursor  # another query's shape
        assert other is not None
        for bad in ("not a cursor!", "", "%%%", other, q.encode_cursor((0, 0, 0))):
            with pytest.raises(fa.InvalidArgument):
                await e.list_flows("t", "queued", cursor=bad)
        for limit in (0, -1, q.MAX_PAGE + 1, True, 2.0):
            with pytest.raises(fa.InvalidArgument):
                await e.list_flows("t", "queued", limit=limit)
            with pytest.raises(fa.InvalidArgument):
                await e.by_correlation("c", limit=limit)
        with pytest.raises(fa.InvalidArgument):
            await e.list_flows("t", "")
        with pytest.raises(fa.InvalidArgument):
            await e.list_flows("__t", "queued")
        assert len((await e.list_flows("t", "queued")).items) == 5  # still answering


async def test_a_forged_cursor_is_invalid_and_harmless(tmp_path: Path, clock: FakeClock) -> None:
    async with open_checked(tmp_path, clock, shards=4) as e:
        await e.create("a", "t", correlation_id="c")
        with pytest.raises(fa.InvalidArgument):
            await e.list_flows("t", "queued", cursor=q.encode_cursor(("x", 1, 2, "y")))
        with pytest.raises(fa.InvalidArgument):
            await e.by_correlation("c", cursor=q.encode_cursor((5,)))
        assert await e.get("a") is not None  # the shards still work


# -- lineage ----------------------------------------------------------------------------


async def test_by_parent_and_by_root_of_a_created_tree(tmp_path: Path, clock: FakeClock) -> None:
    async with open_checked(tmp_path, clock, shards=4) as e:
        await e.create("r", "t")
        for kid in ("a", "b", "c"):
            await e.create(kid, "t", parent_id="r", root_id="r")
        grandkids = [f"a{i}" for i in range(5)] + ["b0"]
        for gk in grandkids:
            await e.create(gk, "t", parent_id=gk[0], root_id="r")
        await e.create("lonely", "t", parent_id="elsewhere", root_id="elsewhere")
        assert shards_used(e, grandkids) > 1
        for limit in (1, 2, 100):
            assert await walk(e.by_parent, "r", limit=limit) == ["a", "b", "c"]
            assert await walk(e.by_parent, "a", limit=limit) == [f"a{i}" for i in range(5)]
            assert await walk(e.by_root, "r", limit=limit) == sorted(["a", "b", "c", *grandkids])
        assert await e.by_parent("c") == fa.Page([], None)
        assert await e.by_root("a") == fa.Page([], None)  # "a" is not a root
        assert [f.id for f in (await e.by_root("elsewhere")).items] == ["lonely"]
        for query in (e.by_parent, e.by_root, e.by_correlation):
            with pytest.raises(fa.InvalidArgument):
                await query("")


async def test_by_parent_and_by_root_of_a_spawned_tree(tmp_path: Path, clock: FakeClock) -> None:
    async with open_checked(tmp_path, clock, shards=4) as e:
        await e.create("root", "t", correlation_id="order-9")
        [f] = await e.claim_due("t", "w")
        kids = [fa.ChildSpec(f"k{i}", "kid", partition_key=f"p{i}") for i in range(4)]
        await e.spawn_children(
            "root",
            f.lease_token,
            f.fencing_token,
            group_id="g",
            children=kids,
            success_state="completed",
            failure_state="failed",
        )
        assert shards_used(e, [k.id for k in kids]) > 1
        [k0] = await e.claim_due("kid", "w", limit=1)
        grand = [fa.ChildSpec(f"{k0.id}-{j}", "grand") for j in range(3)]
        await e.spawn_children(
            k0.id,
            k0.lease_token,
            k0.fencing_token,
            group_id="g2",
            children=grand,
            success_state="completed",
            failure_state="failed",
            partition_key=k0.partition_key,
        )
        await e.settle()
        kid_ids = [k.id for k in kids]
        grand_ids = [g.id for g in grand]
        assert await walk(e.by_parent, "root", limit=3) == kid_ids
        assert await walk(e.by_parent, k0.id, limit=2) == grand_ids
        assert await walk(e.by_root, "root", limit=2) == sorted(kid_ids + grand_ids)
        # Spawned children inherit the parent's correlation id.
        everyone = ["root", *kid_ids, *grand_ids]
        assert await walk(e.by_correlation, "order-9", limit=3) == sorted(everyone)


async def test_by_correlation_across_shards(tmp_path: Path, clock: FakeClock) -> None:
    async with open_checked(tmp_path, clock, shards=4) as e:
        ids = [f"o{i:02}" for i in range(25)]
        for i, fid in enumerate(ids):
            await e.create(
                fid,
                "t" if i % 2 else "u",
                partition_key=None if i % 3 else f"part{i}",
                correlation_id="c1" if i % 5 else "c2",
            )
        c1 = [fid for i, fid in enumerate(ids) if i % 5]
        assert shards_used(e, c1) == 4
        for limit in (1, 4, 20, 100):
            assert await walk(e.by_correlation, "c1", limit=limit) == c1
        assert await walk(e.by_correlation, "c2", limit=2) == ids[::5]
        assert await e.by_correlation("c3") == fa.Page([], None)


async def test_partitions_on_two_shards_are_paged_completely(
    tmp_path: Path, clock: FakeClock
) -> None:
    async with open_checked(tmp_path, clock, shards=4) as e:
        parts: dict[int, str] = {}
        i = 0
        while len(parts) < 2:
            parts.setdefault(e.shard_for("x", f"p{i}"), f"p{i}")
            i += 1
        for n, pk in enumerate(parts.values()):
            await e.create(f"x{n}", "t", partition_key=pk, correlation_id="c")
        assert len((await e.by_correlation("c")).items) == 2
        assert len(await walk(e.by_correlation, "c", limit=1)) == 2


# -- stuck ------------------------------------------------------------------------------


async def test_stuck_lists_expired_unreclaimed_leases_by_deadline(
    tmp_path: Path, clock: FakeClock
) -> None:
    async with open_checked(tmp_path, clock, shards=4) as e:
        leases = {"s1": 300, "s2": 100, "s3": 200, "s4": 10_000, "s5": 150}
        for fid, lease in leases.items():
            await e.create(fid, "t", state=fid, priority=2 if fid == "s1" else 0)
            [f] = await e.claim_due("t", "w", states=[fid], lease_ms=lease)
            assert f.lease_deadline_ms == START_MS + lease
        await e.create("queued", "t")
        await e.create("other", "u")
        await e.claim_due("u", "w", lease_ms=1)
        assert await e.stuck("t") == fa.Page([], None)
        clock.advance(200)  # deadlines <= now count as expired (as for reclaim)
        assert await walk(e.stuck, "t", limit=1) == ["s2", "s5", "s3"]
        assert await walk(e.stuck, "t", older_than_ms=60, limit=2) == ["s2"]
        assert await walk(e.stuck, "t", older_than_ms=50, limit=2) == ["s2", "s5"]
        clock.advance(100)
        assert await walk(e.stuck, "t", limit=10) == ["s2", "s5", "s3", "s1"]
        # An extended lease is no longer stuck; a finished flow neither.
        s2 = await e.get("s2")
        assert s2 is not None
        await e.extend_lease("s2", s2.lease_token, s2.fencing_token, lease_ms=1_000)
        s3 = await e.get("s3")
        assert s3 is not None
        await e.complete("s3", s3.lease_token, s3.fencing_token)
        assert await walk(e.stuck, "t", limit=10) == ["s5", "s1"]
        # Reclaimed leases are not stuck any more (until the new lease expires too).
        got = await e.reclaim("t", "w2", limit=10, lease_ms=5_000)
        assert sorted(f.id for f in got) == ["s1", "s5"]
        assert await e.stuck("t") == fa.Page([], None)
        clock.advance(1_000)
        assert await walk(e.stuck, "t", limit=10) == ["s2"]
        for bad in (-1, True):
            with pytest.raises(fa.InvalidArgument):
                await e.stuck("t", older_than_ms=bad)


# -- terminals --------------------------------------------------------------------------


async def test_terminals_by_window_and_state(tmp_path: Path, clock: FakeClock) -> None:
    async with open_checked(tmp_path, clock, shards=4) as e:
        plan = [("a", "completed"), ("b", "failed"), ("c", "cancelled"), ("d", "completed")]
        plan += [(f"e{i}", "failed") for i in range(6)]
        for fid, _how in plan:
            await e.create(fid, "t", state=f"go-{fid}")
        await e.create("live", "t")
        ended: dict[str, int] = {}
        for fid, how in plan:
            await end(e, fid, how)
            ended[fid] = clock.now
            clock.advance(10 if fid != "e2" else 0)  # e2 and e3 end together
        order = sorted(ended, key=lambda f: (ended[f], f))
        for limit in (1, 3, 100):
            assert await walk(e.terminals, "t", limit=limit) == order
            failed = [f for f in order if dict(plan)[f] == "failed"]
            assert await walk(e.terminals, "t", state="failed", limit=limit) == failed
        lo, hi = ended["c"], ended["e3"]
        window = [f for f in order if lo <= ended[f] <= hi]
        assert window == ["c", "d", "e0", "e1", "e2", "e3"]
        for limit in (1, 2, 100):
            assert await walk(e.terminals, "t", from_ms=lo, to_ms=hi, limit=limit) == window
        assert await walk(e.terminals, "t", to_ms=ended["a"], limit=5) == ["a"]
        assert await walk(e.terminals, "t", from_ms=ended["e5"], limit=5) == ["e5"]
        assert await e.terminals("t", from_ms=hi, to_ms=lo) == fa.Page([], None)
        assert await e.terminals("t", state="cancelled", from_ms=lo + 1) == fa.Page([], None)
        for bad in ({"from_ms": -1}, {"to_ms": "x"}, {"limit": 0}):
            with pytest.raises(fa.InvalidArgument):
                await e.terminals("t", **bad)


async def test_terminals_rejects_a_live_state(tmp_path: Path, clock: FakeClock) -> None:
    async with open_checked(tmp_path, clock, shards=4) as e:
        for state in ("queued", "running", ""):
            with pytest.raises(fa.InvalidArgument):
                await e.terminals("t", state=state)


async def test_terminal_time_is_when_the_flow_ended(tmp_path: Path, clock: FakeClock) -> None:
    async with open_checked(tmp_path, clock, shards=4) as e:
        await e.create("p", "t", partition_key="k")
        [f] = await e.claim_due("t", "w")
        await e.spawn_children(
            "p",
            f.lease_token,
            f.fencing_token,
            group_id="g",
            children=[fa.ChildSpec("c1", "kid"), fa.ChildSpec("c2", "kid")],
            success_state="completed",
            failure_state="failed",
            wait="any",
            on_parent_closed="abandon_children",
            partition_key="k",
        )
        ended = clock.now
        [c] = await e.claim_due("kid", "w")
        await e.complete(c.id, c.lease_token, c.fencing_token, partition_key="k")
        assert [x.id for x in (await e.terminals("t", from_ms=ended, to_ms=ended)).items] == ["p"]
        clock.advance(500)
        [c] = await e.claim_due("kid", "w")
        await e.complete(c.id, c.lease_token, c.fencing_token, partition_key="k")
        assert [x.id for x in (await e.terminals("t", from_ms=ended, to_ms=ended)).items] == ["p"]


# -- info -------------------------------------------------------------------------------


async def test_info_per_state_and_per_partition(tmp_path: Path, clock: FakeClock) -> None:
    async with open_checked(tmp_path, clock, shards=4) as e:
        assert await e.info("t") == {}
        for i in range(12):
            await e.create(f"f{i}", "t", partition_key=[None, "p1", "p2"][i % 3], state="s")
        await e.create("u1", "u", partition_key="p1")
        await e.claim_due("t", "w", limit=4)  # four of them run
        running = {f.id for f in (await e.list_flows("t", "s", limit=100)).items}
        assert len(running) == 8
        [f] = await e.claim_due("t", "w")
        await e.complete(f.id, f.lease_token, f.fencing_token, partition_key=f.partition_key)
        assert await e.info("t") == {"completed": 1, "running": 4, "s": 7}
        by_part: dict[str | None, dict[str, int]] = {}
        for i in range(12):
            fid = f"f{i}"
            pk = [None, "p1", "p2"][i % 3]
            flow = await e.get(fid, partition_key=pk)
            assert flow is not None
            counts = by_part.setdefault(pk, {})
            counts[flow.state] = counts.get(flow.state, 0) + 1
        for pk in ("p1", "p2"):
            assert await e.info("t", partition_key=pk) == dict(sorted(by_part[pk].items()))
        assert await e.info("u", partition_key="p1") == {"queued": 1}
        assert await e.info("t", partition_key="nowhere") == {}
        for bad in ("", 5):
            with pytest.raises(fa.InvalidArgument):
                await e.info("t", partition_key=bad)


# -- restart ----------------------------------------------------------------------------


async def test_queries_answer_the_same_after_restart(tmp_path: Path, clock: FakeClock) -> None:
    async def snapshot(e: Any) -> dict[str, Any]:
        return {
            "queued": await walk(e.list_flows, "t", "queued", limit=3),
            "parked": await walk(e.list_flows, "t", "waiting_children", limit=2),
            "done": await walk(e.list_flows, "t", "completed", limit=2),
            "root": await walk(e.by_root, "r", limit=2),
            "parent": await walk(e.by_parent, "r", limit=2),
            "corr": await walk(e.by_correlation, "c", limit=2),
            "stuck": await walk(e.stuck, "t", limit=2),
            "terminals": await walk(e.terminals, "t", limit=2),
            "info": await e.info("t"),
            "info_p": await e.info("t", partition_key="p"),
            "page": await e.list_flows("t", "queued", limit=4),
        }

    async with open_checked(tmp_path, clock, shards=4) as e:
        await e.create("r", "t", state="go-r", correlation_id="c")
        [f] = await e.claim_due("t", "w", states=["go-r"])
        await e.spawn_children(
            "r",
            f.lease_token,
            f.fencing_token,
            group_id="g",
            children=[fa.ChildSpec(f"k{i}", "kid", partition_key=f"q{i}") for i in range(3)],
            success_state="completed",
            failure_state="failed",
        )
        for i in range(9):
            await e.create(f"f{i}", "t", priority=i % 3, partition_key="p" if i % 2 else None)
        for fid in ("x", "y"):
            await e.create(fid, "t", state=f"go-{fid}", correlation_id="c")
            await end(e, fid, "completed")
            clock.advance(5)
        await e.create("z", "t", state="go-z")
        await e.claim_due("t", "w", states=["go-z"], lease_ms=1)
        await e.settle()
        clock.advance(10)
        before = await snapshot(e)
        assert before["stuck"] == ["z"] and before["parked"] == ["r"]
        assert before["root"] == before["parent"] == ["k0", "k1", "k2"]
    async with open_checked(tmp_path, clock, shards=4) as e:
        assert await snapshot(e) == before
