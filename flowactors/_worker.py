"""The Trio worker: claims due flows of one workflow, runs their handlers, acknowledges.

Theory of operation. `run()` keeps three kinds of task in one nursery:

- the claim loop asks for at most the free slots (`concurrency` minus flows in flight, capped
  by `batch_size`) with one `claim_due` per distinct claim setting (lease, payload, values)
  of the states it serves. When nothing is due it waits with a doubling back-off
  (`idle_ms` .. `max_idle_ms`, on Trio's clock), cut short when an acknowledgement or a
  create/signal through the same workflow may have made work due;
- one task per claimed flow runs its handler - async handlers in the nursery, sync ones in
  a thread (`trio.to_thread.run_sync`, at most `concurrency` threads). The handler's
  return value (or exception, per the state's ExceptionPolicy) becomes one outcome;
- one lease keeper extends every held lease once `extend_every` x lease_ms of it passed
  (one task for all flows in flight, not one per flow: a task per flow halved throughput);
- the acknowledger drains every outcome that is ready and sends them together: plain
  completes, fails, retries and transitions through `complete_many` / `fail_many` /
  `retry_many` / `transition_many`, the rest one command each, all concurrently. A slot is
  freed only once its acknowledgement is durable, so `concurrency` bounds claimed flows.

A lost lease (the extension or the acknowledgement answers StaleLease, FlowTerminal,
WrongState or FlowNotFound: someone reclaimed, signalled or cancelled the flow) is counted
in `lost_leases` and the flow is dropped: the worker never acknowledges work it no longer
owns. An async handler whose lease is lost is cancelled; a thread cannot be, so its result
is discarded.

`stop()` ends claiming; flows in flight get `shutdown_grace_ms` to finish and be
acknowledged, then their handlers are cancelled and their leases released (a transition
back to their state, due now, attempts unchanged) so another worker takes them at once.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import trio

from ._errors import FlowError, FlowNotFound, FlowTerminal, InvalidArgument, StaleLease, WrongState
from ._outcomes import Complete, ExceptionPolicy, Fail, Outcome, Retry, Spawn, Transition
from ._types import Ack, Flow, ItemResult
from ._workflow import Context, Handler

if TYPE_CHECKING:
    from ._workflow import Workflow

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


class _Held:
    """A flow in flight: its lease is kept alive until the handler returns."""

    __slots__ = ("ctx", "extend_at", "lost", "scope")

    def __init__(self, ctx: Context, extend_at: float) -> None:
        self.ctx = ctx
        self.extend_at = extend_at  # Trio time of the next extension
        self.lost = False
        self.scope = trio.CancelScope()


class _Item:
    __slots__ = ("ctx", "outcome")

    def __init__(self, ctx: Context, outcome: Outcome) -> None:
        self.ctx = ctx
        self.outcome = outcome


class Worker:
    """Runs one workflow's handlers for the given states (default: every declared state).

    `handler` overrides the states' own handlers (a queue worker). `lease_ms`,
    `claim_payload`, `claim_values` override the states' claim settings. `on_ack` is
    called with each flow as its acknowledgement made it durable (after the commit).
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
    ) -> None:
        if concurrency < 1:
            raise InvalidArgument("concurrency must be at least 1")
        if not 0 < extend_every < 1:
            raise InvalidArgument("extend_every must be a fraction of the lease in (0, 1)")
        self.workflow = workflow
        self.engine = workflow.engine
        self.states = None if states is None else list(states)
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
            ),
            0,
        )
        self._in_flight = 0
        self._stopping = False
        self._wake_event = trio.Event()
        self._slot_event = trio.Event()
        self._idle_event = trio.Event()
        self._fatal: BaseException | None = None
        self._held: set[_Held] = set()
        self._send, self._receive = trio.open_memory_channel[_Item](math.inf)

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
            self.handler = handler
        self._stopping = False
        self.workflow._workers.add(self)
        try:
            async with trio.open_nursery() as outer:
                outer.start_soon(self._acknowledger)
                outer.start_soon(self._keep_leases)
                async with trio.open_nursery() as jobs:
                    task_status.started()
                    await self._claim_loop(jobs)
                    with trio.move_on_after(self.shutdown_grace_ms / 1000):
                        while self._in_flight:
                            await self._idle_event.wait()
                            self._idle_event = trio.Event()
                    jobs.cancel_scope.cancel()  # handlers still running release their lease
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
            async with trio.open_nursery() as jobs:
                got = await self._claim(self.batch_size, reclaim_only=reclaim_only)
                for flow in got:
                    self._start(jobs, flow)
            await self._drained()
            outer.cancel_scope.cancel()
        if self._fatal is not None:
            raise self._fatal
        return len(got)

    # -- claiming -----------------------------------------------------------------------

    async def _claim_loop(self, jobs: trio.Nursery) -> None:
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
                for flow in got:
                    self._start(jobs, flow)
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
                )
            if not got:
                self._counts["empty_claims"] += 1
            claimed += got
        if len(self._groups) > 1:
            self._groups.append(self._groups.pop(0))
        self._counts["claimed"] += len(claimed)
        return claimed

    def _start(self, jobs: trio.Nursery, flow: Flow) -> None:
        self._in_flight += 1
        jobs.start_soon(self._run_job, flow)

    # -- one flow -----------------------------------------------------------------------

    def _lease_for(self, state: str) -> int:
        return self._lease_ms or self.workflow.spec(state).lease_ms

    async def _run_job(self, flow: Flow) -> None:
        state = flow.logical_state
        spec = self.workflow.spec(state)
        ctx = Context(self.workflow, flow, self._lease_for(state))
        handler = self.handler or spec.handler
        policy = self.exception_policy or spec.exception_policy
        held = _Held(ctx, trio.current_time() + ctx.lease_ms * self.extend_every / 1000)
        self._held.add(held)
        outcome: Outcome | None = None
        try:
            with held.scope:
                outcome = await self._call(handler, ctx, state, policy)
        except BaseException:
            # Cancelled (shutdown past its grace period, or the worker is failing): hand
            # the flow back, due now, unless it is no longer ours.
            self._held.discard(held)
            with trio.CancelScope(shield=True):
                if held.lost or ctx.settled:
                    self._done()
                else:
                    await self._release(ctx)
            raise
        self._held.discard(held)
        if held.lost or outcome is None or ctx.settled:
            if held.lost:
                self._counts["lost_leases"] += 1
            elif ctx.settled:
                self._counts["spawned"] += 1
            self._done()
            return
        self._send.send_nowait(_Item(ctx, outcome))

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

    async def _extend(self, held: _Held) -> None:
        try:
            await held.ctx.extend_lease()
        except LOST:
            held.lost = True
            held.scope.cancel()  # an async handler stops; a thread's result is dropped
            return
        self._counts["lease_extensions"] += 1
        held.extend_at = trio.current_time() + held.ctx.lease_ms * self.extend_every / 1000

    def _states_served(self) -> list[str]:
        names = [n for group in self._groups if group[0] for n in group[0]]
        return names or ["*"]

    async def _call(
        self, handler: Handler | None, ctx: Context, state: str, policy: ExceptionPolicy
    ) -> Outcome | None:
        try:
            if handler is None:
                raise InvalidArgument(f"no handler for state {state!r} of {ctx.flow.type!r}")
            if inspect.iscoroutinefunction(handler):
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

    async def _release(self, ctx: Context) -> None:
        flow = ctx.flow
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

    async def _acknowledger(self) -> None:
        async for first in self._receive:
            batch = [first]
            while True:
                try:
                    batch.append(self._receive.receive_nowait())
                except trio.WouldBlock:
                    break
            try:
                await self._acknowledge(batch)
            finally:
                self._done(len(batch))

    async def _acknowledge(self, batch: list[_Item]) -> None:
        completes: list[_Item] = []
        fails: list[_Item] = []
        retries: list[_Item] = []
        moves: dict[str, list[_Item]] = {}
        singles: list[_Item] = []
        for item in batch:
            o = item.outcome
            if isinstance(o, Complete) and not o.values:
                completes.append(item)
            elif isinstance(o, Fail) and not o.values:
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

        def acks(items: list[_Item], data: str) -> list[Ack]:
            return [
                Ack(
                    i.ctx.flow.id,
                    i.ctx.flow.lease_token,
                    i.ctx.flow.fencing_token,
                    getattr(i.outcome, data),
                    i.ctx.flow.partition_key,
                )
                for i in items
            ]

        async def many(kind: str, items: list[_Item]) -> None:
            try:
                await send_many(kind, items)
            except FlowError as exc:
                self._failed(exc)

        async def send_many(kind: str, items: list[_Item]) -> None:
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

        async def single(item: _Item) -> None:
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


def _chunks(items: list[_Item], size: int = 1000) -> list[list[_Item]]:
    return [items[i : i + size] for i in range(0, len(items), size)]
