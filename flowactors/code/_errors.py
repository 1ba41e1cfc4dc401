# The errors of code workflows, each a FlowError, split like the engine's tree by who is at
# fault: the caller (bad input, refused at once, nothing written), the workflow's code
# (non-determinism, a swallowed suspension: the run is parked, not lost), or the work the
# workflow asked for (an activity or child that failed: raised inside the workflow, where
# it can be caught).
from __future__ import annotations

from typing import Any

from flowactors import FlowError, InvalidArgument


class UnknownWorkflow(InvalidArgument):
    """No workflow of that name (or that code version) is registered."""


class UnstorableValue(InvalidArgument):
    """An input, argument or result that CBOR cannot store; `path` names the part."""

    def __init__(self, message: str, path: str = "") -> None:
        super().__init__(message)
        self.path = path


class DeterminismViolation(InvalidArgument):
    """The determinism scan refused a workflow (or a helper marked pure) at decoration
    time; `findings` lists (line, call, hint)."""

    def __init__(self, message: str, findings: list[tuple[int, str, str]]) -> None:
        super().__init__(message)
        self.findings = findings


class NonDeterminismError(FlowError):
    """Replay met another effect than the journal holds at `position`. The run is parked
    (state "parked") with both effects named; fix the code (or register the old version)
    and call `CodeRunner.resume`."""

    def __init__(self, message: str, *, position: int = -1, expected: Any = None, got: Any = None):
        super().__init__(message)
        self.position = position
        self.expected = expected
        self.got = got


class SuspendLeakError(NonDeterminismError):
    """Workflow code caught the suspension of an effect (for example `except BaseException`
    around an await) and went on to another effect, or awaited something that is not a
    `ctx` effect (trio or asyncio primitives cannot be replayed)."""


class VersionMismatch(FlowError):
    """A run was started by code whose hash no registered version has: it waits (parked)
    until that version is registered again, then `CodeRunner.resume` moves it on."""


class ActivityError(FlowError):
    """An activity failed for good (its retries spent): raised in the workflow, catchable.
    `type` and `message` describe the last attempt's exception."""

    def __init__(self, activity: str, type: str, message: str, attempts: int) -> None:
        super().__init__(
            f"activity {activity} failed after {attempts} attempt(s): {type}: {message}"
        )
        self.activity = activity
        self.type = type
        self.message = message
        self.attempts = attempts


class NonRetryable(FlowError):
    """Raise it (or a subclass) from an activity to fail it at once, whatever its retry
    policy says."""


class ChildFailed(FlowError):
    """`await_child` of a child run that failed (`type`, `message` from its error)."""

    def __init__(self, child_id: str, type: str, message: str) -> None:
        super().__init__(f"child {child_id} failed: {type}: {message}")
        self.child_id = child_id
        self.type = type
        self.message = message


class ChildCancelled(FlowError):
    """`await_child` of a child run that was cancelled."""

    def __init__(self, child_id: str) -> None:
        super().__init__(f"child {child_id} was cancelled")
        self.child_id = child_id


class ChildIdCollision(FlowError):
    """`start_child` named a child id that a different run already holds."""


class WorkflowFailed(FlowError):
    """`CodeRunner.result` of a run that failed: `type` and `message` of its exception."""

    def __init__(self, run_id: str, type: str, message: str) -> None:
        super().__init__(f"run {run_id} failed: {type}: {message}")
        self.run_id = run_id
        self.type = type
        self.message = message


class RunCancelled(FlowError):
    """`CodeRunner.result` of a run that was cancelled."""
