"""A pure host for replay tests: runs a workflow to its end with no engine, answering each
effect at once (activities are called, timers fire, signals come from a table), and
returns the journal it wrote - the same events CodeRunner stores."""

from __future__ import annotations

import inspect
from typing import Any

import trio

from flowactors.code import Registry, Replay, WorkflowDef, fold
from flowactors.code._replay import Outcome

NOW = 1_700_000_000_000


def replay(
    wf: WorkflowDef, events: list[dict[str, Any]], input: Any = None, reg: Registry | None = None
) -> Replay:
    reg = reg or Registry()
    reg.add(wf)
    return Replay(wf, "run", input, fold(events), NOW, reg.resolve)


def call(fn: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    if inspect.iscoroutinefunction(fn):
        return trio.run(lambda: fn(*args, **kwargs))
    return fn(*args, **kwargs)


def run_pure(
    wf: WorkflowDef,
    input: Any = None,
    *,
    signals: dict[str, Any] | None = None,
    children: dict[str, Any] | None = None,
    reg: Registry | None = None,
) -> tuple[Outcome, list[dict[str, Any]]]:
    """Run to the end in one pass; (outcome, journal)."""
    signals = dict(signals or {})
    r = replay(wf, [], input, reg)
    while True:
        out = r.advance()
        for eff, _wf, _input in list(r.pending_children.values()):
            if not eff.done:
                r.resolve(eff, eff.extra["child"])
        r.pending_children.clear()
        if out.status != "suspended":
            return out, r.new_events
        eff = r.blocked
        assert eff is not None
        if eff.kind in ("activity", "compensate"):
            assert r.call is not None
            try:
                r.resolve(eff, call(r.call.fn, r.call.args, r.call.kwargs))
            except Exception as exc:
                r.fail(eff, {"type": type(exc).__name__, "message": str(exc)})
        elif eff.kind == "timer":
            r.resolve(eff, None)
        elif eff.kind == "signal":
            if eff.name in signals:
                r.resolve(eff, {"delivery": "d", "value": signals.pop(eff.name)})
            else:
                r.resolve(eff, {"timeout": True})
        elif eff.kind == "join":
            r.resolve(eff, (children or {}).get(eff.name))
        else:
            raise AssertionError(eff.kind)
