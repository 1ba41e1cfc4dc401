"""Declarative workflows: a flow type, its states and what each state's outcome means.

A `Workflow` binds a declaration to an embedded `Engine`. Declare it as a subclass

    class Billing(Workflow):
        type = "billing"
        partition_by = ("tenant_id", "invoice_id")
        initial_state = "created"
        states = {
            "created": State(lease_ms=60_000, payload_max_bytes=64_000,
                             retry=StateRetry(max_retries=8, backoff="exponential"),
                             on_ok="charged", on_error=retry_or("failed")),
            "charged": State(on_ok=complete(), on_error=fail()),
        }

or build one and attach handlers with `@wf.state("created", ...)` (the client style). Every
method is a thin, explicit call of one engine command: nothing is replayed, nothing is
hidden. `ok(job, value)` applies the state's `on_ok` (a transition, or complete);
`error(job, reason)` applies its `on_error` (retry per the merged retry policy, then the
`retry_or` state; or fail). The merged policy - the workflow's `retry_policy`, then the
state's `retry` - is sent with each retry as explicit overrides (max_retries, exhausted_to
and the backoff delay computed with `backoff_delay_ms`), so it holds on any engine;
`install_policy` also stores it in the engine (issue 4 API).

`partition_by` names attribute keys; their values joined with ":" form the partition key,
so flows of one tenant/invoice share a shard (and its ordering). Values holding ":" are
rejected as ambiguous.

Handlers get a `Context`: the claimed flow, its payload and claimed values, and helpers to
extend the lease or spawn children. Workers (see `_worker.py`) run the handlers.
"""

from __future__ import annotations

import dataclasses
import inspect
import itertools
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal, TypeAlias

from ..engine import _machine as m
from ..engine._engine import Engine
from ..engine._errors import FlowError, InvalidArgument
from ..engine._retry import backoff_delay_ms
from ..engine._types import (
    ChildSpec,
    ChildStatus,
    ContinueSpec,
    CreateSpec,
    Flow,
    FlowPolicy,
    HistoryEvent,
    ItemResult,
    Page,
    PolicySettings,
    RetryPolicy,
)
from ._outcomes import (
    OUTCOME_TYPES,
    Complete,
    ExceptionPolicy,
    Fail,
    Outcome,
    Retry,
    RetryOr,
    Spawn,
    StateRetry,
    Transition,
    Wait,
)

if TYPE_CHECKING:
    from ._worker import Worker

Handler: TypeAlias = Callable[["Context"], Any]
Job: TypeAlias = "Flow | Context"

_worker_ids = itertools.count(1)
ON_OK_COMPLETE = Complete()  # the default on_ok: complete, the handler's value as result
ON_ERROR_RETRY = RetryOr()  # the default on_error: retry per policy, then its exhausted_to


@dataclass(frozen=True, slots=True)
class State:
    """How a state is claimed and what its outcomes mean.

    `claim_payload` / `payload_max_bytes`: hydrate the payload on claim (capped);
    `claim_values`: named values hydrated on claim (others stay on disk).
    """

    lease_ms: int = 30_000
    claim_payload: bool = True
    payload_max_bytes: int | None = None
    claim_values: tuple[str, ...] = ()
    retry: StateRetry | None = None
    on_ok: str | Complete = ON_OK_COMPLETE
    on_error: RetryOr | Fail = ON_ERROR_RETRY
    exception_policy: ExceptionPolicy = ExceptionPolicy.RETRY
    handler: Handler | None = None

    def __post_init__(self) -> None:
        m.check_int(self.lease_ms, "lease_ms", 1, m.MAX_DELAY_MS)
        m.check_bool(self.claim_payload, "claim_payload")
        if self.payload_max_bytes is not None:
            m.check_int(self.payload_max_bytes, "payload_max_bytes", 0, m.MAX_BLOB_BYTES)
        object.__setattr__(self, "claim_values", m.check_names(self.claim_values, "claim_value"))
        _check_kind(self.retry, StateRetry, "retry", optional=True)
        if not isinstance(self.on_ok, str):
            _check_kind(self.on_ok, Complete, "on_ok (a state name or Complete)")
        _check_kind(self.on_error, RetryOr | Fail, "on_error (RetryOr or Fail)")
        _check_kind(self.exception_policy, ExceptionPolicy, "exception_policy")
        _check_callable(self.handler, "handler")

    @property
    def claim_payload_arg(self) -> bool | int:
        if not self.claim_payload:
            return False
        return True if self.payload_max_bytes is None else self.payload_max_bytes


class Context:
    """What a handler gets: the claimed flow and helpers bound to its lease."""

    def __init__(self, workflow: Workflow, flow: Flow, lease_ms: int) -> None:
        self.workflow = workflow
        self.flow = flow
        self.lease_ms = lease_ms
        self.settled = False  # the handler already ended the claim (spawn_children)
        self.settled_as: str | None = None  # how (the worker's count it goes in)
        # Set by a Worker: gathers the step_continues of its handlers (`_Continuer`);
        # the worker itself (runs the children `transition(run_children=True)` claims).
        self.continuer: Any = None
        self.worker: Any = None
        self.handed_slot = False  # its worker slot went to a child it created claimed

    @property
    def id(self) -> str:
        return self.flow.id

    @property
    def state(self) -> str:
        """The state being worked on (the flow's `run_state`)."""
        return self.flow.logical_state

    @property
    def payload(self) -> bytes | None:
        return self.flow.payload

    @property
    def values(self) -> Mapping[str, bytes]:
        return self.flow.values

    @property
    def attributes(self) -> Mapping[str, str]:
        return self.flow.attributes

    @property
    def attempts(self) -> int:
        return self.flow.attempts

    @property
    def partition_key(self) -> str | None:
        return self.flow.partition_key

    @property
    def lease_token(self) -> str | None:
        return self.flow.lease_token

    @property
    def fencing_token(self) -> int:
        return self.flow.fencing_token

    async def extend_lease(self, lease_ms: int | None = None) -> Flow:
        """Push this claim's lease deadline out (workers also do it automatically)."""
        self.flow = await self.workflow.extend_lease(self.flow, lease_ms or self.lease_ms)
        return self.flow

    async def step_continue(
        self,
        to_state: str | None = None,
        *,
        payload: bytes | str | None = None,
        values: Mapping[str, bytes] | None = None,
        attributes: Mapping[str, str] | None = None,
    ) -> Flow:
        """Store this step's outcome durably and keep the claim, now at step `to_state`
        (default: the same): the engine's `step_continue`. The claim's tokens change (the
        old ones are stale); `ctx.flow` is the new record, with the payload and values
        this claim already had (and those just stored) still at hand."""
        flow = self.flow
        if flow.lease_token is None:
            raise InvalidArgument(f"flow {flow.id!r} is not claimed")
        data = _text(payload)
        if self.continuer is not None and not attributes:
            spec = ContinueSpec(
                flow.id, flow.lease_token, flow.fencing_token, to_state, values, data,
                self.lease_ms, flow.partition_key,
            )  # fmt: skip
            item = await self.continuer.submit(spec)
            if item.error is not None:
                raise item.error
            new = item.flow
        else:
            new = await self.workflow.engine.step_continue(
                flow.id,
                flow.lease_token,
                flow.fencing_token,
                to_state=to_state,
                lease_ms=self.lease_ms,
                payload=data,
                values=values,
                attributes=attributes,
                partition_key=flow.partition_key,
            )
        self.flow = new._replace(
            payload=flow.payload if data is None else data,
            payload_omitted=flow.payload_omitted and data is None,
            values={**flow.values, **values} if values else flow.values,
        )
        return self.flow

    def child(self, id: str, **options: Any) -> ChildSpec:
        """A ChildSpec in this flow's partition (see `Workflow.child`)."""
        options.setdefault("partition_key", self.flow.partition_key)
        return self.workflow.child(id, **options)

    async def spawn_children(self, children: Sequence[ChildSpec], **options: Any) -> Flow:
        """Spawn children now; the parent moves to the wait state and this claim ends
        (the worker acknowledges nothing more for it)."""
        parent = await self.workflow.spawn_children(self.flow, children, **options)
        self.settled, self.settled_as = True, "spawned"
        return parent

    async def transition(
        self,
        to_state: str,
        *,
        run_at_ms: int | None = None,
        values: Mapping[str, bytes] | None = None,
        children: Sequence[ChildSpec] = (),
        run_children: bool = False,
    ) -> Flow:
        """End this claim now: move the flow to `to_state` (the engine's `transition`,
        `children` created by the same command). The worker acknowledges nothing more;
        the moved flow is returned (for handlers that must see the command's answer,
        as the code-workflow runner does when a child id is taken).

        `run_children`: the children this context's worker can run - of its workflow,
        due now, in a state it claims, while it has a slot free - are created claimed by
        it (`Engine.transition_claiming`) and run as soon as the command is durable, with
        no claim of their own: no claim command, no read, no wait for its next claim."""
        flow = self.flow
        worker = self.worker
        if run_children and children and worker is not None:
            specs, taken = worker._lease_children(self, children)
            if taken:
                try:
                    moved, kids = await self.workflow.engine.transition_claiming(
                        flow.id, "running", to_state, flow.fencing_token,
                        lease_token=flow.lease_token, run_at_ms=run_at_ms, values=values,
                        children=specs, partition_key=flow.partition_key,
                    )  # fmt: skip
                except BaseException:
                    worker._adopt(self, [], specs, taken)  # (gives the slots back)
                    raise
                worker._adopt(self, kids, specs, taken)
                self.settled, self.settled_as = True, "transitioned"
                return moved
        moved = await self.workflow.engine.transition(
            flow.id,
            "running",
            to_state,
            flow.fencing_token,
            lease_token=flow.lease_token,
            run_at_ms=run_at_ms,
            values=values,
            children=children,
            partition_key=flow.partition_key,
        )
        self.settled, self.settled_as = True, "transitioned"
        return moved


def _flow_of(job: Job) -> Flow:
    if isinstance(job, Context):
        return job.flow
    if not isinstance(job, Flow):
        raise InvalidArgument(f"a job is a claimed Flow or a handler's Context, not {job!r:.60}")
    return job


def _text(data: bytes | str | BaseException | None) -> bytes | None:
    if data is None or isinstance(data, bytes):
        return data
    if isinstance(data, BaseException):
        return (str(data) or type(data).__name__).encode()
    if not isinstance(data, str):
        raise InvalidArgument(f"expected bytes, str or None, got {type(data).__name__}")
    return data.encode()


def _check_kind(value: object, kind: Any, what: str, *, optional: bool = False) -> None:
    if optional and value is None:
        return
    if not isinstance(value, kind):
        raise InvalidArgument(
            f"{what} must be {getattr(kind, '__name__', kind)}, got {value!r:.60}"
        )


def _check_callable(value: object, what: str) -> None:
    if value is not None and not callable(value):
        raise InvalidArgument(f"{what} must be callable or None, got {value!r:.60}")


def _states_arg(state: object, what: str = "state") -> list[str] | None:
    """A state, a list of states, or None (every declared state)."""
    if state is None:
        return None
    if isinstance(state, str):
        return [m.check_name(state, what)]
    return list(m.check_names(state, what))


class Workflow:
    """A flow type bound to an engine; see the module docstring."""

    type: ClassVar[str] = ""
    partition_by: ClassVar[tuple[str, ...]] = ()
    initial_state: ClassVar[str | None] = None
    retry_policy: ClassVar[RetryPolicy | None] = None
    states: ClassVar[Mapping[str, State]] = {}

    def __init__(
        self,
        engine: Engine,
        *,
        type: str | None = None,
        partition_by: Sequence[str] | None = None,
        initial_state: str | None = None,
        retry_policy: RetryPolicy | None = None,
        states: Mapping[str, State] | None = None,
    ) -> None:
        self.engine = engine
        self.flow_type: str = type or self.type
        if not self.flow_type:
            raise InvalidArgument("a workflow needs a flow type")
        m.check_type(self.flow_type)
        self.partition_keys: tuple[str, ...] = m.check_names(
            partition_by if partition_by is not None else self.partition_by, "partition_by key"
        )
        self.policy: RetryPolicy | None = retry_policy or self.retry_policy
        _check_kind(self.policy, RetryPolicy, "retry_policy", optional=True)
        specs = m.check_mapping(states if states is not None else self.states, "states")
        for name, spec in specs.items():
            m.check_name(name, "state")
            _check_kind(spec, State, f"states[{name!r}]")
        self.state_specs: dict[str, State] = dict(specs)
        declared = initial_state or self.initial_state
        if declared is not None:
            m.check_name(declared, "initial_state")
        self.start_state: str = declared or next(iter(self.state_specs), "queued")
        self._workers: set[Worker] = set()

    # -- declaration --------------------------------------------------------------------

    def state(
        self,
        name: str,
        *,
        lease_ms: int = 30_000,
        claim_payload: bool = True,
        payload_max_bytes: int | None = None,
        claim_values: Sequence[str] = (),
        retry: StateRetry | None = None,
        on_ok: str | Complete = ON_OK_COMPLETE,
        on_error: RetryOr | Fail = ON_ERROR_RETRY,
        exception_policy: ExceptionPolicy = ExceptionPolicy.RETRY,
    ) -> Callable[[Handler], Handler]:
        """Decorator: declare state `name` and its handler (sync handlers run in threads)."""
        m.check_name(name, "state")
        claim_values = m.check_names(claim_values, "claim_value")

        def register(handler: Handler) -> Handler:
            self.state_specs[name] = State(
                lease_ms,
                claim_payload,
                payload_max_bytes,
                tuple(claim_values),
                retry,
                on_ok,
                on_error,
                exception_policy,
                handler,
            )
            return handler

        return register

    def spec(self, state: str) -> State:
        """The declared State (an undeclared state gets the defaults)."""
        return self.state_specs.get(state) or State()

    def partition_key_for(self, attributes: Mapping[str, str] | None) -> str | None:
        if not self.partition_keys:
            return None
        attrs = attributes or {}
        m.check_mapping(attrs, "attributes")
        parts = []
        for key in self.partition_keys:
            value = attrs.get(key)
            if not isinstance(value, str) or not value:
                raise InvalidArgument(f"{self.flow_type}: attribute {key!r} is needed (partition)")
            if ":" in value:
                raise InvalidArgument(f"partition attribute {key!r} may not contain ':'")
            parts.append(value)
        return ":".join(parts)

    def _partition(self, partition_key: str | None, attributes: Mapping[str, str] | None) -> Any:
        return partition_key if partition_key is not None else self.partition_key_for(attributes)

    def _notify(self) -> None:
        for worker in self._workers:
            worker.wake()

    # -- creation -----------------------------------------------------------------------

    async def create(
        self,
        id: str,
        *,
        payload: bytes | None = None,
        attributes: Mapping[str, str] | None = None,
        values: Mapping[str, bytes] | None = None,
        state: str | None = None,
        partition_key: str | None = None,
        run_at_ms: int | None = None,
        delay_ms: int | None = None,
        priority: int = 0,
        idempotent: bool = False,
        correlation_id: str | None = None,
        max_active_ms: int | None = None,
        retention_ms: int | None = None,
    ) -> Flow:
        """Create a flow in `state` (default: the initial state), partitioned by
        `partition_by` attributes unless `partition_key` is given."""
        flow = await self.engine.create(
            id,
            self.flow_type,
            state=state or self.start_state,
            payload=payload,
            partition_key=self._partition(partition_key, attributes),
            run_at_ms=run_at_ms,
            delay_ms=delay_ms,
            priority=priority,
            values=values,
            attributes=attributes,
            correlation_id=correlation_id,
            idempotent=idempotent,
            max_active_ms=max_active_ms,
            retention_ms=retention_ms,
        )
        self._notify()
        return flow

    start = create

    async def create_many(
        self,
        items: Sequence[CreateSpec],
        *,
        state: str | None = None,
        priority: int = 0,
        run_at_ms: int | None = None,
        idempotent: bool = False,
    ) -> list[ItemResult]:
        """Create many flows (atomic per shard); partition keys come from each item's
        attributes unless it names one."""
        m.check_items(items, CreateSpec, "create_many")
        specs = [
            s
            if s.partition_key is not None or not self.partition_keys
            else s._replace(partition_key=self.partition_key_for(s.attributes))
            for s in items
        ]
        results = await self.engine.create_many(
            self.flow_type,
            specs,
            state=state or self.start_state,
            priority=priority,
            run_at_ms=run_at_ms,
            idempotent=idempotent,
        )
        self._notify()
        return results

    def child(
        self,
        id: str,
        *,
        payload: bytes | None = None,
        state: str | None = None,
        attributes: Mapping[str, str] | None = None,
        values: Mapping[str, bytes] | None = None,
        partition_key: str | None = None,
        priority: int | None = None,
        run_at_ms: int | None = None,
        correlation_id: str | None = None,
    ) -> ChildSpec:
        """A ChildSpec of this workflow's type, in its initial state."""
        return ChildSpec(
            id=id,
            type=self.flow_type,
            payload=payload,
            state=state or self.start_state,
            partition_key=partition_key,
            priority=priority,
            run_at_ms=run_at_ms,
            values=values,
            attributes=attributes,
            correlation_id=correlation_id,
        )

    async def spawn_children(
        self,
        parent: Job,
        children: Sequence[ChildSpec],
        *,
        group_id: str = "children",
        wait: Wait = "all",
        wait_state: str = "waiting_children",
        success_state: str = "children_done",
        failure_state: str = "children_failed",
        on_child_failed: Literal["fail_parent", "ignore"] = "fail_parent",
        on_parent_closed: Literal["cancel_children", "abandon_children"] = "cancel_children",
    ) -> Flow:
        """Spawn `children` under a claimed parent, carrying its partition, lease and
        fencing tokens; the parent waits in `wait_state` until the group resolves."""
        flow = _flow_of(parent)
        result = await self.engine.spawn_children(
            flow.id,
            flow.lease_token,
            flow.fencing_token,
            group_id=group_id,
            children=list(m.check_list(children, "children")),
            wait=wait,
            wait_state=wait_state,
            success_state=success_state,
            failure_state=failure_state,
            on_child_failed=on_child_failed,
            on_parent_closed=on_parent_closed,
            partition_key=flow.partition_key,
        )
        self._notify()
        return result

    async def fanout(
        self,
        parent: Job,
        children: Sequence[ChildSpec],
        *,
        group_id: str = "children",
        wait: Wait = "all",
        wait_state: str = "waiting_children",
        on_all_ok: str = "children_done",
        on_any_error: str = "children_failed",
        on_child_failed: Literal["fail_parent", "ignore"] = "fail_parent",
    ) -> Flow:
        """`spawn_children` with seed 000's names for the resolution states."""
        return await self.spawn_children(
            parent,
            children,
            group_id=group_id,
            wait=wait,
            wait_state=wait_state,
            success_state=on_all_ok,
            failure_state=on_any_error,
            on_child_failed=on_child_failed,
        )

    # -- claiming -----------------------------------------------------------------------

    def worker_name(self) -> str:
        return f"{self.flow_type}-{os.getpid()}-{next(_worker_ids)}"

    def claim_groups(
        self,
        states: Sequence[str] | None,
        *,
        lease_ms: int | None = None,
        payload: bool | int | None = None,
        values: Sequence[str] | None = None,
    ) -> list[tuple[tuple[str, ...] | None, int, bool | int, tuple[str, ...]]]:
        """(states, lease_ms, payload, values) per distinct claim setting: one claim each."""
        names: Sequence[str | None] = (
            m.check_names(states, "state") if states is not None else list(self.state_specs)
        )
        if values is not None:
            values = m.check_names(values, "value name")
        if not names:
            names = [None]  # nothing declared: claim every state with the defaults
        groups: dict[tuple[int, bool | int, tuple[str, ...]], list[str] | None] = {}
        for name in names:
            spec = self.spec(name) if name is not None else State()
            key = (
                lease_ms if lease_ms is not None else spec.lease_ms,
                payload if payload is not None else spec.claim_payload_arg,
                tuple(values) if values is not None else spec.claim_values,
            )
            if name is None:
                groups[key] = None
            else:
                got = groups.setdefault(key, [])
                assert got is not None
                got.append(name)
        return [(None if s is None else tuple(s), *key) for key, s in groups.items()]

    async def claim_due(
        self,
        state: str | Sequence[str] | None = None,
        *,
        limit: int = 1,
        worker: str | None = None,
        lease_ms: int | None = None,
        payload: bool | int | None = None,
        values: Sequence[str] | None = None,
    ) -> list[Flow]:
        """Claim up to `limit` due flows in `state` (default: every declared state) with
        each state's lease and hydration defaults."""
        wanted = _states_arg(state)
        m.check_int(limit, "limit", 1, m.MAX_CLAIM_LIMIT)
        name = worker or self.worker_name()
        claimed: list[Flow] = []
        for states, lease, pay, vals in self.claim_groups(
            wanted, lease_ms=lease_ms, payload=payload, values=values
        ):
            if len(claimed) >= limit:
                break
            claimed += await self.engine.claim_due(
                self.flow_type,
                name,
                states=states,
                limit=limit - len(claimed),
                lease_ms=lease,
                payload=pay,
                values=vals,
            )
        return claimed

    async def reclaim(
        self, *, limit: int = 1, worker: str | None = None, lease_ms: int | None = None
    ) -> list[Flow]:
        """Claim only flows whose lease expired (their worker is presumed dead)."""
        return await self.engine.reclaim(
            self.flow_type,
            worker or self.worker_name(),
            limit=limit,
            lease_ms=lease_ms or 30_000,
            payload=True,
        )

    def worker(
        self,
        states: Sequence[str] | None = None,
        *,
        state: str | None = None,
        handler: Handler | None = None,
        **options: Any,
    ) -> Worker:
        """A `Worker` for these states (see `_worker.Worker` for its options)."""
        from ._worker import Worker

        wanted = (
            list(m.check_names(states, "state"))
            if states is not None
            else _states_arg(state or None)
        )
        return Worker(self, wanted, handler=handler, **options)

    async def run_once(
        self,
        state: str | Sequence[str] | None = None,
        *,
        handler: Handler | None = None,
        limit: int = 100,
        **options: Any,
    ) -> int:
        """Claim one batch, run the handlers, apply their outcomes; the number handled."""
        wanted = _states_arg(state)
        return await self.worker(wanted, handler=handler, batch_size=limit, **options).run_once()

    async def reclaim_once(
        self, *, handler: Handler | None = None, limit: int = 100, **options: Any
    ) -> int:
        """Reclaim expired leases once and handle what was reclaimed."""
        worker = self.worker(None, handler=handler, batch_size=limit, **options)
        return await worker.run_once(reclaim_only=True)

    # -- outcomes -----------------------------------------------------------------------

    def outcome_of(self, state: str, value: Any) -> Outcome:
        """A handler's return value as an outcome: outcomes pass through; anything else is
        "ok" (bytes/str/None become the result, or the next state's payload)."""
        if isinstance(value, OUTCOME_TYPES):
            return value
        if value is not None and not isinstance(value, bytes | str):
            raise InvalidArgument(
                f"a handler returned {type(value).__name__}; return bytes, str, None "
                "or an outcome (transition, complete, retry, fail, spawn)"
            )
        data = _text(value)
        on_ok = self.spec(state).on_ok
        if isinstance(on_ok, str):
            return Transition(on_ok, payload=data)
        return Complete(data if data is not None else on_ok.result, on_ok.values)

    def error_outcome(self, state: str, reason: bytes | str | BaseException | None) -> Outcome:
        """The outcome of a failed step: the state's on_error (or FAIL policy)."""
        spec = self.spec(state)
        error = _text(reason)
        if spec.exception_policy is ExceptionPolicy.FAIL or isinstance(spec.on_error, Fail):
            return Fail(error)
        return Retry(error)

    def retry_overrides(self, flow: Flow, outcome: Retry) -> dict[str, Any]:
        """Engine `retry` overrides from the merged retry policy (empty: engine policy)."""
        spec = self.spec(flow.logical_state)
        state_fields = spec.retry.fields() if spec.retry else {}
        retry_or = spec.on_error.state if isinstance(spec.on_error, RetryOr) else None
        out: dict[str, Any] = {}
        if self.policy is None and not state_fields:
            if retry_or is not None:
                out["exhausted_to"] = retry_or
            return out
        policy = dataclasses.replace(self.policy or RetryPolicy(), **state_fields)
        out["max_retries"] = policy.max_retries
        out["exhausted_to"] = retry_or or policy.exhausted_to
        if outcome.run_at_ms is None and outcome.delay_ms is None:
            out["delay_ms"] = backoff_delay_ms(policy, flow.id, flow.attempts + 1)
        return out

    async def apply(self, job: Job, outcome: Outcome) -> Flow:
        """Send the one engine command an outcome stands for, under the job's tokens."""
        flow = _flow_of(job)
        e, fid, token, fencing, part = (
            self.engine,
            flow.id,
            flow.lease_token,
            flow.fencing_token,
            flow.partition_key,
        )
        if isinstance(outcome, Transition):
            result = await e.transition(
                fid,
                "running",
                outcome.to_state,
                fencing,
                lease_token=token,
                run_at_ms=outcome.run_at_ms,
                delay_ms=outcome.delay_ms,
                priority=outcome.priority,
                payload=outcome.payload,
                values=outcome.values,
                attributes=outcome.attributes,
                partition_key=part,
            )
            self._notify()
            return result
        if isinstance(outcome, Complete):
            return await e.complete(
                fid,
                token,
                fencing,
                result=outcome.result,
                values=outcome.values,
                partition_key=part,
            )
        if isinstance(outcome, Fail):
            return await e.fail(
                fid,
                token,
                fencing,
                error=outcome.error,
                values=outcome.values,
                partition_key=part,
            )
        if isinstance(outcome, Retry):
            overrides = self.retry_overrides(flow, outcome)
            if outcome.run_at_ms is not None or outcome.delay_ms is not None:
                overrides.update(run_at_ms=outcome.run_at_ms, delay_ms=outcome.delay_ms)
            result = await e.retry(
                fid,
                token,
                fencing,
                error=outcome.error,
                payload=outcome.payload,
                partition_key=part,
                **overrides,
            )
            self._notify()
            return result
        if isinstance(outcome, Spawn):
            return await self.spawn_children(
                flow,
                outcome.children,
                group_id=outcome.group_id,
                wait=outcome.wait,
                wait_state=outcome.wait_state,
                success_state=outcome.success_state,
                failure_state=outcome.failure_state,
                on_child_failed=outcome.on_child_failed,
                on_parent_closed=outcome.on_parent_closed,
            )
        raise InvalidArgument(f"not an outcome: {outcome!r}")

    async def ok(self, job: Job, value: bytes | str | None = None) -> Flow:
        """The step succeeded: the state's on_ok (transition to the next state, or complete
        with `value` as the result)."""
        return await self.apply(job, self.outcome_of(_flow_of(job).logical_state, value))

    async def error(self, job: Job, reason: bytes | str | BaseException | None = None) -> Flow:
        """The step failed: the state's on_error (retry, then the retry_or state; or fail)."""
        return await self.apply(job, self.error_outcome(_flow_of(job).logical_state, reason))

    async def handle(self, job: Job, fn: Callable[[Context], Any]) -> Flow | None:
        """Run `fn` on a claimed job and apply `ok`/`error` by its result (None when the
        handler spawned children and so already ended the claim)."""
        flow = _flow_of(job)
        ctx = (
            job
            if isinstance(job, Context)
            else Context(self, flow, self.spec(flow.logical_state).lease_ms)
        )
        try:
            value = fn(ctx)
            if inspect.isawaitable(value):
                value = await value
            outcome = self.outcome_of(flow.logical_state, value)
        except FlowError:
            raise
        except Exception as exc:
            if self.spec(flow.logical_state).exception_policy is ExceptionPolicy.RAISE:
                raise
            outcome = self.error_outcome(flow.logical_state, exc)
        if ctx.settled:
            return None
        return await self.apply(ctx.flow, outcome)

    async def transition(
        self, job: Job, to_state: str, value: bytes | None = None, **options: Any
    ) -> Flow:
        return await self.apply(job, Transition(to_state, payload=value, **options))

    async def complete(self, job: Job, result: bytes | str | None = None) -> Flow:
        return await self.apply(job, Complete(_text(result)))

    async def retry(self, job: Job, reason: bytes | str | None = None, **options: Any) -> Flow:
        return await self.apply(job, Retry(_text(reason), **options))

    async def fail(self, job: Job, reason: bytes | str | None = None) -> Flow:
        return await self.apply(job, Fail(_text(reason)))

    async def extend_lease(self, job: Job, lease_ms: int | None = None) -> Flow:
        flow = _flow_of(job)
        if flow.lease_token is None:
            raise InvalidArgument(f"flow {flow.id!r} is not claimed")
        return await self.engine.extend_lease(
            flow.id,
            flow.lease_token,
            flow.fencing_token,
            lease_ms=lease_ms or self.spec(flow.logical_state).lease_ms,
            partition_key=flow.partition_key,
        )

    async def cancel(
        self,
        id: str,
        *,
        reason: bytes | str | None = None,
        force: bool = False,
        partition_key: str | None = None,
    ) -> Flow:
        """Cancel a flow (a leased one only with `force`, an operator's override)."""
        return await self.engine.cancel(
            id, reason=_text(reason), force=force, partition_key=partition_key
        )

    async def signal(
        self,
        id: str,
        signal: str,
        *,
        values: Mapping[str, bytes] | None = None,
        if_state: str | Sequence[str] | None = None,
        transition_to: str | None = None,
        run_at_ms: int | None = None,
        idempotency_key: str | None = None,
        partition_key: str | None = None,
    ) -> Flow:
        """A durable external event, optionally state-guarded and moving the flow."""
        flow = await self.engine.signal(
            id,
            signal,
            values=values,
            if_state=if_state,
            transition_to=transition_to,
            run_at_ms=run_at_ms,
            idempotency_key=idempotency_key,
            partition_key=partition_key,
        )
        self._notify()
        return flow

    async def rewind(
        self,
        id: str,
        to_version: int,
        *,
        expect_state: str | None = None,
        partition_key: str | None = None,
    ) -> Flow:
        flow = await self.engine.rewind(
            id, to_version, expect_state=expect_state, partition_key=partition_key
        )
        self._notify()
        return flow

    # -- reads --------------------------------------------------------------------------

    async def get(
        self,
        id: str,
        *,
        partition_key: str | None = None,
        attributes: Mapping[str, str] | None = None,
        payload: bool | int = False,
        values: Sequence[str] = (),
    ) -> Flow | None:
        return await self.engine.get(
            id,
            partition_key=self._partition(partition_key, attributes),
            payload=payload,
            values=values,
        )

    async def history(
        self,
        id: str,
        *,
        partition_key: str | None = None,
        attributes: Mapping[str, str] | None = None,
    ) -> list[HistoryEvent]:
        return await self.engine.history(
            id, partition_key=self._partition(partition_key, attributes)
        )

    async def info(self) -> dict[str, int]:
        """Flows of this type per state."""
        return await self.engine.info(self.flow_type)

    async def children(
        self, parent: Job | str, *, group_id: str | None = None, partition_key: str | None = None
    ) -> list[ChildStatus]:
        """ChildStatus of each child of `parent`."""
        if isinstance(parent, str):
            pid, part = parent, partition_key
        else:
            flow = _flow_of(parent)
            pid, part = flow.id, flow.partition_key
        return await self.engine.children(pid, group_id=group_id, partition_key=part)

    async def waiting_children(self, parent: Job | str, **options: Any) -> list[ChildStatus]:
        """The children still pending (not terminal)."""
        return [c for c in await self.children(parent, **options) if c.state == "pending"]

    async def list_flows(
        self, state: str | None = None, *, limit: int = 100, cursor: str | None = None
    ) -> Page:
        """A Page of this type's flows in `state` (default: the initial state)."""
        return await self.engine.list_flows(
            self.flow_type, state or self.start_state, limit=limit, cursor=cursor
        )

    async def terminals(
        self,
        *,
        state: str | None = None,
        from_ms: int | None = None,
        to_ms: int | None = None,
        limit: int = 100,
        cursor: str | None = None,
    ) -> Page:
        return await self.engine.terminals(
            self.flow_type, state=state, from_ms=from_ms, to_ms=to_ms, limit=limit, cursor=cursor
        )

    async def by_parent(
        self, parent_id: str, *, limit: int = 100, cursor: str | None = None
    ) -> Page:
        return await self.engine.by_parent(parent_id, limit=limit, cursor=cursor)

    async def by_root(self, root_id: str, *, limit: int = 100, cursor: str | None = None) -> Page:
        return await self.engine.by_root(root_id, limit=limit, cursor=cursor)

    async def by_correlation(
        self, correlation_id: str, *, limit: int = 100, cursor: str | None = None
    ) -> Page:
        return await self.engine.by_correlation(correlation_id, limit=limit, cursor=cursor)

    async def stuck(
        self, *, older_than_ms: int = 0, limit: int = 100, cursor: str | None = None
    ) -> Page:
        """Running flows whose lease expired and nobody reclaimed."""
        return await self.engine.stuck(
            self.flow_type, older_than_ms=older_than_ms, limit=limit, cursor=cursor
        )

    # -- policy -------------------------------------------------------------------------

    def policy_snapshot(self) -> FlowPolicy:
        """This declaration as a FlowPolicy: the workflow's retry policy at type level,
        each state's retry override per state."""
        base = dataclasses.asdict(self.policy) if self.policy is not None else {}
        per_state = {}
        for name, spec in self.state_specs.items():
            fields = spec.retry.fields() if spec.retry else {}
            if isinstance(spec.on_error, RetryOr) and spec.on_error.state:
                fields["exhausted_to"] = spec.on_error.state
            if fields:
                per_state[name] = PolicySettings(**fields)
        return FlowPolicy(**base, states=per_state)

    async def install_policy(
        self, *, replace: bool = True, expected_generation: int | None = None
    ) -> FlowPolicy:
        """Store `policy_snapshot()` in the engine; returns the installed FlowPolicy."""
        return await self.engine.install_policy(
            self.flow_type,
            self.policy_snapshot(),
            expected_generation=expected_generation,
            replace=replace,
        )

    list = list_flows  # seed 000's name; defined last so `list[...]` above means the builtin
