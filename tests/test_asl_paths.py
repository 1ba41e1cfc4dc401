"""JSONPath, reference paths, ResultPath merge, payload templates and intrinsics, as tables."""

from __future__ import annotations

from typing import Any

import pytest

from flowactors import asl
from flowactors.asl._intrinsics import make_runner

DOC = {
    "store": {
        "book": [
            {"title": "A", "price": 8, "tags": ["x"]},
            {"title": "B", "price": 12},
            {"title": "C", "price": 5, "isbn": "1"},
        ],
        "bike": {"color": "red", "price": 20},
    },
    "my-key": 1,
    "n": None,
}
CTX = {"Execution": {"Id": "e1"}, "Map": {"Item": {"Index": 2}}}

EVAL: list[tuple[str, Any]] = [
    ("$", DOC),
    ("$.store.bike.color", "red"),
    ("$['store']['bike']['price']", 20),
    ("$.my-key", 1),
    ("$.n", None),
    ("$.store.book[0].title", "A"),
    ("$.store.book[-1].title", "C"),
    ("$.store.book[9]", asl.MISSING),
    ("$.nope.deeper", asl.MISSING),
    ("$.store.book[*].title", ["A", "B", "C"]),
    ("$.store.book[0,2].title", ["A", "C"]),
    ("$.store.book[1:].title", ["B", "C"]),
    ("$.store.book[:2].price", [8, 12]),
    ("$.store.book[::2].title", ["A", "C"]),
    ("$..price", [8, 12, 5, 20]),
    ("$.store..color", ["red"]),
    ("$.store.book[?(@.price < 10)].title", ["A", "C"]),
    ("$.store.book[?(@.price >= 10 && @.title == 'B')].title", ["B"]),
    ("$.store.book[?(@.isbn)].title", ["C"]),
    ("$.store.book[?(!(@.price > 6))].title", ["C"]),
    ("$.store.book[?(@.title == B)].price", [12]),
    ("$.store.book[(@.length-1)].title", ["C"]),
    ("$.store.*.color", ["red"]),
    ("$['store','my-key']", [DOC["store"], 1]),
    ("$$.Execution.Id", "e1"),
    ("$$.Map.Item.Index", 2),
]


@pytest.mark.parametrize(("text", "expected"), EVAL, ids=[e[0] for e in EVAL])
def test_evaluate(text: str, expected: Any) -> None:
    path = asl.parse_path(text)
    assert asl.evaluate(path, asl.Scope(DOC, CTX)) == expected
    assert path.definite == (not isinstance(expected, list) or text == "$")


@pytest.mark.parametrize(
    "text",
    [
        "",
        "x",
        ".a",
        "$.",
        "$...",
        "$[",
        "$[]",
        "$.a[1:2:0]",
        "$.a[?(@.x == )]",
        "$[(@.foo)]",
        "$.a b",
        "$['a]",
    ],
)
def test_bad_paths(text: str) -> None:
    with pytest.raises(asl.AslSyntaxError):
        asl.parse_path(text)


@pytest.mark.parametrize(
    ("text", "ok"),
    [
        ("$", True),
        ("$.a.b[0]", True),
        ("$['a b']", True),
        ("$.a[*]", False),
        ("$..a", False),
        ("$$.a", False),
        ("$var", False),
        ("$.a[1:]", False),
    ],
)
def test_reference_paths(text: str, ok: bool) -> None:
    if ok:
        assert asl.parse_reference_path(text).definite
    else:
        with pytest.raises(asl.AslSyntaxError):
            asl.parse_reference_path(text)


MERGE: list[tuple[Any, str, Any, Any]] = [
    ({"a": 1}, "$", 5, 5),
    ({"a": 1}, "$.b", 5, {"a": 1, "b": 5}),
    ({"a": 1}, "$.a", 5, {"a": 5}),
    ({"a": 1}, "$.x.y.z", 5, {"a": 1, "x": {"y": {"z": 5}}}),
    ({"a": {"k": 0}}, "$.a.b", 5, {"a": {"k": 0, "b": 5}}),
    ({"l": [1, 2]}, "$.l[1]", 5, {"l": [1, 5]}),
    ({"l": [{"a": 1}]}, "$.l[0].b", 5, {"l": [{"a": 1, "b": 5}]}),
]


@pytest.mark.parametrize(("data", "path", "value", "expected"), MERGE)
def test_result_path_merge(data: Any, path: str, value: Any, expected: Any) -> None:
    before = repr(data)
    assert asl.assign_result(data, asl.parse_reference_path(path), value) == expected
    assert repr(data) == before  # the input is not mutated


@pytest.mark.parametrize(
    ("data", "path"), [("text", "$.a"), ({"a": 1}, "$.a.b"), ({"l": []}, "$.l[0]"), ([], "$.a")]
)
def test_result_path_failure(data: Any, path: str) -> None:
    with pytest.raises(asl.StatesError) as info:
        asl.assign_result(data, asl.parse_reference_path(path), 1)
    assert info.value.error == "States.ResultPathMatchFailure"


def render(template: Any, data: Any = None, seed: str = "s") -> Any:
    errors: list[tuple[str, str]] = []
    tmpl = asl.parse_template(template, lambda p, m: errors.append((p, m)))
    assert not errors
    return asl.render(tmpl, asl.Scope(data, CTX), make_runner(seed))


def test_template() -> None:
    data = {"a": 1, "b": {"c": [1, 2]}}
    out = render(
        {
            "x.$": "$.a",
            "lit": "$.a",
            "nest": {"y.$": "$.b.c[1]"},
            "arr": [{"z.$": "$$.Execution.Id"}, 3],
            "all.$": "$",
        },
        data,
    )
    assert out == {"x": 1, "lit": "$.a", "nest": {"y": 2}, "arr": [{"z": "e1"}, 3], "all": data}


def test_template_missing_path_is_parameter_path_failure() -> None:
    with pytest.raises(asl.StatesError) as info:
        render({"x.$": "$.nope"}, {})
    assert info.value.error == "States.ParameterPathFailure"


INTRINSICS: list[tuple[str, Any, Any]] = [
    ("States.Format('Hi {}, {}!', $.name, 3)", {"name": "Ann"}, "Hi Ann, 3!"),
    ("States.Format('esc \\{} {}', 'x')", {}, "esc {} x"),
    ("States.Format('{}', true)", {}, "true"),
    ("States.StringToJson($.s)", {"s": '{"a":[1]}'}, {"a": [1]}),
    ("States.JsonToString($.o)", {"o": {"a": [1, "b"]}}, '{"a":[1,"b"]}'),
    ("States.Array('a', 2, $.o, null)", {"o": {}}, ["a", 2, {}, None]),
    ("States.ArrayPartition($.l, 2)", {"l": [1, 2, 3, 4, 5]}, [[1, 2], [3, 4], [5]]),
    ("States.ArrayContains($.l, 3)", {"l": [1, 2, 3]}, True),
    ("States.ArrayContains($.l, 'x')", {"l": [1, 2, 3]}, False),
    ("States.ArrayRange(1, 9, 2)", {}, [1, 3, 5, 7, 9]),
    ("States.ArrayRange(5, 1, -2)", {}, [5, 3, 1]),
    ("States.ArrayGetItem($.l, 1)", {"l": [7, 8]}, 8),
    ("States.ArrayLength($.l)", {"l": [7, 8]}, 2),
    ("States.ArrayUnique($.l)", {"l": [1, 2, 1, {"a": 1}, {"a": 1}]}, [1, 2, {"a": 1}]),
    ("States.Base64Encode('Data to encode')", {}, "RGF0YSB0byBlbmNvZGU="),
    ("States.Base64Decode('RGF0YSB0byBlbmNvZGU=')", {}, "Data to encode"),
    ("States.Hash('input data', 'SHA-1')", {}, "aaff4a450a104cd177d28d18d74485e8cae074b7"),
    ("States.Hash($.s, 'MD5')", {"s": "x"}, "9dd4e461268c8034f5c8564e155c67a6"),
    ("States.JsonMerge($.a, $.b, false)", {"a": {"x": 1, "y": 1}, "b": {"y": 2}}, {"x": 1, "y": 2}),
    ("States.MathAdd($.v, -1)", {"v": 10}, 9),
    ("States.MathRandom(1, 2)", {}, 1),
    ("States.StringSplit('1,2,,3', ',')", {}, ["1", "2", "3"]),
    ("States.StringSplit($.s, '+-')", {"s": "a+b-c"}, ["a", "b", "c"]),
    ("States.ArrayLength(States.Array(1, 2, 3))", {}, 3),
]


@pytest.mark.parametrize(("call", "data", "expected"), INTRINSICS, ids=[i[0] for i in INTRINSICS])
def test_intrinsic(call: str, data: Any, expected: Any) -> None:
    assert render({"r.$": call}, data) == {"r": expected}


@pytest.mark.parametrize(
    "call",
    [
        "States.Format('{} {}', 1)",
        "States.StringToJson('{')",
        "States.ArrayGetItem($.l, 5)",
        "States.JsonMerge($.o, $.o, true)",
        "States.Hash('x', 'SHA-2')",
        "States.Base64Decode('%')",
        "States.ArrayPartition($.l, 0)",
        "States.MathAdd($.l, 1)",
        "States.Format('{}', $.o)",
        "States.ArrayLength($.nope)",
    ],
)
def test_intrinsic_failure(call: str) -> None:
    with pytest.raises(asl.StatesError) as info:
        render({"r.$": call}, {"l": [1], "o": {}})
    assert info.value.error == "States.IntrinsicFailure"


def test_uuid_and_random_are_deterministic_per_seed() -> None:
    t = {"u.$": "States.UUID()", "v.$": "States.UUID()", "r.$": "States.MathRandom(0, 1000000)"}
    a, b, c = render(t, seed="s1"), render(t, seed="s1"), render(t, seed="s2")
    assert a == b and a != c
    assert a["u"] != a["v"] and len(a["u"]) == 36 and a["u"][14] == "4"
    assert render({"r.$": "States.MathRandom(0, 100, 7)"}, seed="x") == render(
        {"r.$": "States.MathRandom(0, 100, 7)"}, seed="y"
    )


@pytest.mark.parametrize(
    "text",
    [
        "States.Format(",
        "States.Format('a' 'b')",
        "States.X()",
        "States.MathAdd(1)",
        "States.ArrayLength('x')",
        "States.Format('x') junk",
        "States.UUID(,)",
    ],
)
def test_bad_intrinsics(text: str) -> None:
    with pytest.raises(asl.AslSyntaxError):
        asl.parse_intrinsic(text)


def test_string_matches() -> None:
    p = asl.compile_string_matches
    assert p("log-*.txt").fullmatch("log-2020.txt")
    assert not p("log-*.txt").fullmatch("log-2020.csv")
    assert p("a\\*b").fullmatch("a*b") and not p("a\\*b").fullmatch("axb")
    assert p("*").fullmatch("") and p("a\\\\b").fullmatch("a\\b")
