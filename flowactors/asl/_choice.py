# Choice rules: their parsed form, their validation (called by _validate with a `report`
# callback so every problem carries its JSON path) and their evaluation.
#
# A rule is either a comparison (`Variable` + exactly one operator) or a boolean combination
# (And/Or/Not); only top-level rules carry `Next`. Operators come from one table (_OPERATORS):
# name → the type the operand must have and the test. `...Path` twins read the operand from the
# input. A type mismatch makes a comparison false; a `Variable` (or operand path) that names
# nothing is a States.Runtime error, except for IsPresent, which exists to test exactly that.
from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeAlias

from ._errors import AslSyntaxError, StatesError
from ._paths import MISSING, Path, Scope, evaluate, is_number, json_type, parse_path
from ._time import parse_timestamp_us


@dataclass(frozen=True)
class Comparison:
    variable: Path
    operator: str  # the base operator, e.g. "NumericEquals" (never the ...Path twin)
    operand: Any  # a literal, or a Path when `by_path`
    by_path: bool = False
    pattern: re.Pattern[str] | None = None  # StringMatches, compiled once


@dataclass(frozen=True)
class And:
    rules: tuple[Rule, ...]


@dataclass(frozen=True)
class Or:
    rules: tuple[Rule, ...]


@dataclass(frozen=True)
class Not:
    rule: Rule


@dataclass(frozen=True)
class Condition:
    """A JSONata `Condition` (validated for syntax, not evaluated by this interpreter)."""

    expression: str


Rule: TypeAlias = Comparison | And | Or | Not | Condition


@dataclass(frozen=True)
class TopRule:
    rule: Rule
    next: str


def _cmp(a: Any, b: Any, op: str) -> bool:
    if op == "Equals":
        return bool(a == b)
    if op == "LessThan":
        return bool(a < b)
    if op == "GreaterThan":
        return bool(a > b)
    if op == "LessThanEquals":
        return bool(a <= b)
    return bool(a >= b)


_SUFFIXES = ("Equals", "LessThan", "GreaterThan", "LessThanEquals", "GreaterThanEquals")

_Test = Callable[[Any, Any], bool]


def _comparer(suffix: str, key: Callable[[Any], Any]) -> _Test:
    return lambda a, b: _cmp(key(a), key(b), suffix)


def _same(v: Any) -> Any:
    return v


def _is_str(v: Any) -> bool:
    return isinstance(v, str)


def _is_timestamp(v: Any) -> bool:
    return parse_timestamp_us(v) is not None


# operator → (operand type name, is the value of this type?, compare(value, operand))
_OPERATORS: dict[str, tuple[str, Callable[[Any], bool], _Test]] = {}
for _suffix in _SUFFIXES:
    _OPERATORS[f"String{_suffix}"] = ("string", _is_str, _comparer(_suffix, _same))
    _OPERATORS[f"Numeric{_suffix}"] = ("number", is_number, _comparer(_suffix, _same))
    _OPERATORS[f"Timestamp{_suffix}"] = (
        "timestamp",
        _is_timestamp,
        _comparer(_suffix, parse_timestamp_us),
    )
_OPERATORS["BooleanEquals"] = ("boolean", lambda v: isinstance(v, bool), lambda a, b: a == b)
_OPERATORS["StringMatches"] = ("string", _is_str, lambda a, b: False)

_TYPE_TESTS: dict[str, Callable[[Any], bool]] = {
    "IsNull": lambda v: v is None,
    "IsPresent": lambda v: v is not MISSING,
    "IsNumeric": is_number,
    "IsString": lambda v: isinstance(v, str),
    "IsBoolean": lambda v: isinstance(v, bool),
    "IsTimestamp": lambda v: parse_timestamp_us(v) is not None,
}

OPERATOR_NAMES = frozenset(
    list(_OPERATORS)
    + [f"{op}Path" for op in _OPERATORS if op != "StringMatches"]
    + list(_TYPE_TESTS)
)

Report: TypeAlias = Callable[[str, str], None]


def compile_string_matches(pattern: str) -> re.Pattern[str]:
    """`*` matches any run of characters; `\\*` is a literal star, `\\\\` a backslash."""
    out: list[str] = []
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if c == "\\" and i + 1 < len(pattern):
            out.append(re.escape(pattern[i + 1]))
            i += 2
            continue
        out.append(".*" if c == "*" else re.escape(c))
        i += 1
    return re.compile("".join(out), re.DOTALL)


def parse_rule(
    obj: Any, where: str, report: Report, *, top: bool, jsonata: bool = False
) -> Rule | None:
    """Validate and parse one rule; problems go to `report`. None if it is unusable."""
    if not isinstance(obj, dict):
        report(where, f"a choice rule must be an object, not {json_type(obj)}")
        return None
    allowed = {"Comment"} | ({"Next", "Assign", "Output"} if top else set())
    if jsonata:
        if "Condition" not in obj:
            report(where, "a JSONata choice rule needs 'Condition'")
        for key in obj:
            if key not in allowed | {"Condition"}:
                report(f"{where}.{key}", f"field {key!r} is not allowed in a JSONata choice rule")
        cond = obj.get("Condition")
        return Condition(cond) if isinstance(cond, str) else None
    bools = [k for k in ("And", "Or", "Not") if k in obj]
    ops = [k for k in obj if k in OPERATOR_NAMES]
    for key in obj:
        if key not in allowed | {"Variable", "And", "Or", "Not"} | OPERATOR_NAMES:
            report(f"{where}.{key}", f"field {key!r} is not allowed in a choice rule")
    if bools:
        if len(bools) > 1 or ops or "Variable" in obj:
            report(where, "a rule has exactly one of And, Or, Not, or a Variable comparison")
            return None
        key = bools[0]
        sub = obj[key]
        if key == "Not":
            inner = parse_rule(sub, f"{where}.Not", report, top=False)
            return Not(inner) if inner is not None else None
        if not isinstance(sub, list) or not sub:
            report(f"{where}.{key}", f"{key} needs a non-empty array of rules")
            return None
        rules = [parse_rule(r, f"{where}.{key}[{i}]", report, top=False) for i, r in enumerate(sub)]
        if any(r is None for r in rules):
            return None
        good = tuple(r for r in rules if r is not None)
        return And(good) if key == "And" else Or(good)
    if "Variable" not in obj:
        report(where, "a comparison rule needs 'Variable'")
        return None
    try:
        variable = _parse_variable(obj["Variable"])
    except AslSyntaxError as exc:
        report(f"{where}.Variable", str(exc))
        variable = None
    if len(ops) != 1:
        report(
            where,
            "a comparison rule needs exactly one comparison operator"
            + (f" (found {', '.join(ops)})" if ops else ""),
        )
        return None
    op = ops[0]
    value = obj[op]
    opath = f"{where}.{op}"
    if op in _TYPE_TESTS:
        if not isinstance(value, bool):
            report(opath, f"{op} takes true or false, not {json_type(value)}")
            return None
        return Comparison(variable, op, value) if variable else None
    if op.endswith("Path") and op not in _OPERATORS:
        try:
            operand = _parse_variable(value)
        except AslSyntaxError as exc:
            report(opath, str(exc))
            return None
        return Comparison(variable, op[:-4], operand, by_path=True) if variable else None
    kind, fits, _ = _OPERATORS[op]
    if not fits(value):
        report(opath, f"{op} takes a {kind}, not {json_type(value)} {value!r}")
        return None
    pattern = compile_string_matches(value) if op == "StringMatches" else None
    return Comparison(variable, op, value, False, pattern) if variable else None


def _parse_variable(text: Any) -> Path:
    if not isinstance(text, str):
        raise AslSyntaxError(f"a path must be a string, not {json_type(text)}")
    if text.startswith("States."):
        raise AslSyntaxError(f"{text!r}: an intrinsic function is not allowed here, use a path")
    return parse_path(text)


def evaluate_rule(rule: Rule, scope: Scope) -> bool:
    """Does the rule match? Raises StatesError(States.Runtime) for a missing Variable."""
    if isinstance(rule, And):
        return all(evaluate_rule(r, scope) for r in rule.rules)
    if isinstance(rule, Or):
        return any(evaluate_rule(r, scope) for r in rule.rules)
    if isinstance(rule, Not):
        return not evaluate_rule(rule.rule, scope)
    if isinstance(rule, Condition):
        raise StatesError("States.Runtime", "JSONata conditions are not supported")
    value = evaluate(rule.variable, scope)
    if rule.operator in _TYPE_TESTS:
        if rule.operator != "IsPresent" and value is MISSING:
            return False is rule.operand
        return _TYPE_TESTS[rule.operator](value) is rule.operand
    if value is MISSING:
        raise StatesError(
            "States.Runtime",
            f"Invalid path {rule.variable.text!r}: the choice rule's Variable "
            "references nothing in the input",
        )
    operand = rule.operand
    if rule.by_path:
        operand = evaluate(operand, scope)
        if operand is MISSING:
            raise StatesError(
                "States.Runtime", f"Invalid path {rule.operand.text!r} in {rule.operator}Path"
            )
    _, fits, test = _OPERATORS[rule.operator]
    if not fits(value) or not fits(operand):
        return False
    if rule.pattern is not None:
        return rule.pattern.fullmatch(value) is not None
    return test(value, operand)


def first_match(rules: tuple[TopRule, ...], scope: Scope) -> str | None:
    """The Next of the first matching rule, in definition order."""
    for top in rules:
        if evaluate_rule(top.rule, scope):
            return top.next
    return None
