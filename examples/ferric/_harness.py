"""Shared by the FerricFlow examples: where the engine keeps its data, and how to end a
worker's endless `run()` once the example's work is done.

The seed snippets run their workers forever (`worker.run(handler)`), as a service would. An
example must end, so `stop_when(done)` watches from a thread and, once `done()` is true,
interrupts the main thread (as Ctrl-C would); the snippet itself stays as written.
"""

from __future__ import annotations

import _thread
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager


def data_dir() -> str:
    """The directory given as the first argument, or a fresh temporary one."""
    if len(sys.argv) > 1:
        return sys.argv[1]
    return tempfile.mkdtemp(prefix="flowactors-ferric-example-")


@contextmanager
def stop_when(done: Callable[[], bool], *, timeout_s: float = 60.0) -> Iterator[None]:
    """Run the body (a worker's `run()`) until `done()` holds, then interrupt it."""
    finished = threading.Event()
    gave_up: list[bool] = []

    def watch() -> None:
        deadline = time.monotonic() + timeout_s
        while not finished.is_set():
            if done():
                break
            if time.monotonic() > deadline:
                gave_up.append(True)
                break
            time.sleep(0.01)
        if not finished.is_set():
            _thread.interrupt_main()

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        yield
    except KeyboardInterrupt:
        if gave_up:
            raise TimeoutError(f"the example's work was not done within {timeout_s} s") from None
    finally:
        finished.set()
        watcher.join()
