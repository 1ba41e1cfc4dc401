# The typed, validated form of a state machine: frozen dataclasses, one per state type, with
# every path, template, intrinsic call and Choice rule already parsed. Only _validate builds
# them; the interpreter only reads them. Conventions:
#   - a path field that is `None` means the definition gave JSON `null` (InputPath/OutputPath:
#     `{}`; ResultPath: discard the result); an absent field holds its default (`$`);
#   - JSONata-mode states are accepted by the validator and kept with their raw JSON, but the
#     interpreter does not run them (it reports them via `StateMachine.unsupported`).
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypeAlias

from ._choice import TopRule
from ._paths import Path, TCall, Template, TPath, parse_path

ROOT: Path = parse_path("$")


@dataclass(frozen=True)
class Retrier:
    error_equals: tuple[str, ...]
    interval_seconds: int = 1
    max_attempts: int = 3
    backoff_rate: float = 2.0
    max_delay_seconds: int | None = None
    jitter_strategy: str = "NONE"


@dataclass(frozen=True)
class Catcher:
    error_equals: tuple[str, ...]
    next: str
    result_path: Path | None = ROOT


@dataclass(frozen=True, kw_only=True)
class StateBase:
    name: str
    comment: str | None = None
    query_language: str = "JSONPath"
    input_path: Path | None = ROOT
    output_path: Path | None = ROOT
    next: str | None = None
    end: bool = False


@dataclass(frozen=True, kw_only=True)
class PassState(StateBase):
    parameters: Template | None = None
    result: Any = None
    has_result: bool = False
    result_path: Path | None = ROOT


@dataclass(frozen=True, kw_only=True)
class TaskState(StateBase):
    resource: str
    parameters: Template | None = None
    result_selector: Template | None = None
    result_path: Path | None = ROOT
    retry: tuple[Retrier, ...] = ()
    catch: tuple[Catcher, ...] = ()
    timeout_seconds: int | None = None
    timeout_seconds_path: Path | None = None
    heartbeat_seconds: int | None = None
    heartbeat_seconds_path: Path | None = None
    credentials: Template | None = None


@dataclass(frozen=True, kw_only=True)
class ChoiceState(StateBase):
    choices: tuple[TopRule, ...] = ()
    default: str | None = None


@dataclass(frozen=True, kw_only=True)
class WaitState(StateBase):
    seconds: int | None = None
    timestamp_ms: int | None = None
    seconds_path: Path | None = None
    timestamp_path: Path | None = None


@dataclass(frozen=True, kw_only=True)
class SucceedState(StateBase):
    pass


@dataclass(frozen=True, kw_only=True)
class FailState(StateBase):
    error: str | None = None
    error_path: TPath | TCall | None = None
    cause: str | None = None
    cause_path: TPath | TCall | None = None


@dataclass(frozen=True, kw_only=True)
class ParallelState(StateBase):
    branches: tuple[StateMachine, ...] = ()
    parameters: Template | None = None
    result_selector: Template | None = None
    result_path: Path | None = ROOT
    retry: tuple[Retrier, ...] = ()
    catch: tuple[Catcher, ...] = ()


@dataclass(frozen=True, kw_only=True)
class MapState(StateBase):
    processor: StateMachine
    items_path: Path = ROOT
    item_selector: Template | None = None
    max_concurrency: int = 0
    max_concurrency_path: Path | None = None
    tolerated_failure_count: int | None = None
    tolerated_failure_count_path: Path | None = None
    tolerated_failure_percentage: float | None = None
    tolerated_failure_percentage_path: Path | None = None
    result_selector: Template | None = None
    result_path: Path | None = ROOT
    retry: tuple[Retrier, ...] = ()
    catch: tuple[Catcher, ...] = ()


State: TypeAlias = (
    PassState
    | TaskState
    | ChoiceState
    | WaitState
    | SucceedState
    | FailState
    | ParallelState
    | MapState
)


@dataclass(frozen=True)
class StateMachine:
    """A validated machine (top level, a Parallel branch, or a Map's item processor).

    `path` is its JSON path in the whole definition (`$` at the top), which names it in
    StartBranches effects. `unsupported` lists (path, feature) pairs the validator accepted but
    the interpreter cannot run (JSONata, Assign, distributed Map readers/writers...).
    """

    start_at: str
    states: Mapping[str, State]
    path: str = "$"
    comment: str | None = None
    timeout_seconds: int | None = None
    query_language: str = "JSONPath"
    unsupported: tuple[tuple[str, str], ...] = field(default=())
    source: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def __deepcopy__(self, memo: dict[int, Any]) -> StateMachine:
        return self  # immutable: executions that copy their state share the definition
