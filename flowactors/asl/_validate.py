# The validator: JSON text or data in, a typed StateMachine out, or AslValidationError listing
# *every* problem, each at its JSON path (`$.States.Foo.Retry[0].ErrorEquals`).
#
# How it works: one pass over the document. Each state is read through a `_Reader` that
# records which fields were consumed and reports wrong types on the way; the field tables
# (_FIELDS) say which fields each state type allows in each query language, so an unknown or
# misplaced field is one lookup. Paths, templates and intrinsic calls are parsed by _paths
# (their parse errors become problems), Choice rules by _choice, JSONata expressions by _jsonata.
# Graph rules (StartAt exists, Next targets exist inside the same machine, every state
# reachable, a terminal state reachable from every state, names unique across the whole
# definition) are checked per machine after its states are read. Duplicate JSON keys are caught
# while decoding text, with an object_pairs_hook.
from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from ._choice import TopRule, parse_rule
from ._definition import (
    ROOT,
    Catcher,
    ChoiceState,
    FailState,
    MapState,
    ParallelState,
    PassState,
    Retrier,
    State,
    StateMachine,
    SucceedState,
    TaskState,
    WaitState,
)
from ._errors import AslSyntaxError, AslValidationError, Problem
from ._jsonata import check_jsonata
from ._paths import (
    Path,
    TCall,
    Template,
    TPath,
    json_type,
    parse_dynamic,
    parse_path,
    parse_reference_path,
    parse_template,
)
from ._time import parse_timestamp_ms

RESERVED_ERRORS = frozenset(
    {
        "States.ALL",
        "States.Timeout",
        "States.HeartbeatTimeout",
        "States.TaskFailed",
        "States.Permissions",
        "States.ResultPathMatchFailure",
        "States.ParameterPathFailure",
        "States.BranchFailed",
        "States.NoChoiceMatched",
        "States.IntrinsicFailure",
        "States.ExceedToleratedFailureThreshold",
        "States.ItemReaderFailed",
        "States.ResultWriterFailed",
        "States.QueryEvaluationError",
        "States.DataLimitExceeded",
        "States.Runtime",
        "States.Http.Socket",
    }
)

_TRANSITION = {"Next", "End"}
_IO = {"InputPath", "OutputPath"}
_RESULT = {"Parameters", "ResultSelector", "ResultPath"}
_ERRORS = {"Retry", "Catch"}
_JSONATA_IO = {"Output", "Assign"}

# Fields allowed beyond Type/Comment/QueryLanguage, per query language and state type.
_FIELDS: dict[str, dict[str, set[str]]] = {
    "JSONPath": {
        "Pass": _TRANSITION | _IO | {"Parameters", "ResultPath", "Result", "Assign"},
        "Task": _TRANSITION
        | _IO
        | _RESULT
        | _ERRORS
        | {
            "Resource",
            "TimeoutSeconds",
            "TimeoutSecondsPath",
            "HeartbeatSeconds",
            "HeartbeatSecondsPath",
            "Credentials",
            "Assign",
        },
        "Choice": _IO | {"Choices", "Default", "Assign"},
        "Wait": _TRANSITION
        | _IO
        | {"Seconds", "SecondsPath", "Timestamp", "TimestampPath", "Assign"},
        "Succeed": set(_IO),
        "Fail": {"Error", "ErrorPath", "Cause", "CausePath"},
        "Parallel": _TRANSITION | _IO | _RESULT | _ERRORS | {"Branches", "Assign"},
        "Map": _TRANSITION
        | _IO
        | _RESULT
        | _ERRORS
        | {
            "ItemSelector",
            "ItemProcessor",
            "Iterator",
            "ItemsPath",
            "MaxConcurrency",
            "MaxConcurrencyPath",
            "ToleratedFailurePercentage",
            "ToleratedFailurePercentagePath",
            "ToleratedFailureCount",
            "ToleratedFailureCountPath",
            "ItemReader",
            "ItemBatcher",
            "ResultWriter",
            "Label",
            "Assign",
        },
    },
    "JSONata": {
        "Pass": _TRANSITION | _JSONATA_IO,
        "Task": _TRANSITION
        | _JSONATA_IO
        | _ERRORS
        | {"Resource", "Arguments", "TimeoutSeconds", "HeartbeatSeconds", "Credentials"},
        "Choice": _JSONATA_IO | {"Choices", "Default"},
        "Wait": _TRANSITION | _JSONATA_IO | {"Seconds", "Timestamp"},
        "Succeed": {"Output"},
        "Fail": {"Error", "Cause"},
        "Parallel": _TRANSITION | _JSONATA_IO | _ERRORS | {"Branches", "Arguments"},
        "Map": _TRANSITION
        | _JSONATA_IO
        | _ERRORS
        | {
            "Items",
            "ItemSelector",
            "ItemProcessor",
            "MaxConcurrency",
            "ToleratedFailurePercentage",
            "ToleratedFailureCount",
            "ItemReader",
            "ItemBatcher",
            "ResultWriter",
            "Label",
        },
    },
}
_TERMINAL_TYPES = {"Succeed", "Fail"}
_MAX_NAME = 80
_MAX_DELAY_LIMIT = 31_622_401
_LAMBDA_ARN = re.compile(r"arn:aws[a-z-]*:lambda:[^:]*:[^:]*:function:(.*)")
_LAMBDA_FN = re.compile(r"[A-Za-z0-9_-]+(:(\$LATEST|[A-Za-z0-9_-]+))?")
_SUBSTITUTION = re.compile(r"\$\{[^{}\s]+\}")


def key_path(base: str, key: str) -> str:
    if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
        return f"{base}.{key}"
    return f"{base}[{json.dumps(key)}]"


class _Object(dict[str, Any]):
    """A decoded JSON object that remembers the keys it saw twice."""

    duplicates: list[str]


def _pairs_hook(pairs: list[tuple[str, Any]]) -> _Object:
    obj = _Object()
    obj.duplicates = []
    for k, v in pairs:
        if k in obj:
            obj.duplicates.append(k)
        obj[k] = v
    return obj


def _find_duplicates(node: Any, where: str, out: list[Problem]) -> None:
    if isinstance(node, dict):
        for k in getattr(node, "duplicates", []):
            out.append(Problem(key_path(where, k), f"duplicate JSON key {k!r}"))
        for k, v in node.items():
            _find_duplicates(v, key_path(where, k), out)
    elif isinstance(node, list):
        for i, v in enumerate(node):
            _find_duplicates(v, f"{where}[{i}]", out)


def load_definition(source: str | bytes | Mapping[str, Any]) -> StateMachine:
    """Parse and validate ASL (JSON text or decoded data); raise AslValidationError."""
    problems: list[Problem] = []
    if isinstance(source, str | bytes | bytearray):
        try:
            doc: Any = json.loads(source, object_pairs_hook=_pairs_hook)
        except ValueError as exc:
            raise AslValidationError([Problem("$", f"not valid JSON: {exc}")]) from None
        _find_duplicates(doc, "$", problems)
    else:
        doc = source
    v = _Validator(problems)
    machine = v.machine(doc, "$", "JSONPath", kind="top")
    if v.problems or machine is None:
        raise AslValidationError(v.problems or [Problem("$", "unusable definition")])
    return machine


class _Reader:
    """Typed field access on one JSON object; reports problems and tracks used keys."""

    def __init__(self, v: _Validator, obj: Mapping[str, Any], where: str) -> None:
        self.v, self.obj, self.where = v, obj, where

    def at(self, key: str) -> str:
        return key_path(self.where, key)

    def has(self, key: str) -> bool:
        return key in self.obj

    def err(self, key: str, message: str) -> None:
        self.v.err(self.at(key), message)

    def string(self, key: str, *, required: bool = False) -> str | None:
        if key not in self.obj:
            if required:
                self.v.err(self.where, f"missing required field {key!r}")
            return None
        val = self.obj[key]
        if not isinstance(val, str):
            self.err(key, f"must be a string, not {json_type(val)}")
            return None
        return val

    def integer(self, key: str, *, minimum: int, maximum: int | None = None) -> int | None:
        if key not in self.obj:
            return None
        val = self.obj[key]
        if isinstance(val, bool) or not isinstance(val, int):
            self.err(key, f"must be an integer, not {json_type(val)} {val!r}")
            return None
        if val < minimum or (maximum is not None and val > maximum):
            upper = f" and at most {maximum}" if maximum is not None else ""
            self.err(key, f"must be at least {minimum}{upper}, not {val}")
            return None
        return val

    def number(self, key: str, *, minimum: float, maximum: float | None = None) -> float | None:
        if key not in self.obj:
            return None
        val = self.obj[key]
        if isinstance(val, bool) or not isinstance(val, int | float):
            self.err(key, f"must be a number, not {json_type(val)} {val!r}")
            return None
        if val < minimum or (maximum is not None and val > maximum):
            upper = f" and at most {maximum:g}" if maximum is not None else ""
            self.err(key, f"must be at least {minimum:g}{upper}, not {val}")
            return None
        return float(val)

    def path(
        self,
        key: str,
        *,
        reference: bool = False,
        context: bool = True,
        nullable: bool = False,
        default: Path | None = None,
    ) -> Path | None:
        if key not in self.obj:
            return default
        val = self.obj[key]
        if val is None and nullable:
            return None
        if not isinstance(val, str):
            self.err(key, f"must be a path string, not {json_type(val)}")
            return default
        try:
            if reference:
                return parse_reference_path(val, allow_context=context)
            return parse_path(val)
        except AslSyntaxError as exc:
            self.err(key, str(exc))
            return default

    def template(self, key: str) -> Template | None:
        if key not in self.obj:
            return None
        return parse_template(self.obj[key], self.v.err, self.at(key))

    def dynamic(self, key: str) -> TPath | TCall | None:
        if key not in self.obj:
            return None
        try:
            return parse_dynamic(self.obj[key])
        except AslSyntaxError as exc:
            self.err(key, str(exc))
            return None

    def exclusive(self, *keys: str, required: bool = False) -> None:
        present = [k for k in keys if k in self.obj]
        if len(present) > 1:
            self.v.err(
                self.where,
                f"only one of {', '.join(keys)} may be given (found {', '.join(present)})",
            )
        elif required and not present:
            self.v.err(self.where, f"exactly one of {', '.join(keys)} is required")


class _Validator:
    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        self.names: dict[str, str] = {}
        self.unsupported: list[tuple[str, str]] = []

    def err(self, where: str, message: str) -> None:
        self.problems.append(Problem(where, message))

    # -- machines -------------------------------------------------------------------------

    def machine(self, obj: Any, where: str, lang: str, *, kind: str) -> StateMachine | None:
        if not isinstance(obj, dict):
            self.err(where, f"a state machine must be an object, not {json_type(obj)}")
            return None
        allowed = {"StartAt", "States", "Comment"}
        if kind == "top":
            allowed |= {"Version", "TimeoutSeconds", "QueryLanguage"}
        if kind == "processor":
            allowed |= {"ProcessorConfig"}
        for key in obj:
            if key not in allowed:
                self.err(key_path(where, key), f"field {key!r} is not allowed here")
        r = _Reader(self, obj, where)
        if kind == "top":
            ql = r.string("QueryLanguage")
            if ql is not None and ql not in _FIELDS:
                r.err("QueryLanguage", f"must be JSONPath or JSONata, not {ql!r}")
            elif ql is not None:
                lang = ql
            r.string("Version")
        timeout = r.integer("TimeoutSeconds", minimum=1) if kind == "top" else None
        r.string("Comment")
        if kind == "processor" and "ProcessorConfig" in obj:
            self._processor_config(obj["ProcessorConfig"], key_path(where, "ProcessorConfig"))
        start_at = r.string("StartAt", required=True)
        raw_states = obj.get("States")
        if raw_states is None:
            self.err(where, "missing required field 'States'")
            return None
        if not isinstance(raw_states, dict) or not raw_states:
            r.err("States", "must be a non-empty object of states")
            return None
        states_where = key_path(where, "States")
        states: dict[str, State] = {}
        targets: dict[str, list[tuple[str, str]]] = {}
        terminal: set[str] = set()
        for name, sobj in raw_states.items():
            swhere = key_path(states_where, name)
            if not name or len(name) > _MAX_NAME:
                self.err(
                    swhere,
                    f"a state name must have 1 to {_MAX_NAME} characters "
                    f"(this one has {len(name)})",
                )
            if name in self.names:
                self.err(
                    swhere,
                    f"state name {name!r} is already used at {self.names[name]} "
                    "(names are unique across the whole machine)",
                )
            else:
                self.names[name] = swhere
            out: list[tuple[str, str]] = []
            state = self.state(name, sobj, swhere, lang, out)
            targets[name] = out
            if isinstance(sobj, dict) and (
                sobj.get("Type") in _TERMINAL_TYPES or sobj.get("End") is True
            ):
                terminal.add(name)
            if state is not None:
                states[name] = state
        if start_at is not None and start_at not in raw_states:
            r.err("StartAt", f"StartAt names {start_at!r}, which is not a state of this machine")
        for outs in targets.values():
            for target, at in outs:
                if target not in raw_states:
                    self.err(
                        at,
                        f"{target!r} is not a state of this machine"
                        + (
                            " (transitions cannot leave a branch or iterator)"
                            if kind != "top"
                            else ""
                        ),
                    )
        if start_at is not None and start_at in raw_states:
            self._graph(start_at, targets, terminal, raw_states, states_where)
        if self.problems or start_at is None:
            return None
        unsupported = tuple(u for u in self.unsupported if u[0].startswith(where))
        return StateMachine(
            start_at, states, where, r.string("Comment"), timeout, lang, unsupported, obj
        )

    def _graph(
        self,
        start: str,
        targets: dict[str, list[tuple[str, str]]],
        terminal: set[str],
        raw_states: Mapping[str, Any],
        where: str,
    ) -> None:
        succ = {n: {t for t, _ in outs if t in raw_states} for n, outs in targets.items()}
        seen = {start}
        todo = [start]
        while todo:
            for t in succ[todo.pop()]:
                if t not in seen:
                    seen.add(t)
                    todo.append(t)
        for name in raw_states:
            if name not in seen:
                self.err(key_path(where, name), f"state {name!r} is unreachable from StartAt")
        # Which states can reach a terminal state? Fixed point backwards from the terminals.
        good = set(terminal)
        changed = True
        while changed:
            changed = False
            for n in seen - good:
                if succ[n] & good:
                    good.add(n)
                    changed = True
        stuck = sorted(seen - good)
        if stuck:
            self.err(
                where,
                "no terminal state (End, Succeed or Fail) can be reached from "
                + ", ".join(repr(s) for s in stuck),
            )

    def _processor_config(self, cfg: Any, where: str) -> None:
        if not isinstance(cfg, dict):
            self.err(where, "ProcessorConfig must be an object")
            return
        for key, val in cfg.items():
            if key == "Mode":
                if val not in ("INLINE", "DISTRIBUTED"):
                    self.err(key_path(where, key), "Mode must be INLINE or DISTRIBUTED")
            elif key == "ExecutionType":
                if val not in ("STANDARD", "EXPRESS"):
                    self.err(key_path(where, key), "ExecutionType must be STANDARD or EXPRESS")
            else:
                self.err(key_path(where, key), f"field {key!r} is not allowed in ProcessorConfig")

    # -- states ---------------------------------------------------------------------------

    def state(
        self, name: str, obj: Any, where: str, lang: str, out: list[tuple[str, str]]
    ) -> State | None:
        if not isinstance(obj, dict):
            self.err(where, f"a state must be an object, not {json_type(obj)}")
            return None
        r = _Reader(self, obj, where)
        stype = r.string("Type", required=True)
        if stype is None:
            return None
        ql = r.string("QueryLanguage")
        if ql is not None:
            if ql not in _FIELDS:
                r.err("QueryLanguage", f"must be JSONPath or JSONata, not {ql!r}")
            else:
                lang = ql
        if stype not in _FIELDS[lang]:
            r.err("Type", f"unknown state type {stype!r}")
            return None
        allowed = _FIELDS[lang][stype] | {"Type", "Comment", "QueryLanguage"}
        other = "JSONata" if lang == "JSONPath" else "JSONPath"
        for key in obj:
            if key not in allowed:
                hint = (
                    f" (it belongs to {other} mode; this state uses {lang})"
                    if key in _FIELDS[other][stype]
                    else ""
                )
                r.err(key, f"field {key!r} is not allowed in a {stype} state{hint}")
        r.string("Comment")
        jsonata = lang == "JSONata"
        if jsonata:
            self.unsupported.append((where, "JSONata"))
            self._jsonata_values(obj, where, stype)
        if "Assign" in obj:
            self.unsupported.append((key_path(where, "Assign"), "Assign (variables)"))
            if not isinstance(obj["Assign"], dict):
                r.err("Assign", "must be an object")
            elif not jsonata:
                r.template("Assign")

        # Transitions
        nxt = r.string("Next")
        end = False
        if "Next" in allowed:
            if "End" in obj:
                if obj["End"] is not True:
                    r.err("End", "End must be true when given")
                else:
                    end = True
            if nxt is not None and end:
                self.err(where, "a state cannot have both Next and End")
            elif nxt is None and not end and "Next" not in obj:
                self.err(where, f'a {stype} state needs Next or "End": true')
        if nxt is not None:
            out.append((nxt, r.at("Next")))

        common: dict[str, Any] = {
            "name": name,
            "comment": obj.get("Comment"),
            "query_language": lang,
            "next": nxt,
            "end": end,
        }
        if not jsonata:
            common["input_path"] = r.path("InputPath", nullable=True, default=ROOT)
            common["output_path"] = r.path("OutputPath", nullable=True, default=ROOT)
        if stype == "Pass":
            return PassState(
                **common,
                parameters=None if jsonata else r.template("Parameters"),
                result=obj.get("Result"),
                has_result="Result" in obj,
                result_path=self._result_path(r, jsonata),
            )
        if stype == "Task":
            return self._task(r, common, jsonata, out)
        if stype == "Choice":
            return self._choice(r, common, jsonata, out)
        if stype == "Wait":
            return self._wait(r, common, jsonata)
        if stype == "Succeed":
            return SucceedState(**common)
        if stype == "Fail":
            if not jsonata:
                r.exclusive("Error", "ErrorPath")
                r.exclusive("Cause", "CausePath")
            return FailState(
                **common,
                error=r.string("Error"),
                error_path=r.dynamic("ErrorPath"),
                cause=r.string("Cause"),
                cause_path=r.dynamic("CausePath"),
            )
        if stype == "Parallel":
            return self._parallel(r, common, jsonata, lang, out)
        return self._map(r, common, jsonata, lang, out)

    def _result_path(self, r: _Reader, jsonata: bool) -> Path | None:
        if jsonata:
            return ROOT
        return r.path("ResultPath", reference=True, context=False, nullable=True, default=ROOT)

    def _errors(
        self, r: _Reader, jsonata: bool, out: list[tuple[str, str]]
    ) -> tuple[tuple[Retrier, ...], tuple[Catcher, ...]]:
        retriers: list[Retrier] = []
        catchers: list[Catcher] = []
        for key in ("Retry", "Catch"):
            if key not in r.obj:
                continue
            items = r.obj[key]
            if not isinstance(items, list):
                r.err(key, f"{key} must be an array")
                continue
            for i, item in enumerate(items):
                iw = f"{r.at(key)}[{i}]"
                if not isinstance(item, dict):
                    self.err(iw, f"a {key} entry must be an object, not {json_type(item)}")
                    continue
                ir = _Reader(self, item, iw)
                names = self._error_equals(ir, last=i == len(items) - 1)
                if key == "Retry":
                    retrier = self._retrier(ir, names)
                    if retrier is not None:
                        retriers.append(retrier)
                else:
                    catcher = self._catcher(ir, names, jsonata, out)
                    if catcher is not None:
                        catchers.append(catcher)
        return tuple(retriers), tuple(catchers)

    def _error_equals(self, r: _Reader, *, last: bool) -> tuple[str, ...]:
        if "ErrorEquals" not in r.obj:
            self.err(r.where, "missing required field 'ErrorEquals'")
            return ()
        names = r.obj["ErrorEquals"]
        if not isinstance(names, list) or not names:
            r.err("ErrorEquals", "must be a non-empty array of error names")
            return ()
        good: list[str] = []
        for j, n in enumerate(names):
            at = f"{r.at('ErrorEquals')}[{j}]"
            if not isinstance(n, str):
                self.err(at, f"an error name must be a string, not {json_type(n)}")
            elif n.startswith("States.") and n not in RESERVED_ERRORS:
                self.err(at, f"{n!r} is not a known States.* error name")
            else:
                good.append(n)
        if "States.ALL" in good:
            if len(names) != 1:
                r.err("ErrorEquals", "States.ALL must appear alone in its ErrorEquals")
            elif not last:
                r.err("ErrorEquals", "States.ALL is only allowed in the last retrier or catcher")
        return tuple(good)

    def _retrier(self, r: _Reader, names: tuple[str, ...]) -> Retrier | None:
        for key in r.obj:
            if key not in {
                "ErrorEquals",
                "IntervalSeconds",
                "MaxAttempts",
                "BackoffRate",
                "MaxDelaySeconds",
                "JitterStrategy",
                "Comment",
            }:
                r.err(key, f"field {key!r} is not allowed in a retrier")
        interval = r.integer("IntervalSeconds", minimum=1, maximum=99_999_999)
        attempts = r.integer("MaxAttempts", minimum=0, maximum=99_999_999)
        rate = r.number("BackoffRate", minimum=1.0)
        max_delay = r.integer("MaxDelaySeconds", minimum=1, maximum=_MAX_DELAY_LIMIT - 1)
        jitter = r.string("JitterStrategy")
        if jitter is not None and jitter not in ("FULL", "NONE"):
            r.err("JitterStrategy", f"must be FULL or NONE, not {jitter!r}")
        if not names:
            return None
        return Retrier(
            names,
            interval if interval is not None else 1,
            attempts if attempts is not None else 3,
            rate if rate is not None else 2.0,
            max_delay,
            jitter or "NONE",
        )

    def _catcher(
        self, r: _Reader, names: tuple[str, ...], jsonata: bool, out: list[tuple[str, str]]
    ) -> Catcher | None:
        allowed = {"ErrorEquals", "Next", "Comment", "Assign"}
        allowed |= {"Output"} if jsonata else {"ResultPath"}
        for key in r.obj:
            if key not in allowed:
                r.err(key, f"field {key!r} is not allowed in a catcher")
        nxt = r.string("Next", required=True)
        if nxt is not None:
            out.append((nxt, r.at("Next")))
        if "Assign" in r.obj:
            self.unsupported.append((r.at("Assign"), "Assign (variables)"))
        rp = self._result_path(r, jsonata)
        if nxt is None or not names:
            return None
        return Catcher(names, nxt, rp)

    def _task(
        self, r: _Reader, common: dict[str, Any], jsonata: bool, out: list[tuple[str, str]]
    ) -> TaskState | None:
        raw_resource = r.obj.get("Resource")
        if _is_cfn_intrinsic(raw_resource):
            # {"Ref": ...} / {"Fn::GetAtt": [...]}: CloudFormation resolves these before the
            # definition reaches Step Functions. Accepted, kept as JSON text, not runnable.
            resource: str | None = json.dumps(raw_resource, sort_keys=True)
            self.unsupported.append((r.at("Resource"), "CloudFormation intrinsic Resource"))
        else:
            resource = r.string("Resource", required=True)
            if resource is not None:
                self._resource(r, resource)
        retry, catch = self._errors(r, jsonata, out)
        r.exclusive("TimeoutSeconds", "TimeoutSecondsPath")
        r.exclusive("HeartbeatSeconds", "HeartbeatSecondsPath")
        timeout = heartbeat = None
        if not self._jsonata_number(r, "TimeoutSeconds", jsonata):
            timeout = r.integer("TimeoutSeconds", minimum=1, maximum=99_999_999)
        if not self._jsonata_number(r, "HeartbeatSeconds", jsonata):
            heartbeat = r.integer("HeartbeatSeconds", minimum=1, maximum=99_999_999)
        if timeout is not None and heartbeat is not None and heartbeat >= timeout:
            r.err("HeartbeatSeconds", "must be smaller than TimeoutSeconds")
        credentials = None
        if "Credentials" in r.obj:
            if not isinstance(r.obj["Credentials"], dict):
                r.err("Credentials", "must be an object")
            elif not jsonata:
                credentials = r.template("Credentials")
        if resource is None:
            return None
        return TaskState(
            **common,
            resource=resource,
            parameters=None if jsonata else r.template("Parameters"),
            result_selector=None if jsonata else r.template("ResultSelector"),
            result_path=self._result_path(r, jsonata),
            retry=retry,
            catch=catch,
            timeout_seconds=timeout,
            timeout_seconds_path=r.path("TimeoutSecondsPath", reference=True),
            heartbeat_seconds=heartbeat,
            heartbeat_seconds_path=r.path("HeartbeatSecondsPath", reference=True),
            credentials=credentials,
        )

    def _resource(self, r: _Reader, resource: str) -> None:
        if not resource:
            r.err("Resource", "must not be empty")
            return
        if "${" in resource:
            if "${" in _SUBSTITUTION.sub("", resource):
                r.err("Resource", f"{resource!r}: malformed ${{...}} substitution")
            return
        m = _LAMBDA_ARN.fullmatch(resource)
        if m and not _LAMBDA_FN.fullmatch(m.group(1)):
            r.err("Resource", f"{resource!r}: malformed Lambda function name or alias")

    def _choice(
        self, r: _Reader, common: dict[str, Any], jsonata: bool, out: list[tuple[str, str]]
    ) -> ChoiceState | None:
        default = r.string("Default")
        if default is not None:
            out.append((default, r.at("Default")))
        raw = r.obj.get("Choices")
        if not isinstance(raw, list) or not raw:
            if "Choices" not in r.obj:
                self.err(r.where, "missing required field 'Choices'")
            else:
                r.err("Choices", "must be a non-empty array of rules")
            return None
        rules: list[TopRule] = []
        for i, item in enumerate(raw):
            iw = f"{r.at('Choices')}[{i}]"
            rule = parse_rule(item, iw, self.err, top=True, jsonata=jsonata)
            nxt = item.get("Next") if isinstance(item, dict) else None
            if isinstance(item, dict):
                if "Next" not in item:
                    self.err(iw, "a top-level choice rule needs 'Next'")
                elif not isinstance(nxt, str):
                    self.err(f"{iw}.Next", "must be a string")
                else:
                    out.append((nxt, f"{iw}.Next"))
            if rule is not None and isinstance(nxt, str):
                rules.append(TopRule(rule, nxt))
        return ChoiceState(**common, choices=tuple(rules), default=default)

    def _wait(self, r: _Reader, common: dict[str, Any], jsonata: bool) -> WaitState:
        r.exclusive("Seconds", "Timestamp", "SecondsPath", "TimestampPath", required=True)
        seconds = ts = None
        if not self._jsonata_number(r, "Seconds", jsonata):
            seconds = r.integer("Seconds", minimum=0, maximum=99_999_999)
        if "Timestamp" in r.obj and not (jsonata and self._is_jsonata(r.obj["Timestamp"])):
            text = r.string("Timestamp")
            if text is not None:
                ts = parse_timestamp_ms(text)
                if ts is None:
                    r.err(
                        "Timestamp",
                        f"{text!r} is not an RFC 3339 timestamp (like 2016-03-14T01:59:00Z)",
                    )
        return WaitState(
            **common,
            seconds=seconds,
            timestamp_ms=ts,
            seconds_path=r.path("SecondsPath", reference=True),
            timestamp_path=r.path("TimestampPath", reference=True),
        )

    def _parallel(
        self,
        r: _Reader,
        common: dict[str, Any],
        jsonata: bool,
        lang: str,
        out: list[tuple[str, str]],
    ) -> ParallelState | None:
        retry, catch = self._errors(r, jsonata, out)
        raw = r.obj.get("Branches")
        if not isinstance(raw, list) or not raw:
            if "Branches" not in r.obj:
                self.err(r.where, "missing required field 'Branches'")
            else:
                r.err("Branches", "must be a non-empty array of state machines")
            return None
        branches = [
            self.machine(b, f"{r.at('Branches')}[{i}]", lang, kind="branch")
            for i, b in enumerate(raw)
        ]
        if any(b is None for b in branches):
            return None
        return ParallelState(
            **common,
            branches=tuple(b for b in branches if b is not None),
            parameters=None if jsonata else r.template("Parameters"),
            result_selector=None if jsonata else r.template("ResultSelector"),
            result_path=self._result_path(r, jsonata),
            retry=retry,
            catch=catch,
        )

    def _map(
        self,
        r: _Reader,
        common: dict[str, Any],
        jsonata: bool,
        lang: str,
        out: list[tuple[str, str]],
    ) -> MapState | None:
        retry, catch = self._errors(r, jsonata, out)
        r.exclusive("ItemProcessor", "Iterator", required=True)
        r.exclusive("ItemSelector", "Parameters")
        r.exclusive("Items", "ItemsPath")
        r.exclusive("MaxConcurrency", "MaxConcurrencyPath")
        r.exclusive("ToleratedFailureCount", "ToleratedFailureCountPath")
        r.exclusive("ToleratedFailurePercentage", "ToleratedFailurePercentagePath")
        mc = count = pct = None
        if not self._jsonata_number(r, "MaxConcurrency", jsonata):
            mc = r.integer("MaxConcurrency", minimum=0)
        if not self._jsonata_number(r, "ToleratedFailureCount", jsonata):
            count = r.integer("ToleratedFailureCount", minimum=0)
        if not self._jsonata_number(r, "ToleratedFailurePercentage", jsonata):
            pct = r.number("ToleratedFailurePercentage", minimum=0, maximum=100)
        for key in ("ItemReader", "ItemBatcher", "ResultWriter"):
            if key in r.obj:
                self.unsupported.append((r.at(key), key))
                self._distributed_part(r, key)
        if "Label" in r.obj:
            r.string("Label")
        key = "ItemProcessor" if "ItemProcessor" in r.obj else "Iterator"
        processor = None
        if key in r.obj:
            processor = self.machine(r.obj[key], r.at(key), lang, kind="processor")
        selector_key = "ItemSelector" if "ItemSelector" in r.obj else "Parameters"
        if processor is None:
            return None
        return MapState(
            **common,
            processor=processor,
            items_path=r.path("ItemsPath", reference=True, default=ROOT) or ROOT,
            item_selector=None if jsonata else r.template(selector_key),
            max_concurrency=mc or 0,
            max_concurrency_path=r.path("MaxConcurrencyPath", reference=True),
            tolerated_failure_count=count,
            tolerated_failure_count_path=r.path("ToleratedFailureCountPath", reference=True),
            tolerated_failure_percentage=pct,
            tolerated_failure_percentage_path=r.path(
                "ToleratedFailurePercentagePath", reference=True
            ),
            result_selector=None if jsonata else r.template("ResultSelector"),
            result_path=self._result_path(r, jsonata),
            retry=retry,
            catch=catch,
        )

    def _distributed_part(self, r: _Reader, key: str) -> None:
        obj = r.obj[key]
        if not isinstance(obj, dict):
            r.err(key, "must be an object")
            return
        sub = _Reader(self, obj, r.at(key))
        if key == "ItemBatcher":
            sub.exclusive("MaxItemsPerBatch", "MaxItemsPerBatchPath")
            sub.exclusive("MaxInputBytesPerBatch", "MaxInputBytesPerBatchPath")
            return
        sub.string("Resource", required=True)
        for part in ("Parameters", "Arguments"):
            if part in obj:
                sub.template(part)
        if key == "ItemReader" and isinstance(obj.get("ReaderConfig"), dict):
            cfg = _Reader(self, obj["ReaderConfig"], sub.at("ReaderConfig"))
            cfg.exclusive("MaxItems", "MaxItemsPath")

    # -- JSONata --------------------------------------------------------------------------

    @staticmethod
    def _is_jsonata(val: Any) -> bool:
        return isinstance(val, str) and (val.startswith("{%") or val.endswith("%}"))

    def _jsonata_number(self, r: _Reader, key: str, jsonata: bool) -> bool:
        """A numeric field given as a JSONata expression (checked by _jsonata_values)."""
        return jsonata and self._is_jsonata(r.obj.get(key))

    def _jsonata_values(self, obj: Mapping[str, Any], where: str, stype: str) -> None:
        for key, val in obj.items():
            if key in (
                "Comment",
                "Type",
                "QueryLanguage",
                "Next",
                "Default",
                "Branches",
                "ItemProcessor",
                "Resource",
            ):
                continue
            self._walk_jsonata(val, key_path(where, key))

    def _walk_jsonata(self, val: Any, where: str) -> None:
        if isinstance(val, dict):
            for k, v in val.items():
                if k != "Comment":
                    self._walk_jsonata(v, key_path(where, k))
        elif isinstance(val, list):
            for i, v in enumerate(val):
                self._walk_jsonata(v, f"{where}[{i}]")
        elif self._is_jsonata(val):
            try:
                check_jsonata(val)
            except AslSyntaxError as exc:
                self.err(where, str(exc))


def _is_cfn_intrinsic(val: Any) -> bool:
    return (
        isinstance(val, dict)
        and len(val) == 1
        and next(iter(val)) in ("Ref", "Fn::GetAtt", "Fn::Sub", "Fn::Join", "Fn::ImportValue")
    )
