# The errors of the ASL layer. Two kinds, split by who is at fault (STYLE.md #10):
#   - the caller gave us a bad definition or misused the API: `AslValidationError`,
#     `AslUsageError`, `AslHistoryMismatch` (all `flowactors.FlowError`);
#   - an execution hit an ASL runtime error (`States.Runtime`, a task's own error, ...): that is
#     *data* of the execution, reported in events and in `Step.error`. Internally the evaluator
#     raises `StatesError` to unwind to the state that handles it; callers of the path and
#     intrinsic helpers may see it too.
from __future__ import annotations

from dataclasses import dataclass

from flowactors.engine._errors import FlowError, InvalidArgument


@dataclass(frozen=True)
class Problem:
    """One validation problem: where (a JSON path into the definition) and what."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


class AslValidationError(InvalidArgument):
    """The definition breaks one or more rules of the States Language; `.problems` lists all."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        lines = "\n".join(f"  {p}" for p in problems)
        super().__init__(f"invalid state machine ({len(problems)} problem(s)):\n{lines}")


class AslSyntaxError(InvalidArgument):
    """A path, payload template, intrinsic call or JSONata expression does not parse."""


class AslUsageError(InvalidArgument):
    """The API was misused (e.g. an unsupported feature was asked to run)."""


class AslHistoryMismatch(FlowError):
    """`recover` found events the definition does not produce: wrong definition or damaged log."""


class StatesError(FlowError):
    """An ASL runtime error (`States.Runtime`, `States.IntrinsicFailure`, a task's error...)."""

    def __init__(self, error: str, cause: str = "") -> None:
        self.error = error
        self.cause = cause
        super().__init__(f"{error}: {cause}" if cause else error)
