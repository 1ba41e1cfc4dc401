# The durable host: ASL executions as engine flows, driven by the SDK worker.
#
# This is the one module of flowactors.asl that uses the engine (the interpreter below it stays
# pure and engine-free; a test pins that). It is the host of `_interpret`'s contract: store a
# step's events, then perform its effects; after a crash, recover from the stored events and
# issue the pending effects again (every effect id is deterministic, so that is idempotent).
#
# Storage. One execution is one flow of type "asl" whose id is the execution name. Its named
# values, written once at create (or at spawn, for a branch):
#   definition   the whole state machine's JSON (bytes as given)
#   machine      the JSON path of the machine this flow runs ("$"; a branch's path for children)
#   stop         JSON {error, cause}, written by `stop()` (a transitioning signal)
#   ev:000001... CBOR lists of event dicts, one chunk per step for the first 16 steps, then
#   ev:L00...    binary levels (flowactors/sdk/_journal.py: a long execution keeps few values)
# and its payload, CBOR {input, context, definition: sha256 of the definition}: with the
# flow's created_at_ms and id it fixes `start()`. (The payload rather than a value because
# an idempotent create compares the payload, not the values: the same name with another
# input or definition must be refused.)
# and its outcome: completed with the output as JSON, or failed with JSON
# {"status": FAILED | TIMED_OUT | ABORTED, "error", "cause"}. No registry is needed to recover.
#
# Flow states: ready (effects to perform, due now), waiting (timers only, due at the earliest
# fire time), branches (parked in a child group), branches_done (the group resolved),
# stopping (stop requested); then completed / failed.
#
# One claim, one step. A worker claims an execution, rebuilds it (`start` from the stored
# start values when no chunk exists yet, else `recover` over all chunks; or takes it from
# memory, see "Kept executions") and answers what it
# waits for, in this order: a requested stop; timers already due (the execution timeout
# first); a scheduled task (the handler runs here, under TimeoutSeconds, HeartbeatSeconds and
# the execution timeout); the outcomes of a resolved child group, fed in index order. Timers
# that come due are fed at once, in memory. The claim ends with ONE engine command that
# carries the new events as the next chunk, so a step is atomic:
#   terminal                         -> complete (output) / fail (error JSON)
#   a new task or branches to start  -> transition to ready, due now
#   only timers                      -> transition to waiting, due at the earliest fire time
#   branches to start, nothing new   -> spawn_children (one child flow per branch, one group)
# The rule behind "new task -> commit first": an effect is performed only when everything it
# derives from is durable. Effects pending in the stored history qualify (replay rebuilds
# them identically); effects that follow a command fed in this claim (a task's output, a
# child's result) do not, so that claim stores its events and the next claim performs them.
# Hence a handler runs at least once: a crash after it ran but before its step's chunk was
# stored runs it again; a crash after does not. Timers need no such care (firing one has no
# effect outside the execution), which is why Wait 0 or an elapsed retry back-off costs no
# extra commit.
#
# Parallel and Map. Branches start as child flows of type "asl" (id: the branch's execution
# id, `<parent>/<run>/<index>`), each storing the parent's definition with its own machine
# path, in one group per StartBranches batch (wait all, child failures ignored, the parent
# parked in `branches` until every child is terminal). When the parent is claimed back it
# reads `children()` and feeds BranchSucceeded / BranchFailed in index order. Map's
# MaxConcurrency: the interpreter starts at most that many iterations; the next batch starts
# when the group resolves (batches, not a sliding window). CancelBranches needs no command:
# with wait-all every child of a group is terminal before its outcomes are fed, and a parent
# that ends while children live (stop) cancels them by the group's cancel-on-close rule.
#
# Kept executions. Rebuilding costs O(events) per claim, so an execution that waits many
# times replays its whole history at every wake. After a step that moved it to ready or
# waiting is acknowledged, the runner keeps the execution in memory (the `kept_executions`
# most recent ones) with the journal it stored and the version the acknowledgement
# returned. The next claim uses it only if the claimed flow is that version plus one (the
# claim itself: nothing else wrote the flow in between, no other worker's step, no stop,
# no child outcome) and holds that many journal units; else it rebuilds from the store.
# Replay being deterministic (tests/test_asl_recover.py: every cut of a history recovers
# to the same continuation), the kept execution is the one a rebuild would give.
#
# Why the SDK Worker: it already does what a host needs around a step - bounded concurrency,
# lease extension while a long handler runs, dropping work whose lease was lost, graceful
# shutdown, batched acknowledgements. An execution step is one async Workflow handler that
# returns one outcome (Transition / Complete / Fail / Spawn) and the worker sends it.
from __future__ import annotations

import contextlib
import copy
import hashlib
import importlib
import importlib.util
import inspect
import json
import math
import sys
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import cbor2
import trio

from ..engine._engine import Engine
from ..engine._errors import FlowNotFound, FlowTerminal, InvalidArgument, StaleLease, WrongState
from ..engine._types import ChildSpec, ChildStatus, CreateSpec, Flow, ItemResult
from ..sdk import _journal
from ..sdk._outcomes import Complete, ExceptionPolicy, Fail, Outcome, Spawn, Transition
from ..sdk._worker import Worker
from ..sdk._workflow import Context, State, Workflow
from ._definition import MapState, ParallelState, StateMachine, TaskState
from ._errors import AslUsageError
from ._host import TaskError
from ._interpret import (
    Branch,
    BranchFailed,
    BranchSucceeded,
    Command,
    Execution,
    HeartbeatTimedOut,
    ScheduleTask,
    StartBranches,
    StartTimer,
    Status,
    Stop,
    TaskFailed,
    TaskSucceeded,
    TaskTimedOut,
    TimerFired,
    check_int_arg,
    check_mapping_arg,
    recover,
    resume,
    start,
)
from ._validate import load_definition

FLOW_TYPE = "asl"
READY, WAITING, BRANCHES, BRANCHES_DONE, STOPPING = (
    "ready",
    "waiting",
    "branches",
    "branches_done",
    "stopping",
)
CLAIMED_STATES = (READY, WAITING, BRANCHES_DONE, STOPPING)
ACTIVE_STATES = (*CLAIMED_STATES, BRANCHES, "running")
CHUNK_PREFIX = "ev:"
BRANCH_FAILED = "States.BranchFailed"
_LOST = (StaleLease, FlowTerminal, WrongState, FlowNotFound)


def event_chunk_names(value_sizes: Mapping[str, int]) -> list[str]:
    """The names of an execution's event chunks in event order (`value_sizes`: the
    execution flow's `Flow.value_sizes`), for tools that show its steps."""
    return _journal.names_in_order(value_sizes, CHUNK_PREFIX)


Handler = Callable[[Any], Any]


@dataclass(frozen=True)
class ExecutionInfo:
    """An execution as `describe` sees it. `status` is RUNNING until the flow is terminal."""

    name: str
    status: Status
    output: Any = None
    error: str | None = None
    cause: str | None = None
    flow_state: str = ""
    started_ms: int = 0
    updated_ms: int = 0


def resources(machine: StateMachine) -> set[str]:
    """Every Task resource of a machine, its branches and item processors included."""
    found: set[str] = set()
    for state in machine.states.values():
        if isinstance(state, TaskState):
            found.add(state.resource)
        elif isinstance(state, ParallelState):
            for branch in state.branches:
                found |= resources(branch)
        elif isinstance(state, MapState):
            found |= resources(state.processor)
    return found


def machine_at(root: StateMachine, path: str) -> StateMachine:
    """The machine (the root, a Parallel branch or a Map processor) at JSON path `path`."""
    if root.path == path:
        return root
    for state in root.states.values():
        subs: tuple[StateMachine, ...] = ()
        if isinstance(state, ParallelState):
            subs = tuple(state.branches)
        elif isinstance(state, MapState):
            subs = (state.processor,)
        for sub in subs:
            if path == sub.path or path.startswith(sub.path + "."):
                return machine_at(sub, path)
    raise AslUsageError(f"the definition has no machine at {path!r}")


def _start_params(raw: bytes, input: Any, context: Mapping[str, Any]) -> bytes:
    digest = hashlib.sha256(raw).hexdigest()
    return cbor2.dumps({"input": input, "context": context, "definition": digest})


def _context(name: str) -> dict[str, Any]:
    return {"Execution": {"Id": name, "Name": name}}


def _json_value(value: Any) -> Any:
    try:
        return json.loads(_json(value))
    except (TypeError, ValueError) as exc:
        raise InvalidArgument(f"the execution input is not JSON: {exc}") from None


def _json(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def _info(name: str, flow: Flow) -> ExecutionInfo:
    status, output, error, cause = Status.RUNNING, None, None, None
    if flow.state == "completed":
        status = Status.SUCCEEDED
        output = json.loads(flow.result) if flow.result else None
    elif flow.state in ("failed", "cancelled"):
        status = Status.ABORTED if flow.state == "cancelled" else Status.FAILED
        error, cause = _error_of(
            flow.error, "States.Runtime" if flow.state == "failed" else "ExecutionCancelled"
        )
        with contextlib.suppress(ValueError, AttributeError):
            status = Status(json.loads(flow.error or b"{}").get("status", status.value))
    return ExecutionInfo(
        name, status, output, error, cause, flow.state, flow.created_at_ms, flow.updated_at_ms
    )


def _error_of(data: bytes | None, default: str) -> tuple[str, str]:
    """(error, cause) from a failed flow's error bytes (ours are JSON; others are text)."""
    if not data:
        return default, ""
    try:
        doc = json.loads(data)
    except ValueError:
        doc = None
    if isinstance(doc, dict) and "error" in doc:
        return str(doc.get("error") or ""), str(doc.get("cause") or "")
    return default, data.decode("utf-8", "replace")


def _pairs(items: object) -> Sequence[tuple[str, Any]]:
    """`start_many`'s items: a list of (name, input) pairs."""
    if isinstance(items, str | bytes) or not isinstance(items, Sequence):
        raise AslUsageError(f"start_many takes a list of (name, input) pairs, not {items!r:.60}")
    for item in items:
        if not isinstance(item, tuple | list) or len(item) != 2:
            raise AslUsageError(f"start_many items are (name, input) pairs, not {item!r:.60}")
    return items


def _is_async(fn: Any) -> bool:
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
        getattr(fn, "__call__", None)  # noqa: B004 - an object with an async __call__
    )


def _wants_heartbeat(fn: Any) -> bool:
    """A handler with a `heartbeat` parameter is called with `heartbeat=<callable>`."""
    try:
        return "heartbeat" in inspect.signature(fn).parameters
    except (TypeError, ValueError):  # no signature (some builtins)
        return False


class AslRunner:
    """Runs ASL state machines durably on an engine.

        runner = AslRunner(engine, handlers={"charge": charge})
        await runner.start("order-1", definition, {"id": 1})
        info = await runner.execute("order-2", definition, {...})  # start + run to the end

    Task handlers take the task's input and return its output (JSON); async handlers run
    in Trio, sync ones in a thread. Raise `TaskError(error, cause)` to fail with an ASL
    error name (any other exception: its class name). Handlers run at least once per
    task attempt (see the module comment). `kept_executions`: how many executions a
    runner keeps in memory after stepping them, so their next wake skips the replay
    ("Kept executions" in the module comment; 0: none).
    """

    def __init__(
        self,
        engine: Engine,
        handlers: Mapping[str, Handler] | None = None,
        *,
        flow_type: str = FLOW_TYPE,
        lease_ms: int = 60_000,
        task_threads: int = 16,
        poll_ms: int = 500,
        kept_executions: int = 1024,
    ) -> None:
        checked = check_mapping_arg(handlers, "handlers")
        for resource, fn in checked.items():
            if not callable(fn):
                raise AslUsageError(f"the handler of {resource!r} is not callable: {fn!r:.60}")
        self.engine = engine
        self.handlers: dict[str, Handler] = dict(checked)
        self.flow_type = flow_type
        self.poll_ms = check_int_arg(poll_ms, "poll_ms")
        self.kept_executions = check_int_arg(kept_executions, "kept_executions")
        check_int_arg(task_threads, "task_threads")
        if task_threads < 1:
            raise AslUsageError("task_threads must be at least 1")
        state = State(
            lease_ms=lease_ms,
            claim_payload=True,
            claim_values=("definition", "machine", "stop"),
            exception_policy=ExceptionPolicy.RAISE,
            handler=self._step,
        )
        self.workflow = Workflow(
            engine,
            type=flow_type,
            initial_state=READY,
            states=dict.fromkeys(CLAIMED_STATES, state),
        )
        self._threads = trio.CapacityLimiter(task_threads)
        self._machines: dict[tuple[bytes, str], StateMachine] = {}
        self._ended: dict[str, trio.Event] = {}
        self.counts = dict.fromkeys(("steps", "replays", "tasks_run", "spawns", "commits"), 0)
        # Executions kept after an acknowledged step (see "Kept executions" above): id ->
        # (the version the acknowledgement returned, the journal stored, the execution);
        # and the one a step hands on until its command is acknowledged.
        self._kept: OrderedDict[str, tuple[int, _journal.Journal, Execution]] = OrderedDict()
        self._kept_pending: dict[str, tuple[_journal.Journal, Execution]] = {}

    # -- the API --------------------------------------------------------------------------

    async def start(
        self,
        name: str,
        definition: str | bytes | Mapping[str, Any],
        input: Any = None,
        *,
        check_handlers: bool = True,
    ) -> ExecutionInfo:
        """Create execution `name` (due at once). The same start again is a no-op; another
        definition or input under the same name raises IdempotencyConflict. With
        `check_handlers`, every Task resource needs a registered handler (AslUsageError)."""
        raw = self._checked(definition, check_handlers)
        flow = await self.workflow.create(
            name,
            payload=_start_params(raw, _json_value(input), _context(name)),
            values={"definition": raw, "machine": b"$"},
            idempotent=True,
        )
        return _info(name, flow)

    async def start_many(
        self,
        definition: str | bytes | Mapping[str, Any],
        items: Sequence[tuple[str, Any]],
        *,
        check_handlers: bool = True,
    ) -> list[ItemResult]:
        """Create many executions of one definition from (name, input) pairs, in one
        `create_many` (atomic per shard; idempotent per item as `start`)."""
        raw = self._checked(definition, check_handlers)
        items = _pairs(items)
        specs = [
            CreateSpec(
                name,
                payload=_start_params(raw, _json_value(data), _context(name)),
                values={"definition": raw, "machine": b"$"},
            )
            for name, data in items
        ]
        return await self.workflow.create_many(specs, idempotent=True)

    def _checked(self, definition: str | bytes | Mapping[str, Any], check_handlers: bool) -> bytes:
        if check_handlers is not True and check_handlers is not False:
            raise AslUsageError(f"check_handlers must be True or False, got {check_handlers!r:.60}")
        if not isinstance(definition, str | bytes | Mapping):
            raise AslUsageError(
                f"a definition is JSON text or a mapping, not {type(definition).__name__}"
            )
        raw = (
            definition
            if isinstance(definition, bytes)
            else (definition.encode() if isinstance(definition, str) else _json(dict(definition)))
        )
        machine = self._machine(raw, "$")
        if machine.unsupported:
            where, what = machine.unsupported[0]
            raise AslUsageError(f"this interpreter cannot run {what} (at {where})")
        if check_handlers:
            missing = sorted(resources(machine) - set(self.handlers))
            if missing:
                raise AslUsageError(f"no handler registered for resource(s) {missing}")
        return raw

    async def describe(self, name: str) -> ExecutionInfo:
        flow = await self.engine.get(name)
        if flow is None:
            raise FlowNotFound(f"no execution {name!r}")
        return _info(name, flow)

    async def history(self, name: str) -> list[dict[str, Any]]:
        """The stored events of an execution, oldest first (AWS history vocabulary)."""
        flow = await self.engine.get(name)
        if flow is None:
            raise FlowNotFound(f"no execution {name!r}")
        return (await self._stored(flow)).events

    async def stop(self, name: str, error: str = "", cause: str = "") -> ExecutionInfo:
        """Abort a running execution (it ends ABORTED with this error and cause, its
        branches cancelled). A worker holding it loses its lease; stopping an execution
        that already ended changes nothing."""
        with contextlib.suppress(FlowTerminal, WrongState):
            await self.engine.signal(
                name,
                "asl.stop",
                values={"stop": _json({"error": error, "cause": cause})},
                if_state=ACTIVE_STATES,
                transition_to=STOPPING,
            )
        self.workflow._notify()
        return await self.describe(name)

    def worker(self, **options: Any) -> Worker:
        """An SDK Worker for executions (options as for `flowactors.Worker`)."""
        user_ack = options.pop("on_ack", None)

        def on_ack(flow: Flow) -> None:
            self.counts["commits"] += 1
            self._keep(flow)
            if flow.terminal and flow.id in self._ended:
                self._ended.pop(flow.id).set()
            if user_ack is not None:
                user_ack(flow)

        options.setdefault("concurrency", 64)
        return Worker(self.workflow, on_ack=on_ack, **options)

    async def run(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED, **options: Any
    ) -> None:
        """Run a worker until cancelled."""
        await self.worker(**options).run(task_status=task_status)

    async def wait(self, name: str) -> ExecutionInfo:
        """Until execution `name` ended (any worker; polled every `poll_ms` as well)."""
        while True:
            event = self._ended.setdefault(name, trio.Event())
            info = await self.describe(name)
            if info.status is not Status.RUNNING:
                self._ended.pop(name, None)
                return info
            with trio.move_on_after(self.poll_ms / 1000):
                await event.wait()

    async def execute(
        self,
        name: str,
        definition: str | bytes | Mapping[str, Any],
        input: Any = None,
        **worker_options: Any,
    ) -> ExecutionInfo:
        """Start `name` and run a worker until it ended; its final description."""
        await self.start(name, definition, input)
        worker = self.worker(**worker_options)
        async with trio.open_nursery() as nursery:
            await nursery.start(worker.run)
            try:
                return await self.wait(name)
            finally:
                worker.stop()

    # -- one step -------------------------------------------------------------------------

    def _keep(self, flow: Flow) -> None:
        """A step's command was acknowledged: keep the execution it left, if it asked."""
        pending = self._kept_pending.pop(flow.id, None)
        if pending is None or flow.terminal or flow.state not in (READY, WAITING):
            return
        self._kept[flow.id] = (flow.version, *pending)
        self._kept.move_to_end(flow.id)
        while len(self._kept) > self.kept_executions:
            self._kept.popitem(last=False)

    async def _rebuilt(
        self, flow: Flow, machine: StateMachine
    ) -> tuple[_journal.Journal, Execution]:
        """The execution a claimed flow holds, and its stored journal: kept in memory when
        nothing but this claim wrote the flow since the step that left it, else rebuilt."""
        kept = self._kept.pop(flow.id, None)
        if (
            kept is not None
            and kept[0] + 1 == flow.version
            and kept[1].units == _journal.units(flow.value_sizes, CHUNK_PREFIX)
        ):
            return kept[1], kept[2]
        journal = await self._stored(flow)
        if journal.events:
            self.counts["replays"] += 1
            return journal, recover(machine, journal.events)
        params = cbor2.loads(flow.payload or b"")
        ex = start(
            machine,
            params["input"],
            params["context"],
            now_ms=flow.created_at_ms,
            execution_id=flow.id,
        ).execution
        return journal, ex

    def _machine(self, raw: bytes, path: str) -> StateMachine:
        key = (raw, path)
        machine = self._machines.get(key)
        if machine is None:
            root = self._machines.get((raw, "$")) or load_definition(raw)
            machine = machine_at(root, path)
            if len(self._machines) > 256:
                self._machines.clear()
            self._machines[(raw, "$")] = root
            self._machines[key] = machine
        return machine

    async def _stored(self, flow: Flow) -> _journal.Journal:
        """The execution's stored events (all of them: executions are not cached)."""
        now = _journal.layout(flow.value_sizes, CHUNK_PREFIX)
        _keep, names = _journal.plan(None, now)
        if not names:
            return _journal.NEW
        got = await self.engine.get_values(flow.id, names, partition_key=flow.partition_key)
        return _journal.assemble(None, now, 0, [(n, cbor2.loads(got[n])) for n in names])

    async def _step(self, ctx: Context) -> Outcome | None:
        try:
            return await self._advance(ctx)
        except _LOST:
            ctx.settled = True  # someone else owns the flow now: drop it, acknowledge nothing
            return None

    async def _advance(self, ctx: Context) -> Outcome | None:
        self.counts["steps"] += 1
        flow = ctx.flow
        vals = flow.values
        raw = vals["definition"]
        machine = self._machine(raw, vals.get("machine", b"$").decode())
        self._kept_pending.pop(flow.id, None)  # (a step that never got its command in)
        journal, ex = await self._rebuilt(flow, machine)
        stored = journal.events
        step = _Step(self, ex)
        if flow.logical_state == STOPPING and "stop" in vals:
            stop = json.loads(vals["stop"])
            step.feed(Stop(stop.get("error", ""), stop.get("cause", ""), self.engine.now_ms()))
        spawn = await step.run(flow)
        ex = step.ex
        new = ex.events[len(stored) :]
        values, _after = _journal.extend(journal, list(new), CHUNK_PREFIX)
        if ex.status is Status.SUCCEEDED:
            return Complete(_json(ex.output), values)
        if ex.status is not Status.RUNNING:
            error = {"status": ex.status.value, "error": ex.error or "", "cause": ex.cause or ""}
            return Fail(_json(error), values)
        if spawn and not new:
            self.counts["spawns"] += 1
            return self._spawn(flow, raw, spawn)
        if step.blocked and not new:
            return Transition(READY, delay_ms=self.poll_ms)  # children still live (rare)
        pending = ex.pending
        if not pending:
            raise AslUsageError(f"execution {flow.id!r} is running but waits for nothing")
        if self.kept_executions:
            self._kept_pending[flow.id] = (_after, ex)  # kept once acknowledged (`_keep`)
            if len(self._kept_pending) > self.kept_executions:  # (commands never acked)
                del self._kept_pending[next(iter(self._kept_pending))]
        if any(not isinstance(e, StartTimer) for e in pending):
            return Transition(READY, values=values)
        fire_at = min(e.fire_at_ms for e in pending if isinstance(e, StartTimer))
        return Transition(WAITING, run_at_ms=max(fire_at, 0), values=values)

    def _spawn(self, flow: Flow, raw: bytes, branches: list[tuple[str, Branch]]) -> Spawn:
        run_id = branches[0][0]
        children = [
            ChildSpec(
                b.execution_id,
                self.flow_type,
                state=READY,
                payload=_start_params(raw, b.input, dict(b.context)),
                values={"definition": raw, "machine": b.machine.path.encode()},
            )
            for _run, b in branches
        ]
        return Spawn(
            children,
            group_id=f"{run_id}-{branches[0][1].index}",
            wait="all",
            wait_state=BRANCHES,
            success_state=BRANCHES_DONE,
            failure_state=BRANCHES_DONE,
            on_child_failed="ignore",
        )

    # -- tasks ----------------------------------------------------------------------------

    async def run_task(
        self, task: ScheduleTask, exec_deadline_ms: int | None
    ) -> Command | _ExecutionDeadline:
        """Run a task's handler under its limits; the command that answers it."""
        handler = self.handlers.get(task.resource)
        if handler is None:
            return TaskFailed(
                task.task_id,
                "States.Runtime",
                f"no handler registered for resource {task.resource!r}",
            )
        self.counts["tasks_run"] += 1
        t0 = trio.current_time()
        limits: list[tuple[float, str]] = []
        if task.timeout_s is not None:
            limits.append((t0 + task.timeout_s, "timeout"))
        if exec_deadline_ms is not None:
            limits.append((t0 + (exec_deadline_ms - self.engine.now_ms()) / 1000, "execution"))
        deadline, which = min(limits) if limits else (math.inf, "")
        # HeartbeatSeconds: the handler must call `heartbeat()` (a `heartbeat` parameter)
        # at least that often; each call pushes this scope's deadline. A handler without
        # the parameter cannot beat, so for it the limit is a timeout from the start.
        beats = trio.CancelScope(
            deadline=t0 + task.heartbeat_s if task.heartbeat_s is not None else math.inf
        )

        def beat() -> None:
            if task.heartbeat_s is not None:
                beats.deadline = trio.current_time() + task.heartbeat_s

        data = copy.deepcopy(task.input)
        result: Any = None
        failed: BaseException | None = None
        with trio.move_on_at(deadline) as scope, beats:
            try:
                extra: dict[str, Any] = {}
                if _is_async(handler):
                    if _wants_heartbeat(handler):
                        extra["heartbeat"] = beat
                    result = await handler(data, **extra)
                else:
                    if _wants_heartbeat(handler):
                        extra["heartbeat"] = lambda: trio.from_thread.run_sync(beat)
                    result = await trio.to_thread.run_sync(
                        lambda: handler(data, **extra),
                        limiter=self._threads,
                        abandon_on_cancel=True,
                    )
            except Exception as exc:  # the handler's failure is the task's outcome
                failed = exc
        now = self.engine.now_ms()
        if beats.cancelled_caught:
            return HeartbeatTimedOut(task.task_id, f"no heartbeat within {task.heartbeat_s} s", now)
        if scope.cancelled_caught:
            if which == "timeout":
                return TaskTimedOut(task.task_id, f"no result within {task.timeout_s} s", now)
            return _ExecutionDeadline(now)
        if isinstance(failed, TaskError):
            return TaskFailed(task.task_id, failed.error, failed.cause, now)
        if failed is not None:
            return TaskFailed(task.task_id, type(failed).__name__, str(failed), now)
        try:
            output = json.loads(_json(result))
        except (TypeError, ValueError) as exc:
            return TaskFailed(task.task_id, "States.Runtime", f"the output is not JSON: {exc}", now)
        return TaskSucceeded(task.task_id, output, now)


@dataclass(frozen=True)
class _ExecutionDeadline:
    """The execution's timeout came while a task ran (not an interpreter command)."""

    now_ms: int


class _Step:
    """Answers what one claimed execution waits for (see the module comment)."""

    def __init__(self, runner: AslRunner, ex: Execution) -> None:
        self.runner = runner
        self.ex = ex
        self.fed = False  # a command was fed in this claim: later effects are not durable
        self.blocked = False

    def feed(self, cmd: Command) -> None:
        self.ex = resume(self.ex, cmd).execution
        self.fed = True

    def due_timers(self) -> None:
        while self.ex.status is Status.RUNNING:
            now = self.runner.engine.now_ms()
            due = sorted(
                (e.fire_at_ms, e.timer_id)
                for e in self.ex.pending
                if isinstance(e, StartTimer) and e.fire_at_ms <= now
            )
            if not due:
                return
            self.feed(TimerFired(due[0][1], now))

    def execution_timer(self) -> StartTimer | None:
        timer = self.ex._run.execution_timer
        eff = self.ex._run.pending.get(timer) if timer is not None else None
        return eff if isinstance(eff, StartTimer) else None

    async def run(self, flow: Flow) -> list[tuple[str, Branch]]:
        """Feed everything answerable now; the branches to spawn (durable ones only)."""
        children: dict[str, ChildStatus] | None = None
        while True:
            self.due_timers()
            if self.ex.status is not Status.RUNNING:
                return []
            pending = self.ex.pending
            tasks = [e for e in pending if isinstance(e, ScheduleTask)]
            runs = [e for e in pending if isinstance(e, StartBranches)]
            if self.fed and (tasks or runs):
                return []  # derived from a command of this claim: store first
            if tasks:
                timer = self.execution_timer()
                cmd = await self.runner.run_task(tasks[0], timer.fire_at_ms if timer else None)
                if isinstance(cmd, _ExecutionDeadline):
                    assert timer is not None
                    self.feed(TimerFired(timer.timer_id, max(cmd.now_ms, timer.fire_at_ms)))
                else:
                    self.feed(cmd)
                continue
            if not runs:
                return []
            if children is None:
                listing = await self.runner.engine.children(
                    flow.id, partition_key=flow.partition_key
                )
                children = {c.id: c for c in listing}
            branches = sorted(
                ((e.run_id, b) for e in runs for b in e.branches), key=lambda rb: rb[1].index
            )
            outcomes = [
                (run_id, b, children[b.execution_id])
                for run_id, b in branches
                if b.execution_id in children and children[b.execution_id].state != "pending"
            ]
            if outcomes:
                now = self.runner.engine.now_ms()
                for run_id, b, status in outcomes:
                    self.feed(_branch_outcome(run_id, b.index, status, now))
                continue
            unspawned = [(run_id, b) for run_id, b in branches if b.execution_id not in children]
            if unspawned:
                return unspawned
            self.blocked = True
            return []


def _branch_outcome(run_id: str, index: int, child: ChildStatus, now: int) -> Command:
    if child.state == "completed":
        output = json.loads(child.result) if child.result else None
        return BranchSucceeded(run_id, index, output, now)
    error, cause = _error_of(child.error, BRANCH_FAILED)
    if child.state == "cancelled" and not child.error:
        cause = "the branch was cancelled"
    return BranchFailed(run_id, index, error, cause, now)


# -- handler modules (the CLI's --handlers) ---------------------------------------------------


def load_handlers(spec: str) -> dict[str, Handler]:
    """`module:attr` or `path/to/file.py:attr` -> the mapping of resource names to handlers
    it names. InvalidArgument when it cannot be loaded or is not such a mapping."""
    target, sep, attr = spec.rpartition(":")
    if not sep or not target or not attr:
        raise InvalidArgument(f"--handlers wants module:attr, not {spec!r}")
    try:
        if target.endswith(".py"):
            module_spec = importlib.util.spec_from_file_location("_asl_handlers", target)
            if module_spec is None or module_spec.loader is None:
                raise InvalidArgument(f"cannot load {target!r}")
            module = importlib.util.module_from_spec(module_spec)
            module_spec.loader.exec_module(module)
        else:
            if "" not in sys.path:
                sys.path.insert(0, "")
            module = importlib.import_module(target)
    except (ImportError, OSError, SyntaxError) as exc:
        raise InvalidArgument(f"cannot import {target!r}: {exc}") from None
    table = getattr(module, attr, None)
    if not isinstance(table, Mapping) or not all(
        isinstance(k, str) and callable(v) for k, v in table.items()
    ):
        raise InvalidArgument(f"{spec!r} is not a mapping of resource names to callables")
    return dict(table)
