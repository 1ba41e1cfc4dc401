"""Step pipelines (flowactors.steps) in Trio's virtual time: the context passes from step
to step and is saved after each; a resumed run skips finished steps and re-runs the
current one from its start; durable step retries; compensations in LIFO order on
failure; the step-level view; bad definitions refused."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing
from sdk_helpers import trio_engine

import flowactors as fa
from flowactors.code import RunCancelled, WorkflowFailed
from flowactors.steps import Pipelines, StepContext, StepFailed, StepRetry, goto, steps

CALLS: list[str] = []
GATE: dict[str, trio.Event] = {}

order = steps("process_order")


@order.step
async def validate(ctx: StepContext, data: dict[str, Any]) -> dict[str, Any]:
    CALLS.append(f"validate {ctx.attempt}")
    return {**data, "order_id": ctx.input["id"], "total": 42}


@order.step(retry=StepRetry(max_attempts=3, backoff="constant", base_ms=5_000))
async def charge(ctx: StepContext, data: dict[str, Any]) -> dict[str, Any]:
    CALLS.append(f"charge {ctx.attempt}")
    if "gate" in GATE:
        await GATE["gate"].wait()
    if data.get("flaky") and ctx.attempt < 3:
        raise RuntimeError(f"card declined, try {ctx.attempt}")
    return {**data, "payment_id": f"pay-{data['order_id']}", "key": ctx.idempotency_key}


@order.step
async def confirm(ctx: StepContext, data: dict[str, Any]) -> dict[str, Any]:
    CALLS.append("confirm")
    return {**data, "confirmed": True}


async def test_the_context_passes_from_step_to_step(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    CALLS.clear()
    async with trio_engine(tmp_path) as engine:
        runs = Pipelines(engine, [order])
        view = await runs.start(order, "o-1", {"id": "o-1"})
        assert view.status == "running" and view.done == () and view.current == "validate"
        assert view.context == {"id": "o-1"}
        async with runs.running():
            result = await runs.result("o-1")
        assert result["payment_id"] == "pay-o-1" and result["confirmed"] is True
        assert result["key"] == "o-1:charge"
        assert CALLS == ["validate 1", "charge 1", "confirm"]
        view = await runs.describe("o-1")
        assert view.status == "completed" and view.current is None
        assert view.done == ("validate", "charge", "confirm") and view.context == result


async def test_step_retries_are_durable_and_hold_no_worker(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    CALLS.clear()
    async with trio_engine(tmp_path) as engine:
        runs = Pipelines(engine, [order])
        await runs.start(order, "o-2", {"id": "o-2", "flaky": True})
        async with runs.running():
            t0 = engine.now_ms()
            await trio.sleep(1)
            view = await runs.describe("o-2")
            assert view.current == "charge" and view.attempts == 1
            flow = await engine.get("o-2")
            assert flow is not None and flow.state == "waiting"  # no lease held meanwhile
            assert await runs.result("o-2")
            assert engine.now_ms() - t0 >= 10_000  # two constant 5 s waits
        assert CALLS == ["validate 1", "charge 1", "charge 2", "charge 3", "confirm"]


async def test_a_resumed_run_skips_finished_steps_and_reruns_the_current_one(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    CALLS.clear()
    GATE["gate"] = trio.Event()  # the charge step hangs: its worker dies in it
    try:
        async with trio_engine(tmp_path) as engine:
            runs = Pipelines(engine, [order], lease_ms=10_000)
            await runs.start(order, "o-3", {"id": "o-3"})
            async with runs.running():
                await trio.sleep(1)
            view = await runs.describe("o-3")
            assert view.done == ("validate",) and view.current == "charge"
            assert view.context["total"] == 42  # saved after the first step
    finally:
        del GATE["gate"]
    assert CALLS == ["validate 1", "charge 1"]
    async with trio_engine(tmp_path) as engine:  # a restart: the lease runs out, it resumes
        runs = Pipelines(engine, [order], lease_ms=10_000)
        async with runs.running():
            result = await runs.result("o-3")
        assert result["confirmed"]
    assert CALLS == ["validate 1", "charge 1", "charge 1", "confirm"]


async def test_a_run_journaled_with_argument_digests_resumes(
    tmp_path: Path, autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Steps no longer digest their arguments (they come from the journal); a run whose
    journal holds digests, stored before that, replays without drift."""
    from flowactors.code._replay import Context

    enter = Context._enter

    def digested(self: Context, kind: str, name: str, digest: str | None, *rest: Any) -> Any:
        return enter(self, kind, name, "0123456789abcdef" if digest is None else digest, *rest)

    CALLS.clear()
    GATE["gate"] = trio.Event()
    try:
        with monkeypatch.context() as patch:
            patch.setattr(Context, "_enter", digested)
            async with trio_engine(tmp_path) as engine:
                runs = Pipelines(engine, [order], lease_ms=10_000)
                await runs.start(order, "o-4", {"id": "o-4"})
                async with runs.running():
                    await trio.sleep(1)
                assert (await runs.describe("o-4")).done == ("validate",)
    finally:
        del GATE["gate"]
    async with trio_engine(tmp_path) as engine:
        runs = Pipelines(engine, [order], lease_ms=10_000)
        async with runs.running():
            with trio.fail_after(60):  # (virtual time: a parked run would never end)
                assert (await runs.result("o-4"))["confirmed"]
        assert (await runs.describe("o-4")).status == "completed"
    assert CALLS == ["validate 1", "charge 1", "charge 1", "confirm"]


REFUNDS: list[str] = []
saga = steps("saga")


async def release(result: dict[str, Any]) -> None:
    REFUNDS.append(f"release {result['reserved']}")


async def refund(result: dict[str, Any]) -> None:
    REFUNDS.append(f"refund {result['paid']}")


@saga.step(compensate=release)
async def reserve(ctx: StepContext, data: dict[str, Any]) -> dict[str, Any]:
    return {**data, "reserved": "r1"}


@saga.step(compensate=refund)
async def pay(ctx: StepContext, data: dict[str, Any]) -> dict[str, Any]:
    return {**data, "paid": "p1"}


@saga.step(retry=StepRetry(max_attempts=5))
async def ship(ctx: StepContext, data: dict[str, Any]) -> dict[str, Any]:
    CALLS.append(f"ship {ctx.attempt}")
    raise StepFailed("no carrier")  # fails at once, its other attempts unused


async def test_a_failed_step_compensates_the_earlier_ones_newest_first(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    CALLS.clear()
    REFUNDS.clear()
    async with trio_engine(tmp_path) as engine:
        runs = Pipelines(engine, [saga])
        await runs.start(saga, "s-1", {})
        async with runs.running():
            with pytest.raises(WorkflowFailed, match="no carrier"):
                await runs.result("s-1")
        assert CALLS == ["ship 1"]
        assert REFUNDS == ["refund p1", "release r1"]
        view = await runs.describe("s-1")
        assert view.status == "failed" and view.done == ("reserve", "pay")
        assert view.error is not None and "no carrier" in view.error["message"]


async def test_cancel(tmp_path: Path, autojump_clock: trio.testing.MockClock) -> None:
    async with trio_engine(tmp_path) as engine:
        runs = Pipelines(engine, [order])
        await runs.start(order, "o-4", {"id": "o-4"})
        view = await runs.cancel("o-4", "customer changed their mind")
        assert view.status == "cancelled"
        with pytest.raises(RunCancelled):
            await runs.result("o-4")


def test_bad_definitions_are_refused() -> None:
    p = steps("p")
    with pytest.raises(fa.InvalidArgument, match="no steps"):
        _ = p.workflow

    @p.step
    async def one(ctx: StepContext, data: Any) -> Any:
        return data

    with pytest.raises(fa.InvalidArgument, match="has a step"):
        p.step(one)
    with pytest.raises(fa.InvalidArgument):
        p.step(retry=3)(one)  # type: ignore[arg-type]
    for bad in (
        {"max_attempts": 0},
        {"max_attempts": True},
        {"backoff": "random"},
        {"base_ms": 0},
        {"cap_ms": -1},
    ):
        with pytest.raises(fa.InvalidArgument):
            StepRetry(**bad)
    _ = p.workflow
    with pytest.raises(fa.InvalidArgument, match="started running"):

        @p.step
        async def late(ctx: StepContext, data: Any) -> Any:
            return data

    with pytest.raises(fa.InvalidArgument):
        steps("")


async def test_unknown_pipeline_and_bad_input_write_nothing(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    async with trio_engine(tmp_path) as engine:
        runs = Pipelines(engine, [order])
        with pytest.raises(fa.InvalidArgument):
            await runs.start("nope", "x", {})
        with pytest.raises(fa.FlowError):
            await runs.start(order, "x", {"a set": {1, 2}})
        assert await engine.get("x") is None
        await runs.start(order, "y", {"id": "y"})
        with pytest.raises(fa.IdempotencyConflict):
            await runs.start(order, "y", {"id": "other"})
        with pytest.raises(fa.InvalidArgument):
            Pipelines(engine, [order, order])


async def test_a_run_started_under_another_list_of_steps_is_parked(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    old, new = steps("evolving"), steps("evolving")

    async def a(ctx: StepContext, data: Any) -> Any:
        return data

    async def b(ctx: StepContext, data: Any) -> Any:
        return data

    old.step(a)
    new.step(a)
    new.step(b)
    async with trio_engine(tmp_path) as engine:
        await Pipelines(engine, [old]).start(old, "e-1", {})
        runs = Pipelines(engine, [new])
        async with runs.running():
            await trio.sleep(1)
        view = await runs.describe("e-1")
        assert view.status == "parked" and view.done == ()


review = steps("review")


@review.step
async def score(ctx: StepContext, data: dict[str, Any]) -> Any:
    CALLS.append("score")
    if data["amount"] < 100:
        return goto("approve", {**data, "auto": True})  # a decision: skip manual review
    return data


@review.step
async def manual(ctx: StepContext, data: dict[str, Any]) -> dict[str, Any]:
    CALLS.append("manual")
    return {**data, "auto": False}


@review.step
async def approve(ctx: StepContext, data: dict[str, Any]) -> dict[str, Any]:
    CALLS.append("approve")
    return {**data, "approved": True}


backwards = steps("backwards")


@backwards.step
async def one_step(ctx: StepContext, data: Any) -> Any:
    return data


@backwards.step
async def loop_back(ctx: StepContext, data: Any) -> Any:
    return goto("one_step", data)


async def test_a_decision_step_goes_forward_only(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    CALLS.clear()
    async with trio_engine(tmp_path) as engine:
        runs = Pipelines(engine, [review, backwards])
        await runs.start(review, "small", {"amount": 5})
        await runs.start(review, "large", {"amount": 500})
        await runs.start(backwards, "back", 1)
        async with runs.running():
            assert await runs.result("small") == {"amount": 5, "auto": True, "approved": True}
            assert await runs.result("large") == {"amount": 500, "auto": False, "approved": True}
            with pytest.raises(WorkflowFailed, match="goes forward"):
                await runs.result("back")
        assert sorted(CALLS) == sorted(["score", "approve", "score", "manual", "approve"])
        assert (await runs.describe("small")).done == ("score", "approve")
