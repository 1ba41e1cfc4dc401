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
# Not built yet (issue 18): call_workflow / start_workflow from inside a step, waits and
# human input, decision / branch / parallel steps, per-queue concurrency.
from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

import flowactors as fa
from flowactors.code import (
    ActivityError,
    ActivityRef,
    Context,
    NonRetryable,
    WorkflowDef,
    activity_info,
)

Backoff = Literal["exponential", "linear", "constant"]
StepFn = Callable[["StepContext", Any], Awaitable[Any]]


class StepFailed(NonRetryable):
    """Raise from a step to fail it at once, without its remaining attempts."""


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
            try:
                got = await ctx.activity(
                    run, run_input, data, retry=retry, compensate=step.compensate,
                    name=f"step:{step.name}",
                )  # fmt: skip
            except ActivityError:
                await ctx.compensate_all()
                raise
            data = got.result if isinstance(got, ActivityRef) else got
        return data

    digest = hashlib.sha256(repr((pipeline.name, pipeline.version, names)).encode()).hexdigest()
    return WorkflowDef(pipeline.name, body, pipeline.version, digest, pipeline.retention_ms)
