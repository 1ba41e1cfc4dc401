"""The Trio worker: claims due flows of one workflow, runs their handlers, acknowledges.

Theory of operation. `run()` keeps three kinds of task in one nursery:

- the claim loop asks for at most the free slots (`concurrency` minus flows in flight, capped
  by `batch_size`) with one `claim_due` per distinct claim setting (lease, payload, values)
  of the states it serves. When nothing is due it waits with a doubling back-off
  (`idle_ms` .. `max_idle_ms`, on Trio's clock), cut short when an acknowledgement or a
  create/signal through the same workflow may have made work due;
- a pool of runner tasks (at most `concurrency`, started on demand, parked when idle)
  takes claimed flows from a queue and runs their handlers - async handlers in the
  runner, sync ones in a thread (`trio.to_thread.run_sync`, at most `concurrency`
  threads). The handler's return value (or exception, per the state's ExceptionPolicy)
  becomes one outcome. A runner takes queued flows one after another while their handlers
  return without waiting, keeping one spare runner awake; once a spare finds a handler
  suspended, runners are woken for every queued flow, so handlers that wait run side by
  side. (A new task and cancel scope per flow were a fifth of a profiled run.) Handlers
  share their runner's task, so a context variable one sets is seen by the next;
- one lease keeper extends every held lease once `extend_every` x lease_ms of it passed
  (one task for all flows in flight, not one per flow: a task per flow halved throughput);
- the acknowledger drains every outcome that is ready and sends them together: plain
  completes, fails, retries and transitions through `complete_many` / `fail_many` /
  `retry_many` / `transition_many`, the rest one command each, all concurrently. A slot is
  freed only once its acknowledgement is durable, so `concurrency` bounds claimed flows.

A lost lease (the extension or the acknowledgement answers StaleLease, FlowTerminal,
WrongState or FlowNotFound: someone reclaimed, signalled or cancelled the flow) is counted
in `lost_leases` and the flow is dropped: the worker never acknowledges work it no longer
owns. An async handler whose lease is lost is cancelled (the cancel scope of its runner,
renewed afterwards); a thread cannot be, so its result is discarded.

`stop()` ends claiming; flows in flight get `shutdown_grace_ms` to finish and be
acknowledged, then their handlers are cancelled and their leases released (a transition
back to their state, due now, attempts unchanged) so another worker takes them at once;
flows still queued are released the same way.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections import deque
from collections.abc import Callable, Container, Sequence
from dataclasses import dataclass
from typing import Any

import trio

from ..engine import _machine as m
from ..engine._errors import (
    FlowError,
    FlowNotFound,
    FlowTerminal,
    InvalidArgument,
    StaleLease,
    WrongState,
)
from ..engine._types import Ack, ChildSpec, ContinueSpec, Flow, ItemResult
from ._outcomes import Complete, ExceptionPolicy, Fail, Outcome, Retry, Spawn, Transition
from ._workflow import Context, Handler, Workflow

LOST = (StaleLease, FlowTerminal, WrongState, FlowNotFound)


@dataclass(frozen=True, slots=True)
class WorkerStatistics:
    claimed: int
    completed: int
    failed: int
    retried: int
    transitioned: int
    spawned: int
    released: int
    lost_leases: int
    handler_errors: int
    lease_extensions: int
    claim_calls: int
    empty_claims: int
    in_flight: int
    adopted: int = 0  # of `claimed`: children created claimed for this worker (`_adopt`)


class _Job:
    """A flow in flight: its lease is kept alive while the handler runs (the job is in
    `Worker._held` exactly then), then its outcome waits for the acknowledger."""

    __slots__ = ("ctx", "extend_at", "lost", "outcome", "scope")

    def __init__(self, ctx: Context, extend_at: float, scope: trio.CancelScope) -> None:
        self.ctx = ctx
        self.extend_at = extend_at  # Trio time of the next extension
        self.lost = False
        self.scope = scope  # the runner's scope: cancel it only while the handler runs
        self.outcome: Outcome | None = None  # set once the handler returned


class _Continued:
    """One handler's step_continue waiting in a `_Continuer` batch."""

    __slots__ = ("result", "spec", "task")

    def __init__(self, spec: ContinueSpec) -> None:
        self.spec = spec
        self.result: ItemResult | BaseException | None = None
        self.task: trio.lowlevel.Task | None = None


class _Continuer:
    """The step_continues of a worker's handlers (`Context.step_continue`), gathered: all
    those asked for while the others ran go to the engine as one `step_continue_many`
    (one request and one commit per shard, however many handlers asked), and each
    handler is woken with its own item's outcome."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine
        self.pending: list[_Continued] = []
        self.event = trio.Event()

    async def submit(self, spec: ContinueSpec) -> ItemResult:
        item = _Continued(spec)
        self.pending.append(item)
        self.event.set()
        item.task = trio.lowlevel.current_task()

        def abort(_raise_cancel: Any) -> trio.lowlevel.Abort:
            item.task = None  # (cancelled: the command goes all the same, unheard)
            return trio.lowlevel.Abort.SUCCEEDED

        await trio.lowlevel.wait_task_rescheduled(abort)
        if isinstance(item.result, BaseException):
            raise item.result
        assert item.result is not None
        return item.result

    async def run(self) -> None:
        async with trio.open_nursery() as nursery:
            while True:
                await self.event.wait()
                self.event = trio.Event()
                batch, self.pending = self.pending, []
                if batch:  # each batch in its own task: batches overlap at the shards
                    nursery.start_soon(self._send, batch)

    async def _send(self, batch: list[_Continued]) -> None:
        try:
            results: list[ItemResult | BaseException] = list(
                await self.engine.step_continue_many([item.spec for item in batch])
            )
        except InvalidArgument:
            # One handler's bad input refuses the whole call: send them one by one, so
            # each hears only its own answer.
            results = []
            for item in batch:
                try:
                    results += await self.engine.step_continue_many([item.spec])
                except FlowError as exc:
                    results.append(exc)
        except FlowError as exc:  # storage: every item hears it
            results = [exc] * len(batch)
        for item, result in zip(batch, results, strict=True):
            item.result = result
            if item.task is not None:
                trio.lowlevel.reschedule(item.task)
                item.task = None


@dataclass(frozen=True, slots=True)
class _Plan:
    """What running a flow in one state needs, looked up once per state and run."""

    handler: Handler | None
    is_async: bool
    policy: ExceptionPolicy
    lease_ms: int


class Worker:
    """Runs one workflow's handlers for the given states (default: every declared state).

    `handler` overrides the states' own handlers (a queue worker). `lease_ms`,
    `claim_payload`, `claim_values` override the states' claim settings; flows whose id
    is in `held` come without payload and values (its handler holds them: `claim_due`).
    `on_ack` is called with each flow as its acknowledgement made it durable.
    """

    def __init__(
        self,
        workflow: Workflow,
        states: Sequence[str] | None = None,
        *,
        handler: Handler | None = None,
        name: str | None = None,
        concurrency: int = 16,
        batch_size: int | None = None,
        lease_ms: int | None = None,
        claim_payload: bool | int | None = None,
        claim_values: Sequence[str] | None = None,
        exception_policy: ExceptionPolicy | None = None,
        extend_every: float = 0.5,
        idle_ms: int = 5,
        max_idle_ms: int = 500,
        shutdown_grace_ms: int = 10_000,
        on_ack: Callable[[Flow], None] | None = None,
        held: Container[str] | None = None,
    ) -> None:
        if not isinstance(workflow, Workflow):
            raise InvalidArgument(f"a worker needs a Workflow, got {workflow!r:.60}")
        m.check_int(concurrency, "concurrency", 1, 1 << 20)
        if batch_size is not None:
            m.check_int(batch_size, "batch_size", 1, 1 << 20)
        if lease_ms is not None:
            m.check_int(lease_ms, "lease_ms", 1, m.MAX_DELAY_MS)
        if claim_payload is not None and claim_payload is not True and claim_payload is not False:
            m.check_int(claim_payload, "claim_payload max bytes", 0, m.MAX_BLOB_BYTES)
        if claim_values is not None:
            claim_values = m.check_names(claim_values, "claim_value")
        if exception_policy is not None and not isinstance(exception_policy, ExceptionPolicy):
            raise InvalidArgument("exception_policy must be an ExceptionPolicy or None")
        if (
            isinstance(extend_every, bool)
            or not isinstance(extend_every, int | float)
            or not 0 < extend_every < 1
        ):
            raise InvalidArgument("extend_every must be a fraction of the lease in (0, 1)")
        for value, what in (
            (idle_ms, "idle_ms"),
            (max_idle_ms, "max_idle_ms"),
            (shutdown_grace_ms, "shutdown_grace_ms"),
        ):
            m.check_int(value, what, 0, m.MAX_DELAY_MS)
        if name is not None:
            m.check_name(name, "worker name")
        if held is not None and (
            not isinstance(held, Container) or isinstance(held, str | bytes | bytearray)
        ):
            raise InvalidArgument(f"held must be a container of flow ids, got {held!r:.60}")
        for fn, what in ((handler, "handler"), (on_ack, "on_ack")):
            if fn is not None and not callable(fn):
                raise InvalidArgument(f"{what} must be callable or None, got {fn!r:.60}")
        self.workflow = workflow
        self.engine = workflow.engine
        self.states = None if states is None else list(m.check_names(states, "state"))
        self.handler = handler
        self.name = name or workflow.worker_name()
        self.concurrency = concurrency
        self.batch_size = min(batch_size or concurrency, concurrency, 1000)
        self.exception_policy = exception_policy
        self.extend_every = extend_every
        self.idle_ms = idle_ms
        self.max_idle_ms = max_idle_ms
        self.shutdown_grace_ms = shutdown_grace_ms
        self.on_ack = on_ack
        self.held = held
        self._groups = workflow.claim_groups(
            self.states, lease_ms=lease_ms, payload=claim_payload, values=claim_values
        )
        self._lease_ms = lease_ms
        self._limiter = trio.CapacityLimiter(concurrency)
        self._counts = dict.fromkeys(
            (
                "claimed",
                "completed",
                "failed",
                "retried",
                "transitioned",
                "spawned",
                "released",
                "lost_leases",
                "handler_errors",
                "lease_extensions",
                "claim_calls",
                "empty_claims",
                "adopted",
            ),
            0,
        )
        self._in_flight = 0
        self._stopping = False
        self._wake_event = trio.Event()
        self._slot_event = trio.Event()
        self._idle_event = trio.Event()
        self._fatal: BaseException | None = None
        self._held: set[_Job] = set()
        self._plans: dict[str, _Plan] = {}
        # Outcomes waiting for the acknowledger (a list and an event: cheaper per flow
        # than a memory channel, and the acknowledger takes them all at once anyway).
        self._outcomes: list[_Job] = []
        self._outcome_event = trio.Event()
        self._continuer = _Continuer(workflow.engine)
        # The runner pool: claimed flows not yet started, the runner tasks alive, those
        # woken (or spawned) that have not looked at the queue yet, those inside a job.
        self._queue: deque[Flow] = deque()
        self._parked = trio.lowlevel.ParkingLot()
        self._runners = 0
        self._pending = 0
        self._busy = 0
        self._jobs: trio.Nursery | None = None

    # -- public -------------------------------------------------------------------------

    def statistics(self) -> WorkerStatistics:
        return WorkerStatistics(**self._counts, in_flight=self._in_flight)

    def wake(self) -> None:
        """Something may be due: skip the rest of the idle wait."""
        self._wake_event.set()

    def stop(self) -> None:
        """Stop claiming; `run` returns once flows in flight are done or released."""
        self._stopping = True
        self._wake_event.set()
        self._slot_event.set()

    async def run(
        self,
        handler: Handler | None = None,
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Work until `stop()` (or a RAISE-policy handler error, re-raised here)."""
        if handler is not None:
            if not callable(handler):
                raise InvalidArgument(f"handler must be callable, got {handler!r:.60}")
            self.handler = handler
        self._stopping = False
        self.workflow._workers.add(self)
        try:
            async with trio.open_nursery() as outer:
                outer.start_soon(self._acknowledger)
                outer.start_soon(self._keep_leases)
                outer.start_soon(self._continuer.run)
                async with trio.open_nursery() as jobs:
                    self._open_pool(jobs)
                    task_status.started()
                    await self._claim_loop()
                    with trio.move_on_after(self.shutdown_grace_ms / 1000):
                        while self._in_flight:
                            await self._idle_event.wait()
                            self._idle_event = trio.Event()
                    jobs.cancel_scope.cancel()  # handlers still running release their lease
                await self._release_queued()
                await self._drained()
                outer.cancel_scope.cancel()
        finally:
            self.workflow._workers.discard(self)
        if self._fatal is not None:
            raise self._fatal

    async def run_once(self, *, reclaim_only: bool = False) -> int:
        """Claim one batch (or reclaim expired leases), handle it, acknowledge it; returns
        the number of flows claimed."""
        async with trio.open_nursery() as outer:
            outer.start_soon(self._acknowledger)
            outer.start_soon(self._keep_leases)
            outer.start_soon(self._continuer.run)
            async with trio.open_nursery() as jobs:
                self._open_pool(jobs)
                got = await self._claim(self.batch_size, reclaim_only=reclaim_only)
                self._start(got)
                await self._drained()
                jobs.cancel_scope.cancel()  # the runners, parked by now
            outer.cancel_scope.cancel()
        if self._fatal is not None:
            raise self._fatal
        return len(got)

    # -- claiming -----------------------------------------------------------------------

    async def _claim_loop(self) -> None:
        idle = self.idle_ms
        while not self._stopping:
            free = self.concurrency - self._in_flight
            if free <= 0:
                await self._slot_event.wait()
                self._slot_event = trio.Event()
                continue
            got = await self._claim(min(free, self.batch_size))
            if got:
                idle = self.idle_ms
                self._start(got)
                continue
            with trio.move_on_after(idle / 1000):
                await self._wake_event.wait()
            self._wake_event = trio.Event()
            idle = min(idle * 2, self.max_idle_ms)

    async def _claim(self, limit: int, *, reclaim_only: bool = False) -> list[Flow]:
        claimed: list[Flow] = []
        # Rotate the groups so one busy setting does not starve the others.
        groups = self._groups[:1] if reclaim_only else self._groups
        for states, lease, payload, values in groups:
            if len(claimed) >= limit:
                break
            self._counts["claim_calls"] += 1
            if reclaim_only:
                got = await self.engine.reclaim(
                    self.workflow.flow_type,
                    self.name,
                    limit=limit - len(claimed),
                    lease_ms=lease,
                    payload=payload,
                    values=values,
                    held=self.held,
                )
            else:
                got = await self.engine.claim_due(
                    self.workflow.flow_type,
                    self.name,
                    states=states,
                    limit=limit - len(claimed),
                    lease_ms=lease,
                    payload=payload,
                    values=values,
                    held=self.held,
                )
            if not got:
                self._counts["empty_claims"] += 1
            claimed += got
        if len(self._groups) > 1:
            self._groups.append(self._groups.pop(0))
        self._counts["claimed"] += len(claimed)
        return claimed

    def _start(self, flows: list[Flow]) -> None:
        if flows:
            self._in_flight += len(flows)
            self._queue.extend(flows)
            self._summon(1)

    # -- children created claimed (`Context.transition(run_children=True)`) -------------

    def _lease_children(
        self, ctx: Context, children: Sequence[ChildSpec]
    ) -> tuple[list[ChildSpec], int]:
        """`children`, with a lease on each this worker can run at once (its flow type,
        due now, a state it claims, a slot for it), and how many. The first takes the
        slot of `ctx`'s own flow, which its claim ends (`ctx.handed_slot`); the others
        take free slots, taken now so that handlers adopting side by side cannot
        overfill the worker; `_adopt` gives back what the command did not claim."""
        slots = 0 if self._stopping else 1 + max(0, self.concurrency - self._in_flight)
        out: list[ChildSpec] = []
        taken = 0
        for child in children:
            if (
                taken < slots
                and isinstance(child, ChildSpec)  # (the engine refuses anything else)
                and child.type == self.workflow.flow_type
                and child.run_at_ms is None
                and child.lease_ms is None
            ):
                group = self._group_of(child.state)
                if group is not None:
                    child = dataclasses.replace(child, lease_ms=group[1])
                    taken += 1
            out.append(child)
        if taken:
            ctx.handed_slot = True
            self._in_flight += taken - 1
        return out, taken

    def _group_of(
        self, state: str
    ) -> tuple[tuple[str, ...] | None, int, bool | int, tuple[str, ...]] | None:
        for group in self._groups:
            if group[0] is None or state in group[0]:
                return group
        return None

    def _adopt(
        self, ctx: Context, children: list[Flow], specs: Sequence[ChildSpec], taken: int
    ) -> None:
        """Run `children`, created claimed for this worker (`_lease_children`), as if
        claimed: hydrated as its claim would have been, from what their specs sent."""
        unused = taken - len(children)
        if unused and not children:
            ctx.handed_slot, unused = False, unused - 1  # (its own slot is its own again)
        if unused:
            self._done(unused)
        if not children:
            return
        sent = {spec.id: spec for spec in specs if isinstance(spec, ChildSpec)}
        flows = []
        for flow in children:
            spec = sent[flow.id]
            group = self._group_of(flow.logical_state)
            assert group is not None
            cap, names = group[2], group[3]
            payload, omitted = spec.payload, False
            if payload is not None and cap is not True:  # (as the engine's claim hydrates)
                if cap is False:
                    payload = None
                elif len(payload) > cap:
                    payload, omitted = None, True
            values = {n: spec.values[n] for n in names if n in spec.values} if spec.values else {}
            flows.append(flow._replace(payload=payload, payload_omitted=omitted, values=values))
        if flows:
            self._counts["claimed"] += len(flows)
            self._counts["adopted"] += len(flows)
            self._queue.extend(flows)
            self._summon(1)

    # -- the runner pool ----------------------------------------------------------------

    def _open_pool(self, jobs: trio.Nursery) -> None:
        """Runners start in `jobs`; none is left from an earlier run (its nursery ended)."""
        self._jobs = jobs
        self._queue.clear()
        self._runners = self._pending = self._busy = 0
        self._plans.clear()  # the handler or the states may have changed since

    def _summon(self, want: int) -> None:
        """Have `want` runners (no more than the queue holds) on their way to the queue:
        unpark idle ones first, then spawn new ones up to `concurrency`."""
        need = min(want, len(self._queue)) - self._pending
        if need <= 0:
            return
        woken = len(self._parked.unpark(count=need))
        self._pending += woken
        spawn = min(need - woken, self.concurrency - self._runners)
        assert self._jobs is not None
        for _ in range(spawn):
            self._runners += 1
            self._pending += 1
            self._jobs.start_soon(self._runner)

    async def _runner(self) -> None:
        """Run queued flows until the queue is empty, park, repeat (until cancelled).

        One cancel scope serves the runner's jobs, parks included, until a lost lease
        cancels it (only while that job's handler runs): then a new one is made. (A scope
        costs ~6 us to enter and leave, which a scope per job paid three times per
        code-workflow pipeline.)"""
        try:
            self._pending -= 1  # this runner is looking at the queue now
            while True:
                scope = trio.CancelScope()
                with scope:
                    while True:
                        if self._queue and self._busy:
                            # Another runner's handler is suspended (it awaits something,
                            # or runs in a thread): do not run the rest one after another
                            # behind it, wake a runner for every queued flow, as a task per
                            # flow would have.
                            self._summon(len(self._queue) - 1)  # this runner takes one
                        while self._queue and not scope.cancel_called:
                            flow = self._queue.popleft()
                            # A spare, in case this handler waits: it runs only once this
                            # runner yields, and then takes the next queued flow.
                            self._summon(1)
                            self._busy += 1
                            try:
                                await self._run_job(flow, scope)
                            finally:
                                self._busy -= 1
                        if scope.cancel_called:
                            break  # (a handler swallowed its cancel: a new scope first)
                        await self._parked.park()
                        self._pending -= 1  # unparked: looking at the queue again
        finally:
            self._runners -= 1

    # -- one flow -----------------------------------------------------------------------

    def _lease_for(self, state: str) -> int:
        return self._lease_ms or self.workflow.spec(state).lease_ms

    def _plan(self, state: str) -> _Plan:
        plan = self._plans.get(state)
        if plan is None:
            spec = self.workflow.spec(state)
            handler = self.handler or spec.handler
            plan = self._plans[state] = _Plan(
                handler,
                inspect.iscoroutinefunction(handler),
                self.exception_policy or spec.exception_policy,
                self._lease_ms or spec.lease_ms,
            )
        return plan

    async def _run_job(self, flow: Flow, scope: trio.CancelScope) -> None:
        plan = self._plan(flow.logical_state)
        ctx = Context(self.workflow, flow, plan.lease_ms)
        ctx.continuer = self._continuer
        ctx.worker = self
        job = _Job(ctx, trio.current_time() + plan.lease_ms * self.extend_every / 1000, scope)
        self._held.add(job)
        try:
            outcome = await self._call(plan, ctx)
        except BaseException:
            # Cancelled (a lost lease, shutdown past its grace period, or the worker is
            # failing): hand the flow back, due now, unless it is no longer ours.
            self._held.discard(job)
            with trio.CancelScope(shield=True):
                if job.lost or ctx.settled:
                    if job.lost:
                        self._counts["lost_leases"] += 1
                    self._done(0 if ctx.handed_slot else 1)
                else:
                    await self._release(ctx.flow)
            raise
        self._held.discard(job)
        if job.lost or outcome is None or ctx.settled:
            if job.lost:
                self._counts["lost_leases"] += 1
            elif ctx.settled_as is not None:
                self._counts[ctx.settled_as] += 1
            self._done(0 if ctx.handed_slot else 1)  # (a child it adopted has the slot)
            return
        job.outcome = outcome
        self._outcomes.append(job)
        self._outcome_event.set()

    async def _keep_leases(self) -> None:
        """Extend every held lease once `extend_every` of it has passed (one task for all
        flows in flight; it looks four times per extension period)."""
        shortest = min(self._lease_for(s) for s in self._states_served())
        tick = shortest * self.extend_every / 4 / 1000
        while True:
            await trio.sleep(tick)
            now = trio.current_time()
            due = [h for h in self._held if h.extend_at <= now and not h.lost]
            if due:
                async with trio.open_nursery() as nursery:
                    for held in due:
                        nursery.start_soon(self._extend, held)

    async def _extend(self, held: _Job) -> None:
        try:
            await held.ctx.extend_lease()
        except LOST:
            held.lost = True
            if held in self._held:
                # Its handler still runs: an async one stops; a thread's result is dropped.
                # (Once it returned, the scope is its runner's and may run another job.)
                held.scope.cancel()
            return
        self._counts["lease_extensions"] += 1
        held.extend_at = trio.current_time() + held.ctx.lease_ms * self.extend_every / 1000

    def _states_served(self) -> list[str]:
        names = [n for group in self._groups if group[0] for n in group[0]]
        return names or ["*"]

    async def _call(self, plan: _Plan, ctx: Context) -> Outcome | None:
        handler, policy, state = plan.handler, plan.policy, ctx.flow.logical_state
        try:
            if handler is None:
                raise InvalidArgument(f"no handler for state {state!r} of {ctx.flow.type!r}")
            if plan.is_async:
                value = await handler(ctx)
            else:
                value = await trio.to_thread.run_sync(handler, ctx, limiter=self._limiter)
            return self.workflow.outcome_of(state, value)
        except Exception as exc:
            self._counts["handler_errors"] += 1
            if policy is ExceptionPolicy.RAISE:
                self._fatal = exc
                self.stop()
                return None
            if policy is ExceptionPolicy.FAIL:
                return Fail(str(exc).encode() or type(exc).__name__.encode())
            return self.workflow.error_outcome(state, exc)

    async def _release(self, flow: Flow) -> None:
        try:
            await self.engine.transition(
                flow.id,
                "running",
                flow.logical_state,
                flow.fencing_token,
                lease_token=flow.lease_token,
                partition_key=flow.partition_key,
            )
            self._counts["released"] += 1
        except LOST:
            self._counts["lost_leases"] += 1
        finally:
            self._done()

    def _done(self, n: int = 1) -> None:
        self._in_flight -= n
        self._slot_event.set()
        if not self._in_flight:
            self._idle_event.set()

    # -- acknowledging ------------------------------------------------------------------

    async def _drained(self) -> None:
        while self._in_flight:
            await self._idle_event.wait()
            self._idle_event = trio.Event()

    async def _release_queued(self) -> None:
        """Release the flows claimed but never started (the runners were cancelled)."""
        queued, self._queue = list(self._queue), deque()
        async with trio.open_nursery() as nursery:
            for flow in queued:
                nursery.start_soon(self._release, flow)

    async def _acknowledger(self) -> None:
        while True:
            await self._outcome_event.wait()
            self._outcome_event = trio.Event()
            batch, self._outcomes = self._outcomes, []
            if not batch:
                continue
            try:
                await self._acknowledge(batch)
            finally:
                self._done(len(batch))

    async def _acknowledge(self, batch: list[_Job]) -> None:
        completes: list[_Job] = []
        fails: list[_Job] = []
        retries: list[_Job] = []
        moves: dict[str, list[_Job]] = {}
        singles: list[_Job] = []
        for item in batch:
            o = item.outcome
            if isinstance(o, Complete):
                completes.append(item)
            elif isinstance(o, Fail):
                fails.append(item)
            elif (
                isinstance(o, Retry)
                and o.run_at_ms is None
                and o.delay_ms is None
                and o.payload is None
                and not self.workflow.retry_overrides(item.ctx.flow, o)
            ):
                retries.append(item)
            elif isinstance(o, Transition) and o.plain:
                moves.setdefault(o.to_state, []).append(item)
            else:
                singles.append(item)

        def acks(items: list[_Job], data: str) -> list[Ack]:
            return [
                Ack(
                    i.ctx.flow.id,
                    i.ctx.flow.lease_token,
                    i.ctx.flow.fencing_token,
                    getattr(i.outcome, data),
                    i.ctx.flow.partition_key,
                    getattr(i.outcome, "values", None) or None,
                )
                for i in items
            ]

        async def many(kind: str, items: list[_Job]) -> None:
            try:
                await send_many(kind, items)
            except FlowError as exc:
                self._failed(exc)

        async def send_many(kind: str, items: list[_Job]) -> None:
            if kind == "completed":
                results = await self.engine.complete_many(acks(items, "result"))
            elif kind == "failed":
                results = await self.engine.fail_many(acks(items, "error"))
            elif kind == "retried":
                results = await self.engine.retry_many(acks(items, "error"))
            else:
                to_state = items[0].outcome.to_state  # type: ignore[union-attr]
                results = await self.engine.transition_many(
                    acks(items, "payload"), "running", to_state
                )
            self._tally(kind, results)

        async def single(item: _Job) -> None:
            assert item.outcome is not None  # only jobs with an outcome are acknowledged
            try:
                flow = await self.workflow.apply(item.ctx.flow, item.outcome)
            except LOST:
                self._counts["lost_leases"] += 1
                return
            except FlowError as exc:
                self._failed(exc)
                return
            self._counts[_KIND[type(item.outcome)]] += 1
            if self.on_ack is not None:
                self.on_ack(flow)

        async with trio.open_nursery() as nursery:
            for kind, items in (("completed", completes), ("failed", fails), ("retried", retries)):
                for chunk in _chunks(items):
                    nursery.start_soon(many, kind, chunk)
            for items in moves.values():
                for chunk in _chunks(items):
                    nursery.start_soon(many, "transitioned", chunk)
            for item in singles:
                nursery.start_soon(single, item)
        if moves or retries or any(not isinstance(i.outcome, Complete | Fail) for i in singles):
            self.wake()

    def _failed(self, exc: FlowError) -> None:
        """An acknowledgement failed for a reason other than a lost lease (storage broke,
        or a handler's outcome was invalid): stop, and re-raise it from `run`."""
        if self._fatal is None:
            self._fatal = exc
        self.stop()

    def _tally(self, kind: str, results: list[ItemResult]) -> None:
        for r in results:
            if r.error is None:
                self._counts[kind] += 1
                if self.on_ack is not None and r.flow is not None:
                    self.on_ack(r.flow)
            elif isinstance(r.error, LOST):
                self._counts["lost_leases"] += 1
            else:
                raise r.error


_KIND: dict[type, str] = {
    Complete: "completed",
    Fail: "failed",
    Retry: "retried",
    Transition: "transitioned",
    Spawn: "spawned",
}


def _chunks(items: list[_Job], size: int = 1000) -> list[list[_Job]]:
    return [items[i : i + size] for i in range(0, len(items), size)]
