"""Fanout groups: spawn, wait all / any / none, failure policies, cascades, cross-shard
children, idempotency and guards. Every call is followed by the engine's invariant check."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from engine_helpers import FakeClock, names, open_checked, written

import flowactors as fa

SHARDS = 4


def shard_of(key: str) -> int:
    return fa.slot_of(key) % SHARDS


def partition_on(shard: int, avoid: int | None = None, prefix: str = "p") -> str:
    """A partition key that routes to `shard`."""
    for i in range(10_000):
        key = f"{prefix}{i}"
        if shard_of(key) == shard:
            return key
    raise AssertionError("no key found")


async def claimed_parent(e: Any, pid: str = "parent", partition: str | None = None) -> fa.Flow:
    await e.create(pid, "order", partition_key=partition)
    [p] = await e.claim_due("order", "w")
    return p


def kids(n: int, partition: str | None = None, prefix: str = "c") -> list[fa.ChildSpec]:
    return [
        fa.ChildSpec(
            f"{prefix}{i}", "item", payload=f"{prefix}{i}".encode(), partition_key=partition
        )
        for i in range(n)
    ]


async def spawn(e: Any, p: fa.Flow, children: list[fa.ChildSpec], **options: Any) -> fa.Flow:
    options.setdefault("success_state", "children_done")
    options.setdefault("failure_state", "children_failed")
    flow: fa.Flow = await e.spawn_children(
        p.id,
        p.lease_token,
        p.fencing_token,
        group_id=options.pop("group_id", "g"),
        children=children,
        partition_key=p.partition_key,
        **options,
    )
    return flow


async def finish(e: Any, flow_ids: list[str], how: str = "complete") -> None:
    """Claim the given item flows and complete (or fail) each; others claimed on the
    way are put back first."""
    todo = set(flow_ids)
    while todo:
        claimed = await e.claim_due("item", "w", limit=100)
        assert claimed, f"not claimable: {todo}"
        for f in claimed:
            if f.id not in todo:
                await e.transition(
                    f.id,
                    "running",
                    "queued",
                    f.fencing_token,
                    lease_token=f.lease_token,
                    partition_key=f.partition_key,
                )
        for f in claimed:
            if f.id not in todo:
                continue
            todo.discard(f.id)
            if how == "complete":
                await e.complete(
                    f.id,
                    f.lease_token,
                    f.fencing_token,
                    result=b"r-" + f.id.encode(),
                    partition_key=f.partition_key,
                )
            else:
                await e.fail(
                    f.id,
                    f.lease_token,
                    f.fencing_token,
                    error=b"e-" + f.id.encode(),
                    partition_key=f.partition_key,
                )
    await e.settle()  # children without a partition may live on other shards


async def test_wait_all_parks_the_parent_and_resolves_when_every_child_completed(
    tmp_path: Path,
) -> None:
    clock = FakeClock()
    async with open_checked(tmp_path, clock, shards=SHARDS) as e:
        p = await claimed_parent(e)
        parent = await spawn(e, p, kids(3))
        assert (parent.state, parent.next_run_at_ms, parent.lease_token) == (
            "waiting_children",
            None,
            None,
        )
        assert await e.claim_due("order", "w") == []  # parked: not claimable
        children = await e.children("parent")
        assert [(c.id, c.state) for c in children] == [(f"c{i}", "pending") for i in range(3)]
        child = await e.get("c1", payload=True)
        assert (child.parent_id, child.root_id, child.payload) == ("parent", "parent", b"c1")
        await finish(e, ["c0", "c1"])
        assert (await e.get("parent")).state == "waiting_children"
        await finish(e, ["c2"])
        done = await e.get("parent")
        assert done.state == "children_done"
        assert done.next_run_at_ms == clock.now  # better than the reference: due at once
        [again] = await e.claim_due("order", "w")
        assert again.run_state == "children_done"
        statuses = {c.id: (c.state, c.result) for c in await e.children("parent")}
        assert statuses == {f"c{i}": ("completed", f"r-c{i}".encode()) for i in range(3)}
        history = names(await e.history("parent"))
        assert history == ["created", "claimed", "children_spawned"] + ["children_reported"] * 3 + [
            "claimed"
        ]
        reported = [h.meta for h in await e.history("parent") if h.name == "children_reported"]
        assert reported == [
            {"group": "g", "completed": 1},
            {"group": "g", "completed": 1},
            {"group": "g", "completed": 1, "resolved": "success", "to": "children_done"},
        ]


async def test_fail_parent_resolves_at_the_first_failure_and_cancels_the_siblings(
    tmp_path: Path,
) -> None:
    async with open_checked(tmp_path, FakeClock(), shards=SHARDS) as e:
        p = await claimed_parent(e)
        await spawn(e, p, kids(3))
        await finish(e, ["c0"], how="fail")
        parent = await e.get("parent")
        assert parent.state == "children_failed"
        states = {c: (await e.get(c)).state for c in ("c0", "c1", "c2")}
        assert states == {"c0": "failed", "c1": "cancelled", "c2": "cancelled"}
        statuses = {c.id: (c.state, c.error) for c in await e.children("parent")}
        assert statuses["c0"] == ("failed", b"e-c0")
        assert statuses["c1"][0] == "cancelled"
        meta = [h.meta for h in await e.history("c1") if h.name == "cancelled"]
        assert meta == [{"reason": "group_resolved", "parent": "parent"}]


async def test_ignore_waits_for_all_children_whatever_their_outcome(tmp_path: Path) -> None:
    async with open_checked(tmp_path, FakeClock(), shards=SHARDS) as e:
        p = await claimed_parent(e)
        await spawn(e, p, kids(2), on_child_failed="ignore")
        await finish(e, ["c0"], how="fail")
        assert (await e.get("parent")).state == "waiting_children"
        await finish(e, ["c1"])
        assert (await e.get("parent")).state == "children_done"


async def test_wait_any_first_completion_wins_and_losers_are_cancelled(tmp_path: Path) -> None:
    async with open_checked(tmp_path, FakeClock(), shards=SHARDS) as e:
        p = await claimed_parent(e)
        await spawn(e, p, kids(3), wait="any")
        claimed = {f.id: f for f in await e.claim_due("item", "w", limit=3)}
        winner = claimed["c1"]
        await e.complete(winner.id, winner.lease_token, winner.fencing_token, result=b"won")
        await e.settle()
        assert (await e.get("parent")).state == "children_done"
        loser = claimed["c2"]
        with pytest.raises(fa.FlowTerminal):  # the race's loser learns it lost
            await e.complete(loser.id, loser.lease_token, loser.fencing_token)
        assert (await e.get("c2")).state == "cancelled"


async def test_wait_any_with_abandon_leaves_the_losers_running(tmp_path: Path) -> None:
    async with open_checked(tmp_path, FakeClock(), shards=SHARDS) as e:
        p = await claimed_parent(e)
        await spawn(e, p, kids(2), wait="any", on_parent_closed="abandon_children")
        await finish(e, ["c0"])
        assert (await e.get("parent")).state == "children_done"
        assert (await e.get("c1")).state == "queued"
        await finish(e, ["c1"])  # counted, but the group stays resolved once
        statuses = {c.id: c.state for c in await e.children("parent")}
        assert statuses == {"c0": "completed", "c1": "completed"}
        assert (await e.get("parent")).state == "children_done"


async def test_wait_any_with_ignore_fails_only_when_every_child_failed(tmp_path: Path) -> None:
    async with open_checked(tmp_path, FakeClock(), shards=SHARDS) as e:
        p = await claimed_parent(e)
        await spawn(e, p, kids(2), wait="any", on_child_failed="ignore")
        await finish(e, ["c0"], how="fail")
        assert (await e.get("parent")).state == "waiting_children"
        await finish(e, ["c1"], how="fail")
        assert (await e.get("parent")).state == "children_failed"


async def test_wait_none_moves_the_parent_on_at_once(tmp_path: Path) -> None:
    async with open_checked(tmp_path, FakeClock(), shards=SHARDS) as e:
        p = await claimed_parent(e)
        parent = await spawn(e, p, kids(2), wait="none")
        assert parent.state == "children_done"
        [again] = await e.claim_due("order", "w")
        assert again.run_state == "children_done"
        await finish(e, ["c0"])
        assert [c.state for c in await e.children("parent")] == ["completed", "pending"]


async def test_terminal_success_state_completes_the_parent_and_tells_the_grandparent(
    tmp_path: Path,
) -> None:
    async with open_checked(tmp_path, FakeClock(), shards=SHARDS) as e:
        g = await claimed_parent(e, "grand")
        await spawn(e, g, [fa.ChildSpec("mid", "order")], group_id="top")
        [mid] = [f for f in await e.claim_due("order", "w") if f.id == "mid"]
        await spawn(e, mid, kids(2), success_state="completed", failure_state="failed")
        await finish(e, ["c0", "c1"])
        assert (await e.get("mid")).state == "completed"
        grand = await e.get("grand")
        assert grand.state == "children_done"
        assert [c.state for c in await e.children("grand")] == ["completed"]


async def test_cancel_cascades_through_three_levels(tmp_path: Path) -> None:
    async with open_checked(tmp_path, FakeClock(), shards=SHARDS) as e:
        top = await claimed_parent(e, "top")
        await spawn(e, top, [fa.ChildSpec("mid", "order")])
        [mid] = [f for f in await e.claim_due("order", "w") if f.id == "mid"]
        await spawn(e, mid, kids(2))
        [leaf_parent] = [f for f in await e.claim_due("item", "w", limit=5) if f.id == "c0"]
        await e.spawn_children(
            "c0",
            leaf_parent.lease_token,
            leaf_parent.fencing_token,
            group_id="leaves",
            children=kids(2, prefix="leaf"),
            success_state="done",
            failure_state="failed",
        )
        await e.cancel("top", fencing_token=top.fencing_token)
        await e.settle()
        for fid in ("top", "mid", "c0", "c1", "leaf0", "leaf1"):
            assert (await e.get(fid)).state == "cancelled", fid
        assert (await e.by_root("top", limit=10)).items  # the tree is still queryable


async def test_abandon_children_survive_their_parents_end(tmp_path: Path) -> None:
    async with open_checked(tmp_path, FakeClock(), shards=SHARDS) as e:
        p = await claimed_parent(e)
        await spawn(e, p, kids(2), on_parent_closed="abandon_children")
        parent = await e.get("parent")
        await e.cancel("parent", fencing_token=parent.fencing_token)
        await e.settle()
        assert {(await e.get(c)).state for c in ("c0", "c1")} == {"queued"}


async def test_children_on_other_shards_are_created_before_spawn_returns(tmp_path: Path) -> None:
    async with open_checked(tmp_path, FakeClock(), shards=SHARDS) as e:
        home = partition_on(0)
        p = await claimed_parent(e, partition=home)
        children = [
            fa.ChildSpec(f"x{s}", "item", partition_key=partition_on(s, prefix="q"))
            for s in range(SHARDS)
        ]
        await spawn(e, p, children)
        for child in children:
            got = await e.get(child.id, partition_key=child.partition_key)
            assert got is not None and got.parent_id == "parent"
        claimed = await e.claim_due("item", "w", limit=10)
        assert len(claimed) == SHARDS
        for f in claimed:
            await e.complete(
                f.id,
                f.lease_token,
                f.fencing_token,
                result=f.id.encode(),
                partition_key=f.partition_key,
            )
        await e.settle()
        parent = await e.get("parent", partition_key=home)
        assert parent.state == "children_done"
        statuses = await e.children("parent", partition_key=home)
        assert sorted((c.id, c.state, c.result) for c in statuses) == [
            (f"x{s}", "completed", f"x{s}".encode()) for s in range(SHARDS)
        ]


async def test_cross_shard_failure_cancels_siblings_on_every_shard(tmp_path: Path) -> None:
    async with open_checked(tmp_path, FakeClock(), shards=SHARDS) as e:
        home = partition_on(1)
        p = await claimed_parent(e, partition=home)
        children = [
            fa.ChildSpec(f"x{s}", "item", partition_key=partition_on(s, prefix="q"))
            for s in range(SHARDS)
        ]
        await spawn(e, p, children)
        [victim] = [f for f in await e.claim_due("item", "w", limit=10) if f.id == "x3"]
        await e.fail(
            victim.id, victim.lease_token, victim.fencing_token, partition_key=victim.partition_key
        )
        await e.settle()
        assert (await e.get("parent", partition_key=home)).state == "children_failed"
        for child in children:
            state = (await e.get(child.id, partition_key=child.partition_key)).state
            assert state == ("failed" if child.id == "x3" else "cancelled")
        statuses = {c.id: c.state for c in await e.children("parent", partition_key=home)}
        assert statuses == {f"x{s}": "failed" if s == 3 else "cancelled" for s in range(SHARDS)}


async def test_a_remote_child_id_already_taken_counts_as_a_failed_child(tmp_path: Path) -> None:
    async with open_checked(tmp_path, FakeClock(), shards=SHARDS) as e:
        home = partition_on(0)
        elsewhere = partition_on(2, prefix="q")
        await e.create("taken", "other", partition_key=elsewhere)
        p = await claimed_parent(e, partition=home)
        await spawn(
            e,
            p,
            [fa.ChildSpec("taken", "item", partition_key=elsewhere)],
            on_child_failed="fail_parent",
        )
        await e.settle()
        assert (await e.get("parent", partition_key=home)).state == "children_failed"
        [status] = await e.children("parent", partition_key=home)
        assert status.state == "failed" and b"already exists" in (status.error or b"")
        assert (await e.get("taken", partition_key=elsewhere)).type == "other"


async def test_spawn_is_idempotent_by_group_and_request(tmp_path: Path) -> None:
    async with open_checked(tmp_path, FakeClock(), shards=SHARDS) as e:
        p = await claimed_parent(e)
        first = await spawn(e, p, kids(2))
        before = written(e)
        again = await spawn(e, p, kids(2))
        assert again.version == first.version and written(e) == before
        with pytest.raises(fa.IdempotencyConflict):
            await spawn(e, p, kids(3))
        with pytest.raises(fa.IdempotencyConflict):
            await spawn(e, p, kids(2), wait="any")
        assert written(e) == before


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"group_id": "__reserved"}, fa.InvalidArgument),
        ({"children": []}, fa.InvalidArgument),
        ({"children": [fa.ChildSpec("c", "item"), fa.ChildSpec("c", "item")]}, fa.InvalidArgument),
        ({"children": [fa.ChildSpec("parent", "item")]}, fa.InvalidArgument),
        ({"children": [fa.ChildSpec("c", "item", state="running")]}, fa.InvalidArgument),
        ({"wait": "some"}, fa.InvalidArgument),
        ({"wait_state": "running"}, fa.InvalidArgument),
        ({"on_child_failed": "explode"}, fa.InvalidArgument),
        ({"on_parent_closed": "orphan"}, fa.InvalidArgument),
        ({"fencing_token": 99}, fa.StaleLease),
        ({"lease_token": "someone-else"}, fa.StaleLease),
    ],
)
async def test_spawn_guards_change_nothing(
    tmp_path: Path, change: dict[str, Any], error: type[Exception]
) -> None:
    async with open_checked(tmp_path, FakeClock(), shards=SHARDS) as e:
        p = await claimed_parent(e)
        options: dict[str, Any] = {
            "group_id": "g",
            "children": kids(1),
            "success_state": "done",
            "failure_state": "failed",
            "lease_token": p.lease_token,
            "fencing_token": p.fencing_token,
        }
        options.update(change)
        before = written(e)
        with pytest.raises(error):
            await e.spawn_children(
                "parent", options.pop("lease_token"), options.pop("fencing_token"), **options
            )
        assert written(e) == before
        assert (await e.get("parent")).state == "running"


async def test_spawn_refuses_an_existing_local_child_and_a_terminal_parent(
    tmp_path: Path,
) -> None:
    async with open_checked(tmp_path, FakeClock(), shards=1) as e:
        await e.create("c0", "item")
        p = await claimed_parent(e)
        before = written(e)
        with pytest.raises(fa.FlowExists):
            await spawn(e, p, kids(2))
        assert written(e) == before and await e.get("c1") is None
        await e.complete("parent", p.lease_token, p.fencing_token)
        with pytest.raises(fa.FlowTerminal):
            await spawn(e, p, kids(1, prefix="z"))


async def test_groups_and_pending_outcomes_survive_restart(tmp_path: Path) -> None:
    clock = FakeClock()
    home = partition_on(0)
    async with open_checked(tmp_path, clock, shards=SHARDS) as e:
        p = await claimed_parent(e, partition=home)
        children = [
            fa.ChildSpec(f"x{s}", "item", partition_key=partition_on(s, prefix="q"))
            for s in range(SHARDS)
        ]
        await spawn(e, p, children)
        for f in await e.claim_due("item", "w", limit=2):
            await e.complete(f.id, f.lease_token, f.fencing_token, partition_key=f.partition_key)
        await e.settle()
        before = await e.children("parent", partition_key=home)
    async with open_checked(tmp_path, clock, shards=SHARDS) as e:
        assert await e.children("parent", partition_key=home) == before
        assert (await e.get("parent", partition_key=home)).state == "waiting_children"
        for f in await e.claim_due("item", "w", limit=10):
            await e.complete(f.id, f.lease_token, f.fencing_token, partition_key=f.partition_key)
        await e.settle()
        assert (await e.get("parent", partition_key=home)).state == "children_done"
        history = await e.history("parent", partition_key=home)
        assert sum(1 for h in history if "resolved" in h.meta) == 1


async def test_same_partition_fanout_resolves_in_the_childs_own_commit(tmp_path: Path) -> None:
    """Children in the parent's partition share its shard: a child's outcome and the
    parent's resolution are one frame, visible as soon as the child's call returns."""
    async with open_checked(tmp_path, FakeClock(), shards=SHARDS) as e:
        p = await claimed_parent(e, partition="tenant-7")
        await spawn(e, p, kids(2))  # no partition given: the parent's
        claimed = await e.claim_due("item", "w", limit=5)
        assert {f.partition_key for f in claimed} == {"tenant-7"}
        for f in claimed:
            await e.complete(f.id, f.lease_token, f.fencing_token, partition_key="tenant-7")
        assert (await e.get("parent", partition_key="tenant-7")).state == "children_done"
        assert all(not s.outbox for s in e.raw._shards)  # nothing went through the outbox


async def complete_all(e: Any, flow_type: str = "item") -> int:
    """Claim every due flow of `flow_type` and complete them with one complete_many."""
    claimed = await e.claim_due(flow_type, "w", limit=1000)
    acks = [fa.Ack(f.id, f.lease_token, f.fencing_token, b"ok", f.partition_key) for f in claimed]
    results = await e.complete_many(acks)
    assert all(r.ok for r in results), results
    await e.settle()
    return len(claimed)


@pytest.mark.parametrize("partition", ["tenant", None], ids=["same_shard", "cross_shard"])
async def test_a_batch_of_outcomes_costs_the_parent_one_event_per_frame(
    tmp_path: Path, partition: str | None
) -> None:
    clock = FakeClock()
    async with open_checked(tmp_path, clock, shards=SHARDS) as e:
        p = await claimed_parent(e, partition=partition)
        parked = await spawn(e, p, kids(40, partition=partition))
        assert await complete_all(e) == 40
        parent = await e.get("parent", partition_key=partition)
        history = await e.history("parent", partition_key=partition)
        before = await e.children("parent", partition_key=partition)
    reported = [h for h in history if h.name == "children_reported"]
    assert sum(h.meta["completed"] for h in reported) == 40
    assert [h.meta.get("resolved") for h in reported][-1] == "success"
    assert parent.state == "children_done"
    # Every version of the parent is one stored event: the outcomes merged in place.
    assert [h.version for h in history] == list(range(1, parent.version + 1))
    if partition is not None:  # one frame on one shard: a single event
        assert [h.meta for h in reported] == [
            {"group": "g", "completed": 40, "resolved": "success", "to": "children_done"}
        ]
        assert parent.version == parked.version + 1
    else:  # one frame per delivering shard at most
        assert len(reported) <= SHARDS
    async with open_checked(tmp_path, clock, shards=SHARDS) as e:  # recovery agrees
        assert await e.get("parent", partition_key=partition) == parent
        assert await e.history("parent", partition_key=partition) == history
        assert await e.children("parent", partition_key=partition) == before


async def test_outcomes_of_two_groups_in_one_frame_stay_two_events(tmp_path: Path) -> None:
    async with open_checked(tmp_path, FakeClock(), shards=SHARDS) as e:
        p = await claimed_parent(e, partition="tenant")
        p = await spawn(e, p, kids(3, "tenant", "a"), group_id="ga", wait="none")
        # wait="none" leaves the parent leased and running: it can spawn a second group
        await spawn(e, p, kids(2, "tenant", "b"), group_id="gb")
        assert await complete_all(e) == 5
        history = await e.history("parent", partition_key="tenant")
    reported = [h.meta for h in history if h.name == "children_reported"]
    assert sorted((m["group"], m["completed"]) for m in reported) == [("ga", 3), ("gb", 2)]
