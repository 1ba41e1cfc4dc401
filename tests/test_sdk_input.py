"""SDK and ASL entry points: wrong-typed input raises InvalidArgument (a FlowError), never a
raw TypeError or AttributeError, and a string is never read as a list of names (issue 14,
items 5 and 6)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from engine_helpers import FakeClock

import flowactors as fa
from flowactors import asl

DEFINITION = '{"StartAt": "A", "States": {"A": {"Type": "Pass", "End": true}}}'

Build = Callable[[fa.Engine], Any]

CONSTRUCTORS: dict[str, Build] = {
    "Client of a non-engine": lambda e: fa.Client("engine"),
    "Workflow type an int": lambda e: fa.Workflow(e, type=5),
    "Workflow partition_by a str": lambda e: fa.Workflow(e, type="t", partition_by="tenant"),
    "Workflow partition_by ints": lambda e: fa.Workflow(e, type="t", partition_by=[5]),
    "Workflow states a list": lambda e: fa.Workflow(e, type="t", states=["a"]),
    "Workflow state spec not a State": lambda e: fa.Workflow(e, type="t", states={"a": 1}),
    "Workflow retry_policy a dict": lambda e: fa.Workflow(e, type="t", retry_policy={"x": 1}),
    "Workflow initial_state an int": lambda e: fa.Workflow(e, type="t", initial_state=5),
    "State lease_ms a str": lambda e: fa.State(lease_ms="1000"),
    "State claim_payload a str": lambda e: fa.State(claim_payload="yes"),
    "State claim_values a str": lambda e: fa.State(claim_values="abc"),
    "State on_error a str": lambda e: fa.State(on_error="retry"),
    "State handler not callable": lambda e: fa.State(handler=5),
    "state() claim_values a str": lambda e: fa.Workflow(e, type="t").state("s", claim_values="v"),
    "queue partition_by a str": lambda e: fa.Client(e).queue(type="t", partition_by="tenant"),
    "queue lease_ms a str": lambda e: fa.Client(e).queue(type="t", lease_ms="5"),
    "Worker of a non-workflow": lambda e: fa.Worker("wf"),
    "Worker states a str": lambda e: fa.Worker(fa.Workflow(e, type="t"), "queued"),
    "Worker concurrency a str": lambda e: fa.Worker(fa.Workflow(e, type="t"), concurrency="4"),
    "Worker extend_every a str": lambda e: fa.Worker(fa.Workflow(e, type="t"), extend_every="0.5"),
    "Worker claim_values a str": lambda e: fa.Worker(fa.Workflow(e, type="t"), claim_values="v"),
    "Worker idle_ms None": lambda e: fa.Worker(fa.Workflow(e, type="t"), idle_ms=None),
    "Worker on_ack not callable": lambda e: fa.Worker(fa.Workflow(e, type="t"), on_ack=5),
    "Worker held a str": lambda e: fa.Worker(fa.Workflow(e, type="t"), held="run-1"),
    "Worker held an int": lambda e: fa.Worker(fa.Workflow(e, type="t"), held=5),
    "worker() states a str": lambda e: fa.Workflow(e, type="t").worker("queued"),
    "worker() states an int": lambda e: fa.Workflow(e, type="t").worker(5),
    "AslRunner handlers a list": lambda e: asl.AslRunner(e, handlers=["a"]),
    "AslRunner poll_ms a str": lambda e: asl.AslRunner(e, poll_ms="5"),
}


@pytest.mark.parametrize("case", list(CONSTRUCTORS))
async def test_sdk_constructors_refuse_wrong_types(tmp_path: Path, case: str) -> None:
    async with fa.open_engine(tmp_path, clock=FakeClock(), shards=1) as engine:
        with pytest.raises(fa.InvalidArgument):
            CONSTRUCTORS[case](engine)


Call = Callable[[fa.Workflow, fa.Flow], Any]

CALLS: dict[str, Call] = {
    "create attributes a list (partitioned)": lambda wf, f: wf.create(
        "n", attributes=[("tenant", "a")]
    ),
    "create_many items not CreateSpecs": lambda wf, f: wf.create_many([("n",)]),
    "create_many items None": lambda wf, f: wf.create_many(None),
    "claim_due state an int": lambda wf, f: wf.claim_due(5),
    "claim_due values a str": lambda wf, f: wf.claim_due("queued", values="v"),
    "claim_due limit a str": lambda wf, f: wf.claim_due("queued", limit="3"),
    "complete result an int": lambda wf, f: wf.complete(f, 5),
    "complete a job that is no flow": lambda wf, f: wf.complete("a", b"r"),
    "fail reason a list": lambda wf, f: wf.fail(f, ["x"]),
    "cancel reason an int": lambda wf, f: wf.cancel("q", reason=5),
    "extend_lease of a dict": lambda wf, f: wf.extend_lease({"id": "a"}),
    "spawn_children children None": lambda wf, f: wf.spawn_children(f, None),
    "signal if_state an int": lambda wf, f: wf.signal("q", "s", if_state=5, transition_to="x"),
    "get values a str": lambda wf, f: wf.get("a", attributes={"tenant": "a"}, values="v"),
    "run_once state an int": lambda wf, f: wf.run_once(5, handler=lambda ctx: None),
}


@pytest.mark.parametrize("case", list(CALLS))
async def test_workflow_calls_refuse_wrong_types(tmp_path: Path, case: str) -> None:
    async with fa.open_engine(tmp_path, clock=FakeClock(), shards=2) as engine:
        wf = fa.Workflow(engine, type="t", partition_by=["tenant"])
        await wf.create("a", attributes={"tenant": "a"})
        await wf.create("q", attributes={"tenant": "a"}, delay_ms=60_000)
        [f] = await wf.claim_due("queued")
        counts = await engine.counts()
        with pytest.raises(fa.InvalidArgument):
            await CALLS[case](wf, f)
        assert await engine.counts() == counts
        for fid in ("a", "q"):
            got = await wf.get(fid, attributes={"tenant": "a"})
            assert got is not None and got.version == (f.version if fid == "a" else 1)


ASL: dict[str, Callable[[], Any]] = {
    "load_definition an int": lambda: asl.load_definition(5),
    "start context a list": lambda: asl.start(DEFINITION, {}, [("a", 1)]),
    "start now_ms a str": lambda: asl.start(DEFINITION, {}, now_ms="1"),
    "start execution_id an int": lambda: asl.start(DEFINITION, {}, execution_id=5),
    "resume None": lambda: asl.resume(None, asl.TimerFired("t")),
    "resume a non-command": lambda: asl.resume(asl.start(DEFINITION).execution, 5),
    "recover events an int": lambda: asl.recover(DEFINITION, 5),
    "recover events of ints": lambda: asl.recover(DEFINITION, [5]),
    "run_inline handlers a list": lambda: asl.run_inline(DEFINITION, {}, ["a"]),
    "run_inline handler not callable": lambda: asl.run_inline(DEFINITION, {}, {"a": 5}),
    "run_inline max_commands a str": lambda: asl.run_inline(DEFINITION, {}, max_commands="x"),
    "run_inline now_ms a str": lambda: asl.run_inline(DEFINITION, {}, now_ms="x"),
    "continue_inline of None": lambda: asl.continue_inline(None),
}


@pytest.mark.parametrize("case", list(ASL))
def test_asl_entry_points_refuse_wrong_types(case: str) -> None:
    with pytest.raises(fa.InvalidArgument):
        ASL[case]()


async def test_asl_runner_start_refuses_wrong_types(tmp_path: Path) -> None:
    async with fa.open_engine(tmp_path, clock=FakeClock(), shards=1) as engine:
        runner = asl.AslRunner(engine)
        for call in (
            runner.start("x", 5),
            runner.start("x", DEFINITION, check_handlers="no"),
            runner.start_many(DEFINITION, "ab"),
            runner.start_many(DEFINITION, [("a", 1, 2)]),
        ):
            with pytest.raises(fa.InvalidArgument):
                await call
        assert await engine.counts() == {}
