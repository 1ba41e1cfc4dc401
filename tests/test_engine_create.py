"""Engine: create, idempotent create and create_many (atomic per shard)."""

from __future__ import annotations

from pathlib import Path

import pytest
from engine_helpers import START_MS, FakeClock, names, open_checked, written

import flowactors as fa


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


async def test_create_defaults(tmp_path: Path, clock: FakeClock) -> None:
    async with open_checked(tmp_path, clock, shards=1) as e:
        f = await e.create("a", "t")
        assert (f.id, f.type, f.state, f.run_state) == ("a", "t", "queued", None)
        assert (f.version, f.attempts, f.reclaims, f.fencing_token) == (1, 0, 0, 0)
        assert (f.lease_owner, f.lease_token, f.lease_deadline_ms) == (None, None, None)
        assert f.created_at_ms == f.updated_at_ms == f.next_run_at_ms == START_MS
        assert (f.priority, f.partition_key, f.parent_id, f.correlation_id) == (0, None, None, None)
        assert f.root_id == "a"
        assert dict(f.attributes) == {} and dict(f.value_sizes) == {} and dict(f.values) == {}
        assert (f.payload_size, f.payload, f.payload_omitted) == (0, None, False)
        assert (f.result, f.error) == (None, None)
        assert not f.terminal and f.logical_state == "queued"
        assert await e.get("a") == f
        assert names(await e.history("a")) == ["created"]
        assert await e.info("t") == {"queued": 1}


async def test_create_with_every_option(tmp_path: Path, clock: FakeClock) -> None:
    async with open_checked(tmp_path, clock, shards=1) as e:
        f = await e.create(
            "b",
            "t",
            state="charged",
            payload=b"payload",
            run_at_ms=START_MS + 500,
            priority=2,
            values={"v": b"value-1", "w": b"w"},
            attributes={"customer": "c-1"},
            parent_id="p",
            root_id="r",
            correlation_id="corr",
        )
        assert (f.state, f.priority, f.next_run_at_ms) == ("charged", 2, START_MS + 500)
        assert (f.parent_id, f.root_id, f.correlation_id) == ("p", "r", "corr")
        assert dict(f.attributes) == {"customer": "c-1"}
        assert f.payload_size == 7 and f.payload is None  # create does not echo bytes
        assert dict(f.value_sizes) == {"v": 7, "w": 1} and dict(f.values) == {}
        plain = await e.get("b")
        assert plain is not None and plain.payload is None and dict(plain.values) == {}
        full = await e.get("b", payload=True, values=["v", "absent"])
        assert full is not None
        assert full.payload == b"payload" and dict(full.values) == {"v": b"value-1"}
        assert await e.get_values("b", ["w", "v", "absent"]) == {"w": b"w", "v": b"value-1"}
        # root_id equal to the id is the same as no root.
        g = await e.create("c", "t", root_id="c")
        assert g.root_id == "c"
        assert await e.info("t") == {"charged": 1, "queued": 1}


async def test_create_delay_ms_is_engine_time(tmp_path: Path, clock: FakeClock) -> None:
    async with open_checked(tmp_path, clock, shards=1) as e:
        clock.advance(250)
        f = await e.create("a", "t", delay_ms=1_000)
        assert f.next_run_at_ms == START_MS + 250 + 1_000
        assert f.created_at_ms == START_MS + 250
        g = await e.create("b", "t", run_at_ms=5)  # in the past: due at once
        assert g.next_run_at_ms == 5
        with pytest.raises(fa.InvalidArgument):
            await e.create("c", "t", run_at_ms=START_MS, delay_ms=1)
        assert await e.get("c") is None


async def test_create_existing_id_raises_flow_exists(tmp_path: Path, clock: FakeClock) -> None:
    async with open_checked(tmp_path, clock, shards=1) as e:
        first = await e.create("a", "t", payload=b"1")
        before = written(e)
        with pytest.raises(fa.FlowExists):
            await e.create("a", "t", payload=b"1")
        with pytest.raises(fa.FlowExists):
            await e.create("a", "other")
        assert written(e) == before
        assert await e.get("a") == first
        assert names(await e.history("a")) == ["created"]


async def test_idempotent_create(tmp_path: Path, clock: FakeClock) -> None:
    async with open_checked(tmp_path, clock, shards=1) as e:
        spec = dict(payload=b"body", priority=1, parent_id="p", correlation_id="c")
        first = await e.create("a", "t", idempotent=True, **spec)
        before = written(e)
        clock.advance(10)
        again = await e.create("a", "t", idempotent=True, **spec)
        assert again == first
        # Attributes, values and the due time are not part of the request digest.
        again = await e.create(
            "a", "t", idempotent=True, run_at_ms=1, attributes={"k": "v"}, **spec
        )
        assert again == first
        assert written(e) == before
        different = [
            dict(spec, payload=b"other"),
            dict(spec, payload=None),
            dict(spec, priority=2),
            dict(spec, parent_id="q"),
            dict(spec, correlation_id=None),
            dict(spec, root_id="r"),
            dict(spec, state="other"),
        ]
        for changed in different:
            with pytest.raises(fa.IdempotencyConflict):
                await e.create("a", "t", idempotent=True, **changed)
        with pytest.raises(fa.IdempotencyConflict):
            await e.create("a", "t2", idempotent=True, **spec)
        with pytest.raises(fa.IdempotencyConflict):
            await e.create("a", "t", idempotent=True, partition_key="p", **spec)
        assert written(e) == before
        assert await e.get("a") == first
        assert names(await e.history("a")) == ["created"]


async def test_create_routes_by_partition_key(tmp_path: Path, clock: FakeClock) -> None:
    async with open_checked(tmp_path, clock) as e:  # default: 4 shards
        assert e.shard_count == 4
        for i in range(40):
            await e.create(f"p{i}", "t", partition_key="tenant-1")
            await e.create(f"n{i}", "t")
        shards = e.raw._shards
        home = e.shard_for("anything", "tenant-1")
        for i in range(40):
            assert "p" + str(i) in shards[home].state.records
            assert f"n{i}" in shards[e.shard_for(f"n{i}")].state.records
        # Ids alone spread over every shard.
        assert {e.shard_for(f"n{i}") for i in range(40)} == {0, 1, 2, 3}
        # A partitioned flow is found by its id alone; its key is only a check.
        moved = next(i for i in range(40) if e.shard_for(f"p{i}") != home)
        alone = await e.get(f"p{moved}")
        assert alone is not None and alone.partition_key == "tenant-1"
        got = await e.get(f"p{moved}", partition_key="tenant-1")
        assert got == alone
        with pytest.raises(fa.InvalidArgument, match="partition"):
            await e.get(f"p{moved}", partition_key="tenant-2")
        assert await e.info("t") == {"queued": 80}


async def test_create_many_per_item_results(tmp_path: Path, clock: FakeClock) -> None:
    async with open_checked(tmp_path, clock) as e:
        specs = [fa.CreateSpec(f"f{i}", payload=b"x" * i) for i in range(20)]
        specs.append(
            fa.CreateSpec(
                "special",
                payload=b"own",
                partition_key="part",
                priority=0,
                run_at_ms=START_MS + 9,
                values={"v": b"1"},
                attributes={"a": "b"},
                parent_id="f0",
                root_id="f0",
                correlation_id="c",
            )
        )
        results = await e.create_many("t", specs, state="ready", priority=2)
        assert [r.id for r in results] == [s.id for s in specs]
        assert all(r.ok and r.flow is not None for r in results)
        for i in range(20):
            flow = results[i].flow
            assert flow is not None
            assert (flow.id, flow.state, flow.priority, flow.payload_size) == (
                f"f{i}",
                "ready",
                2,
                i,
            )
            assert flow.next_run_at_ms == START_MS
            assert await e.get(f"f{i}") == flow
        special = results[-1].flow
        assert special is not None
        assert (special.priority, special.next_run_at_ms, special.partition_key) == (
            0,
            START_MS + 9,
            "part",
        )
        assert (special.parent_id, special.root_id, special.correlation_id) == ("f0", "f0", "c")
        got = await e.get("special", partition_key="part", payload=True, values=["v"])
        assert got is not None and got.payload == b"own" and dict(got.values) == {"v": b"1"}
        assert await e.info("t") == {"ready": 21}


async def test_create_many_is_atomic_per_shard(tmp_path: Path, clock: FakeClock) -> None:
    async with open_checked(tmp_path, clock) as e:
        existing = await e.create("x", "t")
        bad = e.shard_for("x")
        ids = [f"f{i}" for i in range(40)]
        assert any(e.shard_for(i) == bad for i in ids) and any(e.shard_for(i) != bad for i in ids)
        results = await e.create_many("t", [fa.CreateSpec(i) for i in [*ids, "x"]])
        assert [r.id for r in results] == [*ids, "x"]
        for r in results:
            if e.shard_for(r.id) == bad:
                assert not r.ok and isinstance(r.error, fa.FlowExists) and r.flow is None
                if r.id != "x":
                    assert await e.get(r.id) is None
            else:
                assert r.ok and await e.get(r.id) == r.flow
        ok = sum(1 for r in results if r.ok)
        assert await e.get("x") == existing
        assert await e.info("t") == {"queued": ok + 1}


async def test_create_many_duplicate_id_is_rejected_before_writing(
    tmp_path: Path, clock: FakeClock
) -> None:
    async with open_checked(tmp_path, clock) as e:
        ids = [f"f{i}" for i in range(40)]
        before = written(e)
        with pytest.raises(fa.InvalidArgument, match="duplicate id 'f3'"):
            await e.create_many("t", [fa.CreateSpec(i) for i in [*ids, "f3"]])
        assert written(e) == before
        assert await e.info("t") == {}


async def test_create_many_one_shard_all_or_nothing(tmp_path: Path, clock: FakeClock) -> None:
    async with open_checked(tmp_path, clock, shards=1) as e:
        await e.create("c", "t")
        before = written(e)
        results = await e.create_many("t", [fa.CreateSpec(i) for i in "abcd"])
        assert [type(r.error) for r in results] == [fa.FlowExists] * 4
        assert written(e) == before
        assert await e.info("t") == {"queued": 1}
        with pytest.raises(fa.InvalidArgument):
            await e.create_many("t", [fa.CreateSpec(i) for i in "abab"])
        assert written(e) == before
        assert await e.info("t") == {"queued": 1}


async def test_create_many_idempotent_replay(tmp_path: Path, clock: FakeClock) -> None:
    async with open_checked(tmp_path, clock) as e:
        specs = [fa.CreateSpec(f"f{i}", payload=b"p") for i in range(10)]
        first = await e.create_many("t", specs, idempotent=True)
        before = written(e)
        again = await e.create_many("t", specs, idempotent=True)
        assert again == first and all(r.ok for r in again)
        assert written(e) == before
        changed = [fa.CreateSpec(s.id, payload=b"q") for s in specs]
        conflict = await e.create_many("t", changed, idempotent=True)
        assert all(isinstance(r.error, fa.IdempotencyConflict) for r in conflict)
        assert written(e) == before


async def test_an_id_is_unique_across_partitions(tmp_path: Path, clock: FakeClock) -> None:
    async with open_checked(tmp_path, clock) as e:
        keys = [f"tenant-{i}" for i in range(20)]
        a = keys[0]
        b = next(k for k in keys if e.shard_for("x", k) != e.shard_for("x", a))
        with pytest.raises(fa.InvalidArgument, match="duplicate id"):
            await e.create_many(
                "t", [fa.CreateSpec("x", partition_key=a), fa.CreateSpec("x", partition_key=b)]
            )
        await e.create("x", "t", partition_key=a)
        with pytest.raises(fa.FlowExists, match="another partition"):
            await e.create("x", "t", partition_key=b)
        with pytest.raises(fa.IdempotencyConflict):
            await e.create("x", "t", partition_key=b, idempotent=True)
        with pytest.raises(fa.FlowExists):
            await e.create("x", "t")  # no key: its home shard, but it lives elsewhere
        (r,) = await e.create_many("t", [fa.CreateSpec("x", partition_key=b)])
        assert isinstance(r.error, fa.FlowExists)
        got = await e.get("x")
        assert got is not None and got.partition_key == a
