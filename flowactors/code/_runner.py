# The durable host of code workflows: runs as engine flows, driven by the SDK worker; and
# the client API (start, signal, cancel, result, describe, history, list).
#
# Storage. One run is one flow of type "code" whose id is the run id. Its payload, CBOR
# {w: workflow name, i: input, g: generation in its continue-as-new chain}, is what an
# idempotent start compares (the same start again is a no-op; another input under the same
# id is an IdempotencyConflict). Its named values:
#   code              CBOR {h: code hash, v: declared version}, written at start
#   j:000001 ...      the journal: CBOR lists of journal events (see `_replay`), written
#   j:L00 ...         by the command that ends each step; a value per step for the first
#                     16 steps, then binary levels (sdk/_journal.py: a long run keeps few)
#   sig:<name>:<id>   the mailbox: CBOR [name, value, delivery id], one per delivery
#   parked            CBOR {reason, message, ...} when the run is parked
#   continued         the successor's run id, when the run continued as new
# Its correlation id is the chain's first run id; children carry parent_id/root_id.
# Nothing else is stored anywhere: recovery needs no registry.
#
# Flow states: ready (due now), waiting (due at a timer, a signal timeout, an activity's
# retry time, or a recheck), parked (non-determinism, a swallowed suspension, an unknown
# code version: claimed by nobody until `resume`); then completed / failed / cancelled.
#
# A claim runs steps. A worker claims a run, folds its journal (cached per run, so a wake
# reads only the chunks it has not seen) and replays the workflow from the top. When the
# coroutine suspends, the host answers what it waits for, in the same claim when it can:
# a due timer fires, a kept signal is consumed, a finished child's outcome is taken, a
# child to start is created, an activity runs. Then the coroutine resumes (no second
# replay). Each step's new events are stored as the journal's next unit (sdk/_journal: a
# value per step at first, then binary levels, so a long run keeps few) by ONE engine command:
# `step_continue` when the claim goes on (the run stays leased to this worker, under the
# next fencing token), or, to end the claim, complete / fail (the run ended), transition
# to ready (a step bound per claim was reached), waiting (due when something can change),
# or parked. A stale worker's command is refused by the fencing token, so its results are
# never journaled.
#
# The rule that makes this crash-safe: an effect outside the run (an activity, a child's
# creation, a successor's creation) is performed only when everything it derives from is
# durable - the stored journal, input and mailbox. Once a claim has fed an activity's
# result, the next activity or child waits until a `step_continue` has stored it. So an
# activity runs at least once (a crash after it ran and before its step was stored runs it
# again), its result is journaled exactly once, and no effect ever derives from a result
# the journal does not hold. Timers, signals and children's outcomes need no such care:
# deciding them has no effect outside the run.
#
# Wakes. A signal is stored in the mailbox (a passive engine signal, idempotent by its
# delivery id), then the run is woken if waiting (a transitioning signal). A run that
# commits "waiting for a signal/child" checks, once its command is durable, whether one
# arrived meanwhile (the acknowledged flow lists its mailbox) and wakes itself; a finished
# child wakes its parent. Every waiting run is also due at a recheck (`recheck_ms`), so a
# wake lost to a crash delays a run, never strands it.
from __future__ import annotations

import contextlib
import contextvars
import functools
import heapq
import inspect
import math
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar, cast

import trio

from flowactors import (
    ChildSpec,
    Complete,
    CreateSpec,
    Engine,
    ExceptionPolicy,
    Fail,
    Flow,
    FlowError,
    FlowExists,
    FlowNotFound,
    FlowPolicy,
    FlowTerminal,
    IdempotencyConflict,
    InvalidArgument,
    ItemResult,
    RetryPolicy,
    StaleLease,
    State,
    Transition,
    Worker,
    Workflow,
    WrongState,
    backoff_delay_ms,
)
from flowactors import Context as Job
from flowactors import Outcome as EngineOutcome

from ..sdk import _journal
from ..sdk._journal import Journal
from . import _values
from ._define import REGISTRY, ContinueAsNew, Registry, WorkflowDef, check_queue
from ._errors import NonRetryable, RunCancelled, UnstorableValue, WorkflowFailed
from ._replay import ActivityCall, Effect, Replay, error_of, fold

FLOW_TYPE = "code"
READY, WAITING, PARKED = "ready", "waiting", "parked"
LIVE_STATES = (READY, WAITING, "running")
JOURNAL, SIG = "j:", "sig:"  # (the journal's values: see flowactors/sdk/_journal.py)
MAX_RESULT_BYTES = 4 * 1024 * 1024  # one activity result (a chunk holds at most 16 MiB)
# A run's crash budget: how many times its claim may be lost (its worker died, a deploy
# restarted it) before the engine fails it. The engine counts reclaims over a flow's whole
# life, and a run may live for months across many restarts: its default of 10 would fail a
# healthy long run. `run()` installs this unless the type's policy sets its own.
MAX_RECLAIMS = 1000
MAX_WAKES = 1000  # wakes sent at once by the waker
MAX_FEEDS = 1000  # outcomes fed in one claim before it commits anyway (tight loops)
_T = TypeVar("_T")
MAX_KEPT_RESULTS = 10_000  # child results kept for their parents' joins (see _children_done)
NO_RETRY = RetryPolicy(max_retries=0, backoff="none", jitter_pct=0)
_LOST = (StaleLease, FlowTerminal, WrongState, FlowNotFound)

STATUS_STATES = {
    "running": (READY, WAITING, "running"),
    "parked": (PARKED,),
    "completed": ("completed",),
    "failed": ("failed",),
    "cancelled": ("cancelled",),
}


Events = list[dict[str, Any]]
RunList = list["RunInfo"]


@dataclass(frozen=True)
class RunInfo:
    """A run as `describe` sees it. `status`: running, parked, completed, failed or
    cancelled. `result` when completed; `error` ({type, message}) when failed or
    cancelled; `parked` ({reason, message, ...}) when parked; `continued_as`: the
    successor's id when the run continued as new."""

    run_id: str
    workflow: str
    status: str
    result: Any = None
    error: dict[str, Any] | None = None
    parked: dict[str, Any] | None = None
    continued_as: str | None = None
    code_hash: str = ""
    version: int = 0
    parent_id: str | None = None
    correlation_id: str | None = None
    flow_state: str = ""
    created_ms: int = 0
    updated_ms: int = 0


@dataclass
class ActivityInfo:
    """What a running activity can learn about itself: `activity_info()`."""

    run_id: str
    activity: str
    position: int
    attempt: int
    idempotency_key: str
    heartbeat: Callable[[], None]


_ACTIVITY: contextvars.ContextVar[ActivityInfo] = contextvars.ContextVar("flowactors_activity")


def activity_info() -> ActivityInfo:
    """Inside an activity: its run, position, attempt, idempotency key (stable across its
    retries and re-executions) and `heartbeat()`. LookupError elsewhere."""
    return _ACTIVITY.get()


@functools.lru_cache(maxsize=4096)
def _is_async_cached(fn: Any) -> bool:
    inner = getattr(fn, "func", fn)
    return inspect.iscoroutinefunction(inner) or inspect.iscoroutinefunction(
        getattr(inner, "__call__", None)  # noqa: B004
    )


def _is_async(fn: Any) -> bool:
    """Whether calling `fn` gives a coroutine (asked once per function: activities are
    module-level functions, asked about on every call)."""
    try:
        return _is_async_cached(fn)
    except TypeError:  # unhashable (a callable object defining __eq__ only)
        return _is_async_cached.__wrapped__(fn)


def journal_names(value_sizes: Mapping[str, int]) -> list[str]:
    """The names of a run's journal values in journal order (`value_sizes`: the run's
    `Flow.value_sizes`), for tools that show a journal."""
    return _journal.names_in_order(value_sizes, JOURNAL)


def _result_size(result: Any) -> int:
    """The stored size of an activity's result where it could pass the limit; 0 where it
    cannot (a number, a short string: their CBOR is at most 4 bytes per character plus a
    header), so the common result is not encoded twice."""
    kind = type(result)
    if result is None or kind is int or kind is float or kind is bool:
        return 0
    if (kind is str or kind is bytes) and len(result) * 4 + 16 < MAX_RESULT_BYTES:
        return 0
    return len(_values.encode_plain(result))  # (as the journal stores it)


def _info(flow: Flow, code: dict[str, Any] | None = None) -> RunInfo:
    params = _values.decode(flow.payload) if flow.payload else {}
    status = {"ready": "running", "waiting": "running", "running": "running"}.get(
        flow.state, flow.state
    )
    result = error = parked = continued = None
    if flow.state == "completed":
        result = _values.decode(flow.result)
        if "continued" in flow.value_sizes and isinstance(result, dict):
            continued = result.get("continued")
    elif flow.state in ("failed", "cancelled"):
        try:
            error = _values.decode(flow.error)
        except Exception:
            error = None
        if not isinstance(error, dict):
            text = (flow.error or b"").decode("utf-8", "replace")
            error = {"type": flow.state, "message": text}
    if flow.state == PARKED and "parked" in flow.values:
        parked = _values.decode(flow.values["parked"])
    code = code or {}
    return RunInfo(
        flow.id,
        str(params.get("w", "")) if isinstance(params, dict) else "",
        status,
        result,
        error,
        parked,
        continued,
        str(code.get("h", "")),
        int(code.get("v", 0)),
        flow.parent_id,
        flow.correlation_id,
        flow.state,
        flow.created_at_ms,
        flow.updated_at_ms,
    )


@dataclass(frozen=True, slots=True)
class _Spawning(Transition):
    """A claim's last command when it also creates the children its step started."""

    children: Sequence[ChildSpec] = ()


class CodeRunner:
    """Runs code workflows durably on an engine, and is their client.

    runner = CodeRunner(engine)             # the workflows registered with @workflow
    await runner.start(order_flow, "order-1", {"id": 1})
    async with runner.running():            # a worker (and its waker) in the background
        print(await runner.result("order-1"))
    """

    def __init__(
        self,
        engine: Engine,
        workflows: Iterable[WorkflowDef] | Registry | None = None,
        *,
        flow_type: str = FLOW_TYPE,
        lease_ms: int = 60_000,
        recheck_ms: int = 300_000,
        activity_threads: int = 16,
        poll_ms: int = 500,
        cache_runs: int = 10_000,
        sticky_runs: int = 10_000,
        queues: Mapping[str, int] | None = None,
        max_reclaims: int = MAX_RECLAIMS,
    ) -> None:
        self.engine = engine
        if isinstance(max_reclaims, bool) or not isinstance(max_reclaims, int):
            raise InvalidArgument("max_reclaims must be an int")
        self.max_reclaims = max_reclaims
        FlowPolicy(max_reclaims=max_reclaims)  # checks its range, as the engine will
        if workflows is None:
            self.registry = REGISTRY
        elif isinstance(workflows, Registry):
            self.registry = workflows
        else:
            self.registry = Registry()
            for wf in workflows:
                self.registry.add(wf)
        self.flow_type = flow_type
        self.recheck_ms = recheck_ms
        self.poll_ms = poll_ms
        state = State(
            lease_ms=lease_ms,
            claim_payload=True,
            claim_values=("code",),
            exception_policy=ExceptionPolicy.RAISE,
            handler=self._step,
        )
        self.workflow = Workflow(
            engine, type=flow_type, initial_state=READY, states={READY: state, WAITING: state}
        )
        # Named queues: a workflow declared with `queue=q` has its runs in the engine flow
        # type `<flow_type>.<q>`; `run` starts a worker per named queue (see `run`), with
        # the concurrency given here for it, else the worker options' one.
        self.queues: dict[str, int] = {}
        for queue, limit in (queues or {}).items():
            check_queue(queue, 0)
            if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
                raise InvalidArgument(f"queue {queue!r}: concurrency must be a positive int")
            self.queues[queue] = limit
        self._flows = {flow_type: self.workflow}
        for queue in self.queues:
            self._flows_of(queue)
        self._threads = trio.CapacityLimiter(activity_threads)
        self._cache: OrderedDict[str, Journal] = OrderedDict()
        self._cache_runs = cache_runs
        self._committing: dict[str, Journal] = {}
        # Suspended replays kept after their step committed (see `_advance`): run id ->
        # (replay, the journal once committed, the run's payload); pending until the
        # commit is acked. The worker claims kept runs without reading their payload and
        # "code" again (`held`).
        self._sticky: OrderedDict[str, tuple[Replay, Journal, dict[str, Any]]] = OrderedDict()
        self._sticky_pending: dict[str, tuple[Replay, Journal, dict[str, Any]]] = {}
        self._sticky_runs = sticky_runs
        self._watch: dict[str, tuple[str, Any]] = {}
        self._ended: dict[str, trio.Event] = {}
        # Child runs this process is ending: run id -> (result bytes when completing,
        # whether the parent needs our wake), set when the outcome is decided
        # (`_finishing`); a result is published once acknowledged (`_children_done`,
        # taken by the parent's join, which then reads nothing from the engine). Both
        # bounded: a parent that never joins (start_child) must not make them grow.
        self._finishing: OrderedDict[str, tuple[bytes | None, bool]] = OrderedDict()
        self._children_done: OrderedDict[str, bytes] = OrderedDict()
        # Children whose creation with their parent's step was refused (an id taken):
        # created one by one from then on, which journals the collision (see `_step`).
        self._collided: OrderedDict[str, None] = OrderedDict()
        self._workers: set[Worker] = set()
        self._wake_send, self._wake_recv = trio.open_memory_channel[tuple[str, str]](math.inf)
        self._alarms: list[int] = []  # due times of runs this process left waiting (a heap)
        self._alarm_changed = trio.Event()
        self.counts = dict.fromkeys(
            ("steps", "replays", "activities_run", "commits", "step_continues", "parked", "wakes"),
            0,
        )

    # -- the client API -------------------------------------------------------------------

    def _payload(
        self, wf: WorkflowDef, input: Any, generation: int = 1, *, joined: bool = False
    ) -> bytes:
        doc = {"w": wf.name, "i": input, "g": generation}
        if joined:  # created with its parent's step, and wakes it itself (see `_step`)
            doc["j"] = 1
        return _values.encode(doc)

    def _code(self, wf: WorkflowDef) -> bytes:
        return _values.encode({"h": wf.code_hash, "v": wf.version})

    def type_of(self, queue: str | None) -> str:
        """The engine flow type of the runs waiting in `queue` (None: the default)."""
        return self.flow_type if queue is None else f"{self.flow_type}.{queue}"

    def _flows_of(self, queue: str | None) -> Workflow:
        flow_type = self.type_of(queue)
        flows = self._flows.get(flow_type)
        if flows is None:
            state = self.workflow.spec(READY)
            flows = self._flows[flow_type] = Workflow(
                self.engine,
                type=flow_type,
                initial_state=READY,
                states={READY: state, WAITING: state},
            )
        return flows

    def _queue_names(self) -> list[str]:
        """The named queues served here: those given, and those of registered workflows."""
        queues = set(self.queues)
        for versions in self.registry.versions.values():
            queues.update(wf.queue for wf in versions.values() if wf.queue is not None)
        return sorted(queues)

    def _types(self) -> list[str]:
        """Every flow type code runs may have here: the default, each named queue."""
        return [self.flow_type, *(self.type_of(q) for q in self._queue_names())]

    def _is_code(self, flow_type: str) -> bool:
        return flow_type == self.flow_type or flow_type.startswith(self.flow_type + ".")

    async def start(
        self,
        workflow: WorkflowDef | str,
        run_id: str,
        input: Any = None,
        *,
        idempotent: bool = True,
        correlation_id: str | None = None,
        delay_ms: int | None = None,
        priority: int | None = None,
    ) -> RunInfo:
        """Start run `run_id` of `workflow` on `input` (due at once, or after `delay_ms`),
        in the workflow's queue, at `priority` (default: the workflow's). The same start
        again is a no-op; another input under the same id raises IdempotencyConflict
        (FlowExists with `idempotent=False`). Nothing is written when the workflow is
        unknown or the input cannot be stored."""
        wf = self.registry.resolve(workflow)
        _values.check(input, "input")
        if priority is not None:
            check_queue(None, priority)
        flow = await self._flows_of(wf.queue).create(
            run_id,
            payload=self._payload(wf, input),
            values={"code": self._code(wf)},
            attributes={"workflow": wf.name},
            idempotent=idempotent,
            correlation_id=correlation_id or run_id,
            delay_ms=delay_ms,
            priority=wf.priority if priority is None else priority,
            retention_ms=wf.retention_ms,
        )
        return _info(flow, {"h": wf.code_hash, "v": wf.version})

    async def start_many(
        self, workflow: WorkflowDef | str, items: Sequence[tuple[str, Any]]
    ) -> list[ItemResult]:
        """Start many runs of one workflow from (run id, input) pairs in one `create_many`
        (atomic per shard; idempotent per item, as `start`)."""
        wf = self.registry.resolve(workflow)
        code = self._code(wf)
        specs = []
        for run_id, data in items:
            _values.check(data, f"input of {run_id!r}")
            specs.append(
                CreateSpec(
                    run_id,
                    payload=self._payload(wf, data),
                    values={"code": code},
                    attributes={"workflow": wf.name},
                    correlation_id=run_id,
                )
            )
        results = await self.engine.create_many(
            self.type_of(wf.queue),
            specs,
            state=READY,
            priority=wf.priority,
            idempotent=True,
            retention_ms=wf.retention_ms,
        )
        for worker in self._workers:
            worker.wake()
        return results

    async def _tip(self, run_id: str) -> Flow:
        """The live end of `run_id`'s continue-as-new chain (or its last run)."""
        flow = await self.engine.get(run_id, values=("continued",))
        if flow is None:
            raise FlowNotFound(f"no run {run_id!r}")
        for _ in range(10_000):
            nxt = flow.values.get("continued")
            if flow.state != "completed" or nxt is None:
                return flow
            following = await self.engine.get(nxt.decode(), values=("continued",))
            if following is None:
                return flow
            flow = following
        return flow

    async def signal(
        self, run_id: str, name: str, value: Any = None, *, delivery_id: str | None = None
    ) -> str:
        """Deliver signal `name` to the run (to the live end of its continue-as-new chain).
        It is kept until the workflow waits for it; the same `delivery_id` again is a
        no-op (exactly once), another value under it an IdempotencyConflict. FlowTerminal
        when the run has ended. Returns the delivery id."""
        if not isinstance(name, str) or not name or ":" in name:
            raise InvalidArgument("a signal name is a non-empty str without ':'")
        _values.check(value, f"signal {name!r} value")
        delivery = delivery_id if delivery_id is not None else uuid.uuid4().hex
        if not isinstance(delivery, str) or not delivery:
            raise InvalidArgument("delivery_id must be a non-empty str")
        key = f"{SIG}{name}:{delivery}"
        if len(key.encode()) > 250 or "\x00" in key:
            raise InvalidArgument("signal name and delivery id are too long together")
        data = _values.encode([name, value, delivery])
        if len(data) > MAX_RESULT_BYTES:
            raise UnstorableValue(f"signal {name!r} value is over {MAX_RESULT_BYTES} bytes")
        tip = (await self._tip(run_id)).id
        await self.engine.signal(tip, key, values={key: data}, idempotency_key=key)
        await self._wake(tip)
        return delivery

    async def _wake(self, run_id: str) -> None:
        with contextlib.suppress(WrongState, FlowTerminal, FlowNotFound):
            await self.engine.signal(run_id, "code.wake", if_state=(WAITING,), transition_to=READY)
            self.counts["wakes"] += 1
        for worker in self._workers:
            worker.wake()

    async def cancel(self, run_id: str, reason: str = "cancelled") -> RunInfo:
        """Cancel the run (the live end of its chain) and, recursively, its live children.
        A worker holding it loses its claim; an ended run is left as it is."""
        flow = await self._tip(run_id)
        if not flow.terminal:
            with contextlib.suppress(FlowTerminal):
                await self.engine.cancel(
                    flow.id,
                    force=True,
                    reason=_values.encode({"type": "cancelled", "message": reason}),
                )
            await self._cancel_children(flow.id, reason)
        self._ended.pop(flow.id, trio.Event()).set()
        return await self.describe(flow.id)

    async def _cancel_children(self, parent_id: str, reason: str) -> None:
        cursor: str | None = None
        while True:
            page = await self.engine.by_parent(parent_id, limit=100, cursor=cursor)
            for child in page.items:
                if not self._is_code(child.type):
                    continue
                if not child.terminal:
                    with contextlib.suppress(FlowTerminal):
                        await self.engine.cancel(
                            child.id,
                            force=True,
                            reason=_values.encode(
                                {"type": "cancelled", "message": f"parent cancelled: {reason}"}
                            ),
                        )
                await self._cancel_children(child.id, reason)
            if page.cursor is None:
                return
            cursor = page.cursor

    async def resume(self, run_id: str) -> RunInfo:
        """Move a parked run back to work (after fixing its code or registering the
        version it started on). WrongState if it is not parked."""
        await self.engine.signal(run_id, "code.resume", if_state=(PARKED,), transition_to=READY)
        for worker in self._workers:
            worker.wake()
        return await self.describe(run_id)

    async def describe(self, run_id: str) -> RunInfo:
        flow = await self.engine.get(run_id, payload=True, values=("code", "parked", "continued"))
        if flow is None:
            raise FlowNotFound(f"no run {run_id!r}")
        code = _values.decode(flow.values["code"]) if "code" in flow.values else None
        return _info(flow, code)

    async def result(self, run_id: str, *, follow: bool = True) -> Any:
        """Wait until the run ended; its result. WorkflowFailed / RunCancelled otherwise.
        With `follow`, a run that continued as new is followed to its chain's end."""
        while True:
            event = self._ended.setdefault(run_id, trio.Event())
            info = await self.describe(run_id)
            if info.continued_as is not None and follow:
                run_id = info.continued_as
                continue
            if info.status == "completed":
                self._ended.pop(run_id, None)
                return info.result
            if info.status in ("failed", "cancelled"):
                self._ended.pop(run_id, None)
                err = info.error or {}
                if info.status == "cancelled":
                    raise RunCancelled(f"run {run_id} was cancelled: {err.get('message', '')}")
                raise WorkflowFailed(run_id, str(err.get("type")), str(err.get("message")))
            with trio.move_on_after(self.poll_ms / 1000):
                await event.wait()

    async def history(self, run_id: str) -> Events:
        """The run's journal, oldest event first (see `_replay` for the vocabulary)."""
        flow = await self.engine.get(run_id)
        if flow is None:
            raise FlowNotFound(f"no run {run_id!r}")
        journal = await self._read_journal(flow)
        return [dict(e) for e in journal.events]

    async def list(
        self, *, workflow: str | None = None, status: str | None = None, limit: int = 1000
    ) -> RunList:
        """Runs (of `workflow`, in `status`), up to `limit`."""
        if status is not None and status not in STATUS_STATES:
            raise InvalidArgument(f"status must be one of {sorted(STATUS_STATES)}")
        states = (
            STATUS_STATES[status]
            if status
            else tuple(s for group in STATUS_STATES.values() for s in group)
        )
        out: RunList = []
        for flow_type, state in ((t, s) for t in self._types() for s in states):
            cursor: str | None = None
            while len(out) < limit:
                page = await self.engine.list_flows(
                    flow_type, state, limit=min(1000, limit), cursor=cursor
                )
                for flow in page.items:
                    if workflow is None or flow.attributes.get("workflow") == workflow:
                        out.append(await self.describe(flow.id))
                if page.cursor is None:
                    break
                cursor = page.cursor
        return out[:limit]

    async def parked(self, reason: str | None = None) -> RunList:
        """Parked runs (with `reason`: "nondeterminism", "suspend_leak", "version" or
        "unknown_workflow")."""
        runs = await self.list(status="parked")
        return [r for r in runs if reason is None or (r.parked or {}).get("reason") == reason]

    async def version_mismatches(self) -> RunList:
        """Runs waiting for the code version they started on."""
        return await self.parked("version")

    # -- workers ------------------------------------------------------------------------

    def worker(self, queue: str | None = None, **options: Any) -> Worker:
        """An SDK Worker for the code runs of `queue` (None: the default queue; options
        as for `flowactors.Worker`). Run it with `run()` / `running()`, which also run the
        waker."""
        user_ack = options.pop("on_ack", None)

        def on_ack(flow: Flow) -> None:
            self._acked(flow)
            if user_ack is not None:
                user_ack(flow)

        options.setdefault("concurrency", 64)
        options.setdefault("held", self._sticky)
        worker = Worker(self._flows_of(queue), on_ack=on_ack, **options)
        return worker

    async def run(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED, **options: Any
    ) -> None:
        """Run a worker for the default queue and one for each named queue, and the
        waker, until cancelled or `stop()`. The named queues are those this runner was
        given (with their concurrency) and those its registered workflows declare (with
        the options' concurrency). First, each of those flow types whose policy sets no
        `max_reclaims` gets this runner's (see MAX_RECLAIMS)."""
        await self.install_crash_budget()
        workers = [self.worker(**options)]
        for queue in self._queue_names():
            limit = self.queues.get(queue)
            workers.append(
                self.worker(
                    queue, **options if limit is None else {**options, "concurrency": limit}
                )
            )
        self._workers.update(workers)
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._waker)
                nursery.start_soon(self._alarm)
                async with trio.open_nursery() as serving:
                    for other in workers[1:]:
                        await serving.start(other.run)
                    await serving.start(workers[0].run)
                    task_status.started()
                nursery.cancel_scope.cancel()
        finally:
            self._workers.difference_update(workers)

    async def install_crash_budget(self) -> None:
        """Give every flow type of this runner's runs a `max_reclaims` of `max_reclaims`,
        merged into its policy, unless that policy sets one (then it is the operator's)."""
        for flow_type in self._types():
            if (await self.engine.get_policy(flow_type)).max_reclaims is None:
                await self.engine.install_policy(
                    flow_type, FlowPolicy(max_reclaims=self.max_reclaims)
                )

    def stop(self) -> None:
        for worker in list(self._workers):
            worker.stop()

    @contextlib.asynccontextmanager
    async def running(self, **options: Any) -> AsyncIterator[CodeRunner]:
        """`async with runner.running():` a worker runs in the background meanwhile."""
        failure: Exception | None = None
        async with trio.open_nursery() as nursery:
            await nursery.start(functools.partial(self.run, **options))
            try:
                yield self
            except Exception as exc:  # re-raised as itself, not in an exception group
                failure = exc
            finally:
                self.stop()
        if failure is not None:
            raise failure

    async def execute(
        self, workflow: WorkflowDef | str, run_id: str, input: Any = None, **options: Any
    ) -> Any:
        """Start a run and work until it ended; its result (as `result`)."""
        await self.start(workflow, run_id, input)
        async with self.running(**options):
            return await self.result(run_id)

    def _acked(self, flow: Flow) -> None:
        self.counts["commits"] += 1
        ending = self._finishing.pop(flow.id, None)
        if ending is not None and ending[0] is not None and flow.state == "completed":
            _bounded_put(self._children_done, flow.id, ending[0], MAX_KEPT_RESULTS)
        committed = self._committing.pop(flow.id, None)
        kept = self._sticky_pending.pop(flow.id, None)
        if kept is not None:
            if flow.terminal or flow.state not in (READY, WAITING):
                kept[0].close()
            else:
                self._sticky[flow.id] = kept
                self._sticky.move_to_end(flow.id)
                while len(self._sticky) > self._sticky_runs:
                    self._sticky.popitem(last=False)[1][0].close()
        if flow.terminal:
            self._cache.pop(flow.id, None)
            self._watch.pop(flow.id, None)
            event = self._ended.pop(flow.id, None)
            if event is not None:
                event.set()
            if flow.parent_id is not None:
                if ending is None or ending[1]:
                    self._wake_send.send_nowait(("wake", flow.parent_id))
                else:  # the engine made the parent due: our workers may be idle, polling
                    for worker in self._workers:
                        worker.wake()
            return
        if committed is not None:
            self._remember(flow.id, committed)
        if flow.state == WAITING and flow.next_run_at_ms is not None:
            heapq.heappush(self._alarms, flow.next_run_at_ms)
            self._alarm_changed.set()
        watch = self._watch.pop(flow.id, None)
        if watch is None or flow.state != WAITING:
            return
        kind, data = watch
        if kind == "signal":
            if any(n.startswith(SIG) and n not in data for n in flow.value_sizes):
                self._wake_send.send_nowait(("wake", flow.id))
        else:
            self._wake_send.send_nowait(("child", f"{flow.id}\x00{data}"))

    async def _waker(self) -> None:
        """Send the wakes asked for (by finished children, by signals that came while a
        run committed its wait): all those waiting at once concurrently, so they share
        the shards' group commits instead of taking one commit each in turn."""
        async for first in self._wake_recv:
            batch = {first}
            while len(batch) < MAX_WAKES:
                try:
                    batch.add(self._wake_recv.receive_nowait())
                except trio.WouldBlock:
                    break
            async with trio.open_nursery() as nursery:
                for kind, target in batch:
                    nursery.start_soon(self._wake_one, kind, target)

    async def _wake_one(self, kind: str, target: str) -> None:
        try:
            if kind == "wake":
                await self._wake(target)
            else:  # a run waiting for children (one, or any of several)
                run_id, children = target.split("\x00", 1)
                for child_id in children.split("\x01"):
                    if await self._child_outcome(child_id) is not None:
                        await self._wake(run_id)
                        break
        except FlowError:
            pass  # the recheck will find it

    async def _alarm(self) -> None:
        """Wake the workers when a run this process left waiting comes due, so an idle
        worker need not poll often to fire timers on time."""
        while True:
            if self._alarm_changed.is_set():
                self._alarm_changed = trio.Event()
            if not self._alarms:
                await self._alarm_changed.wait()
                continue
            delay_ms = self._alarms[0] - self.engine.now_ms()
            if delay_ms <= 0:
                while self._alarms and self._alarms[0] <= self.engine.now_ms():
                    heapq.heappop(self._alarms)
                for worker in self._workers:
                    worker.wake()
                continue
            with trio.move_on_after(delay_ms / 1000):
                await self._alarm_changed.wait()

    def _remember(self, run_id: str, journal: Journal) -> None:
        _bounded_put(self._cache, run_id, journal, self._cache_runs)

    # -- one step -------------------------------------------------------------------------

    async def _read_journal(self, flow: Flow) -> Journal:
        """The run's stored journal, reading only what the cached one lacks."""
        now = _journal.layout(flow.value_sizes, JOURNAL)
        cached = self._cache.get(flow.id)
        keep, names = _journal.plan(cached, now)
        if not names:
            if cached is not None and keep == len(cached.events):
                return cached
            if now.units == 0:
                return _journal.NEW  # (a new run: nothing to read, nothing to remember)
        got = await self.engine.get_values(flow.id, names, partition_key=flow.partition_key)
        if len(got) < len(names):  # (values are only ever overwritten: the run is gone)
            raise FlowNotFound(f"run {flow.id!r} lost its journal values while being read")
        chunks = [(n, cast(Events, _values.decode(got[n]) or [])) for n in names]
        journal = _journal.assemble(cached, now, keep, chunks)
        self._remember(flow.id, journal)
        return journal

    async def _step(self, job: Job) -> EngineOutcome | None:
        try:
            outcome = await self._advance(job)
            if isinstance(outcome, _Spawning):
                return await self._spawn(job, outcome)
            return outcome
        except _LOST:
            job.settled = True  # someone else owns the run now: acknowledge nothing
            self._committing.pop(job.flow.id, None)
            self._finishing.pop(job.flow.id, None)
            kept = self._sticky_pending.pop(job.flow.id, None)
            if kept is not None:
                kept[0].close()
            self._watch.pop(job.flow.id, None)
            return None

    async def _spawn(self, job: Job, outcome: _Spawning) -> EngineOutcome | None:
        """End the claim with one command that stores its step and creates the children
        the step started (`Context.transition`): they exist exactly when the step that
        started them is stored, so nothing outside the run came first; each wakes the
        run when it ends (the engine makes it due, in the child's own commit), so the run
        waits for them with no read and no wake of ours. A child id already taken
        refuses the command: the claim then ends storing nothing, and the next replay
        creates those children one by one, which journals the collision."""
        try:
            flow = await job.transition(
                outcome.to_state,
                run_at_ms=outcome.run_at_ms,
                values=outcome.values,
                children=outcome.children,
                run_children=True,
            )
        except (FlowExists, IdempotencyConflict):
            for child in outcome.children:
                _bounded_put(self._collided, child.id, None, MAX_KEPT_RESULTS)
            run_id = job.flow.id
            self._committing.pop(run_id, None)
            self._watch.pop(run_id, None)
            kept = self._sticky_pending.pop(run_id, None)
            if kept is not None:
                kept[0].close()
            return Transition(READY)
        self._acked(flow)
        for worker in self._workers:
            worker.wake()
        return None

    def _child_spec(self, child_id: str, eff: Effect, wf: WorkflowDef, input: Any) -> ChildSpec:
        """A child created with its parent's step (see `_spawn`)."""
        return ChildSpec(
            child_id,
            self.type_of(eff.extra.get("queue") or wf.queue),
            payload=self._payload(wf, input, joined=True),
            state=READY,
            priority=wf.priority,
            values={"code": self._code(wf)},
            attributes={"workflow": wf.name},
            correlation_id=child_id,
            retention_ms=wf.retention_ms,
            wake_parent=True,
        )

    def _park(self, reason: str, message: str, **extra: Any) -> Transition:
        self.counts["parked"] += 1
        doc = {"reason": reason, "message": message, **extra}
        return Transition(PARKED, values={"parked": _values.encode(doc)})

    async def _advance(self, job: Job) -> EngineOutcome | None:
        self.counts["steps"] += 1
        flow = job.flow
        sticky = self._sticky.pop(flow.id, None)
        if sticky is not None and sticky[1].units != _journal.units(flow.value_sizes, JOURNAL):
            sticky[0].close()  # (its journal moved on elsewhere: replay from the store)
            sticky = None
        if sticky is not None:
            replay, journal, params = sticky
            replay.rebase(self.engine.now_ms())
        else:
            if flow.payload is None and flow.payload_size:
                # Claimed as kept (`held`: no payload or "code" read), evicted since.
                got = await self.engine.get(
                    flow.id, payload=True, values=("code",), partition_key=flow.partition_key
                )
                if got is None or got.lease_token != flow.lease_token:
                    raise StaleLease(f"run {flow.id!r} changed hands while being read")
                flow = job.flow = got
            params = _values.decode(flow.payload)
            code = _values.decode(flow.values.get("code")) or {}
            name, code_hash = params["w"], code.get("h", "")
            wf = self.registry.find(name, code_hash)
            if wf is None:
                if name in self.registry.versions:
                    return self._park(
                        "version",
                        f"run {flow.id} started on {name} code {code_hash[:12]}, which is "
                        "not registered here (register that version, then resume the run)",
                        stored=code_hash,
                        current=self.registry.latest(name).code_hash,
                    )
                return self._park("unknown_workflow", f"no workflow named {name!r} is registered")
            journal = await self._read_journal(flow)
            if journal.units == 0 and flow.parent_id is not None and not params.get("j"):
                # (a child created with its parent's step cannot outlive its cancel: the
                # parent's cancel fences that step, and cancels the children it finds)
                parent = await self.engine.get(flow.parent_id)
                if parent is not None and parent.state == "cancelled":
                    error = {"type": "cancelled", "message": "parent cancelled"}
                    return Fail(_values.encode(error))
            self.counts["replays"] += 1
            replay = Replay(
                wf,
                flow.id,
                params["i"],
                fold(journal.events),
                self.engine.now_ms(),
                self.registry.resolve,
            )
        keep = False
        try:
            outcome, journal = await self._drive(job, params, replay, journal)
            flow = job.flow
            keep = (
                self._sticky_runs > 0
                and replay.drift is None
                and isinstance(outcome, Transition)
                and outcome.to_state in (READY, WAITING)
            )
        finally:
            if not keep:
                replay.close()
        if keep:
            self._sticky_pending[flow.id] = (
                replay,
                self._committing.get(flow.id, journal),
                params,
            )
        elif (
            replay.drift is not None
            and isinstance(outcome, Transition)
            and (outcome.to_state != PARKED)
        ):  # closing the suspended coroutine showed that it swallows its suspension
            self._committing.pop(flow.id, None)
            self._watch.pop(flow.id, None)
            return self._park("suspend_leak", str(replay.drift))
        return outcome

    def _commit_values(
        self, flow: Flow, replay: Replay, journal: Journal
    ) -> dict[str, bytes] | None:
        """The values that store the claim's last step (None: nothing new, see
        `_journal.extend`); the journal they make is remembered once the command that
        stores them is acknowledged."""
        values, after = _journal.extend(journal, replay.new_events, JOURNAL)
        if values is not None:
            self._committing[flow.id] = after
        return values

    async def _drive(
        self,
        job: Job,
        params: dict[str, Any],
        replay: Replay,
        journal: Journal,
    ) -> tuple[EngineOutcome, Journal]:
        """Feed the replay until the claim must end; the engine outcome that ends it, and
        the journal as the claim leaves it stored."""
        flow = job.flow
        fed = False  # an outcome was fed since the last commit: outside effects wait

        # Children started since the last command, created by the command that ends the
        # claim, with the step that started them (see `_spawn`) - unless something outside
        # the run comes first (`create_deferred`): effect position -> (effect, workflow,
        # input), and their ids.
        deferred: dict[int, tuple[Effect, WorkflowDef, Any]] = {}
        deferred_ids: set[str] = set()

        def commit(state: str, run_at: int | None = None) -> Transition:
            children: list[ChildSpec] = []
            for eff, child_wf, child_input in deferred.values():
                child_id = str(eff.extra["child"])
                replay.resolve(eff, child_id)
                children.append(self._child_spec(child_id, eff, child_wf, child_input))
            deferred.clear()
            deferred_ids.clear()
            values = self._commit_values(flow, replay, journal)
            if children:
                return _Spawning(state, run_at_ms=run_at, values=values, children=children)
            return Transition(state, run_at_ms=run_at, values=values)

        async def durable() -> None:
            """Store what this claim fed so far and keep the claim (step_continue): the
            next outside effect may then derive from it, with no claim in between."""
            nonlocal flow, journal, fed
            self.counts["step_continues"] += 1
            values, after = _journal.extend(journal, replay.new_events, JOURNAL)
            flow = await job.step_continue(values=values)
            if values is not None:
                journal = after
                self._remember(flow.id, journal)
            replay.rebase(self.engine.now_ms())
            fed = False

        # Children this claim created and found running: a join on one of them goes
        # straight to waiting, without asking the engine again. If the child ends before
        # the wait is stored, its wake finds the parent not yet waiting; the check made
        # once the wait is acknowledged (the "child" watch, see `_acked`) catches that.
        running: set[str] = set()
        refused: dict[str, dict[str, Any]] = {}  # child id -> why its creation was refused
        started: set[str] = set()  # ids this claim created

        async def create_deferred() -> None:
            """Something outside the run is next: create the deferred children now, one by
            one, once what they derive from is stored."""
            if fed:
                await durable()
            for eff, child_wf, child_input in deferred.values():
                child_id = str(eff.extra["child"])
                if await self._create_child(flow, replay, eff, child_wf, child_input):
                    running.add(child_id)
                if eff.ok:
                    refused.pop(child_id, None)
                    started.add(child_id)
                elif child_id not in started:
                    # Refused, and no earlier start of this run holds the id: a join that
                    # already waits on it fails with it (await_child: ChildIdCollision).
                    refused[child_id] = eff.error or {}
            deferred.clear()
            deferred_ids.clear()

        async def feed() -> EngineOutcome:
            nonlocal fed
            for _ in range(MAX_FEEDS):
                out = replay.advance()
                if out.status == "drift":
                    replay.close()
                    err = out.error
                    reason = (
                        "suspend_leak"
                        if type(err).__name__ == "SuspendLeakError"
                        else ("nondeterminism")
                    )
                    return self._park(
                        reason,
                        str(err),
                        expected=getattr(err, "expected", None),
                        got=getattr(err, "got", None),
                        position=getattr(err, "position", -1),
                    )
                clash = False  # two children under one id: created one by one, which
                for item in replay.pending_children.values():  # journals the collision
                    if not item[0].done:
                        child_id = str(item[0].extra["child"])
                        clash = clash or child_id in deferred_ids
                        deferred[item[0].pos] = item
                        deferred_ids.add(child_id)
                replay.pending_children.clear()
                if deferred and (
                    clash
                    or out.status != "suspended"  # the run ends: no command to carry them
                    or not self._collided.keys().isdisjoint(deferred_ids)
                ):
                    await create_deferred()
                if out.status == "returned":
                    value = out.value
                    if isinstance(value, ContinueAsNew):
                        if fed:
                            await durable()
                        successor = await self._continue(flow, params, value.input, replay)
                        values = self._commit_values(flow, replay, journal) or {}
                        values["continued"] = successor.encode()
                        return Complete(_values.encode({"continued": successor}), values)
                    result = _values.encode_plain(value)
                    if flow.parent_id is not None:
                        ending: tuple[bytes | None, bool] = (result, not params.get("j"))
                        _bounded_put(self._finishing, flow.id, ending, MAX_KEPT_RESULTS)
                    return Complete(result, self._commit_values(flow, replay, journal))
                if out.status == "raised":
                    assert out.error is not None
                    if flow.parent_id is not None:
                        ending = (None, not params.get("j"))
                        _bounded_put(self._finishing, flow.id, ending, MAX_KEPT_RESULTS)
                    return Fail(
                        _values.encode(error_of(out.error)),
                        self._commit_values(flow, replay, journal),
                    )
                blocked = replay.blocked
                if blocked is None:  # suspended on nothing: drift was handled above
                    return commit(READY)
                eff = blocked
                now = self.engine.now_ms()
                if eff.kind in ("activity", "compensate"):
                    if eff.retry_at is not None and eff.retry_at > now:
                        return commit(WAITING, eff.retry_at)
                    if deferred:
                        await create_deferred()
                    if fed:
                        await durable()
                    assert replay.call is not None
                    await self._run_activity(flow, replay, eff, replay.call)
                    fed = True
                elif eff.kind == "timer":
                    fire_at = int(eff.extra.get("fire_at") or 0)
                    if fire_at > now:
                        return commit(WAITING, fire_at)
                    replay.resolve(eff, None)
                elif eff.kind == "signal":
                    if not await self._take_signal(flow, replay, eff):
                        until = eff.extra.get("until")
                        if until is not None and until <= now:
                            replay.resolve(eff, {"timeout": True})
                        else:
                            seen = {n for n in flow.value_sizes if n.startswith(SIG)}
                            self._watch[flow.id] = ("signal", seen)
                            due = now + self.recheck_ms
                            return commit(WAITING, due if until is None else min(until, due))
                elif eff.kind == "join_any":
                    children = [str(c) for c in eff.extra.get("children") or []]
                    for index, child_id in enumerate(children):
                        if child_id in deferred_ids:
                            continue  # not even created yet
                        ended = (
                            (False, refused[child_id])
                            if child_id in refused
                            else await self._child_outcome(child_id, consume=True)
                        )
                        if ended is not None:
                            ok, value = ended
                            key = "value" if ok else "error"
                            replay.resolve(eff, {"index": index, "ok": ok, key: value})
                            break
                    else:
                        watched = [c for c in children if c not in deferred_ids]
                        if watched:
                            self._watch[flow.id] = ("child", "\x01".join(watched))
                        return commit(WAITING, now + self.recheck_ms)
                elif eff.kind == "cancel_child":
                    # No outside effect derives from it: cancelling again after a crash
                    # finds the child ended and does nothing.
                    if deferred:
                        await create_deferred()
                    with contextlib.suppress(FlowNotFound):
                        await self.cancel(eff.name, str(eff.extra.get("reason") or "cancelled"))
                    replay.resolve(eff, None)
                elif eff.kind == "join":
                    if eff.name in refused:  # (await_child raises ChildIdCollision)
                        replay.fail(eff, refused[eff.name])
                        continue
                    outcome = (
                        None
                        if eff.name in running or eff.name in deferred_ids
                        else await self._child_outcome(eff.name, consume=True)
                    )
                    until = eff.extra.get("until")  # (await_child with a timeout)
                    if outcome is None:
                        if until is not None and until <= now:
                            replay.resolve(eff, {"timeout": True})
                            continue
                        if eff.name not in deferred_ids:  # (those wake the run themselves)
                            self._watch[flow.id] = ("child", eff.name)
                        due = now + self.recheck_ms
                        return commit(WAITING, due if until is None else min(until, due))
                    ok, value = outcome
                    if not ok:
                        replay.fail(eff, value)
                    else:
                        replay.resolve(eff, value if until is None else {"value": value})
                else:
                    raise AssertionError(f"unknown blocking effect {eff.kind}")
            return commit(READY)

        outcome = await feed()
        return outcome, journal

    # -- answering effects ----------------------------------------------------------------

    async def _run_activity(
        self, flow: Flow, replay: Replay, eff: Effect, call: ActivityCall
    ) -> None:
        self.counts["activities_run"] += 1
        policy = call.retry if isinstance(call.retry, RetryPolicy) else NO_RETRY
        attempt = eff.attempts + 1
        limited = call.timeout_ms is not None or call.heartbeat_ms is not None
        beats = scope = None
        if limited:  # cancel scopes cost a little: only for activities with limits
            t0 = trio.current_time()
            beats = trio.CancelScope(
                deadline=t0 + call.heartbeat_ms / 1000 if call.heartbeat_ms else math.inf
            )
            scope = trio.CancelScope(
                deadline=t0 + call.timeout_ms / 1000 if call.timeout_ms else math.inf
            )

        def beat() -> None:
            if call.heartbeat_ms and beats is not None:
                beats.deadline = trio.current_time() + call.heartbeat_ms / 1000

        info = ActivityInfo(
            flow.id,
            eff.name,
            eff.pos,
            attempt,
            call.idempotency_key or f"{flow.id}:{eff.pos}",
            beat,
        )
        fn = call.fn
        failed: BaseException | None = None
        result: Any = None

        async def invoke() -> Any:
            if _is_async(fn):
                return await fn(*call.args, **call.kwargs)
            info.heartbeat = lambda: trio.from_thread.run_sync(beat)
            return await trio.to_thread.run_sync(
                functools.partial(fn, *call.args, **call.kwargs),
                limiter=self._threads,
                abandon_on_cancel=True,
            )

        token = _ACTIVITY.set(info)
        try:
            if scope is not None and beats is not None:
                with scope, beats:
                    try:
                        result = await invoke()
                    except Exception as exc:  # the activity's failure is its outcome
                        failed = exc
            else:
                try:
                    result = await invoke()
                except Exception as exc:
                    failed = exc
        finally:
            _ACTIVITY.reset(token)
        error: dict[str, Any] | None = None
        retryable = True
        if beats is not None and beats.cancelled_caught:
            error = {"type": "ActivityHeartbeatTimeout",
                     "message": f"no heartbeat within {call.heartbeat_ms} ms"}  # fmt: skip
        elif scope is not None and scope.cancelled_caught:
            error = {"type": "ActivityTimeout", "message": f"no result within {call.timeout_ms} ms"}
        elif failed is not None:
            error = error_of(failed)
            retryable = not isinstance(failed, NonRetryable)
            # Its traceback holds this frame, which holds it: drop it, or every failed
            # attempt (each step suspension too) waits for the cyclic GC, frames and all.
            failed = None
        else:
            try:
                _values.check(result, f"activity {eff.name} result")
                size = _result_size(result)
                if size > MAX_RESULT_BYTES:
                    raise UnstorableValue(
                        f"activity {eff.name} result is {size} bytes; the limit is "
                        f"{MAX_RESULT_BYTES} (store big data elsewhere, return a reference)"
                    )
            except FlowError as exc:
                error, retryable = error_of(exc), False
        if error is None:
            replay.resolve(eff, result)
        elif not retryable or attempt > policy.max_retries:
            replay.fail(eff, error, attempt)
        else:
            delay = backoff_delay_ms(policy, f"{flow.id}:{eff.pos}", attempt)
            replay.attempt_failed(eff, error, self.engine.now_ms() + delay)

    async def _create_child(
        self, flow: Flow, replay: Replay, eff: Effect, wf: WorkflowDef, input: Any
    ) -> bool:
        """Create (or find again, after a crash) the child run; True if it is running."""
        child_id = str(eff.extra["child"])
        try:
            child = await self.engine.create(
                child_id,
                self.type_of(eff.extra.get("queue") or wf.queue),
                state=READY,
                priority=wf.priority,
                payload=self._payload(wf, input),
                values={"code": self._code(wf)},
                attributes={"workflow": wf.name},
                parent_id=flow.id,
                root_id=flow.root_id or flow.id,
                correlation_id=child_id,
                idempotent=True,
                retention_ms=wf.retention_ms,
            )
        except (IdempotencyConflict, FlowExists, InvalidArgument) as exc:
            replay.fail(eff, {"type": "ChildIdCollision",
                              "message": f"child id {child_id!r}: {exc}"})  # fmt: skip
            return False
        replay.resolve(eff, child_id)
        for worker in self._workers:
            worker.wake()
        return not child.terminal

    async def _child_outcome(
        self, child_id: str, *, consume: bool = False
    ) -> tuple[bool, Any] | None:
        """(True, result) / (False, error) once the child (followed along its chain)
        ended; None while it runs. A result this process acknowledged is read from
        `_children_done` (and, with `consume`, forgotten: the parent's join took it)."""
        done = self._children_done
        result = done.pop(child_id, None) if consume else done.get(child_id)
        if result is not None:
            return True, _values.decode(result)
        for _ in range(10_000):
            child = await self.engine.get(child_id, values=("continued",))
            if child is None:
                return False, {"type": "ChildMissing", "message": f"no run {child_id!r}"}
            if not child.terminal:
                return None
            if child.state == "completed":
                nxt = child.values.get("continued")
                if nxt is not None:
                    child_id = nxt.decode()
                    continue
                return True, _values.decode(child.result)
            info = _info(child)
            err = dict(info.error or {})
            if child.state == "cancelled":
                err["type"] = "cancelled"
            return False, err
        return None

    async def _take_signal(self, flow: Flow, replay: Replay, eff: Effect) -> bool:
        """Consume the first signal kept in the mailbox (value `sig:<name>:<delivery>`)
        under the effect's name (or any of its `names`) that no earlier signal effect
        consumed: resolve the effect with it. False when there is none."""
        wanted = eff.extra.get("names") or [eff.name]
        names = []
        for n in flow.value_sizes:
            if n.startswith(SIG):
                signal, _sep, delivery = n[len(SIG) :].partition(":")
                if signal in wanted:
                    names.append((n, signal, delivery))
        if not names:
            return False
        consumed = {
            (e.value.get("name", e.name), e.value.get("delivery"))
            for e in replay.effects
            if e.kind == "signal" and e.done and isinstance(e.value, dict)
        }
        fresh = [n for n, signal, delivery in names if (signal, delivery) not in consumed]
        if not fresh:
            return False
        if len(fresh) > 1:  # arrival order, from the flow's history
            order = {
                e.meta.get("signal"): e.version
                for e in await self.engine.history(flow.id, partition_key=flow.partition_key)
                if e.name == "signaled"
            }
            fresh.sort(key=lambda n: (order.get(n, math.inf), n))
        got = await self.engine.get_values(flow.id, [fresh[0]], partition_key=flow.partition_key)
        name, value, delivery = _values.decode(got[fresh[0]])
        taken = {"delivery": delivery, "value": value}
        if "names" in eff.extra:
            taken["name"] = name
        replay.resolve(eff, taken)
        return True

    async def _continue(
        self, flow: Flow, params: dict[str, Any], input: Any, replay: Replay
    ) -> str:
        wf = self.registry.latest(params["w"])
        generation = int(params.get("g", 1)) + 1
        chain = flow.correlation_id or flow.id
        successor = f"{chain}~{generation}"
        consumed = {
            e.value.get("delivery")
            for e in replay.effects
            if e.kind == "signal" and e.done and isinstance(e.value, dict)
        }
        left = [
            n for n in flow.value_sizes if n.startswith(SIG) and n.split(":", 2)[2] not in consumed
        ]
        carried = (
            await self.engine.get_values(flow.id, left, partition_key=flow.partition_key)
            if left
            else {}
        )
        await self.engine.create(
            successor,
            self.type_of(wf.queue),
            state=READY,
            priority=wf.priority,
            payload=self._payload(wf, input, generation),
            values={"code": self._code(wf), **carried},
            attributes={"workflow": wf.name},
            parent_id=flow.parent_id,
            root_id=flow.root_id if flow.parent_id is not None else None,
            correlation_id=chain,
            idempotent=True,
            retention_ms=wf.retention_ms,
        )
        for worker in self._workers:
            worker.wake()
        return successor


def _bounded_put(table: OrderedDict[str, _T], key: str, value: _T, limit: int) -> None:
    """Put `key` last (most recent) and drop the oldest entries beyond `limit`."""
    table[key] = value
    table.move_to_end(key)
    while len(table) > limit:
        table.popitem(last=False)
