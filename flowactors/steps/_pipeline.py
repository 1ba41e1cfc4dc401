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
# its start, handed what the workflow code saw of the child (in `resolved`, so it is
# journaled): call_workflow returns Ok(its result) or Err(its error) at once,
# start_workflow its id, with no read of the engine. With a timeout, the workflow code's
# wait for the child races a durable timer (await_child(timeout=)); when the timer wins,
# the re-run step's call_workflow returns `timeout_value` (the child goes on running).
# The child's id comes from `ref`, so a resumed run never starts a second one.
#
# Waits (sleep, schedule_at, wait_for_event, wait_for_any, wait_for_all) work the same
# way: the first time, the step's attempt ends and the workflow code waits (a durable
# timer, the run's signal mailbox); the step then runs again from its start with what the
# wait produced, keyed by the wait's kind and its count within the step (`resolved`, an
# argument of the step's activity, so it is journaled), and the same wait returns at once.
#
# Decisions: a step that returns `goto(step, data)` moves the run forward to `step` (later
# in the list) with `data` as the context, skipping the steps between.
#
# Branches and parallel blocks. A branch's `on(data)` runs in the workflow code and picks
# the case whose steps run next. A parallel block starts one child run per step (each a
# one-step workflow `<pipeline>.<block>.<step>`, registered with the pipeline), all given
# the context as it was, and waits for them durably like call_workflow does.
#
# Human input is an event wait for `input.<name>` whose definition (type, prompt, choices,
# fields) rides in the step's suspension, so `list_pending_inputs` finds it in the journal
# and `provide_input` checks the answer against it before sending it.
#
# Queues: a pipeline's `queue` and `priority` are its workflow's (flowactors.code runs a
# worker per queue it serves, each with its own concurrency).
from __future__ import annotations

import contextvars
import hashlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import cbor2

import flowactors as fa
from flowactors.code import (
    ActivityError,
    ActivityRef,
    ChildCancelled,
    ChildFailed,
    Context,
    NonRetryable,
    Timeout,
    WorkflowDef,
    activity_info,
)
from flowactors.code._define import check_queue
from flowactors.code._replay import ActivityCall
from flowactors.code._values import check as _values_check

if TYPE_CHECKING:
    from flowactors.code import CodeRunner

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
    resolved: dict[str, Any] = field(default_factory=dict)
    _counts: dict[str, int] = field(default_factory=dict)

    def _key(self, kind: str) -> str:
        n = self._counts.get(kind, 0) + 1
        self._counts[kind] = n
        return f"{kind}#{n}"

    def _wait(self, kind: str, **spec: Any) -> Any:
        key = self._key(kind)
        if key in self.resolved:
            return self.resolved[key]
        raise _Suspend(_encode({"op": kind.split(":")[0], "key": key, **spec}))

    async def sleep(self, ms: int) -> None:
        """Wait `ms` on the engine's clock (durably, holding no worker)."""
        _check_ms(ms, "ms")
        self._wait("sleep", ms=ms)

    async def schedule_at(self, at_ms: int) -> None:
        """Wait until engine time `at_ms` (durably, holding no worker)."""
        _check_ms(at_ms, "at_ms")
        self._wait("at", at=at_ms)

    async def wait_for_event(
        self, name: str, *, timeout: int | None = None, timeout_value: Any = None
    ) -> Any:
        """The payload of the next event `name` sent to this run (one sent before the
        wait is kept), or `timeout_value` when `timeout` ms pass first."""
        _check_event(name)
        if timeout is not None:
            _check_ms(timeout, "timeout")
        got = self._wait(f"event:{name}", name=name, timeout=timeout)
        return timeout_value if _timed_out(got) else got

    def _events(self, op: str, names: list[str], timeout: int | None) -> Any:
        """The wait for several events (`op`: "all" or "any"), checked; what it produced,
        or the timed-out marker."""
        if not isinstance(names, list) or not names or len(set(names)) != len(names):
            raise fa.InvalidArgument("names must be a non-empty list of distinct event names")
        for name in names:
            _check_event(name)
        if timeout is not None:
            _check_ms(timeout, "timeout")
        return self._wait(f"{op}:{','.join(names)}", names=names, timeout=timeout)

    async def wait_for_all(
        self, names: list[str], *, timeout: int | None = None, timeout_value: Any = None
    ) -> Any:
        """{name: payload} once every event of `names` arrived, or `timeout_value` when
        `timeout` ms pass first."""
        got = self._events("all", names, timeout)
        return timeout_value if _timed_out(got) else got

    async def wait_for_any(
        self, names: list[str], *, timeout: int | None = None, timeout_value: Any = None
    ) -> Any:
        """(name, payload) of the first event of `names` sent to this run (ones sent
        before the wait are kept, taken in the order they came), or `timeout_value` when
        `timeout` ms pass first."""
        got = self._events("any", names, timeout)
        return timeout_value if _timed_out(got) else (got[0], got[1])

    async def wait_for_input(
        self,
        name: str,
        *,
        type: InputType = "text",
        prompt: str = "",
        choices: list[Any] | None = None,
        fields: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        timeout: int | None = None,
        timeout_value: Any = None,
    ) -> Any:
        """Wait for a person's input `name` (durably, holding no worker): listed by
        `Pipelines.list_pending_inputs` while it waits, given by `provide_input`, checked
        against `type` there: "approval" (a bool), "choice" (one of `choices`), "text" (a
        str) or "form" (a dict with every one of `fields`). `timeout_value` when
        `timeout` ms pass first."""
        spec = input_spec(name, type, prompt, choices, fields, metadata)
        if timeout is not None:
            _check_ms(timeout, "timeout")
        got = self._wait(f"input:{name}", name=INPUT + name, timeout=timeout, input=spec)
        return timeout_value if _timed_out(got) else got

    async def wait_for_approval(self, name: str, *, prompt: str = "", **options: Any) -> Any:
        """`wait_for_input(name, type="approval")`: True / False (or timeout_value)."""
        return await self.wait_for_input(name, type="approval", prompt=prompt, **options)

    async def wait_for_choice(
        self, name: str, choices: list[Any], *, prompt: str = "", **options: Any
    ) -> Any:
        """`wait_for_input(name, type="choice", choices=choices)`: one of them."""
        return await self.wait_for_input(
            name, type="choice", choices=choices, prompt=prompt, **options
        )

    async def wait_for_text(self, name: str, *, prompt: str = "", **options: Any) -> Any:
        """`wait_for_input(name, type="text")`: a str."""
        return await self.wait_for_input(name, type="text", prompt=prompt, **options)

    async def wait_for_form(
        self, name: str, fields: list[str], *, prompt: str = "", **options: Any
    ) -> Any:
        """`wait_for_input(name, type="form", fields=fields)`: a dict of them."""
        return await self.wait_for_input(name, type="form", fields=fields, prompt=prompt, **options)

    async def send_event(self, run_id: str, name: str, payload: Any = None) -> None:
        """Send event `name` to run `run_id`; exactly once however often the step runs."""
        host = _host()
        key = self._key(f"send:{run_id}:{name}")
        await host.signal(run_id, name, payload, delivery_id=f"{self.idempotency_key}:{key}")

    async def call_workflow(
        self,
        child: Pipeline | WorkflowDef | str,
        input: Any = None,
        *,
        ref: str,
        timeout: int | None = None,
        timeout_value: Any = None,
        queue: str | None = None,
    ) -> Any:
        """Run `child` (a pipeline or code workflow registered with this `Pipelines`) as
        child run `<run id>/<ref>` and return Ok(its result) or Err(its error), or
        `timeout_value` if it has not ended within `timeout` ms (the child goes on; the
        race is decided once). The first time, the step stops here (holding no worker)
        until the child ended or the timeout passed, then runs again from its start;
        `ref` makes that second call find the same child. `queue`: the queue the child
        waits in (default: its own pipeline's)."""
        if timeout is not None:
            _check_ms(timeout, "timeout")
        if self.resolved.get(f"timeout:{ref}"):
            return timeout_value
        info = await self._child(child, input, ref, "call", timeout=timeout, queue=queue)
        if info.status == "completed":
            return Ok(info.result)
        if info.status in ("failed", "cancelled"):
            return Err(info.error or {"type": info.status, "message": ""})
        raise fa.InvalidArgument(  # a ref reused while its first child still runs
            f"ref {ref!r} names child {info.run_id}, which is still {info.status}"
        )

    async def start_workflow(
        self,
        child: Pipeline | WorkflowDef | str,
        input: Any = None,
        *,
        ref: str,
        queue: str | None = None,
    ) -> str:
        """Start `child` as child run `<run id>/<ref>` (in `queue`, default its own)
        without waiting for it; its id. Idempotent through `ref` (the step runs again
        once the child is started)."""
        info = await self._child(child, input, ref, "start", queue=queue)
        return info.run_id

    async def _child(
        self,
        child: Any,
        input: Any,
        ref: str,
        op: str,
        timeout: int | None = None,
        queue: str | None = None,
    ) -> _ChildSeen:
        if not isinstance(ref, str) or not ref or "/" in ref:
            raise fa.InvalidArgument("ref must be a non-empty string without '/'")
        check_queue(queue, 0)
        name = child.name if isinstance(child, Pipeline | WorkflowDef) else child
        if not isinstance(name, str):
            raise fa.InvalidArgument(f"not a pipeline or workflow: {child!r}")
        seen = self.resolved.get(f"child:{ref}")
        if seen is not None:  # the child started, or ended, before this run of the step
            return _ChildSeen(
                f"{self.run_id}/{ref}", seen["status"], seen.get("result"), seen.get("error")
            )
        _host().registry.latest(name)  # UnknownWorkflow now, not in the workflow code
        spec = {"op": op, "w": name, "i": input, "ref": ref}
        if timeout is not None:
            spec["timeout"] = timeout
        if queue is not None:
            spec["queue"] = queue
        raise _Suspend(_encode(spec))


@dataclass(frozen=True, slots=True)
class _ChildSeen:
    """A step's child as the pipeline's workflow code saw it (see `_build`): started, or
    ended (completed / failed / cancelled) with its result or error."""

    run_id: str
    status: str
    result: Any = None
    error: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class Step:
    name: str
    fn: StepFn
    retry: StepRetry | None
    compensate: Callable[[Any], Awaitable[Any]] | None


# What a branch's `on` may return to be matched (Durable matches atoms, strings, integers,
# booleans): compared with their type, so True does not match a case for 1.
Matchable = str | int | bool | None
ON_ERROR = ("fail_fast", "complete_all")


def _key(value: Any) -> tuple[type, Any]:
    return (type(value), value)


class Branch:
    """A branch of a pipeline: `on(data)` picks the case whose steps run next (in order),
    then the pipeline goes on after the branch. `on` runs in the workflow code: it must
    be a pure function of the context it is given (it is, at every replay)."""

    def __init__(self, pipeline: Pipeline, name: str, on: Callable[[Any], Any]) -> None:
        self.pipeline = pipeline
        self.name = name
        self.on = on
        # each case: its values and its nodes (steps, and branches nested in it)
        self.cases: list[tuple[tuple[Matchable, ...], list[Step | Branch]]] = []
        self.default: list[Step | Branch] | None = None

    def case(self, *values: Matchable, **options: Any) -> Callable[[StepFn], StepFn]:
        """Add a step to the case for `values` (a step of its own each time: a case runs
        its steps in the order they were added). Options as for `Pipeline.step`."""
        return self.pipeline._adder(self._case(values), options)

    def branch(self, *values: Matchable, name: str, on: Callable[[Any], Any]) -> Branch:
        """Add a branch nested in the case for `values` (None: the default case), run
        where it was added among that case's steps."""
        into = self._default() if values == (None,) else self._case(values)
        return self.pipeline._branch(into, name, on)

    def _default(self) -> list[Step | Branch]:
        if self.default is None:
            self.default = []
        return self.default

    def _case(self, values: tuple[Matchable, ...]) -> list[Step | Branch]:
        if not values:
            raise fa.InvalidArgument(f"branch {self.name!r}: a case needs at least one value")
        for v in values:
            if v is not None and type(v) not in (str, int, bool):
                raise fa.InvalidArgument(
                    f"branch {self.name!r}: case values are str, int, bool or None, not {v!r}"
                )
        keys = {_key(v) for v in values}
        for other, nodes in self.cases:
            if {_key(v) for v in other} == keys:
                return nodes
            if keys & {_key(v) for v in other}:
                raise fa.InvalidArgument(
                    f"branch {self.name!r}: a value of {values!r} already has a case"
                )
        nodes = []
        self.cases.append((values, nodes))
        return nodes

    def otherwise(self, fn: StepFn | None = None, /, **options: Any) -> Any:
        """Add a step to the default case (bare decorator or with options)."""
        add = self.pipeline._adder(self._default(), options)
        return add if fn is None else add(fn)

    def steps(self) -> list[Step]:
        """Every step of every case, nested branches' too."""
        out: list[Step] = []
        for nodes in [n for _v, n in self.cases] + [self.default or []]:
            for node in nodes:
                out.extend([node] if isinstance(node, Step) else node.steps())
        return out

    def pick(self, value: Any) -> list[Step | Branch]:
        key = _key(value)
        for values, steps_ in self.cases:
            if any(_key(v) == key for v in values):
                return steps_
        if self.default is None:
            raise fa.InvalidArgument(
                f"branch {self.name!r} has no case for {value!r} and no default (otherwise)"
            )
        return self.default

    def shape(self) -> Any:
        def names(nodes: list[Step | Branch]) -> list[Any]:
            return [n.name if isinstance(n, Step) else n.shape() for n in nodes]

        cases = [(list(v), names(nodes)) for v, nodes in self.cases]
        default = None if self.default is None else names(self.default)
        return ("branch", self.name, cases, default)


class Parallel:
    """Steps run side by side, each as a child run of its own (on any worker), all
    handed the context as it was before the block. Their outcomes, {step: ["ok", result]
    or ["error", {type, message}]}, go to `into(data, results)` when given, else into
    the context under "__results__". `on_error`: "fail_fast" (the first step seen failed
    cancels the others and fails the pipeline) or "complete_all" (wait for all; failures
    are results)."""

    def __init__(
        self,
        pipeline: Pipeline,
        name: str,
        on_error: str,
        into: Callable[[Any, dict[str, Any]], Any] | None,
    ) -> None:
        self.pipeline = pipeline
        self.name = name
        self.on_error = on_error
        self.into = into
        self.steps: list[Step] = []

    def step(self, fn: StepFn | None = None, /, **options: Any) -> Any:
        """Add a step to the block (bare decorator or with `Pipeline.step`'s options,
        except `compensate`)."""
        if options.get("compensate") is not None:
            raise fa.InvalidArgument(
                f"parallel {self.name!r}: a step in a parallel block takes no compensate"
            )
        add = self.pipeline._adder(self.steps, options)
        return add if fn is None else add(fn)

    def child_name(self, step: Step) -> str:
        return f"{self.pipeline.name}.{self.name}.{step.name}"

    def shape(self) -> Any:
        return ("parallel", self.name, self.on_error, [s.name for s in self.steps])


Node = Step | Branch | Parallel


class Pipeline:
    """An ordered list of steps, run as the code workflow `name`.

        pipeline = steps("process_order")

        @pipeline.step
        async def validate(ctx, data): ...

        @pipeline.step(retry=StepRetry(max_attempts=5), compensate=refund)
        async def charge(ctx, data): ...

        tier = pipeline.branch("by_tier", on=lambda data: data["tier"])

        @tier.case("gold")
        async def gift(ctx, data): ...

        @tier.otherwise
        async def standard(ctx, data): ...

        checks = pipeline.parallel("checks", on_error="complete_all")

        @checks.step
        async def fraud(ctx, data): ...

    Steps are added at import time, before the pipeline first runs; the definition
    (`pipeline.workflow`) is fixed then. Its code hash covers the steps, branches and
    parallel blocks in order, so a run started under another definition is detected
    (flowactors.code versioning)."""

    def __init__(
        self,
        name: str,
        *,
        version: int = 1,
        queue: str | None = None,
        priority: int = 0,
        retention_ms: int | None = None,
    ) -> None:
        if not isinstance(name, str) or not name or "." in name:
            raise fa.InvalidArgument("a pipeline name is a non-empty string without '.'")
        check_queue(queue, priority)
        self.name = name
        self.version = version
        self.queue = queue  # its runs (and its parallel steps' runs) wait in this queue
        self.priority = priority
        self.retention_ms = retention_ms
        self.nodes: list[Node] = []
        self._names: set[str] = set()
        self._workflows: list[WorkflowDef] | None = None

    @property
    def steps(self) -> list[Step]:
        """Every step, in definition order (those in branches and parallel blocks too)."""
        out: list[Step] = []
        for node in self.nodes:
            if isinstance(node, Step):
                out.append(node)
            elif isinstance(node, Branch):
                out.extend(node.steps())
            else:
                out.extend(node.steps)
        return out

    def _open(self, name: str) -> None:
        if self._workflows is not None:
            raise fa.InvalidArgument(
                f"pipeline {self.name!r} has started running; add steps before that"
            )
        if not isinstance(name, str) or not name or "." in name:
            raise fa.InvalidArgument("a step, branch or parallel block needs a name without '.'")
        if name in self._names:
            raise fa.InvalidArgument(f"pipeline {self.name!r} has a step {name!r}")

    def _adder(self, into: list[Any], options: dict[str, Any]) -> Callable[[StepFn], StepFn]:
        unknown = set(options) - {"name", "retry", "compensate"}
        if unknown:
            raise fa.InvalidArgument(f"unknown step options {sorted(unknown)}")
        name, retry, compensate = (options.get(k) for k in ("name", "retry", "compensate"))
        if name is not None and not isinstance(name, str):
            raise fa.InvalidArgument(f"a step name is a string, not {name!r}")

        def add(target: StepFn) -> StepFn:
            if not callable(target):
                raise fa.InvalidArgument(f"a step is an `async def step(ctx, data)`: {target!r}")
            step_name = str(name or getattr(target, "__name__", "") or "")
            self._open(step_name)
            if retry is not None and not isinstance(retry, StepRetry):
                raise fa.InvalidArgument("retry must be a StepRetry")
            if compensate is not None and not callable(compensate):
                raise fa.InvalidArgument("compensate must be an async function of the result")
            self._names.add(step_name)
            into.append(Step(step_name, target, retry, compensate))
            return target

        return add

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
        add = self._adder(self.nodes, {"name": name, "retry": retry, "compensate": compensate})
        return add if fn is None else add(fn)

    def branch(self, name: str, *, on: Callable[[Any], Any]) -> Branch:
        """Append a branch: `on(data)` chooses which case's steps run next."""
        return self._branch(self.nodes, name, on)

    def _branch(self, into: list[Any], name: str, on: Callable[[Any], Any]) -> Branch:
        self._open(name)
        if not callable(on):
            raise fa.InvalidArgument(f"branch {name!r}: on must be a function of the context")
        node = Branch(self, name, on)
        self._names.add(name)
        into.append(node)
        return node

    def parallel(
        self,
        name: str,
        *,
        on_error: str = "fail_fast",
        into: Callable[[Any, dict[str, Any]], Any] | None = None,
    ) -> Parallel:
        """Append a parallel block: its steps run as child runs side by side."""
        self._open(name)
        if on_error not in ON_ERROR:
            raise fa.InvalidArgument(f"on_error must be one of {ON_ERROR}, not {on_error!r}")
        if into is not None and not callable(into):
            raise fa.InvalidArgument("into must be a function of (data, results)")
        node = Parallel(self, name, on_error, into)
        self._names.add(name)
        self.nodes.append(node)
        return node

    @property
    def workflows(self) -> list[WorkflowDef]:
        """The code workflows this pipeline runs as: its own, then one per step of its
        parallel blocks (built once, on first use; the definition is fixed from then)."""
        if self._workflows is None:
            if not self.nodes:
                raise fa.InvalidArgument(f"pipeline {self.name!r} has no steps")
            for node in self.nodes:
                if isinstance(node, Branch) and not node.cases and node.default is None:
                    raise fa.InvalidArgument(f"branch {node.name!r} has no steps")
                if isinstance(node, Parallel) and not node.steps:
                    raise fa.InvalidArgument(f"parallel {node.name!r} has no steps")
            self._workflows = _build(self)
        return self._workflows

    @property
    def workflow(self) -> WorkflowDef:
        """The code workflow this pipeline runs as."""
        return self.workflows[0]

    def __repr__(self) -> str:
        return f"<pipeline {self.name} [{', '.join(s.name for s in self.steps)}]>"


_TIMED_OUT = "__flowactors_timed_out__"


def _timed_out(got: Any) -> bool:
    """Whether a wait's outcome is the workflow code's "the timeout came first"."""
    return isinstance(got, dict) and bool(got.get(_TIMED_OUT))


InputType = Literal["approval", "choice", "text", "form"]
INPUT_TYPES = ("approval", "choice", "text", "form")
INPUT = "input."  # the event a human input arrives as: input.<name>


def input_spec(
    name: object,
    type: object,
    prompt: object,
    choices: object,
    fields: object,
    metadata: object,
) -> dict[str, Any]:
    """A human input's definition, checked (stored with the wait, read back by
    `list_pending_inputs` and `provide_input`)."""
    _check_event(name)
    if type not in INPUT_TYPES:
        raise fa.InvalidArgument(f"input type must be one of {INPUT_TYPES}, not {type!r}")
    if not isinstance(prompt, str):
        raise fa.InvalidArgument("prompt must be a str")
    if type == "choice":
        if not isinstance(choices, list) or not choices:
            raise fa.InvalidArgument("a choice input needs a non-empty list of choices")
    elif choices is not None:
        raise fa.InvalidArgument(f"choices go with a choice input, not {type!r}")
    if type == "form":
        if (
            not isinstance(fields, list)
            or not fields
            or not all(isinstance(f, str) and f for f in fields)
        ):
            raise fa.InvalidArgument("a form input needs a non-empty list of field names")
    elif fields is not None:
        raise fa.InvalidArgument(f"fields go with a form input, not {type!r}")
    if metadata is not None and not isinstance(metadata, dict):
        raise fa.InvalidArgument("metadata must be a dict")
    spec = {"name": name, "type": type, "prompt": prompt, "choices": choices,
            "fields": fields, "metadata": metadata}  # fmt: skip
    _values_check(spec, f"input {name!r}")
    return spec


def check_input(spec: dict[str, Any], data: Any) -> Any:
    """`data` as the answer to input `spec`, or InvalidArgument saying why not."""
    kind, name = spec["type"], spec["name"]
    if kind == "approval":
        if isinstance(data, dict) and isinstance(data.get("approved"), bool):
            return data["approved"]
        if not isinstance(data, bool):
            raise fa.InvalidArgument(f"input {name!r} is an approval: give True or False")
    elif kind == "choice":
        if not any(type(c) is type(data) and c == data for c in spec["choices"]):
            raise fa.InvalidArgument(f"input {name!r} takes one of {spec['choices']!r}")
    elif kind == "text":
        if not isinstance(data, str):
            raise fa.InvalidArgument(f"input {name!r} is text: give a str")
    else:
        if not isinstance(data, dict):
            raise fa.InvalidArgument(f"input {name!r} is a form: give a dict")
        missing = [f for f in spec["fields"] if f not in data]
        if missing:
            raise fa.InvalidArgument(f"input {name!r} is missing fields {missing}")
    return data


def _host() -> CodeRunner:
    host = HOST.get(None)
    if host is None:
        raise fa.InvalidArgument("this needs the step to run under Pipelines.running()")
    return host


def _check_ms(ms: object, what: str) -> None:
    if isinstance(ms, bool) or not isinstance(ms, int) or ms < 0:
        raise fa.InvalidArgument(f"{what} must be a non-negative int of ms")


def _check_event(name: object) -> None:
    if not isinstance(name, str) or not name or ":" in name or "," in name:
        raise fa.InvalidArgument("an event name is a non-empty str without ':' or ','")


def _encode(spec: dict[str, Any]) -> str:
    return cbor2.dumps(spec).hex()  # (only ever decoded: no need for canonical order)


def _decode(text: str) -> dict[str, Any]:
    spec: dict[str, Any] = cbor2.loads(bytes.fromhex(text))
    return spec


async def _resolve(ctx: Context, spec: dict[str, Any]) -> Any:
    """The workflow side of a step's wait: wait durably, return what the step sees."""
    op = spec["op"]
    if op == "sleep":
        await ctx.timer(spec["ms"])
        return True
    if op == "at":
        await ctx.timer(max(0, spec["at"] - ctx.now_ms()))
        return True
    if op == "any":
        got_any = await ctx.signal_any(spec["names"], timeout=spec["timeout"])
        return {_TIMED_OUT: True} if isinstance(got_any, Timeout) else list(got_any)
    deadline = None if spec["timeout"] is None else ctx.now_ms() + spec["timeout"]
    names = [spec["name"]] if op in ("event", "input") else spec["names"]
    got: dict[str, Any] = {}
    for name in names:
        left = None if deadline is None else max(0, deadline - ctx.now_ms())
        value = await ctx.signal(name, timeout=left)
        if isinstance(value, Timeout):
            return {_TIMED_OUT: True}
        got[name] = value
    return got[spec["name"]] if op in ("event", "input") else got


_GOTO = "__flowactors_goto__"


def goto(step: str, data: Any) -> dict[str, Any]:
    """What a decision step returns to go forward to `step` with context `data`."""
    if not isinstance(step, str) or not step:
        raise fa.InvalidArgument("goto needs a step name")
    return {_GOTO: step, "data": data}


def steps(
    name: str,
    *,
    version: int = 1,
    queue: str | None = None,
    priority: int = 0,
    retention_ms: int | None = None,
) -> Pipeline:
    """A new, empty pipeline named `name` (add steps with `@pipeline.step`). Its runs
    wait in `queue` (served with its own concurrency: `Pipelines(..., queues=)`) and are
    claimed by `priority` (0..2, higher first)."""
    return Pipeline(
        name, version=version, queue=queue, priority=priority, retention_ms=retention_ms
    )


class ParallelFailed(StepFailed):
    """A step of a fail_fast parallel block failed (the pipeline fails with it)."""


class _StepError(fa.FlowError):
    """A step failed for good: the run's error is the step's own ({type, message} of what
    it raised), with the step's name and attempts."""

    def __init__(self, step: str, exc: ActivityError) -> None:
        super().__init__(f"step {step} failed: {exc.type}: {exc.message}")
        self.info = {"type": exc.type, "message": exc.message, "step": step,
                     "attempts": exc.attempts}  # fmt: skip

    def error_info(self) -> dict[str, Any]:
        return dict(self.info)


def _build(pipeline: Pipeline) -> list[WorkflowDef]:
    nodes = list(pipeline.nodes)
    names = [n.name for n in nodes]
    index = {name: i for i, name in enumerate(names)}

    def runner(step: Step) -> Callable[[Any, Any, dict[str, Any]], Awaitable[Any]]:
        async def run_step(run_input: Any, data: Any, resolved: dict[str, Any]) -> Any:
            info = activity_info()
            key = f"{info.run_id}:{step.name}"  # the same for every run of this step
            ctx = StepContext(run_input, info.run_id, step.name, info.attempt, key, resolved)
            return await step.fn(ctx, data)

        run_step.__name__ = f"step:{step.name}"
        return run_step

    runners = {s.name: runner(s) for s in pipeline.steps}
    retries = {s.name: None if s.retry is None else s.retry.policy() for s in pipeline.steps}

    async def run_one(ctx: Context, step: Step, run_input: Any, data: Any) -> Any:
        """One step to its end: its attempts, and its waits / children in between."""
        fn, retry, act = runners[step.name], retries[step.name], f"step:{step.name}"
        resolved: dict[str, Any] = {}
        while True:
            try:
                # The step's arguments are the run's input, the context the previous step
                # returned and what its own waits produced: all from the journal, so they
                # are neither checked nor digested again (no digest: see `_activity`).
                call = ActivityCall(fn, (run_input, data, resolved), {}, retry)
                got = await ctx._activity(act, None, call, step.compensate)
            except ActivityError as exc:
                if exc.type != SUSPEND:
                    raise _StepError(step.name, exc) from exc
                spec = _decode(exc.message)
            else:
                return got.result if isinstance(got, ActivityRef) else got
            # The wait, out of the `except` block: a coroutine suspended in one keeps the
            # exception alive, its traceback and every frame on it (a waiting run held
            # about ten objects more for the cyclic GC to walk).
            if spec["op"] in ("call", "start"):
                ref = spec["ref"]
                handle = ctx.start_child(spec["w"], spec["i"], id=ref, queue=spec.get("queue"))
                seen: dict[str, Any] = {"status": "started"}
                if spec["op"] == "call":
                    # the child's end, however it ended: the step sees Ok / Err
                    try:
                        got = await ctx.await_child(handle, timeout=spec.get("timeout"))
                    except ChildFailed as failed:
                        error = {"type": failed.type, "message": failed.message}
                        seen = {"status": "failed", "error": error}
                    except ChildCancelled:
                        error = {"type": "cancelled", "message": "cancelled"}
                        seen = {"status": "cancelled", "error": error}
                    else:
                        if isinstance(got, Timeout):
                            resolved = {**resolved, f"timeout:{ref}": True}
                        else:
                            seen = {"status": "completed", "result": got}
                resolved = {**resolved, f"child:{ref}": seen}
            else:
                resolved = {**resolved, spec["key"]: await _resolve(ctx, spec)}
            # then the step again, from its start

    async def run_branch(ctx: Context, branch: Branch, run_input: Any, data: Any) -> Any:
        for node in branch.pick(branch.on(data)):
            if isinstance(node, Step):
                data = await run_one(ctx, node, run_input, data)
            else:
                data = await run_branch(ctx, node, run_input, data)
            if isinstance(data, dict) and _GOTO in data:
                break  # a goto leaves the branch (and the ones it is nested in)
        return data

    async def run_parallel(ctx: Context, block: Parallel, data: Any) -> Any:
        handles = [
            (s, ctx.start_child(block.child_name(s), data, id=f"{block.name}.{s.name}"))
            for s in block.steps
        ]
        results: dict[str, Any] = {}
        waiting = list(handles)
        while waiting:  # as they end, the first seen first
            index, outcome = await ctx.await_any_child([h for _s, h in waiting])
            s, _handle = waiting.pop(index)
            if isinstance(outcome, ChildFailed):
                results[s.name] = ["error", {"type": outcome.type, "message": outcome.message}]
            elif isinstance(outcome, ChildCancelled):
                results[s.name] = ["error", {"type": "cancelled", "message": "cancelled"}]
            else:
                results[s.name] = ["ok", outcome]
            if results[s.name][0] == "error" and block.on_error == "fail_fast":
                reason = results[s.name][1]
                for _other, handle in waiting:  # the rest are not needed any more
                    await ctx.cancel_child(handle, f"parallel {block.name!r}: {s.name} failed")
                raise ParallelFailed(
                    f"parallel {block.name!r}: step {s.name} failed: "
                    f"{reason['type']}: {reason['message']}"
                )
        results = {s.name: results[s.name] for s, _h in handles}  # in definition order
        if block.into is not None:
            return block.into(data, results)
        if isinstance(data, dict):
            return {**data, "__results__": results}
        return {"data": data, "__results__": results}

    async def body(ctx: Context, run_input: Any) -> Any:
        data = run_input
        skip_to = 0
        try:
            for i, node in enumerate(nodes):
                if i < skip_to:
                    continue
                if isinstance(node, Step):
                    data = await run_one(ctx, node, run_input, data)
                elif isinstance(node, Branch):
                    data = await run_branch(ctx, node, run_input, data)
                else:
                    data = await run_parallel(ctx, node, data)
                if isinstance(data, dict) and _GOTO in data:
                    target = index.get(data[_GOTO], -1)
                    if target <= i:
                        raise fa.InvalidArgument(
                            f"step {node.name} goes to {data[_GOTO]!r}: a goto goes forward, "
                            f"to one of {names[i + 1 :]}"
                        )
                    skip_to, data = target, data["data"]
        except Exception:
            await ctx.compensate_all()  # newest first, each once; then the run fails
            raise
        return data

    def child(block: Parallel, step: Step) -> WorkflowDef:
        async def one(ctx: Context, data: Any) -> Any:
            return await run_one(ctx, step, data, data)

        shape = repr((pipeline.name, pipeline.version, block.shape(), step.name))
        digest = hashlib.sha256(shape.encode()).hexdigest()
        return WorkflowDef(
            block.child_name(step), one, pipeline.version, digest, pipeline.retention_ms,
            pipeline.queue, pipeline.priority,
        )  # fmt: skip

    shape: Any = [n.shape() if not isinstance(n, Step) else n.name for n in nodes]
    if all(isinstance(n, Step) for n in nodes):
        shape = names  # (the hash of a plain list of steps is what it always was)
    digest = hashlib.sha256(repr((pipeline.name, pipeline.version, shape)).encode()).hexdigest()
    main = WorkflowDef(
        pipeline.name, body, pipeline.version, digest, pipeline.retention_ms,
        pipeline.queue, pipeline.priority,
    )  # fmt: skip
    children = [child(n, s) for n in nodes if isinstance(n, Parallel) for s in n.steps]
    return [main, *children]
