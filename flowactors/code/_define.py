# Declaring code workflows: the `@workflow` decorator, the registry it fills, `@pure` for
# helpers, and the small value types workflow code handles (Timeout, ActivityRef,
# ChildHandle, ContinueAsNew).
#
# The registry maps a workflow name to its registered versions, keyed by code hash (see
# `_scan`). New runs start on the version registered last; a run resumes on the version
# whose hash it stored at start, so old code kept registered (under the same name) keeps
# serving old runs while new runs take the new code. A run whose hash no registered
# version has is parked (VersionMismatch) until one is.
from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar, overload

from flowactors import InvalidArgument

from . import _scan
from ._errors import UnknownWorkflow

F = TypeVar("F", bound=Callable[..., Any])
WorkflowFn = Callable[..., Awaitable[Any]]


@dataclass(frozen=True)
class WorkflowDef:
    """A registered workflow: `fn(ctx, input)` plus its declared settings and code hash."""

    name: str
    fn: WorkflowFn
    version: int
    code_hash: str
    retention_ms: int | None = None
    queue: str | None = None  # the named queue its runs wait in (None: the default one)
    priority: int = 0  # of its runs, 0..2 (higher is claimed first)

    def __repr__(self) -> str:
        return f"<workflow {self.name} v{self.version} {self.code_hash[:8]}>"


def check_queue(queue: object, priority: object) -> None:
    """A queue name (or None) and a priority 0..2, or InvalidArgument."""
    if queue is not None and (
        not isinstance(queue, str) or not queue or "\x00" in queue or len(queue) > 100
    ):
        raise InvalidArgument(f"queue must be a non-empty name or None, not {queue!r}")
    if isinstance(priority, bool) or not isinstance(priority, int) or not 0 <= priority <= 2:
        raise InvalidArgument(f"priority must be 0, 1 or 2, not {priority!r}")


@dataclass
class Registry:
    """name -> {code hash -> WorkflowDef}; the last registered version of a name starts
    new runs."""

    versions: dict[str, dict[str, WorkflowDef]] = field(default_factory=dict)
    current: dict[str, WorkflowDef] = field(default_factory=dict)

    def add(self, wf: WorkflowDef) -> None:
        self.versions.setdefault(wf.name, {})[wf.code_hash] = wf
        self.current[wf.name] = wf

    def latest(self, name: str) -> WorkflowDef:
        wf = self.current.get(name)
        if wf is None:
            raise UnknownWorkflow(f"no workflow named {name!r} is registered")
        return wf

    def find(self, name: str, code_hash: str) -> WorkflowDef | None:
        return self.versions.get(name, {}).get(code_hash)

    def resolve(self, workflow: WorkflowDef | str) -> WorkflowDef:
        if isinstance(workflow, WorkflowDef):
            return workflow
        if isinstance(workflow, str):
            return self.latest(workflow)
        raise UnknownWorkflow(f"{workflow!r} is not a workflow (decorate it with @workflow)")


REGISTRY = Registry()


@overload
def workflow(fn: WorkflowFn, /) -> WorkflowDef: ...


@overload
def workflow(
    *,
    name: str | None = None,
    version: int = 1,
    retention_ms: int | None = None,
    trusted_modules: Iterable[str] = (),
    check: bool = True,
    registry: Registry | None = None,
    queue: str | None = None,
    priority: int = 0,
) -> Callable[[WorkflowFn], WorkflowDef]: ...


def workflow(
    fn: WorkflowFn | None = None,
    /,
    *,
    name: str | None = None,
    version: int = 1,
    retention_ms: int | None = None,
    trusted_modules: Iterable[str] = (),
    check: bool = True,
    registry: Registry | None = None,
    queue: str | None = None,
    priority: int = 0,
) -> WorkflowDef | Callable[[WorkflowFn], WorkflowDef]:
    """Declare `async def fn(ctx, input)` a durable workflow.

    Its source is scanned for non-deterministic calls (DeterminismViolation, with the
    `ctx.` replacement to use; `check=False` skips the scan), its code hashed, and it is
    registered under `name` (default: the function's name). `retention_ms`: how long a
    finished run is kept (engine default when None). `queue`: the named queue its runs
    wait in (a CodeRunner serves the queues it is given, each with its own concurrency);
    `priority` (0..2): its runs are claimed before lower ones."""

    def declare(target: WorkflowFn) -> WorkflowDef:
        import inspect

        if not inspect.iscoroutinefunction(target):
            raise InvalidArgument(f"{target!r}: a workflow is an `async def fn(ctx, input)`")
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise InvalidArgument("version must be a positive integer")
        if retention_ms is not None and (
            isinstance(retention_ms, bool) or not isinstance(retention_ms, int) or retention_ms < 1
        ):
            raise InvalidArgument("retention_ms must be a positive integer (milliseconds)")
        wf_name = name or target.__name__
        if not wf_name or "\x00" in wf_name or len(wf_name.encode()) > 200:
            raise InvalidArgument(f"workflow name {wf_name!r} is not a name")
        if check:
            _scan.check(target, f"workflow {wf_name}", trusted_modules)
        check_queue(queue, priority)
        wf = WorkflowDef(
            wf_name,
            target,
            version,
            _scan.code_hash(target, wf_name, version),
            retention_ms,
            queue,
            priority,
        )
        (registry or REGISTRY).add(wf)
        return wf

    return declare if fn is None else declare(fn)


def pure(fn: F | None = None, /, *, trusted_modules: Iterable[str] = ()) -> Any:
    """Mark a helper that workflows call as deterministic: it is scanned like a workflow
    (DeterminismViolation at decoration time) and returned unchanged."""

    def mark(target: F) -> F:
        _scan.check(target, f"helper {target.__qualname__}", trusted_modules)
        return target

    return mark if fn is None else mark(fn)


# -- what workflow code handles ----------------------------------------------------------


class Timeout:
    """What `await ctx.signal(name, timeout=ms)` returns when the timeout won the race
    (match it with `case Timeout():`)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "Timeout()"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Timeout)

    def __hash__(self) -> int:
        return hash(Timeout)


@dataclass(frozen=True)
class ActivityRef:
    """What an activity with `compensate=` returns: its `result`, and the handle that
    `ctx.compensate(ref)` takes."""

    result: Any
    position: int
    activity: str


@dataclass(frozen=True)
class ChildHandle:
    """A started child run: `await ctx.await_child(handle)`."""

    run_id: str
    workflow: str
    position: int


@dataclass(frozen=True)
class ContinueAsNew:
    """Return `ctx.continue_as_new(input)` from a workflow to end this run and start its
    successor (same workflow, same correlation id) on `input`."""

    input: Any
