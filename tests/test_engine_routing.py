"""A flow is found by its id alone, whatever partition it was created in; children without
a partition of their own live with their parent, so a fanout resolves in the child's own
commit (issue 16). Every call is followed by the engine's invariant check."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import trio
from engine_helpers import START_MS, FakeClock, open_checked
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import flowactors as fa

SHARDS = 4


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


async def claimed(e: Any, fid: str, flow_type: str = "order") -> fa.Flow:
    """Claim exactly `fid` (others of the type are left queued)."""
    flow = await e.get(fid)
    assert flow is not None
    got = await e.claim_due(flow_type, "w", limit=1000, partition_key=flow.partition_key)
    mine = [f for f in got if f.id == fid]
    for f in got:
        if f.id != fid:
            await e.transition(
                f.id, "running", "queued", f.fencing_token, lease_token=f.lease_token
            )
    assert mine, fid
    return mine[0]


async def spawn(e: Any, parent: fa.Flow, ids: list[str], **options: Any) -> fa.Flow:
    options.setdefault("success_state", "done")
    options.setdefault("failure_state", "broken")
    flow: fa.Flow = await e.spawn_children(
        parent.id,
        parent.lease_token,
        parent.fencing_token,
        group_id=options.pop("group_id", "g"),
        children=[fa.ChildSpec(i, options.pop("child_type", "item")) for i in ids],
        **options,
    )
    return flow


def spread_ids(prefix: str, n: int) -> list[str]:
    """Ids whose home shards cover every shard (so a child is rarely at home)."""
    out: list[str] = []
    seen: set[int] = set()
    i = 0
    while len(out) < n or len(seen) < SHARDS:
        fid = f"{prefix}{i}"
        seen.add(fa.slot_of(fid) % SHARDS)
        out.append(fid)
        i += 1
    return out[: max(n, len(out))]


async def finish_child(e: Any, fid: str, how: str = "complete") -> None:
    job = await claimed(e, fid, "item")
    if how == "complete":
        await e.complete(fid, job.lease_token, job.fencing_token)
    else:
        await e.fail(fid, job.lease_token, job.fencing_token, error=b"no")


async def test_children_without_partition_live_with_their_parent(
    tmp_path: Path, clock: FakeClock
) -> None:
    async with open_checked(tmp_path, clock, shards=SHARDS) as e:
        await e.create("parent", "order")
        parent = await claimed(e, "parent")
        ids = spread_ids("c", 8)
        await spawn(e, parent, ids)
        home = e.locate("parent")
        assert {e.locate(i) for i in ids} == {home}
        assert any(e.shard_for(i) != home for i in ids)
        for fid in ids:
            got = await e.get(fid)
            assert got is not None and got.parent_id == "parent"
        for fid in ids:
            await finish_child(e, fid)
        # resolved in the last child's own commit: no settle()
        after = await e.get("parent")
        assert after is not None and after.state == "done"


async def test_fail_parent_and_a_lost_race_resolve_at_once(
    tmp_path: Path, clock: FakeClock
) -> None:
    async with open_checked(tmp_path, clock, shards=SHARDS) as e:
        await e.create("p1", "order")
        await spawn(e, await claimed(e, "p1"), spread_ids("f", 4))
        await finish_child(e, "f0", "fail")
        got = await e.get("p1")
        assert got is not None and got.state == "broken"
        await e.create("p2", "order")
        race = spread_ids("r", 3)
        await spawn(e, await claimed(e, "p2"), race, wait="any", on_child_failed="ignore")
        for fid in race:
            await finish_child(e, fid, "fail")
        got = await e.get("p2")
        assert got is not None and got.state == "broken"


async def test_a_cancel_reaches_a_grandchild_at_once(tmp_path: Path, clock: FakeClock) -> None:
    async with open_checked(tmp_path, clock, shards=SHARDS) as e:
        await e.create("top", "order")
        await spawn(e, await claimed(e, "top"), ["mid"], child_type="order")
        await spawn(e, await claimed(e, "mid"), spread_ids("leaf", 4))
        await e.cancel("top")
        for fid in ["top", "mid", *spread_ids("leaf", 4)]:
            got = await e.get(fid)
            assert got is not None and got.state == "cancelled", fid


async def test_claims_and_reclaims_drain_one_partition(tmp_path: Path, clock: FakeClock) -> None:
    async with open_checked(tmp_path, clock, shards=SHARDS) as e:
        for t in ("t1", "t2"):
            await e.create_many(
                "job", [fa.CreateSpec(f"{t}-{i}", partition_key=t) for i in range(6)]
            )
        await e.create_many("job", [fa.CreateSpec(f"plain-{i}") for i in range(6)])
        got = await e.claim_due("job", "w", limit=100, partition_key="t1", lease_ms=1000)
        assert sorted(f.id for f in got) == sorted(f"t1-{i}" for i in range(6))
        assert await e.claim_due("job", "w", partition_key="t1") == []
        clock.advance(2000)
        again = await e.reclaim("job", "w2", limit=100, partition_key="t2")
        assert again == []  # t2 was never claimed
        back = await e.reclaim("job", "w2", limit=100, partition_key="t1", states=["queued"])
        assert sorted(f.id for f in back) == sorted(f"t1-{i}" for i in range(6))
        assert {f.lease_owner for f in back} == {"w2"}


async def test_a_wrong_hint_is_an_error_never_another_flow(
    tmp_path: Path, clock: FakeClock
) -> None:
    async with open_checked(tmp_path, clock, shards=SHARDS) as e:
        await e.create("a", "job", partition_key="tenant-1")
        await e.create("b", "job")
        for fid, wrong in (("a", "tenant-2"), ("b", "tenant-1")):
            with pytest.raises(fa.InvalidArgument, match="partition"):
                await e.get(fid, partition_key=wrong)
            with pytest.raises(fa.InvalidArgument, match="partition"):
                await e.history(fid, partition_key=wrong)
            with pytest.raises(fa.InvalidArgument, match="partition"):
                await e.cancel(fid, partition_key=wrong)
        assert await e.get("absent", partition_key="tenant-1") is None


# -- property: any mix of partitioned and plain creates and fanouts -----------------------

Op = tuple[str, int, int]


@st.composite
def programs(draw: st.DrawFn) -> list[Op]:
    ops = st.tuples(
        st.sampled_from(["create", "create_part", "fanout", "fanout_part"]),
        st.integers(0, 30),
        st.integers(0, 5),
    )
    return draw(st.lists(ops, min_size=1, max_size=25))


async def _run(tmp: Path, program: list[Op]) -> None:
    clock = FakeClock()
    made: dict[str, str | None] = {}  # id -> partition key
    async with open_checked(tmp, clock, shards=SHARDS) as e:
        for step, (kind, n, k) in enumerate(program):
            part = f"tenant-{k}" if kind.endswith("_part") else None
            fid = f"f{n}"
            if kind.startswith("create"):
                try:
                    await e.create(fid, "order", partition_key=part)
                    made[fid] = part
                except fa.FlowExists:
                    assert fid in made
                continue
            if fid not in made:
                continue
            flow = await e.get(fid)
            assert flow is not None and flow.state in ("queued", "waiting_children")
            if flow.state != "queued":
                continue
            parent = await claimed(e, fid)
            kids = [f"{fid}.s{step}.{j}" for j in range(k % 3 + 1)]
            kid_part = f"tenant-{(k + 1) % 6}" if kind.endswith("_part") else None
            await e.spawn_children(
                parent.id,
                parent.lease_token,
                parent.fencing_token,
                group_id=f"g{step}",
                children=[fa.ChildSpec(i, "item", partition_key=kid_part) for i in kids],
                success_state="done",
                failure_state="broken",
            )
            for i in kids:
                made[i] = kid_part if kid_part is not None else made[fid]
        await e.settle()
        await _found(e, made)
    async with open_checked(tmp, clock, shards=SHARDS) as e:
        await _found(e, made)


async def _found(e: Any, made: dict[str, str | None]) -> None:
    for fid, part in made.items():
        flow = await e.get(fid)
        assert flow is not None and flow.id == fid and flow.partition_key == part, fid
        if part is not None:
            hinted = await e.get(fid, partition_key=part)
            assert hinted is not None and hinted.id == fid
        wrong = "tenant-x" if part != "tenant-x" else "tenant-y"
        with pytest.raises(fa.InvalidArgument):
            await e.get(fid, partition_key=wrong)
        assert next(h.version for h in await e.history(fid)) == 1


@settings(
    max_examples=max(15, settings().max_examples // 4),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    deadline=None,
)
@given(programs())
def test_every_flow_is_found_by_its_id_alone(tmp_path_factory: Any, program: list[Op]) -> None:
    trio.run(_run, tmp_path_factory.mktemp("routing"), program)


_TENANTS = ("t0", "t1", "t2")


@settings(max_examples=25, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from((*_TENANTS, None)), st.integers(0, 2), st.integers(0, 30)),
        min_size=1,
        max_size=40,
    ),
    st.lists(st.tuples(st.sampled_from(_TENANTS), st.integers(1, 6), st.booleans()), max_size=8),
)
def test_partition_claims_take_what_a_model_says(
    tmp_path_factory: pytest.TempPathFactory,
    flows: list[tuple[str | None, int, int]],
    claims: list[tuple[str, int, bool]],
) -> None:
    """Claims and reclaims for one tenant, served from the per-partition due index,
    against a model that filters every flow: that tenant's due flows (or expired leases),
    priority 2, 1, 0, then due time (or lease deadline), then id, up to the limit. Then
    once more after a reopen, where recovery rebuilt the index (`open_checked` compares
    every index with the records after each call)."""
    path = tmp_path_factory.mktemp("parts")
    # id -> [tenant, priority, due time, lease deadline or None]
    model: dict[str, list[Any]] = {}

    def expected(tenant: str, now: int, running: bool) -> list[str]:
        keys = sorted(
            (-m[1], m[3] if running else m[2], fid)
            for fid, m in model.items()
            if m[0] == tenant
            and (m[3] is not None) == running
            and (m[3] if running else m[2]) <= now
        )
        return [k[2] for k in keys]

    async def main() -> None:
        clock = FakeClock()
        async with open_checked(path, clock, shards=1) as e:
            for i, (tenant, priority, delay) in enumerate(flows):
                fid = f"f{i:02d}"
                await e.create(fid, "job", partition_key=tenant, priority=priority, delay_ms=delay)
                model[fid] = [tenant, priority, START_MS + delay, None]
            for tenant, limit, reclaim in claims:
                clock.advance(7)
                want = expected(tenant, clock.now, running=reclaim)[:limit]
                if reclaim:
                    got = await e.reclaim(
                        "job", "w", limit=limit, partition_key=tenant, lease_ms=10
                    )
                else:
                    got = await e.claim_due(
                        "job", "w", limit=limit, partition_key=tenant, lease_ms=10, reclaim=False
                    )
                assert [f.id for f in got] == want
                for fid in want:
                    model[fid][3] = clock.now + 10
        async with open_checked(path, clock, shards=1) as e:
            for tenant in _TENANTS:
                want = expected(tenant, clock.now, running=False)
                got = await e.claim_due("job", "w", limit=100, partition_key=tenant, reclaim=False)
                assert [f.id for f in got] == want

    trio.run(main)
