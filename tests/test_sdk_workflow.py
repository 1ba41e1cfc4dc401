"""SDK: declarative workflows (seed 000) - partitioning, claim defaults per state, ok/error
actions, merged retry overrides, handle, and the issue-4 methods' behaviour without it."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio
import trio.testing
from sdk_helpers import trio_engine

import flowactors as fa
from flowactors import State, StateRetry, Workflow, complete, fail, retry_or, transition


class Billing(Workflow):
    type = "billing"
    partition_by = ("tenant_id", "invoice_id")
    initial_state = "created"
    states = {  # noqa: RUF012 (a declaration, read-only by convention)
        "created": State(
            lease_ms=60_000,
            payload_max_bytes=64_000,
            retry=StateRetry(max_retries=2, backoff="fixed", base_ms=1_000, jitter_pct=0),
            on_ok="charged",
            on_error=retry_or("manual_review"),
        ),
        "charged": State(on_ok=complete(), on_error=fail()),
    }


ATTRS = {"tenant_id": "t1", "invoice_id": "i9"}


async def test_declared_path_created_charged_completed(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    async with trio_engine(tmp_path) as engine:
        billing = Billing(engine)
        flow = await billing.create("inv-1", payload=b"100 EUR", attributes=ATTRS)
        assert (flow.state, flow.partition_key, flow.type) == ("created", "t1:i9", "billing")
        [job] = await billing.claim_due()
        assert job.payload == b"100 EUR"  # claim_payload with max_bytes
        assert job.lease_deadline_ms == fa.trio_clock_ms() + 60_000
        moved = await billing.ok(job)
        assert (moved.state, moved.payload_size) == ("charged", 7)
        [job] = await billing.claim_due("charged")
        assert job.lease_deadline_ms == fa.trio_clock_ms() + 30_000
        done = await billing.ok(job, b"receipt-1")
        assert done.state == "completed"
        got = await billing.get("inv-1", attributes=ATTRS)
        assert got is not None and got.result == b"receipt-1"
        names = [e.name for e in await billing.history("inv-1", partition_key="t1:i9")]
        assert names == ["created", "claimed", "transitioned", "claimed", "completed"]
        assert await billing.info() == {"completed": 1}


async def test_error_retries_with_the_state_backoff_then_goes_to_retry_or_state(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    async with trio_engine(tmp_path) as engine:
        billing = Billing(engine)
        await billing.create("inv-1", attributes=ATTRS)
        for attempt in (1, 2):
            [job] = await billing.claim_due("created")
            retried = await billing.error(job, RuntimeError("card declined"))
            assert (retried.state, retried.attempts) == ("created", attempt)
            assert retried.next_run_at_ms == fa.trio_clock_ms() + 1_000  # fixed, no jitter
            assert await billing.claim_due("created") == []
            await trio.sleep(1)
        [job] = await billing.claim_due("created")
        exhausted = await billing.error(job, "still declined")
        assert exhausted.state == "manual_review" and not exhausted.terminal
        got = await billing.get("inv-1", partition_key="t1:i9")
        assert got is not None and got.error == b"still declined"


async def test_on_error_fail_fails_for_good(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    async with trio_engine(tmp_path) as engine:
        billing = Billing(engine)
        await billing.create("inv-1", attributes=ATTRS, state="charged")
        [job] = await billing.claim_due("charged")
        failed = await billing.error(job, b"ledger rejected")
        assert failed.state == "failed"


async def test_handle_applies_ok_or_error_from_the_function(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    async with trio_engine(tmp_path) as engine:
        billing = Billing(engine)
        await billing.create("a", attributes=ATTRS)
        await billing.create("b", attributes={"tenant_id": "t2", "invoice_id": "i1"})

        async def charge(ctx: fa.Context) -> bytes:
            if ctx.attributes["tenant_id"] == "t2":
                raise ValueError("no card on file")
            return b"ch_1"

        results = {}
        for job in await billing.claim_due(limit=10):
            flow = await billing.handle(job, charge)
            assert flow is not None
            results[flow.id] = (flow.state, flow.attempts)
        assert results == {"a": ("charged", 0), "b": ("created", 1)}


async def test_explicit_outcomes_and_lease_extension(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    async with trio_engine(tmp_path) as engine:
        wf = Workflow(engine, type="steps", initial_state="one")
        await wf.create("x")
        [job] = await wf.claim_due("one", lease_ms=1_000)
        extended = await wf.extend_lease(job, 5_000)
        assert extended.lease_deadline_ms == fa.trio_clock_ms() + 5_000
        assert (await wf.apply(job, transition("two", delay_ms=500))).state == "two"
        assert await wf.claim_due("two") == []
        await trio.sleep(0.5)
        [job] = await wf.claim_due("two")
        assert (await wf.retry(job, "later", delay_ms=10)).attempts == 1
        await trio.sleep(0.01)
        [job] = await wf.claim_due()
        assert (await wf.fail(job, "no")).state == "failed"


async def test_create_many_derives_partition_keys(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    async with trio_engine(tmp_path) as engine:
        billing = Billing(engine)
        specs = [
            fa.CreateSpec(f"inv-{i}", attributes={"tenant_id": f"t{i % 2}", "invoice_id": f"{i}"})
            for i in range(4)
        ]
        results = await billing.create_many(specs)
        assert [r.flow.partition_key for r in results if r.flow] == ["t0:0", "t1:1", "t0:2", "t1:3"]
        assert await billing.info() == {"created": 4}


async def test_partition_attributes_are_checked(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    async with trio_engine(tmp_path) as engine:
        billing = Billing(engine)
        with pytest.raises(fa.InvalidArgument, match="invoice_id"):
            await billing.create("a", attributes={"tenant_id": "t1"})
        with pytest.raises(fa.InvalidArgument, match="':'"):
            await billing.create("a", attributes={"tenant_id": "t:1", "invoice_id": "i"})
        with pytest.raises(fa.InvalidArgument, match="flow type"):
            Workflow(engine)


def test_return_values_map_to_outcomes() -> None:
    wf = Workflow.__new__(Workflow)
    wf.state_specs = {"a": State(on_ok="b"), "b": State()}
    assert wf.outcome_of("a", b"x") == fa.Transition("b", payload=b"x")
    assert wf.outcome_of("b", "done") == fa.Complete(b"done")
    assert wf.outcome_of("b", None) == fa.Complete(None)
    assert wf.outcome_of("a", fa.fail("no")) == fa.Fail(b"no")
    with pytest.raises(fa.InvalidArgument, match="returned dict"):
        wf.outcome_of("a", {"not": "bytes"})


async def test_signal_moves_a_waiting_flow_once(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    async with trio_engine(tmp_path) as engine:
        wf = Workflow(engine, type="approval", initial_state="waiting")
        await wf.create("a-1", payload=b"invoice:123")
        for _ in range(2):
            flow = await wf.signal(
                "a-1",
                "approved",
                if_state="waiting",
                transition_to="approved",
                idempotency_key="approve-a-1",
            )
            assert flow.state == "approved"
        assert [e.name for e in await wf.history("a-1")].count("signaled") >= 1


async def test_spawn_children_parks_the_parent_until_they_finish(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    async with trio_engine(tmp_path) as engine:
        campaign = Workflow(engine, type="campaign", initial_state="dispatch")
        device = Workflow(engine, type="device-command")
        await campaign.create("c-1")
        [job] = await campaign.claim_due()
        kids = [device.child(f"d{i}", payload=b"cmd") for i in range(3)]
        parent = await campaign.fanout(job, kids, group_id="g", on_all_ok="done")
        assert parent.state == "waiting_children"
        assert len(await campaign.waiting_children("c-1")) == 3
        for child in await device.claim_due(limit=3):
            await device.ok(child)
        [again] = await campaign.claim_due("done")
        assert (await campaign.ok(again)).state == "completed"
        assert {c.state for c in await campaign.children("c-1")} == {"completed"}


async def test_install_policy_stores_the_declaration(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    async with trio_engine(tmp_path) as engine:
        billing = Billing(engine)
        installed = await billing.install_policy()
        assert installed.states["created"].max_retries == 2
        assert installed.states["created"].exhausted_to == "manual_review"
        assert (await engine.get_policy("billing")).generation == installed.generation
