"""`transition(children=)`: children created by the command that moves their parent, on the
parent's shard, all or nothing; and `wake_parent`, which makes a waiting parent due when the
child ends. Every call is followed by the engine's invariant check."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from engine_helpers import FakeClock, names, open_checked, written

import flowactors as fa

SHARDS = 4
LATER = 3_600_000


async def claimed(e: Any, fid: str = "parent", **options: Any) -> fa.Flow:
    await e.create(fid, "order", **options)
    (flow,) = await e.claim_due("order", "w")
    return flow


async def move(e: Any, p: fa.Flow, children: Any, **options: Any) -> fa.Flow:
    options.setdefault("run_at_ms", e.now_ms() + LATER)
    flow: fa.Flow = await e.transition(
        p.id,
        "running",
        "waiting",
        p.fencing_token,
        lease_token=p.lease_token,
        children=children,
        partition_key=p.partition_key,
        **options,
    )
    return flow


def away_from(e: Any, shard: int, prefix: str = "c") -> list[str]:
    """Ids whose home shard is not `shard` (so placing them with the parent matters)."""
    ids = [f"{prefix}{i}" for i in range(200) if e.shard_for(f"{prefix}{i}") != shard]
    return ids[:3]


async def end(e: Any, fid: str, how: str = "complete") -> fa.Flow:
    (flow,) = await e.claim_due("item", "w")
    assert flow.id == fid
    if how == "complete":
        done: fa.Flow = await e.complete(fid, flow.lease_token, flow.fencing_token, result=b"ok")
    else:
        done = await e.fail(fid, flow.lease_token, flow.fencing_token, error=b"no")
    return done


async def test_children_are_created_with_the_move_on_the_parents_shard(tmp_path: Path) -> None:
    clock = FakeClock()
    async with open_checked(tmp_path, clock, shards=SHARDS) as e:
        p = await claimed(e, correlation_id="corr")
        home = e.locate("parent")
        ids = away_from(e, home)
        specs = [
            fa.ChildSpec(ids[0], "item", payload=b"a", values={"v": b"1"}, retention_ms=5),
            fa.ChildSpec(ids[1], "item", state="later", correlation_id="own"),
        ]
        parent = await move(e, p, specs, values={"step": b"s"})
        assert (parent.state, parent.lease_token) == ("waiting", None)
        a = await e.get(ids[0], payload=True, values=("v",))
        b = await e.get(ids[1])
        assert (a.parent_id, a.root_id, a.correlation_id) == ("parent", "parent", "corr")
        assert (a.payload, a.values["v"], a.state) == (b"a", b"1", "queued")
        assert (b.state, b.correlation_id) == ("later", "own")
        assert {e.locate(ids[0]), e.locate(ids[1])} == {home}
        assert names(await e.history(ids[0])) == ["created"]
        assert (await e.get_values("parent", ["step"])) == {"step": b"s"}
        # The same transition again is a no-op: nothing is created twice.
        before = written(e)
        again = await move(e, p, specs, run_at_ms=parent.next_run_at_ms, values={"step": b"s"})
        assert again.version == parent.version and written(e) == before
        # A child placed with its parent is still one id engine-wide.
        with pytest.raises(fa.FlowExists):
            await e.create(ids[0], "item")
        # Retention applies to the child once it ends.
        done = await end(e, ids[0])
        assert done.state == "completed"


async def test_a_child_that_wakes_its_parent_makes_it_due_when_it_ends(tmp_path: Path) -> None:
    clock = FakeClock()
    async with open_checked(tmp_path, clock, shards=SHARDS) as e:
        p = await claimed(e)
        specs = [
            fa.ChildSpec("quiet", "item"),
            fa.ChildSpec("loud", "item", wake_parent=True, run_at_ms=clock.now + 5),
        ]
        parent = await move(e, p, specs)
        assert parent.next_run_at_ms == clock.now + LATER
        clock.advance(10)
        await end(e, "quiet")
        assert (await e.get("parent")).next_run_at_ms == parent.next_run_at_ms
        clock.advance(10)
        await end(e, "loud", "fail")
        woken = await e.get("parent")
        assert (woken.state, woken.next_run_at_ms) == ("waiting", clock.now)
        (event,) = (await e.history("parent"))[-1:]
        assert (event.name, dict(event.meta)) == (
            "child_ended",
            {"child": "loud", "state": "failed"},
        )
        (again,) = await e.claim_due("order", "w")
        assert again.id == "parent"


async def test_a_wake_leaves_a_leased_due_or_ended_parent_alone(tmp_path: Path) -> None:
    clock = FakeClock()
    async with open_checked(tmp_path, clock, shards=SHARDS) as e:
        p = await claimed(e)
        await move(e, p, [fa.ChildSpec(f"k{i}", "item", wake_parent=True) for i in range(3)])
        clock.advance(LATER)  # the parent is due: claimed again (leased)
        (p2,) = await e.claim_due("order", "w")
        await end(e, "k0")
        leased = await e.get("parent")
        assert (leased.state, leased.lease_token) == ("running", p2.lease_token)
        assert "child_ended" not in names(await e.history("parent"))
        # Due already (moved to due-now): nothing to bring forward.
        p3 = await e.transition("parent", "running", "waiting", p2.fencing_token,
                                lease_token=p2.lease_token)  # fmt: skip
        await end(e, "k1")
        assert (await e.get("parent")).version == p3.version
        # Ended: left as it ended.
        await e.cancel("parent")
        await end(e, "k2")
        assert names(await e.history("parent"))[-1] == "cancelled"


async def test_the_wake_survives_a_reopen(tmp_path: Path) -> None:
    clock = FakeClock()
    async with open_checked(tmp_path, clock, shards=SHARDS) as e:
        p = await claimed(e)
        await move(e, p, [fa.ChildSpec("kid", "item", wake_parent=True)])
    async with open_checked(tmp_path, clock, shards=SHARDS) as e:
        await end(e, "kid")
        assert (await e.get("parent")).next_run_at_ms == clock.now


async def test_a_taken_child_id_refuses_the_whole_command(tmp_path: Path) -> None:
    clock = FakeClock()
    async with open_checked(tmp_path, clock, shards=SHARDS) as e:
        p = await claimed(e)
        await e.create("taken", "other")
        before = written(e)
        for specs in (
            [fa.ChildSpec("fresh", "item"), fa.ChildSpec("taken", "item")],
            [fa.ChildSpec("parent", "item")],
        ):
            with pytest.raises((fa.FlowExists, fa.InvalidArgument)):
                await move(e, p, specs, values={"step": b"s"})
        assert written(e) == before
        assert await e.get("fresh") is None
        held = await e.get("parent")
        assert (held.state, held.lease_token) == ("running", p.lease_token)
        assert await e.get_values("parent", ["step"]) == {}


@pytest.mark.parametrize(
    "children",
    [
        None,
        "kids",
        [("c", "item")],
        [fa.ChildSpec("c", "item"), fa.ChildSpec("c", "item")],
        [fa.ChildSpec("c", "item", wake_parent="yes")],  # type: ignore[arg-type]
        [fa.ChildSpec("c", "item", retention_ms=-1)],
        [fa.ChildSpec("c", "item", partition_key="elsewhere")],
        [fa.ChildSpec("", "item")],
        [fa.ChildSpec("c", "item", state="running")],
    ],
)
async def test_bad_children_are_refused_and_change_nothing(tmp_path: Path, children: Any) -> None:
    clock = FakeClock()
    async with open_checked(tmp_path, clock, shards=SHARDS) as e:
        p = await claimed(e)
        before = written(e)
        with pytest.raises(fa.InvalidArgument):
            await move(e, p, children)
        assert written(e) == before
        assert (await e.get("parent")).lease_token == p.lease_token


async def test_spawn_children_refuses_what_only_a_transition_does(tmp_path: Path) -> None:
    clock = FakeClock()
    async with open_checked(tmp_path, clock, shards=SHARDS) as e:
        p = await claimed(e)
        for spec in (
            fa.ChildSpec("c", "item", wake_parent=True),
            fa.ChildSpec("c", "item", retention_ms=10),
        ):
            with pytest.raises(fa.InvalidArgument, match="transition"):
                await e.spawn_children(
                    p.id, p.lease_token, p.fencing_token, group_id="g", children=[spec],
                    success_state="done", failure_state="failed",
                )  # fmt: skip


async def move_claiming(e: Any, p: fa.Flow, children: Any) -> tuple[fa.Flow, list[fa.Flow]]:
    got: tuple[fa.Flow, list[fa.Flow]] = await e.transition_claiming(
        p.id, "running", "waiting", p.fencing_token, lease_token=p.lease_token,
        run_at_ms=e.now_ms() + LATER, children=children, partition_key=p.partition_key,
    )  # fmt: skip
    return got


async def test_children_with_a_lease_are_created_claimed_by_the_parents_owner(
    tmp_path: Path,
) -> None:
    clock = FakeClock()
    async with open_checked(tmp_path, clock, shards=SHARDS) as e:
        p = await claimed(e)
        specs = [
            fa.ChildSpec("mine", "item", payload=b"a", values={"v": b"1"}, lease_ms=1_000),
            fa.ChildSpec("theirs", "item", wake_parent=True),
            fa.ChildSpec("also", "item", state="later", wake_parent=True, lease_ms=50),
        ]
        parent, kids = await move_claiming(e, p, specs)
        assert (parent.state, parent.lease_token) == ("waiting", None)
        assert [k.id for k in kids] == ["mine", "also"]
        mine, also = kids
        assert (mine.state, mine.logical_state, mine.lease_owner) == ("running", "queued", "w")
        assert (mine.fencing_token, mine.version, mine.parent_id) == (1, 1, "parent")
        assert mine.lease_deadline_ms == clock.now + 1_000
        assert (mine.payload, dict(mine.values), dict(mine.value_sizes)) == (None, {}, {"v": 1})
        assert (also.logical_state, also.lease_deadline_ms) == ("later", clock.now + 50)
        assert await e.get("mine") == mine
        (event,) = await e.history("mine")
        assert (event.name, dict(event.meta), event.state) == (
            "created",
            {"worker": "w"},
            "running",
        )
        # Only the unclaimed child is due to others; the claimed one is ours to finish.
        assert [f.id for f in await e.claim_due("item", "other", limit=10)] == ["theirs"]
        done = await e.complete("mine", mine.lease_token, mine.fencing_token, result=b"ok")
        assert done.state == "completed"
        # A lease not kept expires as a claim's does: the child is reclaimed.
        clock.advance(51)
        (back,) = await e.claim_due("item", "other", states=["later"])
        assert (back.id, back.fencing_token, back.reclaims) == ("also", 2, 1)
        # The same command again is a no-op that claims nothing more.
        before = written(e)
        again, none = await move_claiming(e, p, specs)
        assert (again.version, none, written(e)) == (parent.version, [], before)


async def test_a_claimed_child_survives_a_reopen_leased(tmp_path: Path) -> None:
    clock = FakeClock()
    async with open_checked(tmp_path, clock, shards=SHARDS) as e:
        p = await claimed(e)
        _parent, (kid,) = await move_claiming(
            e, p, [fa.ChildSpec("kid", "item", wake_parent=True, lease_ms=500)]
        )
    async with open_checked(tmp_path, clock, shards=SHARDS) as e:
        assert await e.get("kid") == kid
        assert await e.claim_due("item", "other") == []
        await e.complete("kid", kid.lease_token, kid.fencing_token)
        assert (await e.get("parent")).next_run_at_ms == clock.now


async def test_claimed_children_are_refused_where_no_lease_can_be_had(tmp_path: Path) -> None:
    clock = FakeClock()
    async with open_checked(tmp_path, clock, shards=SHARDS) as e:
        p = await claimed(e)
        await e.create("idle", "order")
        before = written(e)
        leased = [fa.ChildSpec("c", "item", lease_ms=100)]
        with pytest.raises(fa.InvalidArgument, match="transition_claiming"):
            await move(e, p, leased)  # (`transition` would not return the claimed child)
        with pytest.raises(fa.InvalidArgument, match="not claimed"):
            await e.transition_claiming("idle", "queued", "waiting", 0, children=leased)
        for bad in (0, -1, "100", True, 10**15):
            with pytest.raises(fa.InvalidArgument, match="lease_ms"):
                await move_claiming(e, p, [fa.ChildSpec("c", "item", lease_ms=bad)])
        with pytest.raises(fa.InvalidArgument, match="lease_ms"):
            await e.spawn_children(
                p.id, p.lease_token, p.fencing_token, group_id="g", children=leased,
                success_state="done", failure_state="failed",
            )  # fmt: skip
        assert written(e) == before
        assert await e.get("c") is None
        assert (await e.get("parent")).lease_token == p.lease_token
