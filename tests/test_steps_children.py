"""Children of step pipelines (call_workflow / start_workflow, seed 003's shapes): the
parent waits without a worker and gets Ok / Err, the step runs again from its start and
finds the same child (never a second one), nesting A -> B -> C, a failed child handled by
branching, fire-and-forget children, list_children, cancel cascading to live children."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing
from sdk_helpers import trio_engine

import flowactors as fa
from flowactors.code import RunCancelled
from flowactors.steps import Err, Ok, Pipelines, StepContext, StepFailed, steps

CALLS: list[str] = []
HOLD: dict[str, trio.Event] = {}

payment = steps("payment")


@payment.step
async def take_money(ctx: StepContext, data: dict[str, Any]) -> dict[str, Any]:
    CALLS.append(f"take {data['amount']}")
    if "hold" in HOLD:
        await HOLD["hold"].wait()
    if data["amount"] > 100:
        raise StepFailed("insufficient funds")
    return {"payment_id": f"pay-{data['amount']}"}


email = steps("email")


@email.step
async def send(ctx: StepContext, data: dict[str, Any]) -> dict[str, Any]:
    CALLS.append(f"email {data['to']}")
    return {"sent": data["to"]}


order = steps("process_order")


@order.step
async def charge(ctx: StepContext, data: dict[str, Any]) -> dict[str, Any]:
    CALLS.append("charge step")
    match await ctx.call_workflow(payment, {"amount": data["total"]}, ref="pay"):
        case Ok(result):
            return {**data, "payment_id": result["payment_id"]}
        case Err(reason):
            return {**data, "payment_error": reason["message"]}  # branch on the failure
    raise AssertionError("unreachable")


@order.step
async def confirm(ctx: StepContext, data: dict[str, Any]) -> dict[str, Any]:
    if "payment_error" in data:
        return data
    email_id = await ctx.start_workflow(email, {"to": data["email"]}, ref="confirmation")
    return {**data, "email_workflow_id": email_id}


async def test_call_and_start_children(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    CALLS.clear()
    async with trio_engine(tmp_path) as engine:
        runs = Pipelines(engine, [order, payment, email])
        await runs.start(order, "o-1", {"total": 30, "email": "a@b"})
        async with runs.running():
            result = await runs.result("o-1")
            assert await runs.result("o-1/confirmation") == {"sent": "a@b"}
        assert result == {
            "total": 30,
            "email": "a@b",
            "payment_id": "pay-30",
            "email_workflow_id": "o-1/confirmation",
        }
        # the charge step ran twice (before and after its child), the child once
        assert CALLS.count("charge step") == 2 and CALLS.count("take 30") == 1
        assert CALLS.count("email a@b") == 1
        kids = await runs.list_children("o-1")
        assert sorted(k.run_id for k in kids) == ["o-1/confirmation", "o-1/pay"]
        assert [k.run_id for k in await runs.list_children("o-1", status="failed")] == []


async def test_a_failed_child_is_an_err_the_parent_branches_on(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    async with trio_engine(tmp_path) as engine:
        runs = Pipelines(engine, [order, payment, email])
        await runs.start(order, "o-2", {"total": 500, "email": "a@b"})
        async with runs.running():
            result = await runs.result("o-2")
        assert result["payment_error"] == "insufficient funds"  # the step's own words
        failed = await runs.list_children("o-2", status="failed")
        assert [k.run_id for k in failed] == ["o-2/pay"]
        assert failed[0].error == {
            "type": "StepFailed", "message": "insufficient funds", "step": "take_money",
            "attempts": 1,
        }  # fmt: skip


async def test_the_parent_waits_without_a_worker_and_a_restart_starts_no_second_child(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    CALLS.clear()
    HOLD["hold"] = trio.Event()
    try:
        async with trio_engine(tmp_path) as engine:
            runs = Pipelines(engine, [order, payment, email], lease_ms=10_000)
            await runs.start(order, "o-3", {"total": 30, "email": "c@d"})
            async with runs.running():
                await trio.sleep(1)
            parent = await engine.get("o-3")
            assert parent is not None and parent.lease_owner is None  # no worker held
            assert (await runs.describe("o-3")).current == "charge"
    finally:
        del HOLD["hold"]
    async with trio_engine(tmp_path) as engine:
        runs = Pipelines(engine, [order, payment, email], lease_ms=10_000)
        async with runs.running():
            assert (await runs.result("o-3"))["payment_id"] == "pay-30"
        assert [k.run_id for k in await runs.list_children("o-3")] == [
            "o-3/confirmation",
            "o-3/pay",
        ]
    assert CALLS.count("take 30") == 2  # the child's own step re-ran (at least once)


a, b, c = steps("a"), steps("b"), steps("c")


@a.step
async def a_calls_b(ctx: StepContext, data: int) -> int:
    got = await ctx.call_workflow(b, data + 1, ref="b")
    assert isinstance(got, Ok)
    return int(got.result) * 10


@b.step
async def b_calls_c(ctx: StepContext, data: int) -> int:
    got = await ctx.call_workflow(c, data + 1, ref="c")
    assert isinstance(got, Ok)
    return int(got.result) + 1


@c.step
async def c_works(ctx: StepContext, data: int) -> int:
    if "c" in HOLD:
        await HOLD["c"].wait()
    return data * 2


async def test_nested_a_b_c(tmp_path: Path, autojump_clock: trio.testing.MockClock) -> None:
    async with trio_engine(tmp_path) as engine:
        runs = Pipelines(engine, [a, b, c])
        await runs.start(a, "n", 1)
        async with runs.running():
            assert await runs.result("n") == ((1 + 1 + 1) * 2 + 1) * 10
        assert await runs.result("n/b/c") == 6


async def test_cancel_cascades_to_live_children(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    HOLD["c"] = trio.Event()
    try:
        async with trio_engine(tmp_path) as engine:
            runs = Pipelines(engine, [a, b, c])
            await runs.start(a, "x", 1)
            async with runs.running():
                await trio.sleep(1)
                assert (await runs.describe("x/b/c")).status == "running"
                await runs.cancel("x", "operator")
                for run_id in ("x", "x/b", "x/b/c"):
                    with pytest.raises(RunCancelled):
                        await runs.result(run_id)
    finally:
        del HOLD["c"]


async def test_bad_child_requests_fail_the_step(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    bad = steps("bad")

    @bad.step
    async def unknown(ctx: StepContext, data: Any) -> Any:
        return await ctx.call_workflow("nowhere", {}, ref="x")

    async with trio_engine(tmp_path) as engine:
        runs = Pipelines(engine, [bad])
        await runs.start(bad, "b-1", {})
        async with runs.running():
            with pytest.raises(fa.FlowError, match="nowhere"):
                await runs.result("b-1")
        assert await runs.list_children("b-1") == []
