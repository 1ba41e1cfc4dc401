"""Validator rules, each with the JSON path of the problem it reports."""

from __future__ import annotations

import json
from typing import Any

import pytest

from flowactors import FlowError, InvalidArgument, asl


def machine(states: dict[str, Any], start: str = "A", **top: Any) -> dict[str, Any]:
    return {"StartAt": start, "States": states, **top}


def problems(defn: Any) -> dict[str, str]:
    with pytest.raises(asl.AslValidationError) as info:
        asl.load_definition(defn)
    return {p.path: p.message for p in info.value.problems}


def test_error_is_a_flow_error() -> None:
    assert issubclass(asl.AslValidationError, InvalidArgument)
    assert issubclass(asl.AslValidationError, FlowError)


def test_accepts_text_bytes_and_data() -> None:
    d = machine({"A": {"Type": "Succeed"}})
    for source in (d, json.dumps(d), json.dumps(d).encode()):
        assert asl.load_definition(source).start_at == "A"


PASS_END = {"Type": "Pass", "End": True}

CASES: list[tuple[str, Any, str, str]] = [
    ("not json", "{", "$", "not valid JSON"),
    ("no StartAt", {"States": {"A": PASS_END}}, "$", "StartAt"),
    ("StartAt missing state", machine({"A": PASS_END}, "B"), "$.StartAt", "not a state"),
    ("no States", {"StartAt": "A"}, "$", "States"),
    ("unknown top field", machine({"A": PASS_END}, Foo=1), "$.Foo", "not allowed"),
    ("bad type", machine({"A": {"Type": "Nope", "End": True}}), "$.States.A.Type", "unknown"),
    ("unknown field", machine({"A": {**PASS_END, "Bogus": 1}}), "$.States.A.Bogus", "not allowed"),
    ("next and end", machine({"A": {**PASS_END, "Next": "A"}}), "$.States.A", "both Next and End"),
    ("no transition", machine({"A": {"Type": "Pass"}}), "$.States.A", "Next or"),
    ("end false", machine({"A": {"Type": "Pass", "End": False}}), "$.States.A.End", "true"),
    (
        "dangling next",
        machine({"A": {"Type": "Pass", "Next": "B"}}),
        "$.States.A.Next",
        "not a state",
    ),
    ("unreachable", machine({"A": PASS_END, "B": PASS_END}), "$.States.B", "unreachable"),
    (
        "no terminal",
        machine({"A": {"Type": "Pass", "Next": "B"}, "B": {"Type": "Pass", "Next": "A"}}),
        "$.States",
        "no terminal",
    ),
    (
        "name too long",
        machine({"A": {"Type": "Pass", "Next": "x" * 81}, "x" * 81: PASS_END}),
        "$.States." + "x" * 81,
        "80",
    ),
    (
        "bad input path",
        machine({"A": {**PASS_END, "InputPath": "foo"}}),
        "$.States.A.InputPath",
        "must start with '$'",
    ),
    (
        "result path wildcard",
        machine({"A": {**PASS_END, "ResultPath": "$.a[*]"}}),
        "$.States.A.ResultPath",
        "reference path",
    ),
    (
        "result path context",
        machine({"A": {**PASS_END, "ResultPath": "$$.a"}}),
        "$.States.A.ResultPath",
        "reference path",
    ),
    (
        "template bad path",
        machine({"A": {**PASS_END, "Parameters": {"a.$": "nope"}}}),
        '$.States.A.Parameters["a.$"]',
        "neither a path",
    ),
    (
        "template dup key",
        machine({"A": {**PASS_END, "Parameters": {"a": 1, "a.$": "$"}}}),
        '$.States.A.Parameters["a.$"]',
        "twice",
    ),
    (
        "template nested array",
        machine({"A": {**PASS_END, "Parameters": {"l": [{"b.$": 3}]}}}),
        '$.States.A.Parameters.l[0]["b.$"]',
        "string",
    ),
    (
        "unknown intrinsic",
        machine({"A": {**PASS_END, "Parameters": {"a.$": "States.Nope()"}}}),
        '$.States.A.Parameters["a.$"]',
        "unknown function",
    ),
    (
        "intrinsic arity",
        machine({"A": {**PASS_END, "Parameters": {"a.$": "States.UUID(1)"}}}),
        '$.States.A.Parameters["a.$"]',
        "takes 0",
    ),
    (
        "intrinsic arg type",
        machine({"A": {**PASS_END, "Parameters": {"a.$": "States.ArrayRange('a', 2, 1)"}}}),
        '$.States.A.Parameters["a.$"]',
        "must be int",
    ),
    ("task no resource", machine({"A": {"Type": "Task", "End": True}}), "$.States.A", "Resource"),
    (
        "task timeout",
        machine({"A": {"Type": "Task", "Resource": "r", "End": True, "TimeoutSeconds": 0}}),
        "$.States.A.TimeoutSeconds",
        "at least 1",
    ),
    (
        "heartbeat >= timeout",
        machine(
            {
                "A": {
                    "Type": "Task",
                    "Resource": "r",
                    "End": True,
                    "TimeoutSeconds": 5,
                    "HeartbeatSeconds": 5,
                }
            }
        ),
        "$.States.A.HeartbeatSeconds",
        "smaller",
    ),
    (
        "retry not array",
        machine({"A": {"Type": "Task", "Resource": "r", "End": True, "Retry": {}}}),
        "$.States.A.Retry",
        "array",
    ),
    (
        "error equals empty",
        machine(
            {"A": {"Type": "Task", "Resource": "r", "End": True, "Retry": [{"ErrorEquals": []}]}}
        ),
        "$.States.A.Retry[0].ErrorEquals",
        "non-empty",
    ),
    (
        "states.all not alone",
        machine(
            {
                "A": {
                    "Type": "Task",
                    "Resource": "r",
                    "End": True,
                    "Retry": [{"ErrorEquals": ["States.ALL", "X"]}],
                }
            }
        ),
        "$.States.A.Retry[0].ErrorEquals",
        "alone",
    ),
    (
        "states.all not last",
        machine(
            {
                "A": {
                    "Type": "Task",
                    "Resource": "r",
                    "End": True,
                    "Retry": [{"ErrorEquals": ["States.ALL"]}, {"ErrorEquals": ["X"]}],
                }
            }
        ),
        "$.States.A.Retry[0].ErrorEquals",
        "last",
    ),
    (
        "unknown States error",
        machine(
            {
                "A": {
                    "Type": "Task",
                    "Resource": "r",
                    "End": True,
                    "Retry": [{"ErrorEquals": ["States.Nope"]}],
                }
            }
        ),
        "$.States.A.Retry[0].ErrorEquals[0]",
        "not a known",
    ),
    (
        "backoff below 1",
        machine(
            {
                "A": {
                    "Type": "Task",
                    "Resource": "r",
                    "End": True,
                    "Retry": [{"ErrorEquals": ["X"], "BackoffRate": 0.5}],
                }
            }
        ),
        "$.States.A.Retry[0].BackoffRate",
        "at least 1",
    ),
    (
        "jitter",
        machine(
            {
                "A": {
                    "Type": "Task",
                    "Resource": "r",
                    "End": True,
                    "Retry": [{"ErrorEquals": ["X"], "JitterStrategy": "HALF"}],
                }
            }
        ),
        "$.States.A.Retry[0].JitterStrategy",
        "FULL or NONE",
    ),
    (
        "max delay",
        machine(
            {
                "A": {
                    "Type": "Task",
                    "Resource": "r",
                    "End": True,
                    "Retry": [{"ErrorEquals": ["X"], "MaxDelaySeconds": 0}],
                }
            }
        ),
        "$.States.A.Retry[0].MaxDelaySeconds",
        "at least 1",
    ),
    (
        "catch no next",
        machine(
            {"A": {"Type": "Task", "Resource": "r", "End": True, "Catch": [{"ErrorEquals": ["X"]}]}}
        ),
        "$.States.A.Catch[0]",
        "Next",
    ),
    (
        "catch dangling",
        machine(
            {
                "A": {
                    "Type": "Task",
                    "Resource": "r",
                    "End": True,
                    "Catch": [{"ErrorEquals": ["X"], "Next": "Z"}],
                }
            }
        ),
        "$.States.A.Catch[0].Next",
        "not a state",
    ),
    ("wait none", machine({"A": {"Type": "Wait", "End": True}}), "$.States.A", "exactly one"),
    (
        "wait two",
        machine({"A": {"Type": "Wait", "Seconds": 1, "SecondsPath": "$.s", "End": True}}),
        "$.States.A",
        "only one",
    ),
    (
        "wait bad timestamp",
        machine({"A": {"Type": "Wait", "Timestamp": "2020-01-01 00:00:00", "End": True}}),
        "$.States.A.Timestamp",
        "RFC 3339",
    ),
    (
        "wait negative",
        machine({"A": {"Type": "Wait", "Seconds": -1, "End": True}}),
        "$.States.A.Seconds",
        "at least 0",
    ),
    ("choice no choices", machine({"A": {"Type": "Choice"}}), "$.States.A", "Choices"),
    (
        "choice end",
        machine(
            {
                "A": {
                    "Type": "Choice",
                    "End": True,
                    "Choices": [{"Variable": "$", "IsNull": True, "Next": "B"}],
                },
                "B": PASS_END,
            }
        ),
        "$.States.A.End",
        "not allowed",
    ),
    (
        "choice no variable",
        machine(
            {
                "A": {"Type": "Choice", "Choices": [{"StringEquals": "x", "Next": "B"}]},
                "B": PASS_END,
            }
        ),
        "$.States.A.Choices[0]",
        "Variable",
    ),
    (
        "choice two ops",
        machine(
            {
                "A": {
                    "Type": "Choice",
                    "Choices": [
                        {"Variable": "$", "StringEquals": "x", "IsNull": True, "Next": "B"}
                    ],
                },
                "B": PASS_END,
            }
        ),
        "$.States.A.Choices[0]",
        "exactly one",
    ),
    (
        "choice operand type",
        machine(
            {
                "A": {
                    "Type": "Choice",
                    "Choices": [{"Variable": "$", "NumericEquals": "1", "Next": "B"}],
                },
                "B": PASS_END,
            }
        ),
        "$.States.A.Choices[0].NumericEquals",
        "number",
    ),
    (
        "choice nested next",
        machine(
            {
                "A": {
                    "Type": "Choice",
                    "Choices": [
                        {"Not": {"Variable": "$", "IsNull": True, "Next": "B"}, "Next": "B"}
                    ],
                },
                "B": PASS_END,
            }
        ),
        "$.States.A.Choices[0].Not.Next",
        "not allowed",
    ),
    (
        "choice empty and",
        machine({"A": {"Type": "Choice", "Choices": [{"And": [], "Next": "B"}]}, "B": PASS_END}),
        "$.States.A.Choices[0].And",
        "non-empty",
    ),
    (
        "choice bad timestamp",
        machine(
            {
                "A": {
                    "Type": "Choice",
                    "Choices": [{"Variable": "$", "TimestampEquals": "yesterday", "Next": "B"}],
                },
                "B": PASS_END,
            }
        ),
        "$.States.A.Choices[0].TimestampEquals",
        "timestamp",
    ),
    (
        "choice path operand",
        machine(
            {
                "A": {
                    "Type": "Choice",
                    "Choices": [{"Variable": "$", "StringEqualsPath": "x", "Next": "B"}],
                },
                "B": PASS_END,
            }
        ),
        "$.States.A.Choices[0].StringEqualsPath",
        "'$'",
    ),
    (
        "fail error and path",
        machine({"A": {"Type": "Fail", "Error": "E", "ErrorPath": "$.e"}}),
        "$.States.A",
        "only one",
    ),
    (
        "parallel no branches",
        machine({"A": {"Type": "Parallel", "End": True}}),
        "$.States.A",
        "Branches",
    ),
    (
        "parallel branch bad",
        machine(
            {
                "A": {
                    "Type": "Parallel",
                    "End": True,
                    "Branches": [{"StartAt": "B", "States": {"B": {"Type": "Pass"}}}],
                }
            }
        ),
        "$.States.A.Branches[0].States.B",
        "Next or",
    ),
    (
        "branch leaves",
        machine(
            {
                "A": {
                    "Type": "Parallel",
                    "Next": "Z",
                    "Branches": [{"StartAt": "B", "States": {"B": {"Type": "Pass", "Next": "Z"}}}],
                },
                "Z": PASS_END,
            }
        ),
        "$.States.A.Branches[0].States.B.Next",
        "cannot leave",
    ),
    (
        "duplicate across machines",
        machine(
            {
                "A": {
                    "Type": "Parallel",
                    "Next": "B",
                    "Branches": [{"StartAt": "B", "States": {"B": PASS_END}}],
                },
                "B": PASS_END,
            }
        ),
        "$.States.B",
        "already used",
    ),
    (
        "map no processor",
        machine({"A": {"Type": "Map", "End": True}}),
        "$.States.A",
        "ItemProcessor",
    ),
    (
        "map percentage",
        machine(
            {
                "A": {
                    "Type": "Map",
                    "End": True,
                    "ToleratedFailurePercentage": 101,
                    "ItemProcessor": {"StartAt": "B", "States": {"B": PASS_END}},
                }
            }
        ),
        "$.States.A.ToleratedFailurePercentage",
        "at most 100",
    ),
    (
        "map selector twice",
        machine(
            {
                "A": {
                    "Type": "Map",
                    "End": True,
                    "ItemSelector": {},
                    "Parameters": {},
                    "ItemProcessor": {"StartAt": "B", "States": {"B": PASS_END}},
                }
            }
        ),
        "$.States.A",
        "only one of ItemSelector",
    ),
    (
        "map processor mode",
        machine(
            {
                "A": {
                    "Type": "Map",
                    "End": True,
                    "ItemProcessor": {
                        "ProcessorConfig": {"Mode": "FAST"},
                        "StartAt": "B",
                        "States": {"B": PASS_END},
                    },
                }
            }
        ),
        "$.States.A.ItemProcessor.ProcessorConfig.Mode",
        "INLINE",
    ),
    (
        "map items path wildcard",
        machine(
            {
                "A": {
                    "Type": "Map",
                    "End": True,
                    "ItemsPath": "$[*]",
                    "ItemProcessor": {"StartAt": "B", "States": {"B": PASS_END}},
                }
            }
        ),
        "$.States.A.ItemsPath",
        "reference path",
    ),
    (
        "jsonata field in jsonpath",
        machine({"A": {**PASS_END, "Output": 1}}),
        "$.States.A.Output",
        "JSONata mode",
    ),
    (
        "jsonata syntax",
        machine({"A": {**PASS_END, "QueryLanguage": "JSONata", "Output": "{% 1 + %}"}}),
        "$.States.A.Output",
        "JSONata",
    ),
    (
        "duplicate json key",
        '{"StartAt": "A", "StartAt": "A", "States": {"A": {"Type": "Succeed"}}}',
        "$.StartAt",
        "duplicate JSON key",
    ),
]


@pytest.mark.parametrize(("name", "defn", "path", "fragment"), CASES, ids=[c[0] for c in CASES])
def test_rule(name: str, defn: Any, path: str, fragment: str) -> None:
    found = problems(defn)
    assert path in found, found
    assert fragment in found[path], found[path]


def test_all_problems_reported_at_once() -> None:
    defn = machine(
        {
            "A": {"Type": "Pass", "InputPath": "x", "Next": "Nowhere"},
            "B": {"Type": "Task", "End": True, "Retry": [{"ErrorEquals": [1]}]},
            "C": {"Type": "Wait", "Seconds": 1, "Timestamp": "2020-01-01T00:00:00Z", "End": True},
        }
    )
    found = problems(defn)
    for path in (
        "$.States.A.InputPath",
        "$.States.A.Next",
        "$.States.B",
        "$.States.B.Retry[0].ErrorEquals[0]",
        "$.States.C",
    ):
        assert path in found, found
    with pytest.raises(asl.AslValidationError) as info:
        asl.load_definition(defn)
    assert len(info.value.problems) >= 5
    assert "$.States.A.InputPath" in str(info.value)


def test_typed_definition() -> None:
    m = asl.load_definition(
        machine(
            {
                "A": {
                    "Type": "Task",
                    "Resource": "r",
                    "Next": "B",
                    "TimeoutSeconds": 9,
                    "Retry": [
                        {"ErrorEquals": ["X"], "MaxDelaySeconds": 4, "JitterStrategy": "FULL"}
                    ],
                    "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "B", "ResultPath": None}],
                },
                "B": {
                    "Type": "Map",
                    "End": True,
                    "MaxConcurrency": 2,
                    "Iterator": {"StartAt": "C", "States": {"C": {"Type": "Succeed"}}},
                },
            }
        )
    )
    a = m.states["A"]
    assert isinstance(a, asl.TaskState)
    assert a.timeout_seconds == 9
    assert a.retry == (asl.Retrier(("X",), 1, 3, 2.0, 4, "FULL"),)
    assert a.catch[0].result_path is None
    b = m.states["B"]
    assert isinstance(b, asl.MapState)
    assert b.max_concurrency == 2 and b.processor.start_at == "C"
    assert b.processor.path == "$.States.B.Iterator"


def test_unsupported_features_are_listed_and_refused_at_start() -> None:
    m = asl.load_definition(machine({"A": {**PASS_END, "Assign": {"x": 1}}}))
    assert m.unsupported and m.unsupported[0][1].startswith("Assign")
    with pytest.raises(asl.AslUsageError):
        asl.start(m, {})
