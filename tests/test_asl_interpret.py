"""Executions by hand: per state type, operator and error path, run with `run_inline`."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from flowactors import asl

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "asl" / "order.asl.json"


class Boom(Exception):
    pass


class Other(Exception):
    pass


def flaky(failures: int, exc: type[Exception] = Boom, result: Any = "ok") -> Callable[[Any], Any]:
    calls = {"n": 0}

    def handler(x: Any) -> Any:
        calls["n"] += 1
        if calls["n"] <= failures:
            raise exc(f"attempt {calls['n']}")
        return result

    return handler


def raising(*errors: str) -> Callable[[Any], Any]:
    """Fail with these ASL error names in turn, then succeed."""
    queue = list(errors)

    def handler(x: Any) -> Any:
        if queue:
            raise asl.TaskError(queue.pop(0), "planned")
        return "done"

    return handler


def run(
    states: dict[str, Any],
    input: Any = None,
    handlers: dict[str, Any] | None = None,
    start: str = "A",
    **top: Any,
) -> asl.RunResult:
    base = {
        "echo": lambda x: x,
        "double": lambda x: x * 2,
        "boom": flaky(10**6),
        "slow": lambda x: asl.Elapsed(100, "late"),
        "token": lambda x: x,
    }
    base.update(handlers or {})
    return asl.run_inline({"StartAt": start, "States": states, **top}, input, base)


END = {"End": True}
OK = "ok"
ERR = "err"

Case = tuple[str, dict[str, Any], Any, dict[str, Any] | None, str, Any]

CASES: list[Case] = [
    # Pass
    ("pass through", {"A": {"Type": "Pass", **END}}, {"a": 1}, None, OK, {"a": 1}),
    (
        "pass result",
        {"A": {"Type": "Pass", "Result": {"x": 1}, **END}},
        {"a": 1},
        None,
        OK,
        {"x": 1},
    ),
    (
        "pass result path",
        {"A": {"Type": "Pass", "Result": 2, "ResultPath": "$.r.s", **END}},
        {"a": 1},
        None,
        OK,
        {"a": 1, "r": {"s": 2}},
    ),
    (
        "pass result path null",
        {"A": {"Type": "Pass", "Result": 2, "ResultPath": None, **END}},
        {"a": 1},
        None,
        OK,
        {"a": 1},
    ),
    (
        "pass parameters",
        {"A": {"Type": "Pass", "Parameters": {"b.$": "$.a", "id.$": "$$.Execution.Id"}, **END}},
        {"a": 1},
        None,
        OK,
        {"b": 1, "id": "execution"},
    ),
    (
        "pass input path",
        {"A": {"Type": "Pass", "InputPath": "$.a", **END}},
        {"a": [1]},
        None,
        OK,
        [1],
    ),
    (
        "pass output path",
        {"A": {"Type": "Pass", "OutputPath": "$.a[0]", **END}},
        {"a": [1]},
        None,
        OK,
        1,
    ),
    (
        "pass input path null",
        {"A": {"Type": "Pass", "InputPath": None, **END}},
        {"a": 1},
        None,
        OK,
        {},
    ),
    (
        "pass output path null",
        {"A": {"Type": "Pass", "OutputPath": None, **END}},
        {"a": 1},
        None,
        OK,
        {},
    ),
    (
        "pass input path missing",
        {"A": {"Type": "Pass", "InputPath": "$.x", **END}},
        {},
        None,
        ERR,
        "States.Runtime",
    ),
    (
        "pass parameter missing",
        {"A": {"Type": "Pass", "Parameters": {"x.$": "$.x"}, **END}},
        {},
        None,
        ERR,
        "States.ParameterPathFailure",
    ),
    (
        "pass result path on string",
        {"A": {"Type": "Pass", "ResultPath": "$.x", **END}},
        "s",
        None,
        ERR,
        "States.ResultPathMatchFailure",
    ),
    (
        "pass intrinsic",
        {
            "A": {
                "Type": "Pass",
                "Parameters": {"m.$": "States.Format('{}+{}', $.a, States.MathAdd($.a, 1))"},
                **END,
            }
        },
        {"a": 1},
        None,
        OK,
        {"m": "1+2"},
    ),
    (
        "pass then pass",
        {
            "A": {"Type": "Pass", "Result": 1, "ResultPath": "$.a", "Next": "B"},
            "B": {"Type": "Pass", "Result": 2, "ResultPath": "$.b", **END},
        },
        {},
        None,
        OK,
        {"a": 1, "b": 2},
    ),
    # Task
    (
        "task io",
        {
            "A": {
                "Type": "Task",
                "Resource": "echo",
                "InputPath": "$.in",
                "Parameters": {"v.$": "$.x"},
                "ResultSelector": {"w.$": "$.v"},
                "ResultPath": "$.in.res",
                "OutputPath": "$.in",
                **END,
            }
        },
        {"in": {"x": 3}},
        None,
        OK,
        {"x": 3, "res": {"w": 3}},
    ),
    (
        "task double",
        {"A": {"Type": "Task", "Resource": "double", "InputPath": "$.n", **END}},
        {"n": 21},
        None,
        OK,
        42,
    ),
    ("task uncaught", {"A": {"Type": "Task", "Resource": "boom", **END}}, {}, None, ERR, "Boom"),
    (
        "task catch result path",
        {
            "A": {
                "Type": "Task",
                "Resource": "boom",
                **END,
                "Catch": [{"ErrorEquals": ["Boom"], "ResultPath": "$.err", "Next": "B"}],
            },
            "B": {"Type": "Pass", **END},
        },
        {"a": 1},
        None,
        OK,
        {"a": 1, "err": {"Error": "Boom", "Cause": "attempt 1"}},
    ),
    (
        "task catch default result path",
        {
            "A": {
                "Type": "Task",
                "Resource": "boom",
                **END,
                "Catch": [{"ErrorEquals": ["Boom"], "Next": "B"}],
            },
            "B": {"Type": "Pass", **END},
        },
        {"a": 1},
        None,
        OK,
        {"Error": "Boom", "Cause": "attempt 1"},
    ),
    (
        "task catch null result path",
        {
            "A": {
                "Type": "Task",
                "Resource": "boom",
                **END,
                "Catch": [{"ErrorEquals": ["Boom"], "ResultPath": None, "Next": "B"}],
            },
            "B": {"Type": "Pass", **END},
        },
        {"a": 1},
        None,
        OK,
        {"a": 1},
    ),
    (
        "catch first match wins",
        {
            "A": {
                "Type": "Task",
                "Resource": "boom",
                **END,
                "Catch": [
                    {"ErrorEquals": ["Other"], "Next": "X"},
                    {"ErrorEquals": ["Boom"], "Next": "B"},
                    {"ErrorEquals": ["States.ALL"], "Next": "X"},
                ],
            },
            "B": {"Type": "Pass", "Result": "B", **END},
            "X": {"Type": "Pass", "Result": "X", **END},
        },
        {},
        None,
        OK,
        "B",
    ),
    (
        "catch states.all",
        {
            "A": {
                "Type": "Task",
                "Resource": "boom",
                **END,
                "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "B"}],
            },
            "B": {"Type": "Pass", "Result": 1, **END},
        },
        {},
        None,
        OK,
        1,
    ),
    (
        "catch no match fails",
        {
            "A": {
                "Type": "Task",
                "Resource": "boom",
                **END,
                "Catch": [{"ErrorEquals": ["Other"], "Next": "B"}],
            },
            "B": {"Type": "Pass", **END},
        },
        {},
        None,
        ERR,
        "Boom",
    ),
    (
        "states.taskfailed matches custom",
        {
            "A": {
                "Type": "Task",
                "Resource": "boom",
                **END,
                "Catch": [{"ErrorEquals": ["States.TaskFailed"], "Next": "B"}],
            },
            "B": {"Type": "Pass", "Result": 1, **END},
        },
        {},
        None,
        OK,
        1,
    ),
    (
        "states.taskfailed misses timeout",
        {
            "A": {
                "Type": "Task",
                "Resource": "slow",
                "TimeoutSeconds": 5,
                **END,
                "Catch": [{"ErrorEquals": ["States.TaskFailed"], "Next": "B"}],
            },
            "B": {"Type": "Pass", **END},
        },
        {},
        None,
        ERR,
        "States.Timeout",
    ),
    (
        "timeout",
        {"A": {"Type": "Task", "Resource": "slow", "TimeoutSeconds": 5, **END}},
        {},
        None,
        ERR,
        "States.Timeout",
    ),
    (
        "timeout caught",
        {
            "A": {
                "Type": "Task",
                "Resource": "slow",
                "TimeoutSeconds": 5,
                **END,
                "Catch": [{"ErrorEquals": ["States.Timeout"], "Next": "B", "ResultPath": "$.e"}],
            },
            "B": {"Type": "Pass", "OutputPath": "$.e.Error", **END},
        },
        {},
        None,
        OK,
        "States.Timeout",
    ),
    (
        "timeout path",
        {"A": {"Type": "Task", "Resource": "slow", "TimeoutSecondsPath": "$.t", **END}},
        {"t": 500},
        None,
        OK,
        "late",
    ),
    (
        "heartbeat",
        {"A": {"Type": "Task", "Resource": "slow", "HeartbeatSeconds": 5, **END}},
        {},
        None,
        ERR,
        "States.HeartbeatTimeout",
    ),
    ("no timeout", {"A": {"Type": "Task", "Resource": "slow", **END}}, {}, None, OK, "late"),
    (
        "retry then succeed",
        {"A": {"Type": "Task", "Resource": "f", **END, "Retry": [{"ErrorEquals": ["Boom"]}]}},
        {},
        {"f": flaky(2)},
        OK,
        "ok",
    ),
    (
        "retry exhausted then catch",
        {
            "A": {
                "Type": "Task",
                "Resource": "f",
                **END,
                "Retry": [{"ErrorEquals": ["Boom"], "MaxAttempts": 1}],
                "Catch": [{"ErrorEquals": ["Boom"], "Next": "B"}],
            },
            "B": {"Type": "Pass", "OutputPath": "$.Cause", **END},
        },
        {},
        {"f": flaky(2)},
        OK,
        "attempt 2",
    ),
    (
        "retry max attempts zero",
        {
            "A": {
                "Type": "Task",
                "Resource": "f",
                **END,
                "Retry": [{"ErrorEquals": ["Boom"], "MaxAttempts": 0}],
            }
        },
        {},
        {"f": flaky(1)},
        ERR,
        "Boom",
    ),
    (
        "retry other error not retried",
        {"A": {"Type": "Task", "Resource": "f", **END, "Retry": [{"ErrorEquals": ["Boom"]}]}},
        {},
        {"f": flaky(1, Other)},
        ERR,
        "Other",
    ),
    (
        "runtime error not retried or caught",
        {
            "A": {
                "Type": "Task",
                "Resource": "echo",
                **END,
                "InputPath": "$.missing",
                "Retry": [{"ErrorEquals": ["States.ALL"]}],
            }
        },
        {},
        None,
        ERR,
        "States.Runtime",
    ),
    (
        "result selector failure caught",
        {
            "A": {
                "Type": "Task",
                "Resource": "echo",
                **END,
                "ResultSelector": {"x.$": "$.nope"},
                "Catch": [{"ErrorEquals": ["States.ParameterPathFailure"], "Next": "B"}],
            },
            "B": {"Type": "Pass", "OutputPath": "$.Error", **END},
        },
        {},
        None,
        OK,
        "States.ParameterPathFailure",
    ),
    (
        "task token",
        {"A": {"Type": "Task", "Resource": "token", "Parameters": {"t.$": "$$.Task.Token"}, **END}},
        {},
        None,
        OK,
        {"t": "task-1"},
    ),
    (
        "retry count in context",
        {
            "A": {
                "Type": "Task",
                "Resource": "f",
                **END,
                "Parameters": {"n.$": "$$.State.RetryCount"},
                "Retry": [{"ErrorEquals": ["Boom"]}],
            }
        },
        {},
        {"f": lambda x: x if x["n"] == 2 else (_ for _ in ()).throw(Boom())},
        OK,
        {"n": 2},
    ),
    # Choice
    (
        "choice first match wins",
        {
            "A": {
                "Type": "Choice",
                "Choices": [
                    {"Variable": "$.n", "NumericGreaterThan": 1, "Next": "B"},
                    {"Variable": "$.n", "NumericGreaterThan": 0, "Next": "C"},
                ],
                "Default": "C",
            },
            "B": {"Type": "Pass", "Result": "B", **END},
            "C": {"Type": "Pass", "Result": "C", **END},
        },
        {"n": 5},
        None,
        OK,
        "B",
    ),
    (
        "choice default",
        {
            "A": {
                "Type": "Choice",
                "Choices": [{"Variable": "$.n", "NumericGreaterThan": 10, "Next": "B"}],
                "Default": "C",
            },
            "B": {"Type": "Pass", "Result": "B", **END},
            "C": {"Type": "Pass", "Result": "C", **END},
        },
        {"n": 5},
        None,
        OK,
        "C",
    ),
    (
        "choice no match",
        {
            "A": {
                "Type": "Choice",
                "Choices": [{"Variable": "$.n", "NumericGreaterThan": 10, "Next": "B"}],
            },
            "B": {"Type": "Pass", **END},
        },
        {"n": 5},
        None,
        ERR,
        "States.NoChoiceMatched",
    ),
    (
        "choice missing variable",
        {
            "A": {
                "Type": "Choice",
                "Choices": [{"Variable": "$.x", "NumericGreaterThan": 10, "Next": "B"}],
                "Default": "B",
            },
            "B": {"Type": "Pass", **END},
        },
        {"n": 5},
        None,
        ERR,
        "States.Runtime",
    ),
    (
        "choice io paths",
        {
            "A": {
                "Type": "Choice",
                "InputPath": "$.in",
                "OutputPath": "$.v",
                "Choices": [{"Variable": "$.v", "IsNumeric": True, "Next": "B"}],
            },
            "B": {"Type": "Pass", **END},
        },
        {"in": {"v": 3}},
        None,
        OK,
        3,
    ),
    # Wait
    ("wait seconds", {"A": {"Type": "Wait", "Seconds": 5, **END}}, {"a": 1}, None, OK, {"a": 1}),
    (
        "wait path",
        {"A": {"Type": "Wait", "SecondsPath": "$.s", **END}},
        {"s": 2},
        None,
        OK,
        {"s": 2},
    ),
    (
        "wait path bad",
        {"A": {"Type": "Wait", "SecondsPath": "$.s", **END}},
        {"s": "x"},
        None,
        ERR,
        "States.Runtime",
    ),
    (
        "wait timestamp path bad",
        {"A": {"Type": "Wait", "TimestampPath": "$.t", **END}},
        {"t": "soon"},
        None,
        ERR,
        "States.Runtime",
    ),
    (
        "wait output path",
        {"A": {"Type": "Wait", "Seconds": 0, "OutputPath": "$.a", **END}},
        {"a": 1},
        None,
        OK,
        1,
    ),
    # Succeed / Fail
    (
        "succeed",
        {"A": {"Type": "Succeed", "InputPath": "$.a", "OutputPath": "$.b"}},
        {"a": {"b": 1}},
        None,
        OK,
        1,
    ),
    ("fail", {"A": {"Type": "Fail", "Error": "E", "Cause": "C"}}, {}, None, ERR, "E"),
    (
        "fail paths",
        {
            "A": {
                "Type": "Fail",
                "ErrorPath": "$.e",
                "CausePath": "States.Format('because {}', $.c)",
            }
        },
        {"e": "Err", "c": 1},
        None,
        ERR,
        "Err",
    ),
    # Parallel
    (
        "parallel order",
        {
            "A": {
                "Type": "Parallel",
                **END,
                "Branches": [
                    {
                        "StartAt": "W",
                        "States": {
                            "W": {"Type": "Wait", "Seconds": 9, "Next": "P1"},
                            "P1": {"Type": "Pass", "Result": "slow", **END},
                        },
                    },
                    {"StartAt": "P2", "States": {"P2": {"Type": "Pass", "Result": "fast", **END}}},
                ],
            }
        },
        {},
        None,
        OK,
        ["slow", "fast"],
    ),
    (
        "parallel io",
        {
            "A": {
                "Type": "Parallel",
                **END,
                "Parameters": {"v.$": "$.x"},
                "ResultSelector": {"first.$": "$[0].v"},
                "ResultPath": "$.r",
                "Branches": [{"StartAt": "P", "States": {"P": {"Type": "Pass", **END}}}],
            }
        },
        {"x": 7},
        None,
        OK,
        {"x": 7, "r": {"first": 7}},
    ),
    (
        "parallel branch fails",
        {
            "A": {
                "Type": "Parallel",
                **END,
                "Branches": [
                    {"StartAt": "P", "States": {"P": {"Type": "Pass", **END}}},
                    {
                        "StartAt": "F",
                        "States": {"F": {"Type": "Fail", "Error": "Bad", "Cause": "b"}},
                    },
                ],
            }
        },
        {},
        None,
        ERR,
        "Bad",
    ),
    (
        "parallel catch",
        {
            "A": {
                "Type": "Parallel",
                **END,
                "Catch": [{"ErrorEquals": ["Bad"], "Next": "C", "ResultPath": "$.e"}],
                "Branches": [
                    {
                        "StartAt": "F",
                        "States": {"F": {"Type": "Fail", "Error": "Bad", "Cause": "b"}},
                    }
                ],
            },
            "C": {"Type": "Pass", "OutputPath": "$.e", **END},
        },
        {},
        None,
        OK,
        {"Error": "Bad", "Cause": "b"},
    ),
    (
        "parallel retry",
        {
            "A": {
                "Type": "Parallel",
                **END,
                "Retry": [{"ErrorEquals": ["Boom"]}],
                "Branches": [
                    {"StartAt": "T", "States": {"T": {"Type": "Task", "Resource": "f", **END}}}
                ],
            }
        },
        {},
        {"f": flaky(1)},
        OK,
        ["ok"],
    ),
    # Map
    (
        "map order",
        {
            "A": {
                "Type": "Map",
                **END,
                "ItemProcessor": {
                    "StartAt": "W",
                    "States": {
                        "W": {"Type": "Wait", "SecondsPath": "$", "Next": "D"},
                        "D": {"Type": "Task", "Resource": "double", **END},
                    },
                },
            }
        },
        [3, 1, 2],
        None,
        OK,
        [6, 2, 4],
    ),
    (
        "map items path and selector",
        {
            "A": {
                "Type": "Map",
                **END,
                "ItemsPath": "$.xs",
                "ItemSelector": {
                    "i.$": "$$.Map.Item.Index",
                    "v.$": "$$.Map.Item.Value",
                    "k.$": "$.k",
                },
                "ResultPath": "$.out",
                "Iterator": {"StartAt": "P", "States": {"P": {"Type": "Pass", **END}}},
            }
        },
        {"xs": ["a", "b"], "k": 0},
        None,
        OK,
        {"xs": ["a", "b"], "k": 0, "out": [{"i": 0, "v": "a", "k": 0}, {"i": 1, "v": "b", "k": 0}]},
    ),
    (
        "map empty",
        {
            "A": {
                "Type": "Map",
                **END,
                "ItemProcessor": {"StartAt": "P", "States": {"P": {"Type": "Pass", **END}}},
            }
        },
        [],
        None,
        OK,
        [],
    ),
    (
        "map items not array",
        {
            "A": {
                "Type": "Map",
                **END,
                "ItemProcessor": {"StartAt": "P", "States": {"P": {"Type": "Pass", **END}}},
            }
        },
        {"a": 1},
        None,
        ERR,
        "States.Runtime",
    ),
    (
        "map item failure",
        {
            "A": {
                "Type": "Map",
                **END,
                "ItemProcessor": {
                    "StartAt": "C",
                    "States": {
                        "C": {
                            "Type": "Choice",
                            "Choices": [{"Variable": "$", "NumericEquals": 2, "Next": "F"}],
                            "Default": "P",
                        },
                        "F": {"Type": "Fail", "Error": "Two"},
                        "P": {"Type": "Pass", **END},
                    },
                },
            }
        },
        [1, 2, 3],
        None,
        ERR,
        "Two",
    ),
    (
        "map tolerated count",
        {
            "A": {
                "Type": "Map",
                **END,
                "ToleratedFailureCount": 1,
                "ItemProcessor": {
                    "StartAt": "C",
                    "States": {
                        "C": {
                            "Type": "Choice",
                            "Choices": [{"Variable": "$", "NumericEquals": 2, "Next": "F"}],
                            "Default": "P",
                        },
                        "F": {"Type": "Fail", "Error": "Two", "Cause": "c"},
                        "P": {"Type": "Pass", **END},
                    },
                },
            }
        },
        [1, 2, 3],
        None,
        OK,
        [1, {"Error": "Two", "Cause": "c"}, 3],
    ),
    (
        "map tolerated exceeded",
        {
            "A": {
                "Type": "Map",
                **END,
                "ToleratedFailureCount": 1,
                "ItemProcessor": {"StartAt": "F", "States": {"F": {"Type": "Fail", "Error": "X"}}},
            }
        },
        [1, 2, 3],
        None,
        ERR,
        "States.ExceedToleratedFailureThreshold",
    ),
    (
        "map tolerated percentage",
        {
            "A": {
                "Type": "Map",
                **END,
                "ToleratedFailurePercentage": 50,
                "ItemProcessor": {
                    "StartAt": "C",
                    "States": {
                        "C": {
                            "Type": "Choice",
                            "Choices": [{"Variable": "$", "NumericGreaterThan": 2, "Next": "F"}],
                            "Default": "P",
                        },
                        "F": {"Type": "Fail", "Error": "Big"},
                        "P": {"Type": "Pass", **END},
                    },
                },
            }
        },
        [1, 2, 3, 4],
        None,
        OK,
        [1, 2, {"Error": "Big", "Cause": ""}, {"Error": "Big", "Cause": ""}],
    ),
    (
        "map percentage exceeded",
        {
            "A": {
                "Type": "Map",
                **END,
                "ToleratedFailurePercentage": 49,
                "ItemProcessor": {
                    "StartAt": "C",
                    "States": {
                        "C": {
                            "Type": "Choice",
                            "Choices": [{"Variable": "$", "NumericGreaterThan": 2, "Next": "F"}],
                            "Default": "P",
                        },
                        "F": {"Type": "Fail", "Error": "Big"},
                        "P": {"Type": "Pass", **END},
                    },
                },
            }
        },
        [1, 2, 3, 4],
        None,
        ERR,
        "States.ExceedToleratedFailureThreshold",
    ),
    (
        "map in parallel",
        {
            "A": {
                "Type": "Parallel",
                **END,
                "Branches": [
                    {
                        "StartAt": "M",
                        "States": {
                            "M": {
                                "Type": "Map",
                                **END,
                                "ItemProcessor": {
                                    "StartAt": "D",
                                    "States": {"D": {"Type": "Task", "Resource": "double", **END}},
                                },
                            }
                        },
                    },
                    {"StartAt": "P", "States": {"P": {"Type": "Pass", "Result": "p", **END}}},
                ],
            }
        },
        [1, 2],
        None,
        OK,
        [[2, 4], "p"],
    ),
]


@pytest.mark.parametrize(
    ("name", "states", "input", "handlers", "kind", "expected"), CASES, ids=[c[0] for c in CASES]
)
def test_execution(
    name: str,
    states: dict[str, Any],
    input: Any,
    handlers: dict[str, Any] | None,
    kind: str,
    expected: Any,
) -> None:
    r = run(states, input, handlers)
    if kind == OK:
        assert (r.status, r.output) == (asl.Status.SUCCEEDED, expected), (r.error, r.cause)
    else:
        assert (r.status, r.error) == (asl.Status.FAILED, expected), r.cause
    json.dumps(r.events)  # events are plain JSON data


def choice_rule(rule: dict[str, Any], input: Any) -> bool:
    r = run(
        {
            "A": {"Type": "Choice", "Choices": [{**rule, "Next": "Y"}], "Default": "N"},
            "Y": {"Type": "Pass", "Result": True, **END},
            "N": {"Type": "Pass", "Result": False, **END},
        },
        input,
    )
    assert r.status is asl.Status.SUCCEEDED, (r.error, r.cause)
    return bool(r.output)


V = "$.v"
OPERATORS: list[tuple[dict[str, Any], Any, bool]] = [
    ({"Variable": V, "StringEquals": "a"}, {"v": "a"}, True),
    ({"Variable": V, "StringEquals": "a"}, {"v": 1}, False),
    ({"Variable": V, "StringLessThan": "b"}, {"v": "a"}, True),
    ({"Variable": V, "StringGreaterThan": "b"}, {"v": "a"}, False),
    ({"Variable": V, "StringLessThanEquals": "a"}, {"v": "a"}, True),
    ({"Variable": V, "StringGreaterThanEquals": "b"}, {"v": "c"}, True),
    ({"Variable": V, "StringMatches": "log-*.txt"}, {"v": "log-1.txt"}, True),
    ({"Variable": V, "StringMatches": "a\\*"}, {"v": "ab"}, False),
    ({"Variable": V, "NumericEquals": 1}, {"v": 1.0}, True),
    ({"Variable": V, "NumericEquals": 1}, {"v": True}, False),
    ({"Variable": V, "NumericLessThan": 1}, {"v": 0.5}, True),
    ({"Variable": V, "NumericGreaterThan": 1}, {"v": 1}, False),
    ({"Variable": V, "NumericLessThanEquals": 1}, {"v": 1}, True),
    ({"Variable": V, "NumericGreaterThanEquals": 2}, {"v": 1}, False),
    ({"Variable": V, "BooleanEquals": False}, {"v": False}, True),
    ({"Variable": V, "BooleanEquals": False}, {"v": 0}, False),
    (
        {"Variable": V, "TimestampEquals": "2020-01-01T01:00:00+01:00"},
        {"v": "2020-01-01T00:00:00Z"},
        True,
    ),
    (
        {"Variable": V, "TimestampLessThan": "2020-01-01T00:00:00Z"},
        {"v": "2019-12-31T23:59:59.999Z"},
        True,
    ),
    ({"Variable": V, "TimestampGreaterThan": "2020-01-01T00:00:00Z"}, {"v": "not a time"}, False),
    (
        {"Variable": V, "TimestampLessThanEquals": "2020-01-01T00:00:00Z"},
        {"v": "2020-01-01T00:00:00Z"},
        True,
    ),
    (
        {"Variable": V, "TimestampGreaterThanEquals": "2020-01-01T00:00:00Z"},
        {"v": "2021-01-01T00:00:00Z"},
        True,
    ),
    ({"Variable": V, "StringEqualsPath": "$.w"}, {"v": "a", "w": "a"}, True),
    ({"Variable": V, "NumericLessThanPath": "$.w"}, {"v": 1, "w": 2}, True),
    ({"Variable": V, "NumericGreaterThanEqualsPath": "$.w"}, {"v": 1, "w": 2}, False),
    ({"Variable": V, "BooleanEqualsPath": "$.w"}, {"v": True, "w": True}, True),
    (
        {"Variable": V, "TimestampLessThanPath": "$.w"},
        {"v": "2020-01-01T00:00:00Z", "w": "2020-01-02T00:00:00Z"},
        True,
    ),
    ({"Variable": V, "StringLessThanEqualsPath": "$$.Execution.Id"}, {"v": "a"}, True),
    ({"Variable": V, "IsNull": True}, {"v": None}, True),
    ({"Variable": V, "IsNull": True}, {"v": 0}, False),
    ({"Variable": V, "IsPresent": True}, {"v": None}, True),
    ({"Variable": V, "IsPresent": False}, {}, True),
    ({"Variable": V, "IsNumeric": True}, {"v": 1.5}, True),
    ({"Variable": V, "IsString": False}, {"v": 1}, True),
    ({"Variable": V, "IsBoolean": True}, {"v": True}, True),
    ({"Variable": V, "IsTimestamp": True}, {"v": "2020-01-01T00:00:00Z"}, True),
    ({"Variable": V, "IsTimestamp": True}, {"v": "2020-01-01t00:00:00z"}, False),
    (
        {"And": [{"Variable": V, "IsNumeric": True}, {"Variable": V, "NumericGreaterThan": 1}]},
        {"v": 2},
        True,
    ),
    (
        {"And": [{"Variable": V, "IsNumeric": True}, {"Variable": V, "NumericGreaterThan": 1}]},
        {"v": "2"},
        False,
    ),
    (
        {"Or": [{"Variable": V, "StringEquals": "x"}, {"Variable": V, "NumericEquals": 2}]},
        {"v": 2},
        True,
    ),
    ({"Not": {"Variable": V, "StringEquals": "x"}}, {"v": "y"}, True),
    (
        {
            "Not": {
                "Or": [{"Variable": V, "IsNull": True}, {"Not": {"Variable": V, "IsString": True}}]
            }
        },
        {"v": "s"},
        True,
    ),
]


@pytest.mark.parametrize(
    ("rule", "input", "expected"),
    OPERATORS,
    ids=[f"{i}-{next(k for k in r if k != 'Variable')}" for i, (r, _, _) in enumerate(OPERATORS)],
)
def test_choice_operator(rule: dict[str, Any], input: Any, expected: bool) -> None:
    assert choice_rule(rule, input) is expected


def delays(result: asl.RunResult) -> list[int]:
    return [e["delayMs"] for e in result.events if e["type"] == "RetryScheduled"]


def test_retry_backoff_is_exponential() -> None:
    r = run(
        {
            "A": {
                "Type": "Task",
                "Resource": "f",
                **END,
                "Retry": [
                    {
                        "ErrorEquals": ["Boom"],
                        "IntervalSeconds": 3,
                        "BackoffRate": 2,
                        "MaxAttempts": 4,
                    }
                ],
            }
        },
        {},
        {"f": flaky(4)},
    )
    assert r.status is asl.Status.SUCCEEDED
    assert delays(r) == [3000, 6000, 12000, 24000]
    assert r.now_ms == 45000


def test_retry_max_delay_caps_backoff() -> None:
    r = run(
        {
            "A": {
                "Type": "Task",
                "Resource": "f",
                **END,
                "Retry": [
                    {
                        "ErrorEquals": ["Boom"],
                        "IntervalSeconds": 1,
                        "BackoffRate": 3,
                        "MaxAttempts": 5,
                        "MaxDelaySeconds": 5,
                    }
                ],
            }
        },
        {},
        {"f": flaky(5)},
    )
    assert delays(r) == [1000, 3000, 5000, 5000, 5000]


def test_retry_full_jitter_is_deterministic_and_bounded() -> None:
    states = {
        "A": {
            "Type": "Task",
            "Resource": "f",
            **END,
            "Retry": [
                {
                    "ErrorEquals": ["Boom"],
                    "IntervalSeconds": 10,
                    "MaxAttempts": 3,
                    "JitterStrategy": "FULL",
                }
            ],
        }
    }
    first = delays(run(states, {}, {"f": flaky(3)}))
    assert first == delays(run(states, {}, {"f": flaky(3)}))
    assert all(0 <= d < cap for d, cap in zip(first, [10000, 20000, 40000], strict=True))
    assert len(set(first)) == 3


def test_aws_retry_example() -> None:
    # The AWS developer guide's example: failures A, B, C, B wait 1 s, 2 s, 5 s, then Catch.
    r = run(
        {
            "A": {
                "Type": "Task",
                "Resource": "f",
                **END,
                "Retry": [
                    {
                        "ErrorEquals": ["ErrorA", "ErrorB"],
                        "IntervalSeconds": 1,
                        "BackoffRate": 2.0,
                        "MaxAttempts": 2,
                    },
                    {"ErrorEquals": ["ErrorC"], "IntervalSeconds": 5},
                ],
                "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "Z"}],
            },
            "Z": {"Type": "Pass", "OutputPath": "$.Error", **END},
        },
        {},
        {"f": raising("ErrorA", "ErrorB", "ErrorC", "ErrorB")},
    )
    assert delays(r) == [1000, 2000, 5000]
    assert r.output == "ErrorB"


def test_retry_counters_reset_on_reentry() -> None:
    r = run(
        {
            "A": {
                "Type": "Task",
                "Resource": "f",
                "Next": "B",
                "Retry": [{"ErrorEquals": ["Boom"], "MaxAttempts": 1}],
            },
            "B": {
                "Type": "Task",
                "Resource": "g",
                **END,
                "Retry": [{"ErrorEquals": ["Boom"], "MaxAttempts": 1}],
            },
        },
        {},
        {"f": flaky(1), "g": flaky(1)},
    )
    assert r.status is asl.Status.SUCCEEDED and delays(r) == [1000, 1000]


def test_wait_forms_advance_the_clock() -> None:
    assert run({"A": {"Type": "Wait", "Seconds": 7, **END}}).now_ms == 7000
    assert run({"A": {"Type": "Wait", "SecondsPath": "$.s", **END}}, {"s": 3}).now_ms == 3000
    ts = "1970-01-01T00:01:00Z"
    assert run({"A": {"Type": "Wait", "Timestamp": ts, **END}}).now_ms == 60000
    assert (
        run(
            {"A": {"Type": "Wait", "TimestampPath": "$.t", **END}},
            {"t": "1970-01-01T00:00:02.500Z"},
        ).now_ms
        == 2500
    )
    r = asl.run_inline(
        {"StartAt": "A", "States": {"A": {"Type": "Wait", "Timestamp": ts, **END}}},
        {},
        now_ms=10**9,
    )
    assert r.status is asl.Status.SUCCEEDED and r.now_ms == 10**9  # a past timestamp: no wait


def test_wait_emits_timer_effect_with_fire_time() -> None:
    step = asl.start(
        {"StartAt": "A", "States": {"A": {"Type": "Wait", "Seconds": 2, **END}}}, {}, now_ms=1000
    )
    assert step.status is asl.Status.RUNNING
    (timer,) = step.effects
    assert isinstance(timer, asl.StartTimer) and timer.fire_at_ms == 3000
    done = asl.resume(step.execution, asl.TimerFired(timer.timer_id, now_ms=3000))
    assert done.status is asl.Status.SUCCEEDED
    assert [e["type"] for e in done.events] == [
        "TimerFired",
        "WaitStateExited",
        "ExecutionSucceeded",
    ]


def test_map_max_concurrency_limits_running_iterations() -> None:
    defn = {
        "StartAt": "M",
        "States": {
            "M": {
                "Type": "Map",
                "MaxConcurrency": 2,
                **END,
                "ItemProcessor": {"StartAt": "P", "States": {"P": {"Type": "Pass", **END}}},
            }
        },
    }
    step = asl.start(defn, [10, 11, 12, 13, 14])
    outstanding: list[tuple[str, asl.Branch]] = []
    peak = 0
    execution = step.execution
    effects = step.effects
    while True:
        for eff in effects:
            assert isinstance(eff, asl.StartBranches)
            outstanding += [(eff.run_id, b) for b in eff.branches]
        peak = max(peak, len(outstanding))
        if not outstanding:
            break
        run_id, b = outstanding.pop(0)
        nxt = asl.resume(execution, asl.BranchSucceeded(run_id, b.index, b.input * 2))
        execution, effects = nxt.execution, nxt.effects
    assert peak == 2
    assert execution.status is asl.Status.SUCCEEDED
    assert execution.output == [20, 22, 24, 26, 28]


def test_parallel_failure_cancels_the_other_branches_and_ignores_late_results() -> None:
    defn = {
        "StartAt": "P",
        "States": {
            "P": {
                "Type": "Parallel",
                **END,
                "Branches": [
                    {"StartAt": "A", "States": {"A": {"Type": "Pass", **END}}},
                    {"StartAt": "B", "States": {"B": {"Type": "Pass", **END}}},
                ],
            }
        },
    }
    step = asl.start(defn, {})
    (eff,) = step.effects
    assert isinstance(eff, asl.StartBranches) and len(eff.branches) == 2
    failed = asl.resume(step.execution, asl.BranchFailed(eff.run_id, 1, "Bad", "x"))
    assert failed.status is asl.Status.FAILED and failed.error == "Bad"
    assert asl.CancelBranches(eff.run_id, (0,)) in failed.effects
    late = asl.resume(failed.execution, asl.BranchSucceeded(eff.run_id, 0, 1))
    assert late.events == () and late.status is asl.Status.FAILED


def test_execution_timeout() -> None:
    r = run({"A": {"Type": "Wait", "Seconds": 100, **END}}, {}, None, TimeoutSeconds=10)
    assert r.status is asl.Status.TIMED_OUT and r.error == "States.Timeout"
    assert r.now_ms == 10000


def test_stop_aborts() -> None:
    step = asl.start({"StartAt": "A", "States": {"A": {"Type": "Task", "Resource": "r", **END}}})
    stopped = asl.resume(step.execution, asl.Stop("Cancelled", "by user", now_ms=5))
    assert stopped.status is asl.Status.ABORTED and stopped.error == "Cancelled"
    assert stopped.events[-1]["type"] == "ExecutionAborted"
    assert stopped.execution.pending == ()


def test_stale_and_foreign_commands_are_ignored() -> None:
    step = asl.start({"StartAt": "A", "States": {"A": {"Type": "Task", "Resource": "r", **END}}})
    (task,) = step.effects
    assert isinstance(task, asl.ScheduleTask)
    for cmd in (
        asl.TaskSucceeded("task-99", 1),
        asl.TimerFired("timer-1"),
        asl.BranchSucceeded("run-1", 0, 1),
    ):
        s = asl.resume(step.execution, cmd)
        assert s.events == () and s.status is asl.Status.RUNNING
    timed_out = asl.resume(step.execution, asl.TaskTimedOut(task.task_id))
    assert timed_out.error == "States.Timeout"
    assert asl.resume(timed_out.execution, asl.TaskSucceeded(task.task_id, 1)).events == ()


def test_resume_does_not_change_the_given_execution() -> None:
    step = asl.start({"StartAt": "A", "States": {"A": {"Type": "Task", "Resource": "r", **END}}})
    (task,) = step.effects
    assert isinstance(task, asl.ScheduleTask)
    before = step.execution.events
    asl.resume(step.execution, asl.TaskSucceeded(task.task_id, 1))
    assert step.execution.events == before and step.execution.status is asl.Status.RUNNING


def test_uuid_is_reproducible_per_execution_id() -> None:
    defn = {
        "StartAt": "A",
        "States": {"A": {"Type": "Pass", **END, "Parameters": {"u.$": "States.UUID()"}}},
    }
    a = asl.run_inline(defn, {}, execution_id="x").output
    assert a == asl.run_inline(defn, {}, execution_id="x").output
    assert a != asl.run_inline(defn, {}, execution_id="y").output


def test_order_example() -> None:
    handlers = {
        "charge": flaky(
            1, type("CardNetworkDown", (Exception,), {}), {"receipt": "r-1", "noise": True}
        ),
        "ship": lambda order_id: f"track-{order_id}",
    }
    order = {"id": "o-1", "subtotal": 10, "shipping": 2, "items": ["a", "b"]}
    r = asl.run_inline(EXAMPLE.read_text(), order, handlers)
    assert r.status is asl.Status.SUCCEEDED, (r.error, r.cause)
    assert r.output == {
        "orderId": "o-1",
        "total": 12,
        "items": ["a", "b"],
        "label": "order o-1 (2 items)",
        "payment": {"receipt": "r-1"},
        "shipment": "track-o-1",
    }
    assert delays(r) == [2000]
    kinds = {e["type"] for e in r.events}
    assert {
        "PassStateEntered",
        "ChoiceStateEntered",
        "TaskScheduled",
        "WaitStarted",
        "SucceedStateEntered",
    } <= kinds
    free = asl.run_inline(EXAMPLE.read_text(), {**order, "subtotal": -2}, handlers)
    assert (free.status, free.error) == (asl.Status.FAILED, "OrderRejected")
    assert free.cause == "order o-1 has total 0"
    broke = asl.run_inline(EXAMPLE.read_text(), order, {**handlers, "charge": flaky(9, Other)})
    assert (broke.status, broke.error, broke.cause) == (asl.Status.FAILED, "Other", "attempt 1")
