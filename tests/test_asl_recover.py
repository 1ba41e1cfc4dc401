"""Recovery: rebuilding an execution from any prefix of its events, then continuing, gives the
same events and outcome as the run that was never interrupted."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flowactors import asl

END = {"End": True}

# Tasks decide from their input only (a retry sees $$.State.RetryCount), so a host that crashed
# and re-runs a task gets the same answer as the first time.
DEFINITION = {
    "StartAt": "Prepare",
    "TimeoutSeconds": 10_000,
    "States": {
        "Prepare": {
            "Type": "Pass",
            "Parameters": {"items.$": "$.items", "id.$": "States.UUID()", "mode.$": "$.mode"},
            "Next": "Route",
        },
        "Route": {
            "Type": "Choice",
            "Choices": [
                {"Variable": "$.mode", "StringEquals": "fail", "Next": "Charge"},
                {"Variable": "$.mode", "StringMatches": "w*", "Next": "Pause"},
            ],
            "Default": "Charge",
        },
        "Pause": {"Type": "Wait", "Seconds": 3, "Next": "Charge"},
        "Charge": {
            "Type": "Task",
            "Resource": "charge",
            "Parameters": {"try.$": "$$.State.RetryCount", "mode.$": "$.mode"},
            "ResultPath": "$.charge",
            "TimeoutSeconds": 50,
            "Retry": [
                {
                    "ErrorEquals": ["Flaky"],
                    "IntervalSeconds": 2,
                    "MaxAttempts": 3,
                    "JitterStrategy": "FULL",
                }
            ],
            "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "Both"}],
            "Next": "Both",
        },
        "Both": {
            "Type": "Parallel",
            "ResultPath": "$.both",
            "Next": "Each",
            "Branches": [
                {"StartAt": "B1", "States": {"B1": {"Type": "Task", "Resource": "echo", **END}}},
                {"StartAt": "B2", "States": {"B2": {"Type": "Pass", "Result": "two", **END}}},
            ],
        },
        "Each": {
            "Type": "Map",
            "ItemsPath": "$.items",
            "MaxConcurrency": 2,
            "ToleratedFailureCount": 1,
            "ResultPath": "$.each",
            "Next": "Done",
            "ItemProcessor": {
                "StartAt": "Item",
                "States": {"Item": {"Type": "Task", "Resource": "item", **END}},
            },
        },
        "Done": {"Type": "Succeed"},
    },
}


def charge(x: dict[str, Any]) -> Any:
    if x["mode"] == "fail":
        raise asl.TaskError("Declined", "no funds")
    if x["try"] < 2:
        raise asl.TaskError("Flaky", f"try {x['try']}")
    return {"paid": True}


def item(x: Any) -> Any:
    if x == "bad":
        raise ValueError("bad item")
    return asl.Elapsed(0, f"<{x}>")


HANDLERS = {"charge": charge, "echo": lambda x: "one", "item": item}


def check_every_cut(definition: Any, input: Any) -> asl.RunResult:
    full = asl.run_inline(definition, input, HANDLERS)
    events = list(full.events)
    json.loads(json.dumps(events))  # plain JSON data
    for cut in range(1, len(events) + 1):
        recovered = asl.recover(definition, events[:cut])
        assert list(recovered.events) == events[: len(recovered.events)], cut
        assert len(recovered.events) >= cut
        rest = asl.continue_inline(recovered, HANDLERS, now_ms=recovered.events[-1]["timestamp"])
        assert list(rest.events) == events, cut
        assert (rest.status, rest.output, rest.error) == (full.status, full.output, full.error)
    return full


@pytest.mark.parametrize("mode", ["plain", "wait", "fail"])
def test_recover_at_every_cut(mode: str) -> None:
    full = check_every_cut(DEFINITION, {"items": ["a", "bad", "c"], "mode": mode})
    assert full.status is asl.Status.SUCCEEDED
    assert full.output["each"] == ["<a>", {"Error": "ValueError", "Cause": "bad item"}, "<c>"]
    assert full.output["both"] == ["one", "two"]
    if mode == "fail":
        assert full.output["error"] == {"Error": "Declined", "Cause": "no funds"}
    else:
        assert full.output["charge"] == {"paid": True}


@settings(max_examples=30, deadline=None)
@given(
    items=st.lists(st.sampled_from(["a", "b", "bad"]), max_size=5),
    mode=st.sampled_from(["plain", "wait", "fail"]),
    cut=st.floats(min_value=0, max_value=1),
)
def test_recover_at_random_cut(items: list[str], mode: str, cut: float) -> None:
    input = {"items": items, "mode": mode}
    full = asl.run_inline(DEFINITION, input, HANDLERS)
    events = list(full.events)
    k = max(1, round(cut * len(events)))
    recovered = asl.recover(DEFINITION, events[:k])
    rest = asl.continue_inline(recovered, HANDLERS, now_ms=recovered.events[-1]["timestamp"])
    assert list(rest.events) == events
    assert (rest.status, rest.output, rest.error) == (full.status, full.output, full.error)


def test_recovered_execution_lists_outstanding_effects() -> None:
    step = asl.start(DEFINITION, {"items": [], "mode": "wait"}, now_ms=100)
    (timeout, wait) = step.effects
    assert isinstance(timeout, asl.StartTimer) and isinstance(wait, asl.StartTimer)
    recovered = asl.recover(DEFINITION, list(step.events))
    assert set(recovered.pending) == {timeout, wait}
    assert recovered.events == step.execution.events


def test_a_log_cut_inside_derived_events_is_completed() -> None:
    step = asl.start(DEFINITION, {"items": [], "mode": "plain"})
    recovered = asl.recover(DEFINITION, list(step.events[:2]))
    assert recovered.events == step.execution.events
    assert recovered.pending == step.execution.pending


def test_a_foreign_history_is_refused() -> None:
    full = asl.run_inline(DEFINITION, {"items": ["a"], "mode": "plain"}, HANDLERS)
    events = [dict(e) for e in full.events]
    tampered = [*events[:5], {**events[5], "input": "changed"}, *events[6:]]
    with pytest.raises(asl.AslHistoryMismatch):
        asl.recover(DEFINITION, tampered)
    other = {"StartAt": "Prepare", "States": {"Prepare": {"Type": "Succeed"}}}
    with pytest.raises(asl.AslHistoryMismatch):
        asl.recover(other, events)
    with pytest.raises(asl.AslHistoryMismatch):
        asl.recover(DEFINITION, events[1:])


def test_resume_shares_emitted_events_but_leaves_the_caller_its_execution() -> None:
    """`resume` copies the run but not its emitted events (append-only dicts): the new
    execution holds the same event objects plus its own, the old one is unchanged."""
    step = asl.start(DEFINITION, {"items": [], "mode": "wait"}, now_ms=100)
    before = step.execution
    old = list(before.events)
    (_timeout, wait) = step.effects
    assert isinstance(wait, asl.StartTimer)
    after = asl.resume(before, asl.TimerFired(wait.timer_id, now_ms=wait.fire_at_ms)).execution
    assert list(before.events) == old and before.pending == step.execution.pending
    assert len(after.events) > len(old)
    assert all(a is b for a, b in zip(after.events[: len(old)], old, strict=True))  # shared


def test_recover_replays_in_place_without_copying_the_run(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A recover of n commands copied the whole run (every event) once per command:
    O(n^2). It now applies each command to the run it is rebuilding."""
    from flowactors.asl import _interpret

    full = asl.run_inline(DEFINITION, {"items": ["a", "b", "c"], "mode": "wait"}, HANDLERS)
    copies = 0
    real = _interpret._Run.__deepcopy__

    def counting(self: Any, memo: dict[int, Any]) -> Any:
        nonlocal copies
        copies += 1
        return real(self, memo)

    monkeypatch.setattr(_interpret._Run, "__deepcopy__", counting)
    recovered = asl.recover(DEFINITION, list(full.events))
    assert copies == 0
    assert list(recovered.events) == list(full.events) and recovered.status is full.status
