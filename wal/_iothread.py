"""A log's own commit thread: one long-lived worker that runs blocking calls (a commit's
write and fdatasync) for tasks of one Trio run. Commits use it where Linux AIO is missing
(`_aio.py` says why AIO comes first: this thread must win the GIL back from a busy loop
three times per commit) and for rotations, which create, seal and sync several files.

Why not `trio.to_thread.run_sync`: it is built for arbitrary, concurrent, cancellable
calls (a capacity limiter, a thread cache handing each call to some thread, context
copies, a cancellation protocol), and costs about 135 µs of CPU and 190 µs of latency per
call on the 2-core VM, measured against 50 µs and 65 µs here. A log's commits need none
of that: they come one at a time (the group-commit leader), always from the same run, and
are never abandoned (a write in flight must finish before anyone may go on). So the caller
puts (call, its task) on a queue and parks; the thread runs the call and hands the outcome
back with `run_sync_soon`, which reschedules the parked task. A cancelled caller still
waits for its call to finish (`Abort.FAILED`), as with `to_thread.run_sync` by default.

The thread holds no reference to the log: a log dropped without `close` (a crashed test)
lets the thread go through a `weakref.finalize` sentinel instead of leaking it.
"""

from __future__ import annotations

import queue
import threading
import weakref
from collections.abc import Callable
from typing import Any, TypeVar

import outcome
import trio

T = TypeVar("T")

_STOP = None


def _serve(calls: queue.SimpleQueue[Any], token: trio.lowlevel.TrioToken) -> None:
    while True:
        item = calls.get()
        if item is _STOP:
            return
        fn, task = item
        result = outcome.capture(fn)
        try:
            token.run_sync_soon(trio.lowlevel.reschedule, task, result)
        except trio.RunFinishedError:  # the run ended under a caller that could not wait
            return


class IoThread:
    """One worker thread serving one owner (a log) within one Trio run."""

    __slots__ = ("__weakref__", "_calls", "_stop", "token")

    def __init__(self, owner: object) -> None:
        self.token = trio.lowlevel.current_trio_token()
        self._calls: queue.SimpleQueue[Any] = queue.SimpleQueue()
        thread = threading.Thread(
            target=_serve, args=(self._calls, self.token), name="wal-commit", daemon=True
        )
        thread.start()
        # Stop the thread when the owner is closed (stop()) or dropped, whichever is first.
        self._stop = weakref.finalize(owner, self._calls.put, _STOP)

    async def run(self, fn: Callable[[], T]) -> T:
        """Run `fn()` in the thread and return its result (or raise its exception)."""
        self._calls.put((fn, trio.lowlevel.current_task()))
        result: T = await trio.lowlevel.wait_task_rescheduled(_wait_for_it)
        return result

    def stop(self) -> None:
        """Let the thread end once it has served what is queued."""
        self._stop()


def _wait_for_it(_: Callable[[], object]) -> trio.lowlevel.Abort:
    # A write in flight cannot be called back: the caller waits for it like everyone else.
    return trio.lowlevel.Abort.FAILED
