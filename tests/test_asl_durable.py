"""ASL executions run durably on the engine: every state type through AslRunner, in Trio's
virtual time (MockClock, autojump), with the stored history checked against the pure
interpreter where it matters."""

from __future__ import annotations

import ast
import itertools
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing
from sdk_helpers import trio_engine

import flowactors as fa
from flowactors import asl
from flowactors.asl import AslRunner, Status, TaskError

ORDER = Path(__file__).parent.parent / "examples" / "asl" / "order.asl.json"


def machine(states: dict[str, Any], start: str | None = None, **top: Any) -> dict[str, Any]:
    return {"StartAt": start or next(iter(states)), "States": states, **top}


@asynccontextmanager
async def runner(
    path: Path, handlers: dict[str, Callable[..., Any]] | None = None
) -> AsyncIterator[AslRunner]:
    async with trio_engine(path) as engine:
        yield AslRunner(engine, handlers or {})


def types(events: list[dict[str, Any]]) -> list[str]:
    return [e["type"] for e in events]


async def test_the_order_example_matches_the_inline_run(
    tmp_path: Path, mock_clock: trio.testing.MockClock
) -> None:
    # The handlers are sync, so they run in threads; with autojump at 0 a thread counts
    # as idle and virtual time could leap past the task timeout on a loaded machine.
    mock_clock.autojump_threshold = 0.25
    calls: list[str] = []

    def charge(x: Any) -> Any:
        calls.append("charge")
        return {"receipt": f"r-{x['orderId']}"}

    def ship(x: Any) -> Any:
        calls.append("ship")
        return {"tracking": x}

    handlers = {"charge": charge, "ship": ship}
    order = {"id": 7, "subtotal": 10, "shipping": 2, "items": ["a", "b"]}
    async with runner(tmp_path, handlers) as r:
        info = await r.execute("order-7", ORDER.read_text(), order)
        history = await r.history("order-7")
    inline = asl.run_inline(ORDER.read_text(), order, handlers, execution_id="order-7")
    assert info.status is Status.SUCCEEDED and info.flow_state == "completed"
    assert info.output == inline.output
    assert info.output["payment"] == {"receipt": "r-7"}
    assert types(history) == types(list(inline.events))
    assert calls == ["charge", "ship"] * 2  # once durably, once inline


async def test_retry_then_success_and_backoff_in_virtual_time(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    attempts: list[float] = []

    async def flaky(x: Any) -> Any:
        attempts.append(trio.current_time())
        if len(attempts) < 3:
            raise TaskError("Flaky", f"attempt {len(attempts)}")
        return {"ok": x["n"]}

    definition = machine(
        {
            "T": {
                "Type": "Task",
                "Resource": "flaky",
                "End": True,
                "Retry": [
                    {
                        "ErrorEquals": ["Flaky"],
                        "IntervalSeconds": 2,
                        "BackoffRate": 3,
                        "MaxAttempts": 3,
                    }
                ],
            },
        }
    )
    async with runner(tmp_path, {"flaky": flaky}) as r:
        info = await r.execute("x", definition, {"n": 1})
        history = await r.history("x")
    assert info.status is Status.SUCCEEDED and info.output == {"ok": 1}
    assert len(attempts) == 3
    gaps = [b - a for a, b in itertools.pairwise(attempts)]
    assert gaps[0] == pytest.approx(2, abs=0.6) and gaps[1] == pytest.approx(6, abs=0.6)
    assert types(history).count("RetryScheduled") == 2


async def test_catch_routes_a_typed_error_with_result_path(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    def boom(x: Any) -> Any:
        raise TaskError("Boom", "the card was declined")

    definition = machine(
        {
            "T": {
                "Type": "Task",
                "Resource": "boom",
                "Next": "Ok",
                "Catch": [
                    {"ErrorEquals": ["States.ALL"], "ResultPath": "$.err", "Next": "Handled"}
                ],
            },
            "Ok": {"Type": "Succeed"},
            "Handled": {"Type": "Pass", "Result": "handled", "ResultPath": "$.note", "End": True},
        }
    )
    async with runner(tmp_path, {"boom": boom}) as r:
        info = await r.execute("x", definition, {"a": 1})
    assert info.status is Status.SUCCEEDED
    assert info.output == {
        "a": 1,
        "err": {"Error": "Boom", "Cause": "the card was declined"},
        "note": "handled",
    }


async def test_an_uncaught_exception_fails_the_execution(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    def broken(x: Any) -> Any:
        raise KeyError("sku")

    definition = machine({"T": {"Type": "Task", "Resource": "broken", "End": True}})
    async with runner(tmp_path, {"broken": broken}) as r:
        info = await r.execute("x", definition, {})
        flow = await r.engine.get("x")
    assert (info.status, info.error, info.cause) == (Status.FAILED, "KeyError", "'sku'")
    assert flow is not None and flow.state == "failed"


async def test_task_timeout_is_enforced_and_catchable(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    async def slow(x: Any) -> Any:
        await trio.sleep(100)
        return "late"

    definition = machine(
        {
            "T": {
                "Type": "Task",
                "Resource": "slow",
                "TimeoutSeconds": 5,
                "Next": "Ok",
                "Catch": [{"ErrorEquals": ["States.Timeout"], "Next": "TimedOut"}],
            },
            "Ok": {"Type": "Succeed"},
            "TimedOut": {"Type": "Fail", "Error": "TooSlow", "Cause": "gave up"},
        }
    )
    async with runner(tmp_path, {"slow": slow}) as r:
        t0 = trio.current_time()
        info = await r.execute("x", definition, {})
        elapsed = trio.current_time() - t0
    assert (info.status, info.error, info.cause) == (Status.FAILED, "TooSlow", "gave up")
    assert 5 <= elapsed < 10


async def test_wait_parks_the_flow_until_its_due_time(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    definition = machine(
        {
            "W": {"Type": "Wait", "Seconds": 30, "Next": "Done"},
            "Done": {"Type": "Pass", "Parameters": {"at.$": "$$.State.EnteredTime"}, "End": True},
        }
    )
    async with runner(tmp_path) as r:
        await r.start("w", definition, {})
        async with trio.open_nursery() as nursery:
            await nursery.start(r.run)
            await trio.sleep(10)
            flow = await r.engine.get("w")
            assert flow is not None and flow.state == "waiting"
            assert flow.next_run_at_ms == 30_000
            info = await r.wait("w")
            nursery.cancel_scope.cancel()
    assert info.status is Status.SUCCEEDED
    assert info.output["at"].startswith("1970-01-01T00:00:30")


async def test_execution_timeout_ends_a_long_wait(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    definition = machine({"W": {"Type": "Wait", "Seconds": 3600, "End": True}}, TimeoutSeconds=5)
    async with runner(tmp_path) as r:
        info = await r.execute("x", definition, {})
    assert (info.status, info.error) == (Status.TIMED_OUT, "States.Timeout")
    assert info.updated_ms < 10_000


async def test_execution_timeout_interrupts_a_running_task(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    async def slow(x: Any) -> Any:
        await trio.sleep(3600)

    definition = machine({"T": {"Type": "Task", "Resource": "slow", "End": True}}, TimeoutSeconds=5)
    async with runner(tmp_path, {"slow": slow}) as r:
        info = await r.execute("x", definition, {})
    assert info.status is Status.TIMED_OUT and info.updated_ms < 10_000


PARALLEL = machine(
    {
        "P": {
            "Type": "Parallel",
            "End": True,
            "Branches": [
                machine({"A": {"Type": "Task", "Resource": "double", "End": True}}),
                machine({"B": {"Type": "Pass", "Parameters": {"b.$": "$.n"}, "End": True}}),
                machine(
                    {
                        "C": {"Type": "Wait", "Seconds": 3, "Next": "D"},
                        "D": {"Type": "Task", "Resource": "double", "End": True},
                    }
                ),
            ],
        },
    }
)


async def test_parallel_runs_branches_as_child_flows_with_outputs_in_order(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    async def double(x: Any) -> Any:
        return x["n"] * 2

    async with runner(tmp_path, {"double": double}) as r:
        info = await r.execute("p", PARALLEL, {"n": 21})
        kids = await r.engine.children("p")
        history = await r.history("p")
    assert info.status is Status.SUCCEEDED
    assert info.output == [42, {"b": 21}, 42]
    assert sorted(k.id for k in kids) == ["p/run-1/0", "p/run-1/1", "p/run-1/2"]
    assert {k.state for k in kids} == {"completed"}
    assert types(history).count("ParallelBranchSucceeded") == 3


async def test_a_failed_branch_fails_the_parallel_and_reaches_catch(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    def double(x: Any) -> Any:
        raise TaskError("Odd", "no")

    definition = machine(
        {
            "P": {
                "Type": "Parallel",
                "Next": "Ok",
                "Branches": PARALLEL["States"]["P"]["Branches"],
                "Catch": [{"ErrorEquals": ["Odd"], "ResultPath": "$.err", "Next": "Caught"}],
            },
            "Ok": {"Type": "Succeed"},
            "Caught": {"Type": "Succeed"},
        }
    )
    async with runner(tmp_path, {"double": double}) as r:
        info = await r.execute("p", definition, {"n": 1})
    assert info.status is Status.SUCCEEDED
    assert info.output == {"n": 1, "err": {"Error": "Odd", "Cause": "no"}}


def map_machine(max_concurrency: int, **extra: Any) -> dict[str, Any]:
    return machine(
        {
            "M": {
                "Type": "Map",
                "ItemsPath": "$.items",
                "MaxConcurrency": max_concurrency,
                "ItemSelector": {"v.$": "$$.Map.Item.Value", "i.$": "$$.Map.Item.Index"},
                "ItemProcessor": machine(
                    {"Work": {"Type": "Task", "Resource": "work", "End": True}}
                ),
                "End": True,
                **extra,
            },
        }
    )


async def test_map_keeps_item_order_and_respects_max_concurrency(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    running = peak = 0

    async def work(x: Any) -> Any:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await trio.sleep(5 - x["i"] % 3)  # later items finish first within a batch
        running -= 1
        return x["v"] * 10

    async with runner(tmp_path, {"work": work}) as r:
        info = await r.execute("m", map_machine(2), {"items": [1, 2, 3, 4, 5]})
        kids = await r.engine.children("m")
    assert info.status is Status.SUCCEEDED
    assert info.output == [10, 20, 30, 40, 50]
    assert peak == 2
    sizes: dict[str, int] = {}
    for k in kids:
        sizes[k.group_id] = sizes.get(k.group_id, 0) + 1
    assert len(kids) == 5 and max(sizes.values()) <= 2


async def test_map_tolerates_failures_up_to_its_threshold(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    def work(x: Any) -> Any:
        if x["v"] % 2:
            raise TaskError("Odd", str(x["v"]))
        return x["v"]

    async with runner(tmp_path, {"work": work}) as r:
        ok = await r.execute("ok", map_machine(0, ToleratedFailureCount=2), {"items": [1, 2, 3]})
        bad = await r.execute("bad", map_machine(0, ToleratedFailureCount=1), {"items": [1, 2, 3]})
    assert ok.status is Status.SUCCEEDED
    assert ok.output == [{"Error": "Odd", "Cause": "1"}, 2, {"Error": "Odd", "Cause": "3"}]
    assert (bad.status, bad.error) == (Status.FAILED, "States.ExceedToleratedFailureThreshold")


async def test_an_empty_map_succeeds_without_children(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    async with runner(tmp_path, {"work": lambda x: x}) as r:
        info = await r.execute("m", map_machine(0), {"items": []})
    assert info.status is Status.SUCCEEDED and info.output == []


async def test_fail_state_and_choice_default(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    definition = machine(
        {
            "C": {
                "Type": "Choice",
                "Default": "No",
                "Choices": [{"Variable": "$.x", "NumericGreaterThan": 10, "Next": "Yes"}],
            },
            "Yes": {"Type": "Succeed"},
            "No": {"Type": "Fail", "Error": "TooSmall", "CausePath": "States.Format('x={}', $.x)"},
        }
    )
    async with runner(tmp_path) as r:
        yes = await r.execute("yes", definition, {"x": 11})
        no = await r.execute("no", definition, {"x": 3})
    assert (yes.status, yes.output) == (Status.SUCCEEDED, {"x": 11})
    assert (no.status, no.error, no.cause) == (Status.FAILED, "TooSmall", "x=3")


async def test_stop_aborts_a_running_task_a_wait_and_a_parallel(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    started = trio.Event()

    async def hang(x: Any) -> Any:
        started.set()
        await trio.sleep(10_000)

    task = machine({"T": {"Type": "Task", "Resource": "hang", "End": True}})
    wait = machine({"W": {"Type": "Wait", "Seconds": 10_000, "End": True}})
    parallel = machine({"P": {"Type": "Parallel", "End": True, "Branches": [task, wait]}})
    async with runner(tmp_path, {"hang": hang}) as r, trio.open_nursery() as nursery:
        await nursery.start(r.run)
        for name, definition in (("t", task), ("w", wait), ("p", parallel)):
            await r.start(name, definition, {})
        await started.wait()
        await trio.sleep(1)
        infos = [await r.stop(name, "Operator", "enough") for name in ("t", "w", "p")]
        ended = [await r.wait(name) for name in ("t", "w", "p")]
        await r.engine.settle()
        kids = [await r.engine.get(k.id) for k in await r.engine.children("p")]
        history = await r.history("t")
        again = await r.stop("t")  # stopping an ended execution changes nothing
        nursery.cancel_scope.cancel()
    assert all(i.status is Status.RUNNING for i in infos)  # stop is asynchronous
    assert [(e.status, e.error, e.cause) for e in ended] == [
        (Status.ABORTED, "Operator", "enough")
    ] * 3
    assert history[-1]["type"] == "ExecutionAborted"
    assert len(kids) == 2 and {k.state for k in kids if k} == {"cancelled"}
    assert again == ended[0]


async def test_restart_in_the_middle_of_an_execution(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    calls: list[str] = []

    async def step(x: Any) -> Any:
        calls.append(x)
        return x + "!"

    definition = machine(
        {
            "A": {
                "Type": "Task",
                "Resource": "step",
                "InputPath": "$.a",
                "ResultPath": "$.a",
                "Next": "W",
            },
            "W": {"Type": "Wait", "Seconds": 60, "Next": "B"},
            "B": {
                "Type": "Task",
                "Resource": "step",
                "InputPath": "$.a",
                "ResultPath": "$.b",
                "End": True,
            },
        }
    )
    async with runner(tmp_path, {"step": step}) as r, trio.open_nursery() as nursery:
        await r.start("x", definition, {"a": "hi"})
        await nursery.start(r.run)
        await trio.sleep(5)
        assert (await r.engine.get("x")).state == "waiting"  # type: ignore[union-attr]
        nursery.cancel_scope.cancel()
    assert calls == ["hi"]
    async with runner(tmp_path, {"step": step}) as r, trio.open_nursery() as nursery:
        await nursery.start(r.run)
        info = await r.wait("x")
        nursery.cancel_scope.cancel()
    assert info.status is Status.SUCCEEDED and info.output == {"a": "hi!", "b": "hi!!"}
    assert calls == ["hi", "hi!"]


async def test_start_is_idempotent_and_checks_handlers(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    definition = machine({"T": {"Type": "Task", "Resource": "nope", "End": True}})
    async with runner(tmp_path, {"nope": lambda x: x}) as r:
        first = await r.start("x", definition, {"a": 1})
        again = await r.start("x", definition, {"a": 1})
        assert first.status is again.status is Status.RUNNING
        with pytest.raises(fa.IdempotencyConflict):
            await r.start("x", definition, {"a": 2})
        with pytest.raises(asl.AslUsageError, match="nope"):
            await AslRunner(r.engine, {}).start("y", definition, {})
        with pytest.raises(asl.AslValidationError):
            await r.start("z", {"StartAt": "Missing", "States": {}}, {})
        with pytest.raises(fa.FlowNotFound):
            await r.describe("absent")


async def test_a_resource_without_handler_fails_with_states_runtime(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    definition = machine(
        {
            "T": {
                "Type": "Task",
                "Resource": "nope",
                "End": True,
                "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "T"}],
            }
        }
    )
    async with runner(tmp_path) as r:
        await r.start("x", definition, {}, check_handlers=False)
        async with trio.open_nursery() as nursery:
            await nursery.start(r.run)
            info = await r.wait("x")
            nursery.cancel_scope.cancel()
    assert (info.status, info.error) == (Status.FAILED, "States.Runtime")  # uncatchable
    assert "nope" in (info.cause or "")


async def test_non_json_output_fails_the_task(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    definition = machine({"T": {"Type": "Task", "Resource": "odd", "End": True}})
    async with runner(tmp_path, {"odd": lambda x: {1, 2}}) as r:
        info = await r.execute("x", definition, {})
    assert (info.status, info.error) == (Status.FAILED, "States.Runtime")


async def test_history_is_stored_in_one_chunk_per_step(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    definition = machine(
        {
            "A": {"Type": "Task", "Resource": "id", "Next": "B"},
            "B": {"Type": "Task", "Resource": "id", "End": True},
        }
    )
    async with runner(tmp_path, {"id": lambda x: x}) as r:
        info = await r.execute("x", definition, {"k": 1})
        flow = await r.engine.get("x")
        history = await r.history("x")
    assert info.status is Status.SUCCEEDED and flow is not None
    chunks = sorted(n for n in flow.value_sizes if n.startswith("ev:"))
    assert chunks == ["ev:000001", "ev:000002"]  # claim 1 ran A, claim 2 ran B and ended
    assert [e["id"] for e in history] == list(range(1, len(history) + 1))
    assert asl.recover(definition, history).status is Status.SUCCEEDED


def test_only_the_durable_host_and_the_cli_import_the_engine() -> None:
    package = Path(asl.__file__).parent
    for source in package.glob("*.py"):
        tree = ast.parse(source.read_text())
        engine_imports = [
            node.module
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom)
            and node.level == 2
            and node.module
            and node.module != "_errors"
        ]
        if source.name not in ("_durable.py", "_cli.py"):
            assert engine_imports == [], (source.name, engine_imports)


async def test_heartbeats_keep_a_long_task_alive_and_silence_times_it_out(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    async def steady(x: Any, heartbeat: Callable[[], None]) -> Any:
        for _ in range(10):  # 10 s of work, a beat every second: never 3 s of silence
            await trio.sleep(1)
            heartbeat()
        return "done"

    async def stalls(x: Any, heartbeat: Callable[[], None]) -> Any:
        for _ in range(3):
            await trio.sleep(1)
            heartbeat()
        await trio.sleep(100)  # silent from here on
        return "late"

    def task(resource: str) -> dict[str, Any]:
        return machine(
            {
                "T": {
                    "Type": "Task",
                    "Resource": resource,
                    "HeartbeatSeconds": 3,
                    "TimeoutSeconds": 60,
                    "End": True,
                    "Catch": [{"ErrorEquals": ["States.HeartbeatTimeout"], "Next": "Silent"}],
                },
                "Silent": {"Type": "Fail", "Error": "Silent", "Cause": "no heartbeat"},
            }
        )

    handlers = {"steady": steady, "stalls": stalls}
    async with runner(tmp_path, handlers) as r:
        t0 = trio.current_time()
        ok = await r.execute("steady", task("steady"), {})
        assert trio.current_time() - t0 >= 10  # outlived HeartbeatSeconds three times over
        t1 = trio.current_time()
        silent = await r.execute("stalls", task("stalls"), {})
        assert 6 <= trio.current_time() - t1 < 10  # 3 s of beats, then 3 s of silence
    assert (ok.status, ok.output) == (Status.SUCCEEDED, "done")
    assert (silent.status, silent.error) == (Status.FAILED, "Silent")


async def test_a_thread_handler_can_heartbeat(tmp_path: Path) -> None:
    # The real clock on purpose: under the autojump clock, virtual time runs to the next
    # deadline (the heartbeat limit) while a thread starts, which no handler can beat.
    beats = []

    def threaded(x: Any, heartbeat: Callable[[], None]) -> Any:
        heartbeat()  # from a worker thread, through trio.from_thread
        beats.append(x)
        return "ok"

    definition = machine(
        {
            "T": {"Type": "Task", "Resource": "threaded", "HeartbeatSeconds": 60, "End": True},
        }
    )
    async with runner(tmp_path, {"threaded": threaded}) as r:
        info = await r.execute("threaded", definition, {"n": 1})
    assert (info.status, info.output, beats) == (Status.SUCCEEDED, "ok", [{"n": 1}])


async def test_a_long_execution_keeps_few_event_values(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """A loop of 60 tasks: past its first 16 steps an execution's events go to binary
    levels (flowactors/sdk/_journal.py), so it keeps a few values, not one per step, and
    its history is still every event in order."""

    async def bump(x: Any) -> Any:
        return {"n": x["n"] + 1}

    loop = machine(
        {
            "Bump": {"Type": "Task", "Resource": "bump", "Next": "More"},
            "More": {
                "Type": "Choice",
                "Choices": [{"Variable": "$.n", "NumericLessThan": 60, "Next": "Bump"}],
                "Default": "Done",
            },
            "Done": {"Type": "Succeed"},
        }
    )
    async with runner(tmp_path, {"bump": bump}) as r:
        info = await r.execute("loop", loop, {"n": 0})
        assert info.status is Status.SUCCEEDED and info.output == {"n": 60}
        history = await r.history("loop")
        flow = await r.engine.get("loop")
        assert flow is not None
        chunks = [n for n in flow.value_sizes if n.startswith("ev:")]
        assert len(chunks) <= 16 + (60).bit_length() + 1
        assert any(n.startswith("ev:L") for n in chunks)
        assert asl.event_chunk_names(flow.value_sizes)[:16] == [f"ev:{n:06d}" for n in range(1, 17)]
    inline = asl.run_inline(
        loop, {"n": 0}, {"bump": lambda x: {"n": x["n"] + 1}}, execution_id="loop"
    )
    assert types(history) == types(list(inline.events))


def _waiting_loop(n: int) -> dict[str, Any]:
    """A loop of `n` one-second waits, each followed by a task: every wake is a claim."""
    return machine(
        {
            "Wait": {"Type": "Wait", "Seconds": 1, "Next": "Bump"},
            "Bump": {"Type": "Task", "Resource": "bump", "Next": "More"},
            "More": {
                "Type": "Choice",
                "Choices": [{"Variable": "$.n", "NumericLessThan": n, "Next": "Wait"}],
                "Default": "Done",
            },
            "Done": {"Type": "Succeed"},
        }
    )


async def _bump(x: Any) -> Any:
    return {"n": x["n"] + 1}


@pytest.mark.parametrize("kept", [0, 1024])
async def test_kept_executions_skip_the_replay_and_change_nothing_stored(
    tmp_path: Path, autojump_clock: trio.testing.MockClock, kept: int
) -> None:
    """A runner keeps an execution in memory after each acknowledged step, and its next
    claim takes it from there instead of replaying the history; the history stored and
    the output are the same as with keeping off (and as the pure interpreter's)."""
    async with trio_engine(tmp_path) as engine:
        r = AslRunner(engine, {"bump": _bump}, kept_executions=kept)
        info = await r.execute("loop", _waiting_loop(30), {"n": 0})
        history = await r.history("loop")
    assert info.status is Status.SUCCEEDED and info.output == {"n": 30}
    inline = asl.run_inline(_waiting_loop(30), {"n": 0}, {"bump": lambda x: {"n": x["n"] + 1}})
    assert types(history) == types(list(inline.events))
    assert r.counts["steps"] == 61
    if kept:
        assert r.counts["replays"] == 0
    else:
        assert r.counts["replays"] == 60  # every claim but the first


async def test_a_kept_execution_written_meanwhile_is_rebuilt_from_the_store(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """A stop writes the flow after the step that left the execution kept: the version
    the claim sees is not the kept one plus one, so the runner rebuilds (and sees the
    stop) instead of trusting its memory."""
    wait = machine({"W": {"Type": "Wait", "Seconds": 10_000, "End": True}})
    async with trio_engine(tmp_path) as engine, trio.open_nursery() as nursery:
        r = AslRunner(engine, {})
        await nursery.start(r.run)
        await r.start("w", wait, {})
        while r.counts["commits"] < 1:
            await trio.sleep(1)
        assert "w" in r._kept and r.counts["replays"] == 0
        await r.stop("w", "Operator", "enough")
        ended = await r.wait("w")
        nursery.cancel_scope.cancel()
    assert (ended.status, ended.error) == (Status.ABORTED, "Operator")
    assert r.counts["replays"] == 1


def test_kept_executions_must_be_a_count(tmp_path: Path) -> None:
    async def main() -> None:
        async with fa.open_engine(tmp_path / "d") as engine:
            for bad in (-1, True, 1.5, "8"):
                with pytest.raises(asl.AslUsageError, match="kept_executions"):
                    AslRunner(engine, {}, kept_executions=bad)  # type: ignore[arg-type]

    trio.run(main)
