"""The client style of the SDK: `Client(engine).queue(...)` and `.workflow(...)`.

A queue is a one-state workflow whose handler's return value completes the flow (an
exception retries it, per its exception policy). A client workflow is a `Workflow` whose
states are declared with `@wf.state(name, ...)` on their handlers. Both are the same
`Workflow` underneath, so everything a workflow offers works on either.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..engine._engine import Engine
from ..engine._errors import InvalidArgument
from ..engine._types import CreateSpec, Flow, ItemResult, RetryPolicy
from ._outcomes import ExceptionPolicy
from ._worker import Worker
from ._workflow import Handler, State, Workflow


class Queue(Workflow):
    """Flows of one type in one state; a worker completes, retries or fails each."""

    def __init__(
        self,
        engine: Engine,
        *,
        type: str,
        state: str = "queued",
        retry_policy: RetryPolicy | None = None,
        partition_by: Sequence[str] = (),
        lease_ms: int = 30_000,
        exception_policy: ExceptionPolicy = ExceptionPolicy.RETRY,
    ) -> None:
        spec = State(lease_ms=lease_ms, exception_policy=exception_policy)
        super().__init__(
            engine,
            type=type,
            initial_state=state,
            retry_policy=retry_policy,
            partition_by=partition_by,
            states={state: spec},
        )

    async def enqueue(self, id: str, payload: bytes | None = None, **options: Any) -> Flow:
        """Create a queued flow (options as for `Workflow.create`, e.g. `idempotent`,
        `values`, `attributes`, `delay_ms`, `priority`)."""
        return await self.create(id, payload=payload, **options)

    async def enqueue_many(self, items: Sequence[CreateSpec], **options: Any) -> list[ItemResult]:
        return await self.create_many(items, **options)

    def worker(
        self,
        states: Sequence[str] | None = None,
        *,
        state: str | None = None,
        handler: Handler | None = None,
        **options: Any,
    ) -> Worker:
        """A worker for the queue's state: `queue.worker(concurrency=100).run(handler)`."""
        return super().worker(states, state=state or self.start_state, handler=handler, **options)


class Client:
    """Entry point of the client style, bound to an embedded engine."""

    def __init__(self, engine: Engine) -> None:
        if not isinstance(engine, Engine):
            raise InvalidArgument(f"a Client needs an Engine (open_engine), got {engine!r:.60}")
        self.engine = engine

    def queue(
        self,
        *,
        type: str,
        state: str = "queued",
        retry_policy: RetryPolicy | None = None,
        partition_by: Sequence[str] = (),
        lease_ms: int = 30_000,
        exception_policy: ExceptionPolicy = ExceptionPolicy.RETRY,
    ) -> Queue:
        return Queue(
            self.engine,
            type=type,
            state=state,
            retry_policy=retry_policy,
            partition_by=partition_by,
            lease_ms=lease_ms,
            exception_policy=exception_policy,
        )

    def workflow(
        self,
        *,
        type: str,
        initial_state: str = "queued",
        retry_policy: RetryPolicy | None = None,
        partition_by: Sequence[str] = (),
        states: Mapping[str, State] | None = None,
    ) -> Workflow:
        """A workflow; declare its states with `@wf.state(name, ...)`."""
        return Workflow(
            self.engine,
            type=type,
            initial_state=initial_state,
            retry_policy=retry_policy,
            partition_by=partition_by,
            states=states or {},
        )
