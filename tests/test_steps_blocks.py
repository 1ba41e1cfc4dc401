"""Branches, parallel blocks and saga statuses of step pipelines (seed 003's `branch`,
`parallel` with fail_fast / complete_all, compensating -> compensated |
compensation_failed), and the definition errors they refuse."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing
from sdk_helpers import trio_engine

import flowactors as fa
from flowactors.code import WorkflowFailed
from flowactors.steps import Pipelines, StepContext, StepFailed, goto, steps

CALLS: list[str] = []

routing = steps("routing")


@routing.step
async def classify(ctx: StepContext, data: dict[str, Any]) -> dict[str, Any]:
    CALLS.append("classify")
    tier = "gold" if data["spend"] > 100 else data.get("tier", "basic")
    return {**data, "tier": tier}


tier = routing.branch("by_tier", on=lambda data: data["tier"])


@tier.case("gold", "platinum")
async def discount(ctx: StepContext, data: dict[str, Any]) -> dict[str, Any]:
    CALLS.append("discount")
    return {**data, "discount": 10}


@tier.case("gold", "platinum")
async def gift(ctx: StepContext, data: dict[str, Any]) -> dict[str, Any]:
    CALLS.append("gift")
    return {**data, "gift": True}


@tier.case("vip")
async def concierge(ctx: StepContext, data: dict[str, Any]) -> Any:
    CALLS.append("concierge")
    return goto("receipt", {**data, "concierge": True})  # leaves the branch and skips ship


@tier.otherwise
async def standard(ctx: StepContext, data: dict[str, Any]) -> dict[str, Any]:
    CALLS.append("standard")
    return {**data, "discount": 0}


@routing.step
async def ship(ctx: StepContext, data: dict[str, Any]) -> dict[str, Any]:
    CALLS.append("ship")
    return {**data, "shipped": True}


@routing.step
async def receipt(ctx: StepContext, data: dict[str, Any]) -> dict[str, Any]:
    CALLS.append("receipt")
    return {**data, "receipt": True}


nodefault = steps("nodefault")
picky = nodefault.branch("picky", on=lambda data: data)


@picky.case(True)
async def only_true(ctx: StepContext, data: Any) -> Any:
    return data


async def test_a_branch_runs_the_matching_case_then_goes_on(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    async with trio_engine(tmp_path) as engine:
        runs = Pipelines(engine, [routing, nodefault])
        inputs = {
            "g": {"spend": 500}, "b": {"spend": 5}, "v": {"spend": 5, "tier": "vip"},
            "x": {"spend": 5, "tier": True},
        }  # fmt: skip
        for run_id, data in inputs.items():
            await runs.start(routing, run_id, data)
        await runs.start(nodefault, "n", 1)
        async with runs.running():
            CALLS.clear()
            assert await runs.result("g") == {
                "spend": 500, "tier": "gold", "discount": 10, "gift": True, "shipped": True,
                "receipt": True,
            }  # fmt: skip
            assert (await runs.result("b"))["discount"] == 0
            assert await runs.result("v") == {
                "spend": 5, "tier": "vip", "concierge": True, "receipt": True,
            }  # fmt: skip
            assert (await runs.result("x"))["discount"] == 0  # True: no case, the default
            with pytest.raises(WorkflowFailed, match="no case for 1 and no default"):
                await runs.result("n")
        view = await runs.describe("g")
        assert view.done == ("classify", "discount", "gift", "ship", "receipt")
        assert (await runs.describe("v")).done == ("classify", "concierge", "receipt")


checks = steps("checks")


@checks.step
async def prepare(ctx: StepContext, data: dict[str, Any]) -> dict[str, Any]:
    return {**data, "prepared": True}


both = checks.parallel("both", on_error="complete_all")


@both.step
async def fraud(ctx: StepContext, data: dict[str, Any]) -> dict[str, Any]:
    CALLS.append(f"fraud {ctx.run_id}")
    if data.get("fraud"):
        raise StepFailed("looks like fraud")
    return {"score": 1}


@both.step
async def stock(ctx: StepContext, data: dict[str, Any]) -> int:
    CALLS.append(f"stock {ctx.run_id}")
    await ctx.sleep(60_000)  # a wait inside a parallel step: its own run waits
    return 7


@checks.step
async def decide(ctx: StepContext, data: dict[str, Any]) -> dict[str, Any]:
    return {**data, "ok": data["__results__"]["fraud"][0] == "ok"}


strict = steps("strict")
gate = strict.parallel(
    "gate", into=lambda data, results: {**data, "seen": sorted(results)}
)  # fail_fast by default


@gate.step
async def slow_ok(ctx: StepContext, data: Any) -> Any:
    await ctx.sleep(3_600_000)  # an hour: cancelled long before
    return "fine"


@gate.step
async def quick_fail(ctx: StepContext, data: Any) -> Any:
    raise StepFailed("nope")


@strict.step
async def never(ctx: StepContext, data: Any) -> Any:
    CALLS.append("never")
    return data


async def test_parallel_blocks_run_children_and_collect_or_fail_fast(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    CALLS.clear()
    async with trio_engine(tmp_path) as engine:
        START = engine.now_ms()
        runs = Pipelines(engine, [checks, strict])
        await runs.start(checks, "c1", {"fraud": False})
        await runs.start(checks, "c2", {"fraud": True})
        await runs.start(strict, "s1", {})
        async with runs.running():
            assert await runs.result("c1") == {
                "fraud": False, "prepared": True, "ok": True,
                "__results__": {"fraud": ["ok", {"score": 1}], "stock": ["ok", 7]},
            }  # fmt: skip
            got = await runs.result("c2")
            assert got["ok"] is False
            assert got["__results__"]["fraud"][0] == "error"
            assert "looks like fraud" in got["__results__"]["fraud"][1]["message"]
            with pytest.raises(WorkflowFailed, match="parallel 'gate': step quick_fail failed"):
                await runs.result("s1")
            assert engine.now_ms() < START + 3_600_000  # not after the slow one's hour
            assert (await runs.runner.describe("s1/gate.slow_ok")).status == "cancelled"
        kids = await runs.list_children("c1")
        assert sorted(k.run_id for k in kids) == ["c1/both.fraud", "c1/both.stock"]
        assert {k.workflow for k in kids} == {"checks.both.fraud", "checks.both.stock"}
        assert "never" not in CALLS
        assert CALLS.count("fraud c1/both.fraud") == 1  # each child's step ran once


saga = steps("saga_statuses")
UNDONE: list[str] = []


async def unbook(result: dict[str, Any]) -> None:
    UNDONE.append("unbook")
    if result.get("stuck"):
        raise RuntimeError("hotel unreachable")


async def refund(result: dict[str, Any]) -> None:
    UNDONE.append("refund")


@saga.step(compensate=unbook)
async def book(ctx: StepContext, data: dict[str, Any]) -> dict[str, Any]:
    return {**data, "booked": True}


@saga.step(compensate=refund)
async def pay(ctx: StepContext, data: dict[str, Any]) -> dict[str, Any]:
    return {**data, "paid": True}


@saga.step
async def confirm(ctx: StepContext, data: dict[str, Any]) -> dict[str, Any]:
    raise StepFailed("no rooms")


async def test_compensation_statuses(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    UNDONE.clear()
    async with trio_engine(tmp_path) as engine:
        runs = Pipelines(engine, [saga])
        await runs.start(saga, "ok", {})
        await runs.start(saga, "bad", {"stuck": True})
        async with runs.running():
            for run_id in ("ok", "bad"):
                with pytest.raises(WorkflowFailed, match="no rooms"):
                    await runs.result(run_id)
        good, bad = await runs.describe("ok"), await runs.describe("bad")
        assert (good.status, good.compensation) == ("failed", "compensated")
        assert good.compensated == ("refund", "unbook")  # newest first
        assert (bad.status, bad.compensation) == ("failed", "compensation_failed")
        assert bad.compensation_failed == ("unbook",) and bad.compensated == ("refund",)
        assert sorted(UNDONE) == ["refund", "refund", "unbook", "unbook"]  # each once per run
        running = await runs.start(saga, "fresh", {})
        assert running.compensation is None and running.current == "book"


def test_definition_errors_are_typed_and_change_nothing() -> None:
    p = steps("defs")

    @p.step
    async def a(ctx: StepContext, data: Any) -> Any:
        return data

    b = p.branch("b", on=lambda d: d)
    with pytest.raises(fa.InvalidArgument, match="at least one value"):
        b.case()
    with pytest.raises(fa.InvalidArgument, match="case values"):
        b.case(1.5)
    b.case("x")(a.__wrapped__ if hasattr(a, "__wrapped__") else _named("bx"))
    with pytest.raises(fa.InvalidArgument, match="already has a case"):
        b.case("x", "y")
    with pytest.raises(fa.InvalidArgument, match="has a step 'a'"):
        p.branch("a", on=lambda d: d)
    with pytest.raises(fa.InvalidArgument, match="on must be"):
        p.branch("c", on="tier")  # type: ignore[arg-type]
    with pytest.raises(fa.InvalidArgument, match="on_error"):
        p.parallel("d", on_error="sometimes")
    par = p.parallel("e")
    with pytest.raises(fa.InvalidArgument, match="no compensate"):
        par.step(compensate=_named("undo"))
    with pytest.raises(fa.InvalidArgument, match=r"without '\.'"):
        p.step(name="a.b")(_named("ab"))
    with pytest.raises(fa.InvalidArgument, match="parallel 'e' has no steps"):
        _ = p.workflow
    par.step(_named("e1"))
    assert [w.name for w in p.workflows] == ["defs", "defs.e.e1"]
    with pytest.raises(fa.InvalidArgument, match="started running"):
        b.case("z")(_named("late"))


def _named(name: str) -> Any:
    async def fn(ctx: StepContext, data: Any) -> Any:
        return data

    fn.__name__ = name
    return fn


ACTIVE: dict[str, int] = {}
PEAK: dict[str, int] = {}
ORDER: list[str] = []

reports = steps("reports", queue="reports")  # served one at a time (queues={"reports": 1})
rush = steps("rush", queue="reports", priority=2)
mails = steps("mails")  # the default queue


async def _busy(queue: str, label: str) -> None:
    ACTIVE[queue] = ACTIVE.get(queue, 0) + 1
    PEAK[queue] = max(PEAK.get(queue, 0), ACTIVE[queue])
    ORDER.append(label)
    await trio.sleep(1)
    ACTIVE[queue] -= 1


@reports.step
async def render(ctx: StepContext, data: Any) -> Any:
    await _busy("reports", ctx.run_id)
    return data


@rush.step
async def render_now(ctx: StepContext, data: Any) -> Any:
    await _busy("reports", ctx.run_id)
    return data


@mails.step
async def mail(ctx: StepContext, data: Any) -> Any:
    await _busy("default", ctx.run_id)
    return data


async def test_named_queues_have_their_own_concurrency_and_priority(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    ACTIVE.clear()
    PEAK.clear()
    ORDER.clear()
    async with trio_engine(tmp_path) as engine:
        runs = Pipelines(engine, [reports, rush, mails], queues={"reports": 1})
        for i in range(3):
            await runs.start(reports, f"r{i}", i)
            await runs.start(mails, f"m{i}", i)
        await runs.start(rush, "urgent", 0)
        await runs.start(reports, "later", 9, priority=0)
        async with runs.running(concurrency=10):
            for run_id in ("r0", "r1", "r2", "m0", "m1", "m2", "urgent", "later"):
                await runs.result(run_id)
        assert PEAK == {"reports": 1, "default": 3}
        reported = [r for r in ORDER if not r.startswith("m")]
        assert reported[0] == "urgent"  # priority 2 first, then the queue in order
        assert sorted(reported[1:]) == ["later", "r0", "r1", "r2"]
        flow = await engine.get("r0")
        assert flow is not None and flow.type == "code.reports"
        listed = {r.run_id for r in await runs.runner.list(status="completed")}
        assert {"r0", "urgent", "m0"} <= listed
    with pytest.raises(fa.InvalidArgument, match="priority"):
        steps("bad", priority=3)
    with pytest.raises(fa.InvalidArgument, match="queue"):
        steps("bad", queue="")
    with pytest.raises(fa.InvalidArgument, match="concurrency"):
        Pipelines(None, [], queues={"reports": 0})  # type: ignore[arg-type]


printer = steps("printer")  # the default queue, unless its caller says otherwise


@printer.step
async def print_it(ctx: StepContext, data: Any) -> Any:
    await _busy("printers", ctx.run_id)
    return f"printed {data}"


batch = steps("batch")


@batch.step
async def print_all(ctx: StepContext, data: Any) -> Any:
    for i in range(3):
        await ctx.start_workflow(printer, i, ref=f"p{i}", queue="printers")
    got = await ctx.call_workflow(printer, 9, ref="last", queue="printers")
    return got.result


async def test_a_child_can_wait_in_another_queue(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    ACTIVE.clear()
    PEAK.clear()
    async with trio_engine(tmp_path) as engine:
        runs = Pipelines(engine, [batch, printer], queues={"printers": 1})
        await runs.start(batch, "b1", None)
        async with runs.running(concurrency=10):
            assert await runs.result("b1") == "printed 9"
            for i in range(3):
                await runs.result(f"b1/p{i}")
        assert PEAK == {"printers": 1}  # the printers' queue: one at a time
        flow = await engine.get("b1/last")
        assert flow is not None and flow.type == "code.printers"
    ctx = StepContext(None, "r", "s", 1, "r:s")
    with pytest.raises(fa.InvalidArgument, match="queue"):
        await ctx.call_workflow(printer, 1, ref="x", queue="")


shipping = steps("shipping")
by_kind = shipping.branch("by_kind", on=lambda data: data["kind"])
by_country = by_kind.branch("parcel", name="by_country", on=lambda data: data["country"])


@by_country.case("NO")
async def posten(ctx: StepContext, data: dict[str, Any]) -> dict[str, Any]:
    return {**data, "carrier": "posten"}


@by_country.otherwise
async def dhl(ctx: StepContext, data: dict[str, Any]) -> dict[str, Any]:
    return {**data, "carrier": "dhl"}


@by_kind.case("parcel")
async def label(ctx: StepContext, data: dict[str, Any]) -> dict[str, Any]:
    return {**data, "label": f"{data['carrier']}-label"}  # after the nested branch


@by_kind.otherwise
async def email_it(ctx: StepContext, data: dict[str, Any]) -> dict[str, Any]:
    return {**data, "carrier": "email"}


@shipping.step
async def done(ctx: StepContext, data: dict[str, Any]) -> dict[str, Any]:
    return {**data, "done": True}


async def test_branches_nest(tmp_path: Path, autojump_clock: trio.testing.MockClock) -> None:
    async with trio_engine(tmp_path) as engine:
        runs = Pipelines(engine, [shipping])
        inputs = {
            "no": {"kind": "parcel", "country": "NO"},
            "se": {"kind": "parcel", "country": "SE"},
            "ebook": {"kind": "ebook"},
        }
        for run_id, data in inputs.items():
            await runs.start(shipping, run_id, data)
        async with runs.running():
            got = {run_id: await runs.result(run_id) for run_id in inputs}
        assert got["no"]["carrier"] == "posten" and got["no"]["label"] == "posten-label"
        assert got["se"]["carrier"] == "dhl" and got["se"]["done"] is True
        assert got["ebook"] == {"kind": "ebook", "carrier": "email", "done": True}
        assert (await runs.describe("no")).done == ("posten", "label", "done")
    assert [s.name for s in shipping.steps] == ["posten", "dhl", "label", "email_it", "done"]
