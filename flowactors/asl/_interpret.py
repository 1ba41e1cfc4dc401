# The pure interpreter: `start`, `resume` and `recover`. No I/O, no clock, no randomness; time
# comes in as milliseconds on every command, and whatever must happen outside (run a task, wait,
# run branches) is returned to the host as an *effect*. The host answers with *commands*.
#
# Theory of operation. An execution runs one state at a time. A state either completes at once
# (Pass, Choice, Succeed, Fail) or leaves the execution waiting on exactly one thing: a task
# (Task), a timer (Wait, or a retry's backoff) or a set of branches (Parallel, Map). A command
# that answers that wait is first recorded as an event (TaskSucceeded, TimerFired,
# MapIterationSucceeded, ...) and then the execution runs on until it waits again or ends. Every
# other event is *derived*: the same definition, start input and command events always produce
# the same derived events. That is what makes `recover` a replay: it restarts from
# ExecutionStarted, turns each recorded command event back into its command and resumes,
# checking that the derived events match the log (a cut-short log is completed; a different
# one raises AslHistoryMismatch). Ids (task-3, timer-5, run-7) come from a counter, and
# MathRandom/UUID/jitter draw from seeds built from the execution id and the event number, so
# replay reproduces them.
#
# Parallel branches and Map iterations are child executions the host runs (`StartBranches`):
# each branch is `start(branch.machine, branch.input, branch.context,
# execution_id=branch.execution_id)`, and its outcome comes back as BranchSucceeded or
# BranchFailed. Map starts at most MaxConcurrency iterations at a time and starts the next one
# as each finishes. Commands that answer nothing current (a late task result after a timeout,
# a branch of a failed Parallel, anything after the end) are stale: ignored, no event.
from __future__ import annotations

import copy
import enum
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypeAlias

from ._choice import first_match
from ._definition import (
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
from ._errors import AslHistoryMismatch, AslUsageError, StatesError
from ._intrinsics import make_runner
from ._paths import (
    MISSING,
    Path,
    Scope,
    Template,
    assign_result,
    evaluate,
    is_number,
    render,
    select_or_fail,
)
from ._time import format_ms, parse_timestamp_ms
from ._validate import load_definition

# ---------------------------------------------------------------------------------------------
# Public data: status, effects, commands, steps


class Status(enum.Enum):
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    TIMED_OUT = "TIMED_OUT"
    ABORTED = "ABORTED"


@dataclass(frozen=True)
class ScheduleTask:
    """Run `resource` on `input`; answer TaskSucceeded/TaskFailed (or a timeout) for task_id.

    The host enforces `timeout_s` (→ TaskTimedOut) and `heartbeat_s` (→ HeartbeatTimedOut).
    """

    task_id: str
    resource: str
    input: Any
    timeout_s: int | None = None
    heartbeat_s: int | None = None
    state_name: str = ""


@dataclass(frozen=True)
class StartTimer:
    """Send TimerFired(timer_id) at `fire_at_ms` (or at once if that is in the past)."""

    timer_id: str
    fire_at_ms: int


@dataclass(frozen=True)
class Branch:
    """One branch or iteration: run `machine` as a child execution with this id."""

    index: int
    machine: StateMachine
    input: Any
    context: Mapping[str, Any]
    execution_id: str


@dataclass(frozen=True)
class StartBranches:
    """Start these child executions; report each with BranchSucceeded/BranchFailed."""

    run_id: str
    state_name: str
    kind: str  # "Parallel" or "Map"
    branches: tuple[Branch, ...]


@dataclass(frozen=True)
class CancelBranches:
    """The branches of `run_id` still running are no longer wanted (their results are ignored)."""

    run_id: str
    indexes: tuple[int, ...]


Effect: TypeAlias = ScheduleTask | StartTimer | StartBranches | CancelBranches


@dataclass(frozen=True)
class TaskSucceeded:
    task_id: str
    output: Any
    now_ms: int = 0


@dataclass(frozen=True)
class TaskFailed:
    task_id: str
    error: str
    cause: str = ""
    now_ms: int = 0


@dataclass(frozen=True)
class TaskTimedOut:
    task_id: str
    cause: str = ""
    now_ms: int = 0


@dataclass(frozen=True)
class HeartbeatTimedOut:
    task_id: str
    cause: str = ""
    now_ms: int = 0


@dataclass(frozen=True)
class TimerFired:
    timer_id: str
    now_ms: int = 0


@dataclass(frozen=True)
class BranchSucceeded:
    run_id: str
    index: int
    output: Any
    now_ms: int = 0


@dataclass(frozen=True)
class BranchFailed:
    run_id: str
    index: int
    error: str
    cause: str = ""
    now_ms: int = 0


@dataclass(frozen=True)
class Stop:
    error: str = ""
    cause: str = ""
    now_ms: int = 0


Command: TypeAlias = (
    TaskSucceeded
    | TaskFailed
    | TaskTimedOut
    | HeartbeatTimedOut
    | TimerFired
    | BranchSucceeded
    | BranchFailed
    | Stop
)
COMMAND_TYPES = (
    TaskSucceeded,
    TaskFailed,
    TaskTimedOut,
    HeartbeatTimedOut,
    TimerFired,
    BranchSucceeded,
    BranchFailed,
    Stop,
)


@dataclass
class _BranchRun:
    run_id: str
    kind: str
    inputs: list[Any]
    contexts: list[dict[str, Any]]
    max_concurrency: int
    tolerated_count: int | None
    tolerated_percentage: float | None
    results: dict[int, Any] = field(default_factory=dict)
    running: list[int] = field(default_factory=list)
    next_index: int = 0
    failures: int = 0


@dataclass
class _Run:
    """Everything an execution knows. Copied by every resume (deeply, but for the emitted
    events, which are shared: see `__deepcopy__`): callers keep theirs."""

    execution_id: str
    context: dict[str, Any]
    events: list[dict[str, Any]] = field(default_factory=list)
    status: Status = Status.RUNNING
    output: Any = None
    error: str | None = None
    cause: str | None = None
    seq: int = 0
    state_name: str | None = None
    raw_input: Any = None
    effective: Any = None
    entered_ms: int = 0
    retry_counts: list[int] = field(default_factory=list)
    retry_total: int = 0
    waiting: tuple[str, str, str] | None = None  # (kind, id, purpose)
    branches: _BranchRun | None = None
    pending: dict[str, Effect] = field(default_factory=dict)
    execution_timer: str | None = None
    transition: tuple[str, Any] | None = None

    def __deepcopy__(self, memo: dict[int, Any]) -> _Run:
        """A deep copy that shares the emitted events (a new list of the same dicts).
        Events are append-only and never changed once emitted, so sharing them keeps
        every copy independent; copying them made each `resume` O(events so far), and a
        `recover` of n commands O(n^2) (an ASL loop of 100 waits spent 357 ms per step
        replaying at its end)."""
        memo[id(self.events)] = list(self.events)
        clone = object.__new__(_Run)
        memo[id(self)] = clone
        for name, value in vars(self).items():
            setattr(clone, name, copy.deepcopy(value, memo))
        return clone


@dataclass(frozen=True)
class Execution:
    """An execution at rest. Opaque but inspectable; pass it to `resume`."""

    definition: StateMachine
    _run: _Run

    @property
    def status(self) -> Status:
        return self._run.status

    @property
    def output(self) -> Any:
        return self._run.output

    @property
    def error(self) -> str | None:
        return self._run.error

    @property
    def cause(self) -> str | None:
        return self._run.cause

    @property
    def execution_id(self) -> str:
        return self._run.execution_id

    @property
    def events(self) -> tuple[dict[str, Any], ...]:
        return tuple(self._run.events)

    @property
    def pending(self) -> tuple[Effect, ...]:
        """Effects issued and not yet answered; a recovering host issues them again."""
        return tuple(self._run.pending.values())


@dataclass(frozen=True)
class Step:
    """What one start/resume did: the new events to store and the effects to perform."""

    execution: Execution
    events: tuple[dict[str, Any], ...]
    effects: tuple[Effect, ...]

    @property
    def status(self) -> Status:
        return self.execution.status

    @property
    def output(self) -> Any:
        return self.execution.output

    @property
    def error(self) -> str | None:
        return self.execution.error

    @property
    def cause(self) -> str | None:
        return self.execution.cause


# ---------------------------------------------------------------------------------------------
# Public functions

Definition: TypeAlias = StateMachine | str | bytes | Mapping[str, Any]


def check_int_arg(value: object, what: str) -> int:
    """A non-negative int argument of the public API (bool refused)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise AslUsageError(f"{what} must be a non-negative integer, got {value!r:.60}")
    return value


def check_mapping_arg(value: object, what: str) -> Mapping[str, Any]:
    """A mapping (or None, read as empty) argument of the public API."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise AslUsageError(f"{what} must be a mapping (a dict) or None, got {value!r:.60}")
    return value


def as_machine(definition: Definition) -> StateMachine:
    if isinstance(definition, StateMachine):
        return definition
    return load_definition(definition)


def start(
    definition: Definition,
    input: Any = None,
    context: Mapping[str, Any] | None = None,
    *,
    now_ms: int = 0,
    execution_id: str | None = None,
) -> Step:
    """Start an execution of `definition` on `input` at time `now_ms`.

    `context` seeds the context object `$$` (Execution, StateMachine, Map.Item ...); the
    interpreter adds Execution.Id/Input/StartTime when absent, and State/Task as it runs.
    `execution_id` (default: `$$.Execution.Id`, else "execution") seeds ids and randomness.
    """
    machine = as_machine(definition)
    if machine.unsupported:
        where, what = machine.unsupported[0]
        raise AslUsageError(
            f"this interpreter cannot run {what} (at {where}); "
            f"{len(machine.unsupported)} unsupported feature use(s) in all"
        )
    check_int_arg(now_ms, "now_ms")
    if execution_id is not None and not isinstance(execution_id, str):
        raise AslUsageError(f"execution_id must be a string or None, got {execution_id!r:.60}")
    ctx: dict[str, Any] = copy.deepcopy(dict(check_mapping_arg(context, "context")))
    execution = dict(ctx.get("Execution") or {})
    exec_id = execution_id or str(execution.get("Id") or "execution")
    execution.setdefault("Id", exec_id)
    execution.setdefault("Input", copy.deepcopy(input))
    execution.setdefault("StartTime", format_ms(now_ms))
    ctx["Execution"] = execution
    run = _Run(exec_id, ctx)
    m = _Machine(machine, run, now_ms)
    m.emit("ExecutionStarted", input=input, context=ctx, executionId=exec_id)
    if machine.timeout_seconds is not None:
        timer = m.new_id("timer")
        run.execution_timer = timer
        m.effect(StartTimer(timer, now_ms + machine.timeout_seconds * 1000), timer)
    run.transition = (machine.start_at, input)
    m.drive()
    return m.step()


def resume(execution: Execution, command: Command) -> Step:
    """Apply one command; stale commands change nothing and produce no events."""
    if not isinstance(execution, Execution):
        raise AslUsageError(
            f"resume takes an Execution (from start or recover), not {execution!r:.60}"
        )
    if not isinstance(command, COMMAND_TYPES):
        raise AslUsageError(f"not a command: {command!r:.60}")
    return _resume(execution.definition, copy.deepcopy(execution._run), command)


def _resume(definition: StateMachine, run: _Run, command: Command) -> Step:
    """Apply one command to `run`, in place (`resume` gives it a copy)."""
    m = _Machine(definition, run, command.now_ms)
    if run.status is Status.RUNNING:
        m.apply(command)
        m.drive()
    return m.step()


def recover(
    definition: Definition,
    events: list[dict[str, Any]] | tuple[dict[str, Any], ...],
) -> Execution:
    """Rebuild the execution that wrote `events` (a prefix of its log is fine).

    The result's `events` may be longer than the input when the log was cut after a command
    event: the derived events are recomputed (the host stores `result.events[len(events):]`).
    Its `pending` holds the outstanding effects to issue again.
    """
    machine = as_machine(definition)
    if not isinstance(events, list | tuple) or not all(isinstance(e, dict) for e in events):
        raise AslUsageError("recover takes the stored events: a list of dicts")
    if not events or events[0].get("type") != "ExecutionStarted":
        raise AslHistoryMismatch("a history starts with an ExecutionStarted event")
    first = events[0]
    step = start(
        machine,
        first["input"],
        first["context"],
        now_ms=first["timestamp"],
        execution_id=first["executionId"],
    )
    execution = step.execution
    i = _match(events, execution, 0)
    # The intermediate executions are nobody else's: each command is applied in place
    # rather than to a copy (a copy per command made a recover of n commands O(n^2)).
    while i < len(events):
        command = command_of(events[i])
        if command is None:
            raise AslHistoryMismatch(
                f"event {i + 1} ({events[i].get('type')}) does not follow from the definition"
            )
        if not isinstance(command, COMMAND_TYPES):  # (as `resume` checks)
            raise AslUsageError(f"not a command: {command!r:.60}")
        step = _resume(execution.definition, execution._run, command)
        if not step.events:
            raise AslHistoryMismatch(f"event {i + 1} answers nothing the execution waits for")
        execution = step.execution
        i = _match(events, execution, i)
    return execution


def _match(
    stored: list[dict[str, Any]] | tuple[dict[str, Any], ...], execution: Execution, start_at: int
) -> int:
    derived = execution._run.events
    upto = min(len(stored), len(derived))
    for j in range(start_at, upto):
        if stored[j] != derived[j]:
            raise AslHistoryMismatch(
                f"event {j + 1} differs: stored {stored[j]!r}, replay gives {derived[j]!r}"
            )
    return upto


def command_of(event: Mapping[str, Any]) -> Command | None:
    """The command a recorded event stands for (None for derived events)."""
    t = event.get("type")
    now = event.get("timestamp", 0)
    if t == "TaskSucceeded":
        return TaskSucceeded(event["taskId"], event["output"], now)
    if t == "TaskFailed":
        return TaskFailed(event["taskId"], event["error"], event["cause"], now)
    if t == "TaskTimedOut":
        cls = TaskTimedOut if event["error"] == "States.Timeout" else HeartbeatTimedOut
        return cls(event["taskId"], event["cause"], now)
    if t in ("TimerFired", "ExecutionTimedOut"):
        return TimerFired(event["timerId"], now)
    if t in ("ParallelBranchSucceeded", "MapIterationSucceeded"):
        return BranchSucceeded(event["runId"], event["index"], event["output"], now)
    if t in ("ParallelBranchFailed", "MapIterationFailed"):
        return BranchFailed(event["runId"], event["index"], event["error"], event["cause"], now)
    if t == "ExecutionAborted":
        return Stop(event["error"], event["cause"], now)
    return None


# ---------------------------------------------------------------------------------------------
# The machine

_UNCATCHABLE = frozenset({"States.Runtime", "States.DataLimitExceeded"})


def error_matches(names: tuple[str, ...], error: str) -> bool:
    """ErrorEquals semantics: exact names, States.ALL, and States.TaskFailed's wildcard."""
    if error in _UNCATCHABLE:
        return False
    for name in names:
        if name == error or name == "States.ALL":
            return True
        if name == "States.TaskFailed" and error != "States.Timeout":
            return True
    return False


def retry_delay_ms(retrier: Retrier, attempt: int, seed: str) -> int:
    """IntervalSeconds * BackoffRate^attempt, capped by MaxDelaySeconds; FULL jitter draws
    uniformly from [0, that) with a deterministic seed."""
    seconds = retrier.interval_seconds * retrier.backoff_rate**attempt
    if retrier.max_delay_seconds is not None:
        seconds = min(seconds, retrier.max_delay_seconds)
    if retrier.jitter_strategy == "FULL":
        fraction = int.from_bytes(hashlib.sha256(seed.encode()).digest()[:8], "big") / 2**64
        seconds *= fraction
    return round(seconds * 1000)


class _Machine:
    def __init__(self, definition: StateMachine, run: _Run, now: int) -> None:
        self.definition = definition
        self.run = run
        self.now = now
        self.new_events: list[dict[str, Any]] = []
        self.new_effects: list[Effect] = []

    # -- bookkeeping ------------------------------------------------------------------------

    def step(self) -> Step:
        return Step(
            Execution(self.definition, self.run), tuple(self.new_events), tuple(self.new_effects)
        )

    def emit(self, type_: str, **details: Any) -> None:
        event = {"id": len(self.run.events) + 1, "type": type_, "timestamp": self.now}
        event.update(copy.deepcopy(details))
        self.run.events.append(event)
        self.new_events.append(event)

    def effect(self, eff: Effect, key: str | None = None) -> None:
        self.new_effects.append(eff)
        if key is not None:
            self.run.pending[key] = eff

    def new_id(self, prefix: str) -> str:
        self.run.seq += 1
        return f"{prefix}-{self.run.seq}"

    def seed(self, what: str) -> str:
        return f"{self.run.execution_id}:{what}:{len(self.run.events)}"

    @property
    def state(self) -> State:
        assert self.run.state_name is not None
        return self.definition.states[self.run.state_name]

    def context_object(self, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
        ctx = dict(self.run.context)
        ctx["State"] = {
            "Name": self.run.state_name,
            "EnteredTime": format_ms(self.run.entered_ms),
            "RetryCount": self.run.retry_total,
        }
        if extra:
            ctx.update(extra)
        return ctx

    def render(self, tmpl: Template, data: Any, ctx: Mapping[str, Any]) -> Any:
        return render(tmpl, Scope(data, ctx), make_runner(self.seed("intrinsic")))

    # -- driving ----------------------------------------------------------------------------

    def drive(self) -> None:
        while self.run.status is Status.RUNNING and self.run.transition is not None:
            name, data = self.run.transition
            self.run.transition = None
            self.enter(name, data)

    def enter(self, name: str, data: Any) -> None:
        run = self.run
        run.state_name, run.raw_input, run.entered_ms = name, data, self.now
        state = self.state
        retry = getattr(state, "retry", ())
        run.retry_counts = [0] * len(retry)
        run.retry_total = 0
        self.emit(f"{_kind(state)}StateEntered", stateName=name, input=data)
        self.execute()

    def execute(self) -> None:
        try:
            self._execute(self.state)
        except StatesError as exc:
            self.state_failed(exc.error, exc.cause)

    def _execute(self, state: State) -> None:
        raw = self.run.raw_input
        if isinstance(state, PassState):
            data = self.effective_input(state, state.parameters)
            self.finish(state.result if state.has_result else data)
        elif isinstance(state, TaskState):
            self.schedule_task(state)
        elif isinstance(state, ChoiceState):
            data = self.select(state.input_path, raw, "InputPath")
            target = first_match(state.choices, Scope(data, self.context_object()))
            if target is None:
                target = state.default
            if target is None:
                raise StatesError(
                    "States.NoChoiceMatched",
                    f"no choice rule of {state.name!r} matched and no Default",
                )
            self.exit(self.select(state.output_path, data, "OutputPath"), target)
        elif isinstance(state, WaitState):
            self.start_wait(state)
        elif isinstance(state, SucceedState):
            data = self.select(state.input_path, raw, "InputPath")
            self.exit(self.select(state.output_path, data, "OutputPath"), None)
        elif isinstance(state, FailState):
            error = state.error or ""
            cause = state.cause or ""
            scope = Scope(raw, self.context_object())
            runner = make_runner(self.seed("intrinsic"))
            if state.error_path is not None:
                error = _as_text(render(state.error_path, scope, runner), "ErrorPath")
            if state.cause_path is not None:
                cause = _as_text(render(state.cause_path, scope, runner), "CausePath")
            self.fail_execution(error, cause)
        elif isinstance(state, ParallelState):
            self.start_parallel(state)
        else:
            self.start_map(state)

    def select(self, path: Path | None, data: Any, what: str) -> Any:
        if path is None:
            return {}
        return select_or_fail(
            path, Scope(data, self.context_object()), error="States.Runtime", what=what
        )

    def effective_input(
        self, state: State, parameters: Template | None, extra: Mapping[str, Any] | None = None
    ) -> Any:
        data = self.select(state.input_path, self.run.raw_input, "InputPath")
        if parameters is not None:
            data = self.render(parameters, data, self.context_object(extra))
        return data

    def finish(self, result: Any) -> None:
        """Result processing: ResultSelector → ResultPath → OutputPath, then transition."""
        state = self.state
        selector = getattr(state, "result_selector", None)
        if selector is not None:
            result = self.render(selector, result, self.context_object())
        result_path: Path | None = getattr(state, "result_path", None)
        merged = self.run.raw_input
        if result_path is not None:
            merged = assign_result(self.run.raw_input, result_path, result)
        self.exit(self.select(state.output_path, merged, "OutputPath"), state.next)

    def exit(self, output: Any, target: str | None, **extra: Any) -> None:
        state = self.state
        self.emit(f"{_kind(state)}StateExited", stateName=state.name, output=output, **extra)
        self.run.waiting = None
        if target is not None:
            self.run.transition = (target, output)
        else:
            self.finish_execution(Status.SUCCEEDED, output=output)

    # -- endings ----------------------------------------------------------------------------

    def finish_execution(
        self,
        status: Status,
        *,
        output: Any = None,
        error: str | None = None,
        cause: str | None = None,
    ) -> None:
        run = self.run
        if run.branches is not None and run.branches.running:
            self.effect(CancelBranches(run.branches.run_id, tuple(run.branches.running)))
        run.status, run.output, run.error, run.cause = status, output, error, cause
        run.pending.clear()
        run.waiting = None
        run.branches = None
        run.transition = None
        if status is Status.SUCCEEDED:
            self.emit("ExecutionSucceeded", output=output)
        elif status is Status.FAILED:
            self.emit("ExecutionFailed", error=error, cause=cause)

    def fail_execution(self, error: str, cause: str) -> None:
        self.finish_execution(Status.FAILED, error=error, cause=cause)

    def state_failed(self, error: str, cause: str) -> None:
        """Retry, else Catch, else fail the execution (the first matching retrier decides)."""
        state = self.state
        run = self.run
        retry: tuple[Retrier, ...] = getattr(state, "retry", ())
        catch: tuple[Catcher, ...] = getattr(state, "catch", ())
        for i, retrier in enumerate(retry):
            if not error_matches(retrier.error_equals, error):
                continue
            if run.retry_counts[i] < retrier.max_attempts:
                delay = retry_delay_ms(retrier, run.retry_counts[i], self.seed("jitter"))
                run.retry_counts[i] += 1
                run.retry_total += 1
                timer = self.new_id("timer")
                self.emit(
                    "RetryScheduled",
                    stateName=state.name,
                    error=error,
                    cause=cause,
                    retrier=i,
                    attempt=run.retry_counts[i],
                    delayMs=delay,
                    timerId=timer,
                )
                run.waiting = ("timer", timer, "retry")
                self.effect(StartTimer(timer, self.now + delay), timer)
                return
            break
        for catcher in catch:
            if error_matches(catcher.error_equals, error):
                error_output = {"Error": error, "Cause": cause}
                try:
                    data = run.raw_input
                    if catcher.result_path is not None:
                        data = assign_result(run.raw_input, catcher.result_path, error_output)
                except StatesError as exc:
                    self.fail_execution(exc.error, exc.cause)
                    return
                self.exit(data, catcher.next, caughtError=error)
                return
        self.fail_execution(error, cause)

    # -- Task -------------------------------------------------------------------------------

    def schedule_task(self, state: TaskState) -> None:
        task_id = self.new_id("task")
        data = self.effective_input(state, state.parameters, {"Task": {"Token": task_id}})
        timeout = state.timeout_seconds
        if state.timeout_seconds_path is not None:
            timeout = self.positive_int(state.timeout_seconds_path, "TimeoutSecondsPath")
        heartbeat = state.heartbeat_seconds
        if state.heartbeat_seconds_path is not None:
            heartbeat = self.positive_int(state.heartbeat_seconds_path, "HeartbeatSecondsPath")
        self.emit(
            "TaskScheduled",
            stateName=state.name,
            taskId=task_id,
            resource=state.resource,
            input=data,
            timeoutSeconds=timeout,
            heartbeatSeconds=heartbeat,
        )
        self.run.waiting = ("task", task_id, "")
        self.effect(
            ScheduleTask(task_id, state.resource, data, timeout, heartbeat, state.name), task_id
        )

    def positive_int(self, path: Path, what: str, *, minimum: int = 1) -> int:
        value = evaluate(path, Scope(self.run.raw_input, self.context_object()))
        if not is_number(value) or not float(value).is_integer() or value < minimum:
            raise StatesError(
                "States.Runtime",
                f"{what} {path.text!r} must name an integer >= {minimum}, "
                f"got {'nothing' if value is MISSING else repr(value)}",
            )
        return int(value)

    # -- Wait -------------------------------------------------------------------------------

    def start_wait(self, state: WaitState) -> None:
        data = self.select(state.input_path, self.run.raw_input, "InputPath")
        self.run.effective = data
        if state.seconds is not None:
            fire_at = self.now + state.seconds * 1000
        elif state.timestamp_ms is not None:
            fire_at = state.timestamp_ms
        elif state.seconds_path is not None:
            value = evaluate(state.seconds_path, Scope(data, self.context_object()))
            if not is_number(value) or not float(value).is_integer() or value < 0:
                raise StatesError(
                    "States.Runtime",
                    f"SecondsPath {state.seconds_path.text!r} must name a non-negative integer",
                )
            fire_at = self.now + int(value) * 1000
        else:
            assert state.timestamp_path is not None
            value = evaluate(state.timestamp_path, Scope(data, self.context_object()))
            ts = parse_timestamp_ms(value)
            if ts is None:
                raise StatesError(
                    "States.Runtime",
                    f"TimestampPath {state.timestamp_path.text!r} must name an RFC 3339 timestamp",
                )
            fire_at = ts
        timer = self.new_id("timer")
        self.emit("WaitStarted", stateName=state.name, timerId=timer, fireAtMs=fire_at)
        self.run.waiting = ("timer", timer, "wait")
        self.effect(StartTimer(timer, fire_at), timer)

    # -- Parallel and Map -------------------------------------------------------------------

    def start_parallel(self, state: ParallelState) -> None:
        data = self.effective_input(state, state.parameters)
        n = len(state.branches)
        self.start_branch_run("Parallel", [data] * n, [{}] * n, 0, None, None)

    def start_map(self, state: MapState) -> None:
        data = self.select(state.input_path, self.run.raw_input, "InputPath")
        scope = Scope(data, self.context_object())
        items = select_or_fail(state.items_path, scope, error="States.Runtime", what="ItemsPath")
        if not isinstance(items, list):
            raise StatesError(
                "States.Runtime", f"ItemsPath {state.items_path.text!r} must name an array"
            )
        contexts = [{"Map": {"Item": {"Index": i, "Value": v}}} for i, v in enumerate(items)]
        inputs = items
        if state.item_selector is not None:
            inputs = [
                self.render(state.item_selector, data, self.context_object(c)) for c in contexts
            ]
        mc = state.max_concurrency
        if state.max_concurrency_path is not None:
            mc = self.positive_int(state.max_concurrency_path, "MaxConcurrencyPath", minimum=0)
        count = state.tolerated_failure_count
        if state.tolerated_failure_count_path is not None:
            count = self.positive_int(
                state.tolerated_failure_count_path, "ToleratedFailureCountPath", minimum=0
            )
        pct = state.tolerated_failure_percentage
        if state.tolerated_failure_percentage_path is not None:
            value = evaluate(state.tolerated_failure_percentage_path, scope)
            if not is_number(value) or not 0 <= value <= 100:
                raise StatesError(
                    "States.Runtime",
                    "ToleratedFailurePercentagePath must name a number from 0 to 100",
                )
            pct = float(value)
        self.start_branch_run("Map", inputs, contexts, mc, count, pct)

    def start_branch_run(
        self,
        kind: str,
        inputs: list[Any],
        contexts: list[dict[str, Any]],
        mc: int,
        count: int | None,
        pct: float | None,
    ) -> None:
        run_id = self.new_id("run")
        br = _BranchRun(run_id, kind, inputs, contexts, mc, count, pct)
        self.run.branches = br
        self.run.waiting = ("branches", run_id, "")
        self.emit(
            f"{kind}StateStarted", stateName=self.state.name, runId=run_id, length=len(inputs)
        )
        if not inputs:
            self.branches_done()
            return
        self.start_more()

    def start_more(self) -> None:
        br = self.run.branches
        assert br is not None
        state = self.state
        started: list[Branch] = []
        while br.next_index < len(br.inputs) and (
            br.max_concurrency == 0 or len(br.running) < br.max_concurrency
        ):
            i = br.next_index
            br.next_index += 1
            br.running.append(i)
            if isinstance(state, ParallelState):
                machine = state.branches[i]
            else:
                assert isinstance(state, MapState)
                machine = state.processor
                self.emit("MapIterationStarted", stateName=state.name, runId=br.run_id, index=i)
            ctx = {k: v for k, v in self.run.context.items() if k not in ("State", "Task")}
            ctx.update(br.contexts[i])
            branch = Branch(
                i, machine, br.inputs[i], ctx, f"{self.run.execution_id}/{br.run_id}/{i}"
            )
            started.append(branch)
            self.run.pending[f"{br.run_id}/{i}"] = StartBranches(
                br.run_id, state.name, br.kind, (branch,)
            )
        if started:
            self.new_effects.append(StartBranches(br.run_id, state.name, br.kind, tuple(started)))

    def branches_done(self) -> None:
        br = self.run.branches
        assert br is not None
        self.run.branches = None
        results = [br.results[i] for i in range(len(br.inputs))]
        self.emit(f"{br.kind}StateSucceeded", stateName=self.state.name, runId=br.run_id)
        self.finish(results)

    def branch_outcome(self, cmd: BranchSucceeded | BranchFailed) -> None:
        br = self.run.branches
        assert br is not None
        br.running.remove(cmd.index)
        self.run.pending.pop(f"{br.run_id}/{cmd.index}", None)
        prefix = "ParallelBranch" if br.kind == "Parallel" else "MapIteration"
        if isinstance(cmd, BranchSucceeded):
            self.emit(f"{prefix}Succeeded", runId=cmd.run_id, index=cmd.index, output=cmd.output)
            br.results[cmd.index] = cmd.output
        else:
            self.emit(
                f"{prefix}Failed",
                runId=cmd.run_id,
                index=cmd.index,
                error=cmd.error,
                cause=cmd.cause,
            )
            br.failures += 1
            tolerant = br.tolerated_count is not None or br.tolerated_percentage is not None
            exceeded = not tolerant or (
                (br.tolerated_count is not None and br.failures > br.tolerated_count)
                or (
                    br.tolerated_percentage is not None
                    and br.failures * 100 > br.tolerated_percentage * len(br.inputs)
                )
            )
            if exceeded:
                self.emit(f"{br.kind}StateFailed", stateName=self.state.name, runId=br.run_id)
                if br.running:
                    self.effect(CancelBranches(br.run_id, tuple(br.running)))
                for i in br.running:
                    self.run.pending.pop(f"{br.run_id}/{i}", None)
                self.run.branches = None
                self.run.waiting = None
                error, cause = cmd.error, cmd.cause
                if tolerant:
                    error = "States.ExceedToleratedFailureThreshold"
                    cause = (
                        f"{br.failures} of {len(br.inputs)} iterations failed; "
                        f"last: {cmd.error}: {cmd.cause}"
                    )
                self.state_failed(error, cause)
                return
            br.results[cmd.index] = {"Error": cmd.error, "Cause": cmd.cause}
        if len(br.results) == len(br.inputs):
            self.branches_done()
        else:
            self.start_more()

    # -- commands ---------------------------------------------------------------------------

    def apply(self, cmd: Command) -> None:
        run = self.run
        waiting = run.waiting
        try:
            if isinstance(cmd, Stop):
                self.emit("ExecutionAborted", error=cmd.error, cause=cmd.cause)
                self.finish_execution(
                    Status.ABORTED, error=cmd.error or None, cause=cmd.cause or None
                )
            elif isinstance(cmd, TimerFired) and cmd.timer_id == run.execution_timer:
                self.emit(
                    "ExecutionTimedOut",
                    timerId=cmd.timer_id,
                    error="States.Timeout",
                    cause="the execution ran longer than its TimeoutSeconds",
                )
                self.finish_execution(
                    Status.TIMED_OUT,
                    error="States.Timeout",
                    cause="the execution ran longer than its TimeoutSeconds",
                )
            elif isinstance(cmd, TimerFired):
                if waiting is None or waiting[:2] != ("timer", cmd.timer_id):
                    return
                run.pending.pop(cmd.timer_id, None)
                self.emit("TimerFired", timerId=cmd.timer_id)
                run.waiting = None
                if waiting[2] == "retry":
                    self.execute()
                else:
                    self.exit(
                        self.select(self.state.output_path, run.effective, "OutputPath"),
                        self.state.next,
                    )
            elif isinstance(cmd, BranchSucceeded | BranchFailed):
                br = run.branches
                if br is None or br.run_id != cmd.run_id or cmd.index not in br.running:
                    return
                self.branch_outcome(cmd)
            else:
                if waiting is None or waiting[:2] != ("task", cmd.task_id):
                    return
                run.pending.pop(cmd.task_id, None)
                run.waiting = None
                if isinstance(cmd, TaskSucceeded):
                    self.emit("TaskSucceeded", taskId=cmd.task_id, output=cmd.output)
                    self.finish(cmd.output)
                elif isinstance(cmd, TaskFailed):
                    self.emit("TaskFailed", taskId=cmd.task_id, error=cmd.error, cause=cmd.cause)
                    self.state_failed(cmd.error, cmd.cause)
                else:
                    error = (
                        "States.Timeout"
                        if isinstance(cmd, TaskTimedOut)
                        else "States.HeartbeatTimeout"
                    )
                    self.emit("TaskTimedOut", taskId=cmd.task_id, error=error, cause=cmd.cause)
                    self.state_failed(error, cmd.cause)
        except StatesError as exc:  # raised while processing a result (ResultPath, ...)
            self.state_failed(exc.error, exc.cause)


def _kind(state: State) -> str:
    return type(state).__name__.removesuffix("State")


def _as_text(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise StatesError("States.Runtime", f"{what} must name a string")
    return value
