"""A dashboard served from a background thread (its own Trio program) and Debian's
Chromium driven by Playwright's sync API, for the browser test and scripts/screens."""

from __future__ import annotations

import os
import queue
import tempfile
import threading
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import trio

import flowactors as fa
from flowactors import ops

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@contextmanager
def dashboard_thread(
    path: Path,
    fill: Callable[[fa.Engine], Awaitable[Any]],
    *,
    background: Callable[[fa.Engine], Awaitable[None]] | None = None,
    **options: Any,
) -> Iterator[tuple[str, Any]]:
    """Open an engine in `path`, `await fill(engine)`, serve the dashboard on a free
    loopback port; yields (url, what fill returned). `background(engine)` runs alongside
    (traffic for live figures) until the block ends."""
    started: queue.Queue[tuple[str, Any, trio.lowlevel.TrioToken] | BaseException] = queue.Queue()
    stop = threading.Event()

    async def main() -> None:
        try:
            async with fa.open_engine(path, shards=2) as engine, trio.open_nursery() as nursery:
                seeded = await fill(engine)
                url = await nursery.start(
                    lambda task_status: ops.serve_dashboard(
                        engine, port=0, task_status=task_status, **options
                    )
                )
                if background is not None:
                    nursery.start_soon(background, engine)
                started.put((url, seeded, trio.lowlevel.current_trio_token()))
                while not stop.is_set():
                    await trio.sleep(0.05)
                nursery.cancel_scope.cancel()
        except BaseException as exc:
            started.put(exc)
            raise

    thread = threading.Thread(target=trio.run, args=(main,), daemon=True)
    thread.start()
    got = started.get(timeout=60)
    if isinstance(got, BaseException):
        thread.join(5)
        raise got
    url, seeded, _token = got
    try:
        yield url, seeded
    finally:
        stop.set()
        thread.join(30)


@contextmanager
def chromium() -> Iterator[Any]:
    """A headless Chromium page (Playwright's sync API) with a fresh profile."""
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as profile, sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            profile,
            executable_path=CHROMIUM,
            args=CHROMIUM_ARGS,
            headless=True,
            viewport={"width": 1360, "height": 900},
        )
        try:
            page = context.pages[0] if context.pages else context.new_page()
            yield page
        finally:
            context.close()


def have_chromium() -> bool:
    return os.access(CHROMIUM, os.X_OK)
