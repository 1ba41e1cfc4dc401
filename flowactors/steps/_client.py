# The pipelines' client and host: a CodeRunner that knows the pipelines' workflows, plus a
# step-level view of a run (which steps finished, which one is current, the context).
from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import cbor2

import flowactors as fa
from flowactors.code import CodeRunner, RunInfo, WorkflowDef

from ._pipeline import HOST, INPUT, SUSPEND, Pipeline, _decode, check_input

STEP_PREFIX = "step:"


@dataclass(frozen=True, slots=True)
class PipelineRun:
    """A run seen step by step. `status`: running, parked, completed, failed, cancelled.
    `context`: what the last finished step returned (the input before the first);
    `current`: the step running or waiting for its next attempt (None once ended);
    `attempts`: failed attempts of the current step so far. `compensation` (Durable's
    saga statuses): None, "compensating" while compensations run, then "compensated" or
    "compensation_failed" (some failed; `compensation_failed` names them, `compensated`
    the ones that ran)."""

    run_id: str
    pipeline: str
    status: str
    done: tuple[str, ...]
    current: str | None
    context: Any
    attempts: int = 0
    result: Any = None
    error: dict[str, Any] | None = None
    compensated: tuple[str, ...] = field(default=())
    compensation: str | None = None
    compensation_failed: tuple[str, ...] = field(default=())


@dataclass(frozen=True, slots=True)
class PendingInput:
    """A human input a run waits for (see `StepContext.wait_for_input`)."""

    run_id: str
    pipeline: str
    step: str
    name: str
    type: str
    prompt: str
    choices: list[Any] | None
    fields: list[str] | None
    metadata: dict[str, Any] | None
    since_ms: int  # engine time the wait began
    expires_ms: int | None  # when its timeout passes, if it has one
    position: int  # of the wait in the run's journal

    @property
    def spec(self) -> dict[str, Any]:
        return {"name": self.name, "type": self.type, "prompt": self.prompt,
                "choices": self.choices, "fields": self.fields}  # fmt: skip


def _pending(run_id: str, pipeline: str, journal: list[dict[str, Any]]) -> PendingInput | None:
    """The input the run waits for now, from its journal: the last step attempt that
    stopped for an input, and the wait for its event, still open."""
    scheduled: dict[int, dict[str, Any]] = {}
    done: set[int] = set()
    asked: dict[str, tuple[str, dict[str, Any]]] = {}  # event -> (step, suspension)
    for e in journal:
        pos = e.get("pos", -1)
        if e["type"] == "scheduled":
            scheduled[pos] = e
        elif e["type"] in ("completed", "failed"):
            done.add(pos)
            err = e.get("error") or {}
            if e["type"] == "failed" and err.get("type") == SUSPEND and pos in scheduled:
                spec = _decode(str(err.get("message")))
                if spec.get("op") == "input":
                    step = str(scheduled[pos].get("name"))[len(STEP_PREFIX) :]
                    asked[spec["name"]] = (step, spec)
    for pos in sorted(scheduled, reverse=True):
        e = scheduled[pos]
        if pos in done or e.get("kind") != "signal" or e.get("name") not in asked:
            continue
        step, spec = asked[str(e.get("name"))]
        what = spec["input"]
        return PendingInput(
            run_id=run_id, pipeline=pipeline, step=step, name=what["name"],
            type=what["type"], prompt=what["prompt"], choices=what["choices"],
            fields=what["fields"], metadata=what["metadata"], since_ms=int(e.get("at") or 0),
            expires_ms=e.get("until"), position=pos,
        )  # fmt: skip
    return None


class Pipelines:
    """Start and follow pipeline runs; host them with `running()`.

        pipelines = Pipelines(engine, [process_order])
        await pipelines.start(process_order, "order-1", {"id": "order-1"})
        async with pipelines.running():
            print(await pipelines.result("order-1"))

    `workflows`: code workflows the steps may call as children. Options are CodeRunner's
    (lease_ms, activity_threads, ...); `runner` is that CodeRunner, for everything else
    it offers (signals, history, list)."""

    def __init__(
        self,
        engine: fa.Engine,
        pipelines: Iterable[Pipeline],
        *,
        workflows: Iterable[WorkflowDef] = (),
        **options: Any,
    ) -> None:
        self.pipelines: dict[str, Pipeline] = {}
        for p in pipelines:
            if not isinstance(p, Pipeline):
                raise fa.InvalidArgument(f"not a pipeline: {p!r}")
            if p.name in self.pipelines:
                raise fa.InvalidArgument(f"two pipelines named {p.name!r}")
            self.pipelines[p.name] = p
        defs = [wf for p in self.pipelines.values() for wf in p.workflows] + list(workflows)
        self.runner = CodeRunner(engine, defs, **options)

    def _pipeline(self, pipeline: Pipeline | str) -> Pipeline:
        name = pipeline.name if isinstance(pipeline, Pipeline) else pipeline
        found = self.pipelines.get(name) if isinstance(name, str) else None
        if found is None:
            raise fa.InvalidArgument(f"no pipeline named {name!r} is registered here")
        return found

    async def start(
        self,
        pipeline: Pipeline | str,
        run_id: str,
        input: Any = None,
        *,
        idempotent: bool = True,
        priority: int | None = None,
        delay_ms: int | None = None,
    ) -> PipelineRun:
        """Start run `run_id` of `pipeline` on `input` (the first step's context), in
        the pipeline's queue at `priority` (default: the pipeline's), due now or after
        `delay_ms`. The same start again is a no-op; another input under the same id
        raises IdempotencyConflict."""
        p = self._pipeline(pipeline)
        await self.runner.start(
            p.workflow, run_id, input, idempotent=idempotent, priority=priority,
            delay_ms=delay_ms,
        )  # fmt: skip
        return await self.describe(run_id)

    async def result(self, run_id: str) -> Any:
        """Wait for the run's end: the last step's context (WorkflowFailed /
        RunCancelled otherwise)."""
        return await self.runner.result(run_id)

    async def cancel(self, run_id: str, reason: str = "cancelled") -> PipelineRun:
        await self.runner.cancel(run_id, reason)
        return await self.describe(run_id)

    async def describe(self, run_id: str) -> PipelineRun:
        info: RunInfo = await self.runner.describe(run_id)
        journal = await self.runner.history(run_id)
        flow = await self.runner.engine.get(run_id, payload=True)
        start = cbor2.loads(flow.payload) if flow is not None and flow.payload else {}
        return _view(info, start.get("i"), journal, self.pipelines.get(info.workflow))

    @asynccontextmanager
    async def running(self, **options: Any) -> AsyncIterator[Pipelines]:
        """Host the runs (a worker in the background) for the block's duration; options
        are the worker's (concurrency, batch_size, on_ack, ...)."""
        token = HOST.set(self.runner)  # the worker's tasks, started below, inherit it
        try:
            async with self.runner.running(**options):
                yield self
        finally:
            HOST.reset(token)

    async def send_event(self, run_id: str, name: str, payload: Any = None) -> str:
        """Send event `name` to run `run_id` (kept until a step waits for it); its
        delivery id."""
        return await self.runner.signal(run_id, name, payload)

    async def list_pending_inputs(
        self, *, pipeline: Pipeline | str | None = None, name: str | None = None
    ) -> list[PendingInput]:
        """The human inputs runs wait for now (of `pipeline`, named `name`), oldest
        first."""
        wanted = None if pipeline is None else self._pipeline(pipeline).name
        out: list[PendingInput] = []
        for run in await self.runner.list(status="running", limit=100_000):
            if run.workflow not in self.pipelines or wanted not in (None, run.workflow):
                continue
            pending = _pending(run.run_id, run.workflow, await self.runner.history(run.run_id))
            if pending is not None and name in (None, pending.name):
                out.append(pending)
        out.sort(key=lambda p: (p.since_ms, p.run_id))
        return out

    async def provide_input(self, run_id: str, name: str, data: Any) -> str:
        """Answer input `name` that run `run_id` waits for: `data` is checked against the
        input's type (InvalidArgument, and nothing sent, when it does not fit or the run
        does not wait for that input); exactly once. Returns the delivery id."""
        pending = _pending(run_id, "", await self.runner.history(run_id))
        if pending is None or pending.name != name:
            raise fa.InvalidArgument(f"run {run_id!r} is not waiting for input {name!r}")
        value = check_input(pending.spec, data)
        delivery = f"input:{pending.position}"  # one answer per wait
        return await self.runner.signal(run_id, INPUT + name, value, delivery_id=delivery)

    async def list_children(self, run_id: str, *, status: str | None = None) -> list[RunInfo]:
        """The child runs a run started (call_workflow / start_workflow), optionally only
        those with `status` (running, parked, completed, failed, cancelled)."""
        out: list[RunInfo] = []
        cursor: str | None = None
        while True:
            page = await self.runner.engine.by_parent(run_id, limit=500, cursor=cursor)
            for flow in page.items:
                info = await self.runner.describe(flow.id)
                if status is None or info.status == status:
                    out.append(info)
            if page.cursor is None:
                return out
            cursor = page.cursor


def _view(
    info: RunInfo, run_input: Any, journal: list[dict[str, Any]], p: Pipeline | None
) -> PipelineRun:
    names: dict[int, tuple[str, str]] = {}  # position -> (kind, step)
    ended: set[int] = set()
    done: list[str] = []
    compensated: list[str] = []
    compensation_failed: list[str] = []
    context: Any = run_input
    failed_attempts: dict[int, int] = {}
    for e in journal:
        pos = e.get("pos", -1)
        if e["type"] == "scheduled":
            names[pos] = (str(e.get("kind")), str(e.get("name")))
        elif e["type"] == "attempt_failed":
            failed_attempts[pos] = failed_attempts.get(pos, 0) + 1
        elif e["type"] in ("completed", "failed") and pos in names:
            ended.add(pos)
            kind, name = names[pos]
            ok = e["type"] == "completed"
            if name.startswith(STEP_PREFIX) and kind == "activity" and ok:
                done.append(name[len(STEP_PREFIX) :])
                context = e.get("value")
            elif kind == "compensate":
                (compensated if ok else compensation_failed).append(name)
    current = None
    attempts = 0
    if info.status in ("running", "parked"):
        open_steps = [
            q for q, (k, n) in names.items()
            if k == "activity" and n.startswith(STEP_PREFIX) and q not in ended
        ]  # fmt: skip
        if open_steps:
            current = names[open_steps[-1]][1][len(STEP_PREFIX) :]
            attempts = failed_attempts.get(open_steps[-1], 0)
        elif not any(k == "compensate" for k, _n in names.values()) and p is not None:
            # between steps (a child or a wait being set up): the first step not done
            left = [s.name for s in p.steps if s.name not in done]
            current = left[0] if left else None
    compensating = any(k == "compensate" for k, _n in names.values())
    if compensation_failed:
        compensation = "compensation_failed" if info.status != "running" else "compensating"
    elif compensating:
        pending = any(k == "compensate" and q not in ended for q, (k, _n) in names.items())
        compensation = "compensating" if info.status == "running" or pending else "compensated"
    else:
        compensation = None
    return PipelineRun(
        run_id=info.run_id,
        pipeline=info.workflow,
        status=info.status,
        done=tuple(done),
        current=current,
        context=context,
        attempts=attempts,
        result=info.result,
        error=info.error,
        compensated=tuple(compensated),
        compensation=compensation,
        compensation_failed=tuple(compensation_failed),
    )
