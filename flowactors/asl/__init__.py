"""Amazon States Language for flowactors: a validator and a pure, event-sourced interpreter.

    machine = flowactors.asl.load_definition(text)        # or AslValidationError, all problems
    step = flowactors.asl.start(machine, {"order": 1}, now_ms=clock())
    # store step.events, perform step.effects, then answer with commands:
    step = flowactors.asl.resume(step.execution, TaskSucceeded(task_id, output, now_ms=...))
    execution = flowactors.asl.recover(machine, stored_events)   # after a crash

`run_inline` drives an execution to the end with Python handlers and a virtual clock.
`AslRunner` runs executions durably on an engine (one flow per execution, tasks as Python
handlers run by an SDK worker). The validator and the interpreter import nothing from the
engine but the error root; only the durable host (`_durable`, and `_cli` on it) uses the engine.
"""

from ._choice import compile_string_matches, evaluate_rule
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
from ._durable import AslRunner, ExecutionInfo, event_chunk_names, load_handlers
from ._errors import (
    AslHistoryMismatch,
    AslSyntaxError,
    AslUsageError,
    AslValidationError,
    Problem,
    StatesError,
)
from ._host import Elapsed, RunResult, TaskError, continue_inline, run_inline
from ._interpret import (
    Branch,
    BranchFailed,
    BranchSucceeded,
    CancelBranches,
    Command,
    Effect,
    Execution,
    HeartbeatTimedOut,
    ScheduleTask,
    StartBranches,
    StartTimer,
    Status,
    Step,
    Stop,
    TaskFailed,
    TaskSucceeded,
    TaskTimedOut,
    TimerFired,
    command_of,
    error_matches,
    recover,
    resume,
    retry_delay_ms,
    start,
)
from ._paths import (
    MISSING,
    Path,
    Scope,
    Template,
    assign_result,
    evaluate,
    parse_intrinsic,
    parse_path,
    parse_reference_path,
    parse_template,
    render,
)
from ._validate import load_definition

__all__ = [
    "MISSING",
    "AslHistoryMismatch",
    "AslRunner",
    "AslSyntaxError",
    "AslUsageError",
    "AslValidationError",
    "Branch",
    "BranchFailed",
    "BranchSucceeded",
    "CancelBranches",
    "Catcher",
    "ChoiceState",
    "Command",
    "Effect",
    "Elapsed",
    "Execution",
    "ExecutionInfo",
    "FailState",
    "HeartbeatTimedOut",
    "MapState",
    "ParallelState",
    "PassState",
    "Path",
    "Problem",
    "Retrier",
    "RunResult",
    "ScheduleTask",
    "Scope",
    "StartBranches",
    "StartTimer",
    "State",
    "StateMachine",
    "StatesError",
    "Status",
    "Step",
    "Stop",
    "SucceedState",
    "TaskError",
    "TaskFailed",
    "TaskState",
    "TaskSucceeded",
    "TaskTimedOut",
    "Template",
    "TimerFired",
    "WaitState",
    "assign_result",
    "command_of",
    "compile_string_matches",
    "continue_inline",
    "error_matches",
    "evaluate",
    "evaluate_rule",
    "event_chunk_names",
    "load_definition",
    "load_handlers",
    "parse_intrinsic",
    "parse_path",
    "parse_reference_path",
    "parse_template",
    "recover",
    "render",
    "resume",
    "retry_delay_ms",
    "run_inline",
    "start",
]
