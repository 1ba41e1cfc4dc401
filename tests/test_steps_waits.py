"""Waits inside steps (sleep, schedule_at, wait_for_event with a timeout, wait_for_all,
send_event): each waits durably in the run's workflow code, holding no worker, and the
step runs again from its start with what the wait produced."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing
from sdk_helpers import trio_engine

import flowactors as fa
from flowactors.steps import Pipelines, StepContext, steps

CALLS: list[str] = []
HOUR = 3_600_000
# hours of virtual time: the worker need not look for work or recheck leases every second
QUIET: dict[str, Any] = {"poll_ms": HOUR, "recheck_ms": HOUR, "lease_ms": HOUR}

waits = steps("waits")


@waits.step
async def nap(ctx: StepContext, data: dict[str, Any]) -> dict[str, Any]:
    CALLS.append("nap")
    await ctx.sleep(HOUR)
    await ctx.schedule_at(5 * HOUR)
    return {**data, "woke": True}


@waits.step
async def approval(ctx: StepContext, data: dict[str, Any]) -> dict[str, Any]:
    CALLS.append("approval")
    decision = await ctx.wait_for_event("approve", timeout=2 * HOUR, timeout_value="expired")
    both = await ctx.wait_for_all(["docs", "payment"], timeout=3 * HOUR, timeout_value=None)
    return {**data, "decision": decision, "both": both}


async def test_sleep_schedule_at_events_and_all(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    CALLS.clear()
    async with trio_engine(tmp_path) as engine:
        runs = Pipelines(engine, [waits], **QUIET)
        await runs.start(waits, "w-1", {})
        await runs.send_event("w-1", "docs", {"pages": 3})  # before the wait: kept
        async with runs.running():
            await trio.sleep(HOUR / 1000 / 2)
            flow = await engine.get("w-1")
            assert flow is not None and flow.lease_owner is None  # sleeping: no worker
            assert engine.now_ms() < HOUR
            await trio.sleep(5 * HOUR / 1000)  # past 05:00: now waiting for "approve"
            assert (await runs.describe("w-1")).current == "approval"
            await runs.send_event("w-1", "approve", "yes")
            await runs.send_event("w-1", "payment", 42)
            result = await runs.result("w-1")
        assert result == {
            "woke": True,
            "decision": "yes",
            "both": {"docs": {"pages": 3}, "payment": 42},
        }
        assert engine.now_ms() >= 5 * HOUR
        # each wait ends the step's attempt and runs the step again, from its start
        assert CALLS.count("nap") == 3 and CALLS.count("approval") == 3


async def test_an_event_that_does_not_come_gives_the_timeout_value(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    async with trio_engine(tmp_path) as engine:
        runs = Pipelines(engine, [waits], **QUIET)
        await runs.start(waits, "w-2", {})
        async with runs.running():
            await trio.sleep(6 * HOUR / 1000)
            await runs.send_event("w-2", "docs", 1)
            result = await runs.result("w-2")  # neither "approve" nor "payment" comes
        assert result["decision"] == "expired" and result["both"] is None


notify = steps("notify")
inbox = steps("inbox")


@notify.step
async def tell(ctx: StepContext, data: Any) -> Any:
    CALLS.append("tell")
    await ctx.send_event("in-1", "hello", {"from": ctx.run_id})
    await ctx.sleep(1_000)  # ends this attempt once: the send must not repeat
    return "told"


@inbox.step
async def listen(ctx: StepContext, data: Any) -> Any:
    first = await ctx.wait_for_event("hello")
    second = await ctx.wait_for_event("hello", timeout=60_000, timeout_value="no second")
    return [first, second]


async def test_send_event_is_exactly_once_across_step_reruns(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    CALLS.clear()
    async with trio_engine(tmp_path) as engine:
        runs = Pipelines(engine, [notify, inbox], **QUIET)
        await runs.start(inbox, "in-1", None)
        await runs.start(notify, "n-1", None)
        async with runs.running():
            assert await runs.result("n-1") == "told"
            assert await runs.result("in-1") == [{"from": "n-1"}, "no second"]
        assert CALLS == ["tell", "tell"]


async def test_bad_waits_fail_the_step(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    bad = steps("bad_waits")

    @bad.step
    async def wrong(ctx: StepContext, data: Any) -> Any:
        await ctx.sleep(-1)

    async with trio_engine(tmp_path) as engine:
        runs = Pipelines(engine, [bad])
        await runs.start(bad, "b", None)
        async with runs.running():
            with pytest.raises(fa.FlowError, match="non-negative"):
                await runs.result("b")


slow_child = steps("slow_child")


@slow_child.step
async def dawdle(ctx: StepContext, data: Any) -> Any:
    await ctx.sleep(data)
    return {"slept": data}


racing = steps("racing")


@racing.step
async def ask_child(ctx: StepContext, data: dict[str, Any]) -> dict[str, Any]:
    CALLS.append("ask_child")
    got = await ctx.call_workflow(
        slow_child, data["child_ms"], ref="slow", timeout=HOUR, timeout_value="child_timeout"
    )
    return {**data, "child": got if isinstance(got, str) else got.result}


@racing.step
async def first_answer(ctx: StepContext, data: dict[str, Any]) -> dict[str, Any]:
    got = await ctx.wait_for_any(["yes", "no"], timeout=HOUR, timeout_value="silence")
    return {**data, "answer": list(got) if isinstance(got, tuple) else got}


async def test_call_workflow_timeout_and_wait_for_any(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    CALLS.clear()
    async with trio_engine(tmp_path) as engine:
        runs = Pipelines(engine, [racing, slow_child], **QUIET)
        await runs.start(racing, "quick", {"child_ms": 1_000})
        await runs.start(racing, "slow", {"child_ms": 3 * HOUR})
        await runs.send_event("quick", "no", "not today")  # kept until the wait
        await runs.send_event("quick", "yes", "later")
        async with runs.running():
            assert await runs.result("quick") == {
                "child_ms": 1_000, "child": {"slept": 1_000}, "answer": ["no", "not today"],
            }  # fmt: skip
            assert await runs.result("slow") == {
                "child_ms": 3 * HOUR, "child": "child_timeout", "answer": "silence",
            }  # fmt: skip
            assert (await runs.describe("slow/slow")).status == "running"  # it goes on
        assert CALLS.count("ask_child") == 4  # each: first ask, then once the race is decided
    ctx = StepContext(None, "r", "s", 1, "r:s")
    for bad in ([], ["a", "a"], "yes", ["a,b"]):
        with pytest.raises(fa.InvalidArgument):
            await ctx.wait_for_any(bad)  # type: ignore[arg-type]
    with pytest.raises(fa.InvalidArgument):
        await ctx.call_workflow(slow_child, 1, ref="x", timeout=-1)


review = steps("review")


@review.step
async def collect(ctx: StepContext, data: dict[str, Any]) -> dict[str, Any]:
    CALLS.append("collect")
    ok = await ctx.wait_for_approval("manager", prompt=f"approve {data['amount']}?",
                                     timeout=2 * HOUR, timeout_value="expired")  # fmt: skip
    if ok is not True:
        return {**data, "approved": ok}
    size = await ctx.wait_for_choice("size", ["S", "M", "L"], prompt="which size?")
    note = await ctx.wait_for_text("note", metadata={"ui": "textarea"})
    form = await ctx.wait_for_form("address", ["street", "city"])
    return {**data, "approved": True, "size": size, "note": note, "address": form}


async def test_human_input_is_listed_checked_and_given_once(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    CALLS.clear()
    async with trio_engine(tmp_path) as engine:
        runs = Pipelines(engine, [review, waits], **QUIET)
        await runs.start(review, "r1", {"amount": 120})
        await runs.start(review, "r2", {"amount": 5})
        async with runs.running():
            await trio.sleep(1)
            pending = await runs.list_pending_inputs()
            assert [(p.run_id, p.name, p.type, p.step) for p in pending] == [
                ("r1", "manager", "approval", "collect"),
                ("r2", "manager", "approval", "collect"),
            ]
            assert pending[0].prompt == "approve 120?"
            assert pending[0].expires_ms == pending[0].since_ms + 2 * HOUR
            with pytest.raises(fa.InvalidArgument, match="approval"):
                await runs.provide_input("r1", "manager", "yes please")
            with pytest.raises(fa.InvalidArgument, match="not waiting for input 'size'"):
                await runs.provide_input("r1", "size", "M")
            await runs.provide_input("r1", "manager", {"approved": True})
            await trio.sleep(1)
            [p] = await runs.list_pending_inputs(name="size")
            assert (p.run_id, p.choices) == ("r1", ["S", "M", "L"])
            with pytest.raises(fa.InvalidArgument, match="one of"):
                await runs.provide_input("r1", "size", "XL")
            await runs.provide_input("r1", "size", "M")
            await trio.sleep(1)
            [p] = await runs.list_pending_inputs(pipeline=review, name="note")
            assert p.metadata == {"ui": "textarea"}
            await runs.provide_input("r1", "note", "ring twice")
            await trio.sleep(1)
            with pytest.raises(fa.InvalidArgument, match="missing fields"):
                await runs.provide_input("r1", "address", {"street": "Main 1"})
            await runs.provide_input("r1", "address", {"street": "Main 1", "city": "Oslo"})
            assert await runs.result("r1") == {
                "amount": 120, "approved": True, "size": "M", "note": "ring twice",
                "address": {"street": "Main 1", "city": "Oslo"},
            }  # fmt: skip
            assert await runs.result("r2") == {"amount": 5, "approved": "expired"}
            assert await runs.list_pending_inputs() == []
    ctx = StepContext(None, "r", "s", 1, "r:s")
    for bad in (
        {"type": "vote"}, {"type": "choice"}, {"type": "choice", "choices": []},
        {"type": "form"}, {"type": "form", "fields": [""]}, {"type": "text", "choices": [1]},
        {"prompt": 3}, {"metadata": []},
    ):  # fmt: skip
        with pytest.raises(fa.InvalidArgument):
            await ctx.wait_for_input("x", **bad)
