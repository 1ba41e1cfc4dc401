"""Public value types: what callers pass in and get back. Immutable, typed, no I/O."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal, NamedTuple

from ._errors import InvalidArgument

EMPTY: Mapping[Any, Any] = MappingProxyType({})
MAX_POLICY_DELAY_MS = 30 * 24 * 3600 * 1000

Backoff = Literal["none", "fixed", "linear", "exponential"]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How `retry` schedules the next attempt, and where a flow goes when out of budget.

    After a retry raises `attempts` to `a`, the flow runs again if `a <= max_retries`
    (so `max_retries=0` means a single attempt). The delay before jitter is 0 (none),
    `base_ms` (fixed), `min(base_ms * a, max_ms)` (linear) or
    `min(base_ms * 2**(a-1), max_ms)` (exponential). Jitter adds a deterministic offset
    in +-`jitter_pct`% of the delay, derived from the flow id and attempt, capped at
    `max_ms`. Out of budget, the flow moves to `exhausted_to`: a terminal state, or a
    "manual" state where it is due at once and retried no further.

    `max_reclaims` is the crash budget: a flow whose lease expired (its worker died) more
    than this many times moves to `exhausted_to` instead of being claimed again, so a
    flow that kills its workers cannot loop forever.
    """

    max_retries: int = 3
    backoff: Backoff = "exponential"
    base_ms: int = 1_000
    max_ms: int = 30_000
    jitter_pct: int = 20
    exhausted_to: str = "failed"
    max_reclaims: int = 10

    def __post_init__(self) -> None:
        def bounded(name: str, high: int) -> None:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= high:
                raise InvalidArgument(f"RetryPolicy.{name} must be an integer in 0..{high}")

        bounded("max_retries", 1000)
        bounded("max_reclaims", 1000)
        bounded("base_ms", MAX_POLICY_DELAY_MS)
        bounded("max_ms", MAX_POLICY_DELAY_MS)
        bounded("jitter_pct", 100)
        if self.backoff not in ("none", "fixed", "linear", "exponential"):
            raise InvalidArgument(
                f"RetryPolicy.backoff must be none, fixed, linear or exponential, "
                f"not {self.backoff!r}"
            )
        if (
            not isinstance(self.exhausted_to, str)
            or not self.exhausted_to
            or self.exhausted_to == "running"
            or "\x00" in self.exhausted_to
        ):
            raise InvalidArgument("RetryPolicy.exhausted_to must name a state other than running")


class Flow(NamedTuple):
    """A flow as callers see it. `payload`, `result`, `error` and `values` hold bytes only
    when the call asked for them (hydration); sizes are always known.

    A NamedTuple rather than a frozen dataclass: one is built per flow in every reply, and
    a tuple is several times cheaper to build, while just as immutable."""

    id: str
    type: str
    state: str
    run_state: str | None
    version: int
    attempts: int
    reclaims: int
    fencing_token: int
    lease_owner: str | None
    lease_token: str | None
    lease_deadline_ms: int | None
    created_at_ms: int
    updated_at_ms: int
    next_run_at_ms: int | None
    priority: int
    partition_key: str | None
    attributes: Mapping[str, str]
    parent_id: str | None
    root_id: str
    correlation_id: str | None
    payload_size: int
    payload: bytes | None = None
    payload_omitted: bool = False
    result: bytes | None = None
    error: bytes | None = None
    values: Mapping[str, bytes] = EMPTY
    value_sizes: Mapping[str, int] = EMPTY

    @property
    def terminal(self) -> bool:
        return self.state in ("completed", "failed", "cancelled")

    @property
    def logical_state(self) -> str:
        """The state being worked on: `run_state` while running, else `state`."""
        return self.run_state if self.state == "running" and self.run_state else self.state


@dataclass(frozen=True, slots=True)
class HistoryEvent:
    event_id: str  # "<at_ms>-<version>", monotonic within a flow
    name: str
    at_ms: int
    version: int
    state: str
    run_state: str | None
    attempts: int
    fencing_token: int
    lease_owner: str | None
    next_run_at_ms: int | None
    meta: Mapping[str, Any]


class CreateSpec(NamedTuple):
    """One item of `create_many`; unset fields take the call's shared options.

    A NamedTuple, like `Ack`: a batch builds one per item, and a tuple is built ~3x
    faster than a frozen dataclass (which sets each field through object.__setattr__)."""

    id: str
    payload: bytes | None = None
    partition_key: str | None = None
    priority: int | None = None
    run_at_ms: int | None = None
    values: Mapping[str, bytes] | None = None
    attributes: Mapping[str, str] | None = None
    parent_id: str | None = None
    root_id: str | None = None
    correlation_id: str | None = None


class Ack(NamedTuple):
    """One item of `complete_many` / `retry_many` / `fail_many` / `transition_many`.

    `data` is the result (complete) or the error (retry, fail); ignored by transition.
    `values`: named values stored with the outcome (complete_many and fail_many only).
    """

    id: str
    lease_token: str | None
    fencing_token: int
    data: bytes | None = None
    partition_key: str | None = None
    values: Mapping[str, bytes] | None = None


class ContinueSpec(NamedTuple):
    """One item of `step_continue_many`: a claimed flow to store a step of and keep
    working on (see `Engine.step_continue`)."""

    id: str
    lease_token: str
    fencing_token: int
    to_state: str | None = None
    values: Mapping[str, bytes] | None = None
    payload: bytes | None = None
    lease_ms: int = 30_000
    partition_key: str | None = None


class ItemResult(NamedTuple):
    """Per-item outcome of a batch command: `flow` on success, else `error`."""

    id: str
    flow: Flow | None = None
    error: Exception | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


# -- coordination ---------------------------------------------------------------------

WaitMode = Literal["all", "any", "none"]
OnChildFailed = Literal["fail_parent", "ignore"]
OnParentClosed = Literal["cancel_children", "abandon_children"]


@dataclass(frozen=True, slots=True)
class ChildSpec:
    """One child of `spawn_children`, or of `transition(children=)`. The partition
    defaults to the parent's, so children live on the parent's shard unless you give them
    another partition (a transition's children always live with their parent).

    Only for a transition's children: `retention_ms` (as `create`'s), `wake_parent`:
    when the child ends, its parent, if it is then waiting unleased for a later due time,
    is made due at once (a `child_ended` event) - for runtimes that keep their own joins
    (flowactors.code); a fanout group reports to its parent on its own - and `lease_ms`
    (`transition_claiming` only): the child is created already claimed by the parent's
    lease owner, leased for `lease_ms`, so the caller runs it at once with no claim."""

    id: str
    type: str
    payload: bytes | None = None
    state: str = "queued"
    partition_key: str | None = None
    priority: int | None = None
    run_at_ms: int | None = None
    values: Mapping[str, bytes] | None = None
    attributes: Mapping[str, str] | None = None
    correlation_id: str | None = None
    retention_ms: int | None = None
    wake_parent: bool = False
    lease_ms: int | None = None


class ChildStatus(NamedTuple):
    """A child as its parent sees it: `state` is "pending" until the parent has counted
    the child's terminal outcome (completed, failed or cancelled)."""

    id: str
    group_id: str
    type: str
    state: str
    result: bytes | None = None
    error: bytes | None = None


class Page(NamedTuple):
    """One page of a query; pass `cursor` back for the next one (None: no more)."""

    items: list[Flow]
    cursor: str | None


POLICY_FIELDS = (
    "max_retries",
    "backoff",
    "base_ms",
    "max_ms",
    "jitter_pct",
    "exhausted_to",
    "max_reclaims",
    "max_active_ms",
    "retention_ms",
    "history_max_events",
)
RETRY_FIELDS = POLICY_FIELDS[:7]
TYPE_ONLY_FIELDS = ("max_active_ms", "history_max_events")


@dataclass(frozen=True, slots=True)
class PolicySettings:
    """A layer of settings; None means "inherit from the layer below".

    Layers merge field by field: engine defaults < type policy < state policy < command.
    The state layer is picked by the state a flow is being worked in (its `run_state`
    while running) or, for retention, by the terminal state it reached.
    """

    max_retries: int | None = None
    backoff: Backoff | None = None
    base_ms: int | None = None
    max_ms: int | None = None
    jitter_pct: int | None = None
    exhausted_to: str | None = None
    max_reclaims: int | None = None
    max_active_ms: int | None = None
    retention_ms: int | None = None
    history_max_events: int | None = None

    def __post_init__(self) -> None:
        retry = {f: getattr(self, f) for f in RETRY_FIELDS if getattr(self, f) is not None}
        if retry:
            RetryPolicy(**retry)  # validates every retry field with one set of rules
        for name, high in (
            ("max_active_ms", 366 * 24 * 3600 * 1000),
            ("retention_ms", 10 * 366 * 24 * 3600 * 1000),
            ("history_max_events", 1_000_000),
        ):
            value = getattr(self, name)
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= high
            ):
                raise InvalidArgument(f"{name} must be an integer in 1..{high} or None")

    def fields(self) -> dict[str, Any]:
        return {f: getattr(self, f) for f in POLICY_FIELDS if getattr(self, f) is not None}


@dataclass(frozen=True, slots=True)
class FlowPolicy(PolicySettings):
    """A type's installed policy: type-level settings plus per-state layers.

    `generation` is assigned by the engine (it grows by one per install) and is what
    `install_policy(expected_generation=...)` compares."""

    states: Mapping[str, PolicySettings] = field(default_factory=dict)
    generation: int = 0

    def __post_init__(self) -> None:
        PolicySettings.__post_init__(self)
        if not isinstance(self.states, Mapping):
            raise InvalidArgument("FlowPolicy.states must map state names to PolicySettings")
        for name, layer in self.states.items():
            if not isinstance(name, str) or not name or name == "running":
                raise InvalidArgument(f"policy state {name!r} is not a state name")
            if not isinstance(layer, PolicySettings) or isinstance(layer, FlowPolicy):
                raise InvalidArgument(f"policy for state {name!r} must be a PolicySettings")
            for field_name in TYPE_ONLY_FIELDS:
                if getattr(layer, field_name) is not None:
                    raise InvalidArgument(
                        f"{field_name} is a type-level setting; it cannot be set for state {name!r}"
                    )
        # A private, read-only copy: the caller's dict can never change a live policy.
        object.__setattr__(self, "states", MappingProxyType(dict(self.states)))


@dataclass(frozen=True, slots=True)
class ShardRecovery:
    """What opening one shard found and did. `repairs` lists every change recovery made
    to the log (a torn tail truncated, a hint rebuilt, ...): wal `Repair` records, each
    naming the file, the offset, the bytes dropped and why."""

    index: int
    path: str
    flows: int
    from_checkpoint: bool
    segments: int
    segments_from_hints: int
    segments_scanned: int
    repairs: tuple[Any, ...]
    merge: str | None  # a merge cut short by a crash: "completed" or "discarded"
    seconds: float


@dataclass(frozen=True, slots=True)
class EngineRecovery:
    """What `open_engine` found: per shard, and whether the engine was created now or
    adopted from a directory made by an older flowactors (`engine.recovery`)."""

    engine_id: str
    created: bool
    adopted: bool
    shards: tuple[ShardRecovery, ...]

    @property
    def repairs(self) -> tuple[Any, ...]:
        return tuple(r for s in self.shards for r in s.repairs)
