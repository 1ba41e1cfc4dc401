"""End-to-end smoke: create, claim, transition, complete, restart."""

from pathlib import Path

import pytest

import flowactors as fa


async def test_lifecycle_survives_restart(tmp_path: Path) -> None:
    async with fa.open_engine(tmp_path) as engine:
        await engine.create("o1", "order", payload=b"hello")
        (job,) = await engine.claim_due("order", "w1", payload=True)
        assert (job.state, job.run_state, job.payload) == ("running", "queued", b"hello")
        await engine.transition(
            job.id, "running", "charged", job.fencing_token, lease_token=job.lease_token
        )
        (job,) = await engine.claim_due("order", "w1")
        await engine.complete(job.id, job.lease_token, job.fencing_token, result=b"ok")
        engine._check()
    async with fa.open_engine(tmp_path) as engine:
        flow = await engine.get("o1")
        assert flow is not None
        assert (flow.state, flow.result, flow.version) == ("completed", b"ok", 5)
        names = [e.name for e in await engine.history("o1")]
        assert names == ["created", "claimed", "transitioned", "claimed", "completed"]
        engine._check()


async def test_shard_count_is_fixed_at_creation(tmp_path: Path) -> None:
    """A new engine gets the default shard count; reopening takes the recorded count
    whatever the default, and a different count given is refused, changing nothing."""
    fresh, four = tmp_path / "fresh", tmp_path / "four"
    async with fa.open_engine(fresh) as engine:
        assert len(engine.statistics()["shards"]) == 1
    async with fa.open_engine(four, shards=4) as engine:
        await engine.create("a", "job")
    async with fa.open_engine(four) as engine:
        assert len(engine.statistics()["shards"]) == 4
        assert (await engine.get("a")) is not None
    with pytest.raises(fa.InvalidArgument, match="created with 4 shards"):
        async with fa.open_engine(four, shards=2):
            pass
    assert sorted(p.name for p in four.glob("shard-*")) == [f"shard-00{i}" for i in range(4)]
