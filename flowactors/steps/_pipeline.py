# Step pipelines (Durable's model, seed 003) as code workflows: what a pipeline is and how
# it runs.
#
# A pipeline is an ordered list of steps, `async def step(ctx, data) -> data`. It runs as
# one code workflow (flowactors.code) generated from the list: each step is an activity
# whose argument is the context the previous step returned, so the context is journaled
# after every step by the same engine command that records the step's result. A resumed
# run replays the finished steps from the journal (their code is not run again) and runs
# the current one from its start: at least once, as Durable says; steps with side effects
# use `ctx.idempotency_key`. Retries are the activity's durable retries (the attempt count
# is journaled; a step waiting for its next attempt holds no worker: the run waits as an
# engine flow due at the retry time). A step that fails for good runs the compensations
# of the steps before it, newest first, each once, then fails the run.
#
# Children (Durable's call_workflow / start_workflow). A step runs in a worker and cannot
# wait durably, so asking for a child that does not exist yet ends the step's attempt with
# `_Suspend` (never retried, never compensated): the pipeline's workflow code then starts
# the child as a child run `<run id>/<ref>` (ctx.start_child), waits for it without
# holding a worker (call_workflow) or not (start_workflow), and runs the step again from
# its start. This time the child exists: call_workflow returns Ok(its result) or Err(its
# error) at once, start_workflow its id. The child's id comes from `ref`, so a resumed run
# never starts a second one.
#
# Not built yet (issue 18): call_workflow's timeout, waits and human input, decision /
# branch / parallel steps, per-queue concurrency.
from __future__ import annotations

import contextlib
import contextvars
import hashlib
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import flowactors as fa
from flowactors.code import (
    ActivityError,
    ActivityRef,
    ChildCancelled,
    ChildFailed,
    Context,
    NonRetryable,
    WorkflowDef,
    activity_info,
)

if TYPE_CHECKING:
    from flowactors.code import CodeRunner, RunInfo

Backoff = Literal["exponential", "linear", "constant"]
StepFn = Callable[["StepContext", Any], Awaitable[Any]]


class StepFailed(NonRetryable):
    """Raise from a step to fail it at once, without its remaining attempts."""


class _Suspend(NonRetryable):
    """Ends a step's attempt that asked for a child not started yet (see the top)."""


SUSPEND = _Suspend.__name__
# The CodeRunner hosting the running steps, set by `Pipelines` (a step's children are
# looked up through it).
HOST: contextvars.ContextVar[CodeRunner] = contextvars.ContextVar("flowactors_steps_host")


@dataclass(frozen=True, slots=True)
class Ok:
    """call_workflow's answer when the child completed: its result."""

    result: Any


@dataclass(frozen=True, slots=True)
class Err:
    """call_workflow's answer when the child failed or was cancelled: {type, message}."""

    reason: dict[str, Any]


@dataclass(frozen=True, slots=True)
class StepRetry:
    """Attempts of one step: `max_attempts` in all (1: no retry), the wait before attempt
    n+1 growing `exponential`ly (base, 2 base, 4 base ...), `linear`ly (base, 2 base ...)
    or `constant`, capped at `cap_ms`."""

    max_attempts: int = 1
    backoff: Backoff = "exponential"
    base_ms: int = 1_000
    cap_ms: int = 60_000

    def __post_init__(self) -> None:
        if isinstance(self.max_attempts, bool) or not isinstance(self.max_attempts, int):
            raise fa.InvalidArgument("StepRetry.max_attempts must be an int")
        if not 1 <= self.max_attempts <= 101:
            raise fa.InvalidArgument("StepRetry.max_attempts must be 1..101")
        if self.backoff not in ("exponential", "linear", "constant"):
            raise fa.InvalidArgument(
                f"StepRetry.backoff must be exponential, linear or constant, not {self.backoff!r}"
            )
        for name in ("base_ms", "cap_ms"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise fa.InvalidArgument(f"StepRetry.{name} must be a positive int")

    def policy(self) -> fa.RetryPolicy:
        backoff = "fixed" if self.backoff == "constant" else self.backoff
        return fa.RetryPolicy(
            max_retries=self.max_attempts - 1,
            backoff=backoff,
            base_ms=self.base_ms,
            max_ms=max(self.cap_ms, self.base_ms),
            jitter_pct=0,
        )


@dataclass(frozen=True, slots=True)
class StepContext:
    """What a step sees besides the context it is handed: the run's input, its id, the
    step's name and attempt (1 for the first), and a key stable across the step's retries
    and re-runs, for the step's own side effects."""

    input: Any
    run_id: str
    step: str
    attempt: int
    idempotency_key: str

    async def call_workflow(
        self, child: Pipeline | WorkflowDef | str, input: Any = None, *, ref: str
    ) -> Ok | Err:
        """Run `child` (a pipeline or code workflow registered with this `Pipelines`) as
        child run `<run id>/<ref>` and return Ok(its result) or Err(its error). The
        first time, the step stops here (holding no worker) until the child ended, then
        runs again from its start; `ref` makes that second call find the same child."""
        info = await self._child(child, input, ref, "call")
        if info.status == "completed":
            return Ok(info.result)
        if info.status in ("failed", "cancelled"):
            return Err(info.error or {"type": info.status, "message": ""})
        raise fa.InvalidArgument(  # a ref reused while its first child still runs
            f"ref {ref!r} names child {info.run_id}, which is still {info.status}"
        )

    async def start_workflow(
        self, child: Pipeline | WorkflowDef | str, input: Any = None, *, ref: str
    ) -> str:
        """Start `child` as child run `<run id>/<ref>` without waiting for it; its id.
        Idempotent through `ref` (the step runs again once the child is started)."""
        info = await self._child(child, input, ref, "start")
        return info.run_id

    async def _child(self, child: Any, input: Any, ref: str, op: str) -> RunInfo:
        if not isinstance(ref, str) or not ref or "/" in ref:
            raise fa.InvalidArgument("ref must be a non-empty string without '/'")
        name = child.name if isinstance(child, Pipeline | WorkflowDef) else child
        if not isinstance(name, str):
            raise fa.InvalidArgument(f"not a pipeline or workflow: {child!r}")
        host = HOST.get(None)
        if host is None:
            raise fa.InvalidArgument("children need the step to run under Pipelines")
        try:
            return await host.describe(f"{self.run_id}/{ref}")
        except fa.FlowNotFound:
            pass
        host.registry.latest(name)  # UnknownWorkflow now, not in the workflow code
        raise _Suspend(json.dumps({"op": op, "w": name, "i": input, "ref": ref}))


@dataclass(frozen=True, slots=True)
class Step:
    name: str
    fn: StepFn
    retry: StepRetry | None
    compensate: Callable[[Any], Awaitable[Any]] | None


class Pipeline:
    """An ordered list of steps, run as the code workflow `name`.

        pipeline = steps("process_order")

        @pipeline.step
        async def validate(ctx, data): ...

        @pipeline.step(retry=StepRetry(max_attempts=5), compensate=refund)
        async def charge(ctx, data): ...

    Steps are added at import time, before the pipeline first runs; the definition
    (`pipeline.workflow`) is fixed then. Its code hash covers the step names in order, so
    a run started under another list of steps is detected (flowactors.code versioning)."""

    def __init__(
        self,
        name: str,
        *,
        version: int = 1,
        queue: str | None = None,
        retention_ms: int | None = None,
    ) -> None:
        if not isinstance(name, str) or not name:
            raise fa.InvalidArgument("a pipeline name is a non-empty string")
        if queue is not None and (not isinstance(queue, str) or not queue):
            raise fa.InvalidArgument("queue must be a non-empty string or None")
        self.name = name
        self.version = version
        self.queue = queue  # recorded; per-queue concurrency is not built yet
        self.retention_ms = retention_ms
        self.steps: list[Step] = []
        self._workflow: WorkflowDef | None = None

    def step(
        self,
        fn: StepFn | None = None,
        /,
        *,
        name: str | None = None,
        retry: StepRetry | None = None,
        compensate: Callable[[Any], Awaitable[Any]] | None = None,
    ) -> Any:
        """Append a step (a decorator, bare or with options); returns the function."""

        def add(target: StepFn) -> StepFn:
            if self._workflow is not None:
                raise fa.InvalidArgument(
                    f"pipeline {self.name!r} has started running; add steps before that"
                )
            if not callable(target):
                raise fa.InvalidArgument(f"a step is an `async def step(ctx, data)`: {target!r}")
            step_name = name or getattr(target, "__name__", "")
            if not isinstance(step_name, str) or not step_name:
                raise fa.InvalidArgument("a step needs a name")
            if any(s.name == step_name for s in self.steps):
                raise fa.InvalidArgument(f"pipeline {self.name!r} has a step {step_name!r}")
            if retry is not None and not isinstance(retry, StepRetry):
                raise fa.InvalidArgument("retry must be a StepRetry")
            if compensate is not None and not callable(compensate):
                raise fa.InvalidArgument("compensate must be an async function of the result")
            self.steps.append(Step(step_name, target, retry, compensate))
            return target

        return add if fn is None else add(fn)

    @property
    def workflow(self) -> WorkflowDef:
        """The code workflow this pipeline runs as (built once, on first use)."""
        if self._workflow is None:
            if not self.steps:
                raise fa.InvalidArgument(f"pipeline {self.name!r} has no steps")
            self._workflow = _build(self)
        return self._workflow

    def __repr__(self) -> str:
        return f"<pipeline {self.name} [{', '.join(s.name for s in self.steps)}]>"


def steps(
    name: str, *, version: int = 1, queue: str | None = None, retention_ms: int | None = None
) -> Pipeline:
    """A new, empty pipeline named `name` (add steps with `@pipeline.step`)."""
    return Pipeline(name, version=version, queue=queue, retention_ms=retention_ms)


def _build(pipeline: Pipeline) -> WorkflowDef:
    steps_ = list(pipeline.steps)
    names = [s.name for s in steps_]

    def runner(step: Step) -> Callable[[Any, Any], Awaitable[Any]]:
        async def run_step(run_input: Any, data: Any) -> Any:
            info = activity_info()
            ctx = StepContext(run_input, info.run_id, step.name, info.attempt, info.idempotency_key)
            return await step.fn(ctx, data)

        run_step.__name__ = f"step:{step.name}"
        return run_step

    runners = [runner(s) for s in steps_]

    async def body(ctx: Context, run_input: Any) -> Any:
        data = run_input
        for step, run in zip(steps_, runners, strict=True):
            retry = None if step.retry is None else step.retry.policy()
            while True:
                try:
                    got = await ctx.activity(
                        run, run_input, data, retry=retry, compensate=step.compensate,
                        name=f"step:{step.name}",
                    )  # fmt: skip
                except ActivityError as exc:
                    if exc.type != SUSPEND:
                        await ctx.compensate_all()
                        raise
                    spec = json.loads(exc.message)
                    handle = ctx.start_child(spec["w"], spec["i"], id=spec["ref"])
                    if spec["op"] == "call":
                        # an ended child, however it ended: the step sees it as Ok / Err
                        with contextlib.suppress(ChildFailed, ChildCancelled):
                            await ctx.await_child(handle)
                    continue  # the step again, from its start
                break
            data = got.result if isinstance(got, ActivityRef) else got
        return data

    digest = hashlib.sha256(repr((pipeline.name, pipeline.version, names)).encode()).hexdigest()
    return WorkflowDef(pipeline.name, body, pipeline.version, digest, pipeline.retention_ms)
