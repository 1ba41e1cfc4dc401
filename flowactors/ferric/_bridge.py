# Theory of operation: a flowactors engine is a Trio program, while FerricStore's SDK calls its
# executor from plain threads (sync workers) or from an asyncio loop (async workers). So the
# engine gets a thread of its own running `trio.run`, and every command crosses into it as a
# task started in one long-lived nursery (`submit`), whose outcome comes back through a
# `concurrent.futures.Future`: a sync caller blocks on `.result()`, an asyncio caller awaits
# `asyncio.wrap_future`. A task never lets an exception escape into the nursery (it lands on
# its future), so a bad command cannot take the engine down. Closing sets an event inside
# Trio; the nursery is cancelled, the engine closes cleanly, and calls still in flight (or
# made afterwards) fail with EngineClosed.

from __future__ import annotations

import concurrent.futures
import contextlib
import os
import threading
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import trio

import flowactors as fa

T = TypeVar("T")


class EngineThread:
    """A flowactors engine running in its own thread, callable from any other thread."""

    def __init__(self, data_dir: str | os.PathLike[str], **engine_options: Any) -> None:
        self._data_dir = os.fspath(data_dir)
        self._options = engine_options
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._engine: fa.Engine | None = None
        self._token: trio.lowlevel.TrioToken | None = None
        self._nursery: trio.Nursery | None = None
        self._stop: trio.Event | None = None
        self._closed = False
        self._thread = threading.Thread(
            target=self._main, name="flowactors-ferric-engine", daemon=True
        )

    @property
    def engine(self) -> fa.Engine:
        if self._engine is None:
            raise fa.EngineClosed("the engine thread is not running")
        return self._engine

    def start(self) -> None:
        """Open the engine in its thread; returns once it serves commands (or raises why
        it could not open)."""
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            self._thread.join()
            raise self._error

    def _main(self) -> None:
        try:
            trio.run(self._serve)
        except BaseException as exc:  # reported to start(), or lost after close
            if not self._ready.is_set():
                self._error = exc
        finally:
            self._closed = True
            self._ready.set()

    async def _serve(self) -> None:
        async with fa.open_engine(self._data_dir, **self._options) as engine:
            self._stop = trio.Event()
            async with trio.open_nursery() as nursery:
                self._engine = engine
                self._nursery = nursery
                self._token = trio.lowlevel.current_trio_token()
                self._ready.set()
                await self._stop.wait()
                nursery.cancel_scope.cancel()
        self._engine = None

    def submit(self, fn: Callable[..., Awaitable[T]], *args: Any) -> concurrent.futures.Future[T]:
        """Run `await fn(*args)` inside the engine's Trio loop."""
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        token, nursery = self._token, self._nursery
        if self._closed or token is None or nursery is None:
            future.set_exception(fa.EngineClosed("the embedded engine is closed"))
            return future

        async def run() -> None:
            if not future.set_running_or_notify_cancel():
                return
            try:
                result = await fn(*args)
            except trio.Cancelled:
                future.set_exception(fa.EngineClosed("the embedded engine closed mid-command"))
                raise
            except BaseException as exc:  # the caller's error, never the nursery's
                future.set_exception(exc)
            else:
                future.set_result(result)

        def schedule() -> None:
            # Runs in the Trio thread; it must never raise (Trio would treat that as its
            # own crash), also when it runs during shutdown, after the nursery closed.
            if self._closed or (self._stop is not None and self._stop.is_set()):
                future.set_exception(fa.EngineClosed("the embedded engine is closed"))
                return
            try:
                nursery.start_soon(run)
            except RuntimeError:
                future.set_exception(fa.EngineClosed("the embedded engine is closing"))

        try:
            token.run_sync_soon(schedule)
        except trio.RunFinishedError:
            future.set_exception(fa.EngineClosed("the embedded engine is closed"))
        return future

    def call(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        """`submit` and wait (from a thread other than the engine's)."""
        if threading.current_thread() is self._thread:
            raise fa.InvalidArgument("the engine thread cannot wait for its own commands")
        return self.submit(fn, *args).result()

    def close(self) -> None:
        """Close the engine and wait for its thread to end. Idempotent."""
        token, stop = self._token, self._stop
        if token is not None and stop is not None and not self._closed:
            with contextlib.suppress(trio.RunFinishedError):
                token.run_sync_soon(stop.set)
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join()
        self._closed = True
