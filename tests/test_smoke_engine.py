"""End-to-end smoke: create, claim, transition, complete, restart."""

from pathlib import Path

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
