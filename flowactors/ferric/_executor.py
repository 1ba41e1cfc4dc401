# Theory of operation: the objects FerricStore's SDK is handed instead of a network
# connection. `Executor` is its sync `CommandExecutor` (`execute_command(*argv)`, plus the
# optional `execute_flow_query_command`), `AsyncExecutor` its asyncio twin; both hand each
# argv vector to `_commands.dispatch` inside the engine's Trio thread (`_bridge`) and wait
# for the reply, the sync one by blocking its thread, the async one by awaiting a wrapped
# future, so any number of SDK worker threads and asyncio tasks can share one engine.
# `Embedded` owns that thread: `embedded(data_dir)` opens the engine, `close()` (or leaving
# its `with` block) closes it. Errors raised to the SDK are `CommandError`s
# (flowactors.FlowError) whose "ERR ..." text the SDK maps onto its own exception classes.

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Sequence
from types import TracebackType
from typing import Any

import flowactors as fa

from ._bridge import EngineThread
from ._commands import dispatch

_TRACE = bool(os.environ.get("FLOWACTORS_FERRIC_TRACE"))


async def _traced(engine: fa.Engine, argv: Sequence[Any]) -> Any:
    """dispatch, printing each argv and its reply to stderr (FLOWACTORS_FERRIC_TRACE=1)."""
    if not _TRACE:
        return await dispatch(engine, argv)
    try:
        reply = await dispatch(engine, argv)
    except fa.FlowError as exc:
        print(f"ferric> {list(argv)!r}\nferric< {exc}", file=sys.stderr)
        raise
    print(f"ferric> {list(argv)!r}\nferric< {reply!r}", file=sys.stderr)
    return reply


class Executor:
    """Sync command executor for `ferricstore.FlowClient(executor)`."""

    def __init__(self, engine: EngineThread) -> None:
        self._engine = engine

    async def _run(self, argv: Sequence[Any]) -> Any:
        return await _traced(self._engine.engine, argv)

    def execute_command(self, *args: Any) -> Any:
        """Run one FLOW command (argv as the SDK builds it) and return its reply."""
        return self._engine.call(self._run, args)

    def execute_flow_query_command(
        self,
        *args: Any,
        deadline_ms: int | None = None,
        routing_key: str | bytes | None = None,
    ) -> Any:
        """FLOW.QUERY; the deadline and routing key have no meaning in one process."""
        return self._engine.call(self._run, args)


class AsyncExecutor:
    """Async (asyncio) command executor for `ferricstore.AsyncFlowClient(executor)`."""

    def __init__(self, engine: EngineThread) -> None:
        self._engine = engine

    async def _run(self, argv: Sequence[Any]) -> Any:
        return await _traced(self._engine.engine, argv)

    async def execute_command(self, *args: Any) -> Any:
        return await asyncio.wrap_future(self._engine.submit(self._run, args))

    async def execute_flow_query_command(
        self,
        *args: Any,
        deadline_ms: int | None = None,
        routing_key: str | bytes | None = None,
    ) -> Any:
        return await asyncio.wrap_future(self._engine.submit(self._run, args))


class Embedded:
    """An embedded flowactors engine that FerricStore's SDK can drive.

    with flowactors.ferric.embedded("data") as store:
        client = QueueClient(FlowClient(store.executor))
    """

    def __init__(self, data_dir: str | os.PathLike[str], **engine_options: Any) -> None:
        self._thread = EngineThread(data_dir, **engine_options)
        self._thread.start()
        self.executor = Executor(self._thread)
        self.async_executor = AsyncExecutor(self._thread)

    @property
    def engine(self) -> fa.Engine:
        """The engine itself (for use from its own thread only, e.g. via `call`)."""
        return self._thread.engine

    def execute_command(self, *args: Any) -> Any:
        """Shorthand for `executor.execute_command`."""
        return self.executor.execute_command(*args)

    def flow_client(self, **options: Any) -> Any:
        """A `ferricstore.FlowClient` on this engine (imports the SDK lazily)."""
        from ferricstore import FlowClient

        return FlowClient(self.executor, **options)

    def async_flow_client(self, **options: Any) -> Any:
        """A `ferricstore.AsyncFlowClient` on this engine (imports the SDK lazily)."""
        from ferricstore import AsyncFlowClient

        return AsyncFlowClient(self.async_executor, **options)

    def close(self) -> None:
        """Close the engine; later commands fail with EngineClosed. Idempotent."""
        self._thread.close()

    def __enter__(self) -> Embedded:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def embedded(data_dir: str | os.PathLike[str], **engine_options: Any) -> Embedded:
    """Open a flowactors engine in `data_dir` on a thread of its own, for FerricStore's SDK.

    `engine_options` go to `flowactors.open_engine` (shards, sync, ...).
    """
    return Embedded(data_dir, **engine_options)
