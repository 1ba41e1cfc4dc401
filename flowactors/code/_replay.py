# Replay: running a workflow's coroutine against its journal. Pure: no engine, no I/O, no
# clock (the host passes the time in), so tests can drive it with a journal in hand.
#
# The journal is a list of events, each a small dict, appended in order and never edited:
#   scheduled       {pos, kind, name, digest, at, ...extra}  an effect was reached
#   completed       {pos, value, at}                          it resolved with a value
#   failed          {pos, error: {type, message}, attempts, at}   it failed for good
#   attempt_failed  {pos, attempt, error, retry_at, at}       an activity attempt failed
# `fold` turns them into one `Effect` per position. An effect is identified by its
# position and its shape: (kind, name, digest of its arguments).
#
# One pass. The host builds a `Replay` over the folded effects and calls `advance()`: the
# workflow coroutine runs from the top. Each `ctx.` effect takes the next position:
#   - a journaled effect of the same shape returns (or raises) its recorded outcome at once;
#   - a journaled effect of another shape is drift: the pass stops with a
#     NonDeterminismError naming both (the coroutine never sees it, so it cannot be caught);
#   - past the end of the journal (the live tail) the effect is appended (a `scheduled`
#     event), and synchronous ones (now, uuid4, random, side_effect, patched) complete at
#     once.
# An effect that has no outcome yet suspends the coroutine: its awaitable yields a private
# sentinel, and `advance()` returns with `blocked` set to that effect (and, for an
# activity, the call to make). The host may resolve it (`resolve`, `attempt_failed`) and
# `advance()` again: the coroutine resumes where it stopped, no second replay. Or the host
# commits and `close()`s the coroutine: the next wake replays from the top.
#
# Suspension cannot be swallowed: it is a `yield`, not an exception. What can go wrong is
# code that, once closed (GeneratorExit at the await), catches that and reaches another
# effect, or awaits something that is not a `ctx.` effect (a trio or asyncio primitive):
# both are SuspendLeakError, parked like drift.
from __future__ import annotations

import datetime as _dt
import random as _random
import uuid as _uuid
from collections.abc import Callable, Coroutine, Generator, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from . import _values
from ._define import (
    ActivityRef,
    ChildHandle,
    ContinueAsNew,
    Timeout,
    WorkflowDef,
    check_queue,
)
from ._errors import (
    ActivityError,
    ChildCancelled,
    ChildFailed,
    ChildIdCollision,
    NonDeterminismError,
    SuspendLeakError,
)

SYNC_KINDS = frozenset(("now", "uuid4", "random", "side_effect", "patched"))
_SUSPEND = object()
_rng = _random.SystemRandom()


@dataclass(slots=True)
class Effect:
    """One journal position, folded from its events."""

    pos: int
    kind: str
    name: str
    digest: str
    extra: dict[str, Any] = field(default_factory=dict)
    done: bool = False
    ok: bool = True
    value: Any = None
    error: dict[str, Any] | None = None
    attempts: int = 0  # failed attempts so far (activities, compensations)
    retry_at: int | None = None

    def shape(self) -> str:
        return f"{self.kind} {self.name!r} (args {self.digest}) at position {self.pos}"


def apply(effects: list[Effect], event: dict[str, Any]) -> None:
    """Fold one journal event into `effects`."""
    kind = event["type"]
    if kind == "scheduled":
        pos = event["pos"]
        if pos != len(effects):
            raise NonDeterminismError(f"journal event out of order: {event!r}", position=pos)
        extra = {
            k: v
            for k, v in event.items()
            if k not in ("type", "pos", "kind", "name", "digest", "at")
        }
        effects.append(Effect(pos, event["kind"], event["name"], event["digest"], extra))
        return
    eff = effects[event["pos"]]
    if kind == "completed":
        eff.done, eff.ok, eff.value = True, True, event.get("value")
    elif kind == "failed":
        eff.done, eff.ok, eff.error = True, False, event["error"]
        eff.attempts = event.get("attempts", eff.attempts)
    elif kind == "attempt_failed":
        eff.attempts = event["attempt"]
        eff.retry_at = event.get("retry_at")
        eff.error = event["error"]
    else:
        raise NonDeterminismError(f"unknown journal event {event!r}")


def fold(events: Iterable[dict[str, Any]]) -> list[Effect]:
    effects: list[Effect] = []
    for event in events:
        apply(effects, event)
    return effects


@dataclass(frozen=True, slots=True)
class ActivityCall:
    """What the host needs to run a blocked activity (or compensation)."""

    fn: Callable[..., Any]
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    retry: Any = None  # flowactors.RetryPolicy | None
    timeout_ms: int | None = None
    heartbeat_ms: int | None = None
    idempotency_key: str | None = None


@dataclass(slots=True)
class _Compensation:
    pos: int
    name: str
    fn: Callable[..., Any]
    result: Any


class _Trap:
    __slots__ = ()

    def __await__(self) -> Generator[Any, None, None]:
        yield _SUSPEND


_TRAP = _Trap()


def _fn_name(fn: Callable[..., Any]) -> str:
    inner = getattr(fn, "func", fn)  # functools.partial
    return str(getattr(inner, "__qualname__", None) or getattr(inner, "__name__", repr(inner)))


def error_of(exc: BaseException) -> dict[str, Any]:
    """A run's or an activity's error as stored: {type, message}, or what the exception's
    own `error_info()` says (a layer above can describe its errors in its own terms)."""
    info = getattr(exc, "error_info", None)
    if callable(info):
        described = info()
        if isinstance(described, dict) and "type" in described and "message" in described:
            return described
    return {"type": type(exc).__name__, "message": str(exc)}


class Context:
    """`ctx`: what a workflow function gets. Every method is an effect, journaled.

    Durations are milliseconds (`seconds(5)`, `hours(24)`, ...)."""

    def __init__(self, replay: Replay) -> None:
        self._r = replay
        self.run_id = replay.run_id
        self.workflow = replay.workflow.name
        self._patched: dict[str, bool] = {}
        self._compensations: list[_Compensation] = []

    # -- plumbing ---------------------------------------------------------------------

    @property
    def is_replaying(self) -> bool:
        """True while the code re-runs effects the stored journal already holds."""
        return self._r.cursor < self._r.stored

    def _enter(
        self, kind: str, name: str, digest: str | None, extra: dict[str, Any] | None = None
    ) -> Effect | None:
        r = self._r
        if r.closing:
            raise SuspendLeakError(
                f"run {r.run_id}: the workflow reached {kind} {name!r} after its suspension "
                "was interrupted (does it catch BaseException/GeneratorExit around an await?)"
            )
        if r.drift is not None:
            return None
        pos = r.cursor
        if pos < len(r.effects):
            eff = r.effects[pos]
            if (
                eff.kind != kind
                or eff.name != name
                or (digest is not None and eff.digest != digest)
            ):
                got = f"{kind} {name!r} (args {digest}) at position {pos}"
                r.drift = NonDeterminismError(
                    f"run {r.run_id}: the journal holds {eff.shape()}, the code now asks for {got}",
                    position=pos,
                    expected=eff.shape(),
                    got=got,
                )
                return None
            r.cursor += 1
            return eff
        digest = digest or ""
        eff = Effect(pos, kind, name, digest, dict(extra or {}))
        r.effects.append(eff)
        r.cursor += 1
        r.emit({"type": "scheduled", "pos": pos, "kind": kind, "name": name, "digest": digest,
                **eff.extra})  # fmt: skip
        return eff

    async def _wait(self, eff: Effect | None, call: ActivityCall | None = None) -> Effect:
        while eff is None or not eff.done:
            self._r.blocked, self._r.call = eff, call
            await _TRAP
        self._r.blocked, self._r.call = None, None
        return eff

    def _sync(self, kind: str, name: str, make: Callable[[], Any]) -> Any:
        eff = self._enter(kind, name, "")
        if eff is None:
            return None
        if not eff.done:
            value = make()
            _values.check(value, f"{kind} {name!r} result")
            self._r.resolve(eff, value)
        return eff.value

    # -- deterministic primitives -------------------------------------------------------

    def now_ms(self) -> int:
        """The engine's time (ms since the epoch), journaled: the same on every replay."""
        value = self._sync("now", "", lambda: self._r.now_ms)
        return int(value or 0)

    def now(self) -> _dt.datetime:
        """`now_ms()` as an aware UTC datetime."""
        return _dt.datetime.fromtimestamp(self.now_ms() / 1000, tz=_dt.UTC)

    def uuid4(self) -> _uuid.UUID:
        value = self._sync("uuid4", "", lambda: _uuid.uuid4().hex)
        return _uuid.UUID(hex=value) if value else _uuid.UUID(int=0)

    def random(self) -> float:
        value = self._sync("random", "", _rng.random)
        return float(value or 0.0)

    def side_effect(self, fn: Callable[[], Any]) -> Any:
        """Run `fn()` once, journal its (storable) result, return it on every replay."""
        return self._sync("side_effect", _fn_name(fn), fn)

    def patched(self, name: str) -> bool:
        """True on code paths added by patch `name`: for runs that reach this point under
        the new code (the marker is journaled), False for runs whose journal predates it
        (no position is taken then, so their replay lines up)."""
        if name in self._patched:
            return self._patched[name]
        r = self._r
        if r.drift is not None:
            return False
        if r.cursor < len(r.effects):
            eff = r.effects[r.cursor]
            found = eff.kind == "patched" and eff.name == name
            if found:
                r.cursor += 1
            self._patched[name] = found
            return found
        self._sync("patched", name, lambda: True)
        self._patched[name] = True
        return True

    # -- effects that wait --------------------------------------------------------------

    async def activity(
        self,
        fn: Callable[..., Any],
        *args: Any,
        retry: Any = None,
        timeout: int | None = None,
        heartbeat_timeout: int | None = None,
        idempotency_key: str | None = None,
        compensate: Callable[..., Any] | None = None,
        name: str | None = None,
        **kwargs: Any,
    ) -> Any:
        """Run `fn(*args, **kwargs)` (async in Trio, sync in a thread) at least once and
        return its journaled result; a failure (after `retry`, a flowactors.RetryPolicy)
        raises ActivityError here. `timeout` / `heartbeat_timeout` in ms. With
        `compensate=fn`, returns an ActivityRef and `fn(result)` is its compensation."""
        act = name or _fn_name(fn)
        canonical = _values.check(list(args), f"activity {act} arguments")
        canonical = _values.check(kwargs, f"activity {act} keyword arguments") or canonical
        digest = _values.digest([list(args), kwargs], canonical)
        call = ActivityCall(fn, args, kwargs, retry, timeout, heartbeat_timeout, idempotency_key)
        eff = await self._wait(self._enter("activity", act, digest), call)
        return self._activity_outcome(act, eff, compensate)

    async def _activity(
        self,
        act: str,
        digest: str | None,
        call: ActivityCall,
        compensate: Callable[..., Any] | None = None,
    ) -> Any:
        """`activity` once its arguments are checked and digested. `digest` None: the
        caller vouches that they are a pure function of the journal and the run's input
        (flowactors.steps: a step's context is the previous step's journaled result), so
        there is nothing to check or compare, and no digest is stored."""
        eff = await self._wait(self._enter("activity", act, digest), call)
        return self._activity_outcome(act, eff, compensate)

    def _activity_outcome(
        self, act: str, eff: Effect, compensate: Callable[..., Any] | None
    ) -> Any:
        if not eff.ok:
            err = eff.error or {}
            raise ActivityError(
                act, str(err.get("type")), str(err.get("message")), eff.attempts or 1
            )
        if compensate is not None:
            self._compensations.append(_Compensation(eff.pos, _fn_name(compensate), compensate,
                                                     eff.value))  # fmt: skip
            return ActivityRef(eff.value, eff.pos, act)
        return eff.value

    async def timer(self, ms: int) -> None:
        """Sleep durably for `ms` milliseconds of engine time."""
        if isinstance(ms, bool) or not isinstance(ms, int | float) or ms < 0:
            raise ValueError("timer takes a duration in ms (>= 0)")
        ms = int(ms)
        eff = self._enter("timer", "", _values.digest(ms), {"fire_at": self._r.now_ms + ms})
        await self._wait(eff)

    sleep = timer

    async def signal_any(
        self, names: Sequence[str], timeout: int | None = None
    ) -> tuple[str, Any] | Timeout:
        """(name, value) of the first signal sent to this run under any of `names` (in
        the order they arrived; kept ones count), or Timeout() if `timeout` ms passed
        first. Decided once, in the journal."""
        if isinstance(names, str) or not isinstance(names, Sequence) or not names:
            raise ValueError("names is a non-empty list of signal names")
        for name in names:
            _check_signal_name(name, among=True)
        if len(set(names)) != len(names):
            raise ValueError("names repeats a signal name")
        until = None if timeout is None else self._r.now_ms + int(timeout)
        extra = {"until": until, "names": list(names)}
        eff = self._enter("signal", "|".join(names), _values.digest(timeout), extra)
        eff = await self._wait(eff)
        value = eff.value or {}
        if value.get("timeout"):
            return Timeout()
        return str(value.get("name")), value.get("value")

    async def signal(self, name: str, timeout: int | None = None) -> Any:
        """The next signal `name` sent to this run (kept if it came first), or Timeout()
        if `timeout` ms passed first. The race is decided once, in the journal."""
        _check_signal_name(name)
        until = None if timeout is None else self._r.now_ms + int(timeout)
        eff = self._enter("signal", name, _values.digest(timeout), {"until": until})
        eff = await self._wait(eff)
        value = eff.value or {}
        if value.get("timeout"):
            return Timeout()
        return value.get("value")

    def start_child(
        self,
        workflow: WorkflowDef | str,
        input: Any = None,
        *,
        id: str | None = None,
        queue: str | None = None,
    ) -> ChildHandle:
        """Start a child run (its id derives from this run, the call site and `id`) in
        `queue` (default: its workflow's); the handle is for `await_child`. Does not
        wait."""
        wf = self._r.resolve_workflow(workflow)
        _values.check(input, f"child {wf.name} input")
        pos = self._r.cursor
        key = id if id is not None else f"{wf.name}-{pos}"
        child_id = f"{self.run_id}/{key}"
        extra: dict[str, Any] = {"child": child_id}
        shape: list[Any] = [input, id]
        if queue is not None:
            check_queue(queue, 0)
            extra["queue"] = queue
            shape.append(queue)  # (without one, the digest is what it always was)
        eff = self._enter("child", wf.name, _values.digest(shape), extra)
        if eff is not None:
            self._r.pending_children.setdefault(eff.pos, (eff, wf, input))
            child_id = str(eff.extra.get("child", child_id))
        return ChildHandle(child_id, wf.name, pos)

    async def await_child(self, handle: ChildHandle, *, timeout: int | None = None) -> Any:
        """The child's result; ChildFailed / ChildCancelled when it ended otherwise; with
        `timeout` (ms), Timeout() if the child has not ended by then (it goes on running;
        the race is decided once, in the journal)."""
        started = (
            self._r.effects[handle.position] if handle.position < len(self._r.effects) else None
        )
        if _refused(started) and not self._joined_next(handle):
            raise _collision(started)  # known refused before this join was ever entered
        if timeout is None:
            eff = self._enter("join", handle.run_id, "")
        else:
            if isinstance(timeout, bool) or not isinstance(timeout, int) or timeout < 0:
                raise ValueError("timeout is a duration in ms (an int >= 0)")
            until = self._r.now_ms + timeout
            eff = self._enter("join", handle.run_id, _values.digest(timeout), {"until": until})
        eff = await self._wait(eff)
        if _refused(started):  # refused while this join waited (the join failed with it)
            raise _collision(started)
        if eff.ok:
            if timeout is None:
                return eff.value
            value = eff.value or {}
            return Timeout() if value.get("timeout") else value.get("value")
        err = eff.error or {}
        if err.get("type") == "cancelled":
            raise ChildCancelled(handle.run_id)
        raise ChildFailed(handle.run_id, str(err.get("type")), str(err.get("message")))

    def _joined_next(self, handle: ChildHandle) -> bool:
        """Whether the journal's next effect is this child's join: a start refused (its
        id taken) while the join already waited, as when `child()` starts and joins at
        once; that join is then replayed too, so the replay matches the journal."""
        r = self._r
        nxt = r.effects[r.cursor] if r.cursor < r.stored else None
        return nxt is not None and nxt.kind == "join" and nxt.name == handle.run_id

    async def await_any_child(self, handles: Sequence[ChildHandle]) -> tuple[int, Any]:
        """(index, outcome) of the first of `handles` seen ended: its result, or the
        ChildFailed / ChildCancelled it ended with (returned, not raised). Which one is
        decided once, in the journal (of several ended by then, the first listed)."""
        if not handles or not all(isinstance(h, ChildHandle) for h in handles):
            raise ValueError("await_any_child takes a non-empty list of ChildHandles")
        ids = [h.run_id for h in handles]
        eff = self._enter("join_any", "|".join(ids), "", {"children": ids})
        eff = await self._wait(eff)
        value = eff.value or {}
        index = int(value.get("index", 0))
        if value.get("ok"):
            return index, value.get("value")
        err = value.get("error") or {}
        if err.get("type") == "cancelled":
            return index, ChildCancelled(ids[index])
        return index, ChildFailed(ids[index], str(err.get("type")), str(err.get("message")))

    async def cancel_child(self, handle: ChildHandle, reason: str = "cancelled") -> None:
        """Cancel a child run (and its live children); nothing when it already ended.
        Performed once, whatever the replays."""
        if not isinstance(handle, ChildHandle) or not isinstance(reason, str):
            raise ValueError("cancel_child takes a ChildHandle and a str reason")
        eff = self._enter("cancel_child", handle.run_id, _values.digest(reason), {"reason": reason})
        await self._wait(eff)

    async def child(
        self, workflow: WorkflowDef | str, input: Any = None, *, id: str | None = None
    ) -> Any:
        """`await_child(start_child(...))`."""
        return await self.await_child(self.start_child(workflow, input, id=id))

    # -- sagas --------------------------------------------------------------------------

    async def compensate(self, ref: ActivityRef) -> Any:
        """Run the compensation of one activity (once: it leaves the pending set). Returns
        its result, or the ActivityError (not raised) when it failed; the run goes on."""
        for i in range(len(self._compensations) - 1, -1, -1):
            if self._compensations[i].pos == ref.position:
                return await self._run_compensation(self._compensations.pop(i))
        return None

    async def compensate_all(self) -> list[Any]:
        """Run every pending compensation, newest first; their results (or errors)."""
        out = []
        while self._compensations:
            out.append(await self._run_compensation(self._compensations.pop()))
        return out

    async def _run_compensation(self, comp: _Compensation) -> Any:
        eff = self._enter("compensate", comp.name, _values.digest(comp.pos))
        eff = await self._wait(eff, ActivityCall(comp.fn, (comp.result,), {}))
        if eff.ok:
            return eff.value
        err = eff.error or {}
        return ActivityError(comp.name, str(err.get("type")), str(err.get("message")), 1)

    @property
    def pending_compensations(self) -> int:
        return len(self._compensations)

    # -- the end ------------------------------------------------------------------------

    def continue_as_new(self, input: Any) -> ContinueAsNew:
        """`return ctx.continue_as_new(input)`: end this run, start its successor."""
        _values.check(input, "continue_as_new input")
        return ContinueAsNew(input)


@dataclass(slots=True)
class Outcome:
    """How a pass ended: `suspended` (on `blocked`), `returned`, `raised`, or `drift`."""

    status: str
    value: Any = None
    error: BaseException | None = None


def _check_signal_name(name: object, among: bool = False) -> None:
    if not isinstance(name, str) or not name or ":" in name:
        raise ValueError("a signal name is a non-empty str without ':'")
    if among and "|" in name:  # (the effect's name joins them with '|')
        raise ValueError(f"signal_any takes names without '|': {name!r}")


class Replay:
    """One workflow coroutine over one journal; see the module comment."""

    def __init__(
        self,
        workflow: WorkflowDef,
        run_id: str,
        input: Any,
        effects: list[Effect],
        now_ms: int,
        resolve_workflow: Callable[[WorkflowDef | str], WorkflowDef],
    ) -> None:
        self.workflow = workflow
        self.run_id = run_id
        self.effects = effects
        self.stored = len(effects)
        self.now_ms = now_ms
        self.resolve_workflow = resolve_workflow
        self.cursor = 0
        self.new_events: list[dict[str, Any]] = []
        self.blocked: Effect | None = None
        self.call: ActivityCall | None = None
        self.drift: NonDeterminismError | None = None
        self.closing = False
        self.pending_children: dict[int, tuple[Effect, WorkflowDef, Any]] = {}
        # The coroutine holds its ctx, and ctx this replay: a cycle only while it is
        # suspended (not kept here too), so a finished or closed replay is freed at once
        # rather than left to the cyclic GC.
        self._coro = cast(Coroutine[Any, Any, Any], workflow.fn(Context(self), input))
        self._finished = False

    def rebase(self, now_ms: int) -> None:
        """Reuse this suspended replay for the next wake (its journal was committed and
        nobody else moved the run): the coroutine resumes where it stopped, no replay."""
        self.new_events = []
        self.stored = len(self.effects)
        self.now_ms = now_ms

    def emit(self, event: dict[str, Any]) -> None:
        event["at"] = self.now_ms
        self.new_events.append(event)

    # -- feeding outcomes (the host) ------------------------------------------------------

    def resolve(self, eff: Effect, value: Any) -> None:
        event = {"type": "completed", "pos": eff.pos, "value": value}
        self.emit(event)
        apply(self.effects, event)

    def fail(self, eff: Effect, error: dict[str, Any], attempts: int = 1) -> None:
        event = {"type": "failed", "pos": eff.pos, "error": error, "attempts": attempts}
        self.emit(event)
        apply(self.effects, event)

    def attempt_failed(self, eff: Effect, error: dict[str, Any], retry_at: int) -> None:
        event = {
            "type": "attempt_failed",
            "pos": eff.pos,
            "attempt": eff.attempts + 1,
            "error": error,
            "retry_at": retry_at,
        }
        self.emit(event)
        apply(self.effects, event)

    # -- running ------------------------------------------------------------------------

    def advance(self) -> Outcome:
        """Run the coroutine until it suspends or ends."""
        if self._finished:
            raise RuntimeError("the workflow already ended")
        self.blocked, self.call = None, None
        try:
            yielded = self._coro.send(None)
        except StopIteration as stop:
            self._finished = True
            return self._ended(Outcome("returned", stop.value))
        except SuspendLeakError as exc:
            self._finished = True
            self.drift = exc
            return Outcome("drift", error=exc)
        except Exception as exc:
            self._finished = True
            return self._ended(Outcome("raised", error=exc))
        if yielded is not _SUSPEND:
            self.drift = SuspendLeakError(
                f"run {self.run_id}: the workflow awaited {yielded!r}, which is not a ctx "
                "effect (trio and asyncio calls cannot be replayed: use ctx.timer, "
                "ctx.activity, ...)"
            )
        if self.drift is not None:
            self.close()
            return Outcome("drift", error=self.drift)
        return Outcome("suspended")

    def _ended(self, outcome: Outcome) -> Outcome:
        if self.drift is None and self.cursor < self.stored:
            eff = self.effects[self.cursor]
            self.drift = NonDeterminismError(
                f"run {self.run_id}: the journal holds {eff.shape()}, the code now ends there",
                position=self.cursor,
                expected=eff.shape(),
                got=f"the end of the workflow at position {self.cursor}",
            )
        if self.drift is not None:  # drift met in code that then caught nothing and ended
            return Outcome("drift", error=self.drift)
        if outcome.status == "returned":
            value = outcome.value
            data = value.input if isinstance(value, ContinueAsNew) else value
            try:
                _values.check(data, "the workflow's result")
            except Exception as exc:
                return Outcome("raised", error=exc)
        return outcome

    def close(self) -> None:
        """Abandon the suspended coroutine (the next wake replays from the top)."""
        if self._finished:
            return
        self._finished = True
        self.closing = True
        try:
            self._coro.close()
        except SuspendLeakError as exc:
            self.drift = self.drift or exc
        except RuntimeError as exc:  # "coroutine ignored GeneratorExit"
            self.drift = self.drift or SuspendLeakError(f"run {self.run_id}: {exc}")
        except Exception:  # code in finally blocks failing while closing: ignored
            pass


def _refused(started: Effect | None) -> bool:
    return started is not None and started.done and not started.ok


def _collision(started: Effect | None) -> ChildIdCollision:
    err = (started.error if started is not None else None) or {}
    return ChildIdCollision(str(err.get("message")))


def timeout_value() -> dict[str, Any]:
    return {"timeout": True}


__all__ = ["Context", "Effect", "Replay", "fold", "Timeout"]
