"""SDK outcomes: what a handler returns, as plain frozen values (no I/O here).

A handler ends a claimed flow with one explicit outcome - `transition(...)`, `complete(...)`,
`retry(...)`, `fail(...)` or `spawn(...)` - and the worker turns it into exactly one engine
command under the claim's lease and fencing tokens. Any other return value means "ok": the
state's `on_ok` action applies (complete by default), with the value as the result. An
exception is handled per the state's `ExceptionPolicy`: RETRY applies the state's `on_error`
(retry per policy by default), FAIL fails the flow, RAISE stops the worker and leaves the
lease to expire.

The same values double as the declarative actions of a workflow state: `on_ok="charged"` or
`on_ok=complete()`, `on_error=retry_or("failed")` or `on_error=fail()`.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

Wait = Literal["all", "any", "none"]


class ExceptionPolicy(enum.Enum):
    """What a worker does when a handler raises."""

    RETRY = "retry"  # apply the state's on_error (retry per policy unless declared otherwise)
    FAIL = "fail"  # fail the flow terminally, the exception text as its error
    RAISE = "raise"  # no mutation: the worker stops and re-raises; the lease expires


@dataclass(frozen=True, slots=True)
class Transition:
    to_state: str
    payload: bytes | None = None
    run_at_ms: int | None = None
    delay_ms: int | None = None
    priority: int | None = None
    values: Mapping[str, bytes] | None = None
    attributes: Mapping[str, str] | None = None

    @property
    def plain(self) -> bool:
        """True when `transition_many` can carry it (nothing but the target state)."""
        return (
            self.payload is None
            and self.run_at_ms is None
            and self.delay_ms is None
            and self.priority is None
            and not self.values
            and not self.attributes
        )


@dataclass(frozen=True, slots=True)
class Complete:
    result: bytes | None = None
    values: Mapping[str, bytes] | None = None


@dataclass(frozen=True, slots=True)
class Retry:
    error: bytes | None = None
    run_at_ms: int | None = None
    delay_ms: int | None = None
    payload: bytes | None = None


@dataclass(frozen=True, slots=True)
class Fail:
    error: bytes | None = None
    values: Mapping[str, bytes] | None = None


@dataclass(frozen=True, slots=True)
class Spawn:
    """Spawn child flows and hand the parent to the engine's wait state (issue 4 API)."""

    children: Sequence[Any]
    group_id: str = "children"
    wait: Wait = "all"
    wait_state: str = "waiting_children"
    success_state: str = "children_done"
    failure_state: str = "children_failed"
    on_child_failed: Literal["fail_parent", "ignore"] = "fail_parent"
    on_parent_closed: Literal["cancel_children", "abandon_children"] = "cancel_children"


@dataclass(frozen=True, slots=True)
class RetryOr:
    """Declarative `on_error`: retry per policy; once exhausted, go to `state` (None: the
    policy's own `exhausted_to`)."""

    state: str | None = None


Outcome = Transition | Complete | Retry | Fail | Spawn
OUTCOME_TYPES = (Transition, Complete, Retry, Fail, Spawn)


def _bytes(data: bytes | str | None) -> bytes | None:
    return data.encode() if isinstance(data, str) else data


def transition(
    to_state: str,
    *,
    payload: bytes | None = None,
    run_at_ms: int | None = None,
    delay_ms: int | None = None,
    priority: int | None = None,
    values: Mapping[str, bytes] | None = None,
    attributes: Mapping[str, str] | None = None,
) -> Transition:
    """Move the flow to `to_state`, due at `run_at_ms` / after `delay_ms` (default now)."""
    return Transition(to_state, payload, run_at_ms, delay_ms, priority, values, attributes)


def complete(
    result: bytes | str | None = None, *, values: Mapping[str, bytes] | None = None
) -> Complete:
    """Finish the flow with an optional result."""
    return Complete(_bytes(result), values)


def retry(
    error: bytes | str | None = None,
    *,
    run_at_ms: int | None = None,
    delay_ms: int | None = None,
    payload: bytes | None = None,
) -> Retry:
    """Try again per the retry policy (or at `run_at_ms` / after `delay_ms`)."""
    return Retry(_bytes(error), run_at_ms, delay_ms, payload)


def fail(error: bytes | str | None = None, *, values: Mapping[str, bytes] | None = None) -> Fail:
    """Fail the flow for good."""
    return Fail(_bytes(error), values)


def spawn(
    children: Sequence[Any],
    *,
    group_id: str = "children",
    wait: Wait = "all",
    wait_state: str = "waiting_children",
    success_state: str = "children_done",
    failure_state: str = "children_failed",
    on_child_failed: Literal["fail_parent", "ignore"] = "fail_parent",
    on_parent_closed: Literal["cancel_children", "abandon_children"] = "cancel_children",
) -> Spawn:
    """Spawn `children` (ChildSpec) and park the parent in `wait_state` until they resolve."""
    return Spawn(
        tuple(children),
        group_id,
        wait,
        wait_state,
        success_state,
        failure_state,
        on_child_failed,
        on_parent_closed,
    )


def retry_or(state: str | None = None) -> RetryOr:
    """Declarative on_error: retry per policy, then move to `state` once exhausted."""
    return RetryOr(state)


@dataclass(frozen=True, slots=True)
class StateRetry:
    """A state's retry override; None fields inherit the workflow's policy."""

    max_retries: int | None = None
    backoff: Literal["none", "fixed", "linear", "exponential"] | None = None
    base_ms: int | None = None
    max_ms: int | None = None
    jitter_pct: int | None = None
    exhausted_to: str | None = None

    def fields(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in _RETRY_FIELDS if getattr(self, k) is not None}


_RETRY_FIELDS = ("max_retries", "backoff", "base_ms", "max_ms", "jitter_pct", "exhausted_to")
