"""Engine: claim_due (filters, order, due times, hydration, tokens) and extend_lease."""

from __future__ import annotations

from pathlib import Path

import pytest
from engine_helpers import START_MS, FakeClock, names, open_checked, written
from hypothesis import given, settings
from hypothesis import strategies as st

import flowactors as fa


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


async def test_claim_leases_and_keeps_logical_state(tmp_path: Path, clock: FakeClock) -> None:
    async with open_checked(tmp_path, clock, shards=1) as e:
        await e.create("a", "t", state="charged")
        clock.advance(5)
        [f] = await e.claim_due("t", "w1", lease_ms=2_000)
        now = START_MS + 5
        assert (f.id, f.state, f.run_state, f.logical_state) == (
            "a",
            "running",
            "charged",
            "charged",
        )
        assert (f.version, f.attempts, f.reclaims, f.fencing_token) == (2, 0, 0, 1)
        assert f.lease_owner == "w1" and f.lease_token == f"w1:{now}:1"
        assert f.lease_deadline_ms == f.next_run_at_ms == now + 2_000
        assert f.updated_at_ms == now and f.created_at_ms == START_MS
        assert await e.get("a") == f
        assert await e.info("t") == {"running": 1}
        [created, claimed] = await e.history("a")
        assert (created.name, claimed.name) == ("created", "claimed")
        assert (claimed.version, claimed.state, claimed.run_state) == (2, "running", "charged")
        assert claimed.fencing_token == 1 and claimed.lease_owner == "w1"
        assert claimed.meta == {"worker": "w1"}
        # A running flow whose lease is live is not claimed again.
        assert await e.claim_due("t", "w2", limit=10) == []


async def test_fencing_grows_by_one_per_claim(tmp_path: Path, clock: FakeClock) -> None:
    async with open_checked(tmp_path, clock, shards=1) as e:
        await e.create("a", "t")
        for fencing in range(1, 5):
            clock.advance(1)
            [f] = await e.claim_due("t", "w")
            assert f.fencing_token == fencing
            assert f.lease_token == f"w:{clock.now}:{fencing}"
            back = await e.transition("a", "running", "queued", fencing, lease_token=f.lease_token)
            assert back.fencing_token == fencing and back.lease_token is None
        assert names(await e.history("a")) == ["created"] + ["claimed", "transitioned"] * 4


async def test_claim_states_filter_and_limit(tmp_path: Path, clock: FakeClock) -> None:
    async with open_checked(tmp_path, clock, shards=1) as e:
        for i in range(3):
            await e.create(f"a{i}", "t", state="a")
            await e.create(f"b{i}", "t", state="b")
        await e.create("other", "u", state="b")
        got = await e.claim_due("t", "w", states=["b"], limit=2)
        assert len(got) == 2 and {f.run_state for f in got} == {"b"}
        got = await e.claim_due("t", "w", states=["b", "nothing"], limit=10)
        assert len(got) == 1 and got[0].run_state == "b"
        assert await e.claim_due("t", "w", states=["b"]) == []
        assert await e.claim_due("t", "w", states=["nothing"]) == []
        got = await e.claim_due("t", "w", limit=10)  # every non-running state
        assert sorted(f.id for f in got) == ["a0", "a1", "a2"]
        assert await e.info("t") == {"running": 6}
        assert await e.info("u") == {"b": 1}


async def test_claim_order_priority_then_due_time(tmp_path: Path, clock: FakeClock) -> None:
    async with open_checked(tmp_path, clock, shards=1) as e:
        plan = [  # (id, state, priority, due offset)
            ("late0", "a", 0, -10),
            ("early0", "b", 0, -20),
            ("mid1", "a", 1, -5),
            ("first1", "b", 1, -30),
            ("p2", "b", 2, 0),
            ("future2", "a", 2, 1),
        ]
        for fid, state, prio, due in plan:
            await e.create(fid, "t", state=state, priority=prio, run_at_ms=START_MS + due)
        got = await e.claim_due("t", "w", limit=10)
        assert [f.id for f in got] == ["p2", "first1", "mid1", "early0", "late0"]
        clock.advance(1)
        assert [f.id for f in await e.claim_due("t", "w", limit=10)] == ["future2"]


async def test_claim_one_at_a_time_follows_priority(tmp_path: Path, clock: FakeClock) -> None:
    async with open_checked(tmp_path, clock, shards=1) as e:
        for fid, prio, due in [("z0", 0, -9), ("y0", 0, -10), ("x1", 1, 0), ("w2", 2, 0)]:
            await e.create(fid, "t", priority=prio, run_at_ms=START_MS + due)
        order = [(await e.claim_due("t", "w"))[0].id for _ in range(4)]
        assert order == ["w2", "x1", "y0", "z0"]


async def test_claim_priority_filter(tmp_path: Path, clock: FakeClock) -> None:
    async with open_checked(tmp_path, clock, shards=1) as e:
        for p in (0, 1, 2):
            await e.create(f"p{p}", "t", priority=p)
        assert [f.id for f in await e.claim_due("t", "w", priority=1, limit=5)] == ["p1"]
        assert await e.claim_due("t", "w", priority=1) == []
        assert [f.id for f in await e.claim_due("t", "w", limit=5)] == ["p2", "p0"]


async def test_not_yet_due_flows_are_not_claimed(tmp_path: Path, clock: FakeClock) -> None:
    async with open_checked(tmp_path, clock, shards=1) as e:
        await e.create("later", "t", run_at_ms=START_MS + 100)
        await e.create("delayed", "t", delay_ms=200)
        before = written(e)
        assert await e.claim_due("t", "w", limit=10) == []
        clock.advance(99)
        assert await e.claim_due("t", "w", limit=10) == []
        assert written(e) == before  # an empty claim writes nothing
        clock.advance(1)  # due exactly now: claimable
        assert [f.id for f in await e.claim_due("t", "w", limit=10)] == ["later"]
        clock.advance(99)
        assert await e.claim_due("t", "w", limit=10) == []
        clock.advance(1)
        assert [f.id for f in await e.claim_due("t", "w", limit=10)] == ["delayed"]


async def test_claim_hydration(tmp_path: Path, clock: FakeClock) -> None:
    async with open_checked(tmp_path, clock, shards=1) as e:
        for i in range(5):
            await e.create(f"f{i}", "t", payload=b"12345", values={"v": b"val", "w": b"ww"})
        await e.create("empty", "t", priority=2)
        [f] = await e.claim_due("t", "w", payload=True)
        assert f.id == "empty" and f.payload is None and not f.payload_omitted
        [f] = await e.claim_due("t", "w")
        assert (f.payload, f.payload_size, f.payload_omitted) == (None, 5, False)
        assert dict(f.values) == {} and dict(f.value_sizes) == {"v": 3, "w": 2}
        [f] = await e.claim_due("t", "w", payload=True)
        assert (f.payload, f.payload_omitted) == (b"12345", False)
        [f] = await e.claim_due("t", "w", payload=4)
        assert (f.payload, f.payload_omitted, f.payload_size) == (None, True, 5)
        [f] = await e.claim_due("t", "w", payload=5, values=["w", "absent"])
        assert (f.payload, f.payload_omitted) == (b"12345", False)
        assert dict(f.values) == {"w": b"ww"}
        [f] = await e.claim_due("t", "w", payload=0, values=["v", "w"])
        assert (f.payload, f.payload_omitted) == (None, True)
        assert dict(f.values) == {"v": b"val", "w": b"ww"}


async def test_claim_across_four_shards(tmp_path: Path, clock: FakeClock) -> None:
    async with open_checked(tmp_path, clock) as e:
        for i in range(6):
            await e.create(f"n{i}", "t")
        for i in range(8):
            await e.create(f"p{i}", "t", partition_key="one-tenant")
        assert len({e.shard_for(f"n{i}") for i in range(6)}) > 1
        got = await e.claim_due("t", "w", limit=100)
        assert sorted(f.id for f in got) == [f"n{i}" for i in range(6)] + [
            f"p{i}" for i in range(8)
        ]
        assert len({f.fencing_token for f in got}) == 1
        assert await e.info("t") == {"running": 14}


async def test_claim_fills_limit_from_one_busy_shard(tmp_path: Path, clock: FakeClock) -> None:
    async with open_checked(tmp_path, clock) as e:
        for i in range(8):
            await e.create(f"p{i}", "t", partition_key="one-tenant")
        got = await e.claim_due("t", "w", limit=5)
        assert len(got) == 5
        assert await e.info("t") == {"queued": 3, "running": 5}
        assert len(await e.claim_due("t", "w", limit=5)) == 3


@pytest.mark.parametrize("limit", [1, 10])
async def test_claim_never_exceeds_limit_across_shards(
    tmp_path: Path, clock: FakeClock, limit: int
) -> None:
    async with open_checked(tmp_path, clock) as e:
        for i in range(40):
            await e.create(f"f{i}", "t")
        got = await e.claim_due("t", "w", limit=limit)
        assert len(got) == limit
        assert await e.info("t") == {"queued": 40 - limit, "running": limit}


async def test_extend_lease(tmp_path: Path, clock: FakeClock) -> None:
    async with open_checked(tmp_path, clock, shards=1) as e:
        await e.create("a", "t")
        [f] = await e.claim_due("t", "w", lease_ms=1_000)
        clock.advance(600)
        g = await e.extend_lease("a", f.lease_token, f.fencing_token, lease_ms=5_000)
        assert (g.lease_token, g.fencing_token, g.version) == (f.lease_token, 1, f.version + 1)
        assert g.lease_deadline_ms == g.next_run_at_ms == START_MS + 600 + 5_000
        assert g.state == "running" and g.run_state == "queued"
        assert names(await e.history("a"))[-1] == "lease_extended"
        clock.advance(4_000)  # past the first deadline, inside the extended one
        assert await e.claim_due("t", "w2") == []
        # Repeating is allowed (it pushes the deadline again).
        h = await e.extend_lease("a", f.lease_token, f.fencing_token, lease_ms=5_000)
        assert h.lease_deadline_ms == clock.now + 5_000


async def test_extend_lease_guards(tmp_path: Path, clock: FakeClock) -> None:
    async with open_checked(tmp_path, clock, shards=1) as e:
        await e.create("q", "t", run_at_ms=START_MS + 10**6)
        await e.create("a", "t")
        [f] = await e.claim_due("t", "w")
        before, snapshot = written(e), await e.get("a")
        with pytest.raises(fa.StaleLease):
            await e.extend_lease("a", "w:0:1", f.fencing_token)
        with pytest.raises(fa.StaleLease):
            await e.extend_lease("a", f.lease_token, f.fencing_token + 1)
        with pytest.raises(fa.StaleLease):
            await e.extend_lease("a", f.lease_token, f.fencing_token - 1)
        with pytest.raises(fa.WrongState):
            await e.extend_lease("q", "any", 0)
        with pytest.raises(fa.FlowNotFound):
            await e.extend_lease("missing", "any", 0)
        assert written(e) == before and await e.get("a") == snapshot
        await e.complete("a", f.lease_token, f.fencing_token)
        before = written(e)
        with pytest.raises(fa.FlowTerminal):
            await e.extend_lease("a", f.lease_token, f.fencing_token)
        assert written(e) == before


async def test_claims_take_the_highest_priority_across_shards(tmp_path: Path) -> None:
    """Without a priority filter, a claim asks the shards with the highest due band first,
    so priority holds engine-wide, not only within each shard."""
    clock = FakeClock()
    async with open_checked(tmp_path, clock, shards=4) as e:
        ids = [f"low-{i}" for i in range(12)]
        for fid in ids:
            await e.create(fid, "t")
        await e.create("high", "t", priority=2)
        await e.create("mid", "t", priority=1)
        got = [(await e.claim_due("t", "w"))[0].id for _ in range(3)]
        assert got[:2] == ["high", "mid"] and got[2].startswith("low")


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(("queued", "retry", "running")),
        st.lists(st.tuples(st.integers(0, 2), st.integers(0, 20)), min_size=1, max_size=6),
        min_size=1,
    ),
    st.integers(0, 20),
    st.booleans(),
    st.sampled_from((None, ("queued",), ("retry", "running"))),
)
def test_claim_band_is_the_highest_due_band_a_claim_could_take(
    lists: dict[str, list[tuple[int, int]]],
    now: int,
    reclaim: bool,
    states: tuple[str, ...] | None,
) -> None:
    """`ShardState.claim_band` (read by claim routing) against a model: the highest
    priority of an entry due at `now` in a state the claim may take, -1 if none."""
    from types import SimpleNamespace

    from sortedcontainers import SortedList

    from flowactors.engine._state import ShardState

    by_state = {
        s: SortedList((-p, due, f"{s}-{i}") for i, (p, due) in enumerate(entries))
        for s, entries in lists.items()
    }
    fake = SimpleNamespace(due_types={"t": by_state})
    model = max(
        (
            p
            for s, entries in lists.items()
            if (reclaim if s == "running" else states is None or s in states)
            for p, due in entries
            if due <= now
        ),
        default=-1,
    )
    assert ShardState.claim_band(fake, "t", states, reclaim, False, None, now) == model  # type: ignore[arg-type]
    for p in (0, 1, 2):
        want = p if any(
            q == p and due <= now
            for s, entries in lists.items()
            if (reclaim if s == "running" else states is None or s in states)
            for q, due in entries
        ) else -1  # fmt: skip
        assert ShardState.claim_band(fake, "t", states, reclaim, False, p, now) == want  # type: ignore[arg-type]


async def test_claim_leaves_out_what_the_caller_holds(tmp_path: Path, clock: FakeClock) -> None:
    """`held`: the flows whose payload and values the caller holds come back with neither
    read (their sizes still there); the others as asked. Anything but a container of
    ids is refused before anything is claimed."""
    async with open_checked(tmp_path, clock, shards=1) as e:
        for fid in ("kept", "new"):
            await e.create(fid, "t", payload=b"12345", values={"v": b"val"})
        for bad in ("kept", b"kept", 5, True):
            with pytest.raises(fa.InvalidArgument, match="held"):
                await e.claim_due("t", "w", payload=True, values=["v"], held=bad)
        assert await e.info("t") == {"queued": 2}
        got = await e.claim_due("t", "w", limit=2, payload=True, values=["v"], held={"kept"})
        flows = {f.id: f for f in got}
        assert (flows["kept"].payload, dict(flows["kept"].values)) == (None, {})
        assert (flows["kept"].payload_size, dict(flows["kept"].value_sizes)) == (5, {"v": 3})
        assert (flows["new"].payload, dict(flows["new"].values)) == (b"12345", {"v": b"val"})


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 2), st.integers(0, 20)), max_size=40),
    st.integers(0, 20),
    st.sampled_from((None, 0, 1, 2)),
)
def test_iter_due_scans_small_indexes_as_it_ranges_large_ones(
    entries: list[tuple[int, int]], now: int, priority: int | None
) -> None:
    """`ShardState.iter_due` against a model, on both sides of its scan threshold (a
    small index is scanned whole, a large one ranged per priority): the due entries,
    priority 2, 1, 0, then due time, then id."""
    from types import SimpleNamespace

    from flowactors.engine import _state
    from flowactors.engine._sorted import SortedIndex

    index = SortedIndex((-p, due, f"f{i:02d}") for i, (p, due) in enumerate(entries))
    fake = SimpleNamespace(due={("t", "queued"): index})
    model = sorted(
        (-p, due, f"f{i:02d}")
        for i, (p, due) in enumerate(entries)
        if due <= now and (priority is None or p == priority)
    )
    got = list(_state.ShardState.iter_due(fake, "t", "queued", now, priority))  # type: ignore[arg-type]
    assert got == model
    assert list(_state.ShardState.iter_due(fake, "t", "other", now, priority)) == []  # type: ignore[arg-type]
