# A pure test host: drives start/resume to the end with Python callables as task handlers and
# a virtual clock. It is the reference for the host contract (see _interpret) and what the
# tests, and later the durable layer's tests, run definitions with.
#
# Scheduling: everything that "happens later" is an entry (time, order, command) in one heap:
# task results (at now, or now + Elapsed.seconds), their timeouts, timers, branch outcomes.
# The host pops the earliest entry, advances the clock to it and resumes. Branches run at once,
# recursively, as child executions starting at the current virtual time; their outcome is due
# when the child finished. Stale commands (a task result after its timeout) are simply ignored
# by the interpreter, as they would be in production.
from __future__ import annotations

import dataclasses
import heapq
import itertools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ._errors import AslUsageError
from ._interpret import (
    BranchFailed,
    BranchSucceeded,
    CancelBranches,
    Command,
    Definition,
    Effect,
    Execution,
    HeartbeatTimedOut,
    ScheduleTask,
    StartBranches,
    StartTimer,
    Status,
    TaskFailed,
    TaskSucceeded,
    TaskTimedOut,
    TimerFired,
    as_machine,
    check_int_arg,
    check_mapping_arg,
    resume,
    start,
)


class TaskError(Exception):
    """Raise from a handler to fail the task with an explicit ASL error name and cause."""

    def __init__(self, error: str, cause: str = "") -> None:
        super().__init__(f"{error}: {cause}")
        self.error = error
        self.cause = cause


@dataclass(frozen=True)
class Elapsed:
    """Return from a handler: the task took `seconds` of virtual time, then gave `result`
    (an exception instance to fail). Longer than its TimeoutSeconds → States.Timeout; longer
    than HeartbeatSeconds (handlers never heartbeat) → States.HeartbeatTimeout."""

    seconds: float
    result: Any = None


@dataclass(frozen=True)
class RunResult:
    status: Status
    output: Any
    error: str | None
    cause: str | None
    events: tuple[dict[str, Any], ...]
    execution: Execution
    now_ms: int


def run_inline(
    definition: Definition,
    input: Any = None,
    handlers: Mapping[str, Callable[[Any], Any]] | None = None,
    *,
    context: Mapping[str, Any] | None = None,
    now_ms: int = 0,
    execution_id: str = "execution",
    max_commands: int = 100_000,
) -> RunResult:
    """Run to the end. Handlers are called with the task input; their return value is the
    output, an exception fails the task (error = class name, or TaskError's `error`)."""
    machine = as_machine(definition)
    checked = _check_drive_args(handlers, max_commands)
    step = start(machine, input, context, now_ms=now_ms, execution_id=execution_id)
    return _drive(step.execution, step.effects, checked, now_ms, max_commands)


def _check_drive_args(
    handlers: Mapping[str, Callable[[Any], Any]] | None, max_commands: int
) -> Mapping[str, Callable[[Any], Any]]:
    checked = check_mapping_arg(handlers, "handlers")
    for resource, fn in checked.items():
        if not callable(fn):
            raise AslUsageError(f"the handler of {resource!r} is not callable: {fn!r:.60}")
    check_int_arg(max_commands, "max_commands")
    return checked


def continue_inline(
    execution: Execution,
    handlers: Mapping[str, Callable[[Any], Any]] | None = None,
    *,
    now_ms: int = 0,
    effects: tuple[Effect, ...] | None = None,
    max_commands: int = 100_000,
) -> RunResult:
    """Drive an execution (e.g. one from `recover`) on, issuing its pending effects again."""
    if not isinstance(execution, Execution):
        raise AslUsageError(f"continue_inline takes an Execution, not {execution!r:.60}")
    checked = _check_drive_args(handlers, max_commands)
    check_int_arg(now_ms, "now_ms")
    pending = execution.pending if effects is None else effects
    return _drive(execution, pending, checked, now_ms, max_commands)


def _drive(
    execution: Execution,
    effects: tuple[Effect, ...],
    handlers: Mapping[str, Callable[[Any], Any]],
    now: int,
    max_commands: int,
) -> RunResult:
    heap: list[tuple[int, int, Command]] = []
    order = itertools.count()

    def later(at: int, cmd: Command) -> None:
        heapq.heappush(heap, (at, next(order), cmd))

    def perform(effs: tuple[Effect, ...]) -> None:
        for eff in effs:
            if isinstance(eff, StartTimer):
                later(max(eff.fire_at_ms, now), TimerFired(eff.timer_id))
            elif isinstance(eff, ScheduleTask):
                _run_task(eff, handlers, now, later)
            elif isinstance(eff, StartBranches):
                for b in eff.branches:
                    child = run_inline(
                        b.machine,
                        b.input,
                        handlers,
                        context=b.context,
                        now_ms=now,
                        execution_id=b.execution_id,
                        max_commands=max_commands,
                    )
                    if child.status is Status.SUCCEEDED:
                        later(child.now_ms, BranchSucceeded(eff.run_id, b.index, child.output))
                    else:
                        later(
                            child.now_ms,
                            BranchFailed(
                                eff.run_id,
                                b.index,
                                child.error or "States.BranchFailed",
                                child.cause or "",
                            ),
                        )
            else:
                assert isinstance(eff, CancelBranches)  # children already ran to completion

    perform(effects)
    budget = max_commands
    while execution.status is Status.RUNNING and heap:
        budget -= 1
        if budget < 0:
            raise AslUsageError(f"run_inline: more than {max_commands} commands (a loop?)")
        at, _, cmd = heapq.heappop(heap)
        now = max(now, at)
        step = resume(execution, _stamped(cmd, now))
        execution = step.execution
        perform(step.effects)
    if execution.status is Status.RUNNING:
        raise AslUsageError("run_inline: the execution waits for something no one will send")
    return RunResult(
        execution.status,
        execution.output,
        execution.error,
        execution.cause,
        execution.events,
        execution,
        now,
    )


def _run_task(
    eff: ScheduleTask,
    handlers: Mapping[str, Callable[[Any], Any]],
    now: int,
    later: Callable[[int, Command], None],
) -> None:
    handler = handlers.get(eff.resource)
    if handler is None:
        raise AslUsageError(f"run_inline: no handler for resource {eff.resource!r}")
    try:
        result = handler(eff.input)
    except Exception as exc:  # the handler's failure is the task's outcome
        result = exc
    elapsed = 0.0
    if isinstance(result, Elapsed):
        elapsed, result = result.seconds, result.result
    limits: list[tuple[int, Command]] = []
    if eff.timeout_s is not None:
        limits.append((eff.timeout_s, TaskTimedOut(eff.task_id, "the task ran too long")))
    if eff.heartbeat_s is not None:
        limits.append((eff.heartbeat_s, HeartbeatTimedOut(eff.task_id, "no heartbeat")))
    for limit, timeout_cmd in sorted(limits, key=lambda x: x[0]):
        if elapsed > limit:
            later(now + limit * 1000, timeout_cmd)
            return
    at = now + round(elapsed * 1000)
    if isinstance(result, TaskError):
        later(at, TaskFailed(eff.task_id, result.error, result.cause))
    elif isinstance(result, BaseException):
        later(at, TaskFailed(eff.task_id, type(result).__name__, str(result)))
    else:
        later(at, TaskSucceeded(eff.task_id, result))


def _stamped(cmd: Command, now: int) -> Command:
    """The command with its time set to the virtual clock."""
    stamped: Command = dataclasses.replace(cmd, now_ms=now)
    return stamped
