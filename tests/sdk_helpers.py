"""Shared helpers for the SDK tests: an engine on Trio's (mock) clock, a worker running in
the background, and the skip marker for tests that need the coordination API (issue 4)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import trio

import flowactors as fa


@asynccontextmanager
async def trio_engine(path: str | os.PathLike[str], **options: Any) -> AsyncIterator[fa.Engine]:
    """An engine whose clock is Trio's: with MockClock(autojump) leases and back-offs run
    in virtual time."""
    options.setdefault("shards", 2)
    options.setdefault("io_threads", False)  # virtual time must not run while disks work
    async with fa.open_engine(path, clock=fa.trio_clock_ms, **options) as engine:
        engine._check()
        yield engine
        engine._check()


TICK = 0.01


@asynccontextmanager
async def ticking() -> AsyncIterator[None]:
    """Keep a timer TICK ahead for the block.

    The engine commits in a worker thread; while a Trio task waits for a thread,
    MockClock(autojump_threshold=0) jumps straight to the next deadline, which may be a
    lease or an idle timeout far ahead. A ticking task bounds every jump to TICK, so
    virtual time advances in small steps while the disk works."""
    async with trio.open_nursery() as nursery:

        async def tick() -> None:
            while True:
                await trio.sleep(TICK)

        nursery.start_soon(tick)
        try:
            yield
        finally:
            nursery.cancel_scope.cancel()


@asynccontextmanager
async def running(worker: fa.Worker, handler: Any = None) -> AsyncIterator[fa.Worker]:
    """Run `worker` in the background (with `ticking`) for the block, then stop it and
    wait for it to finish."""
    async with ticking(), trio.open_nursery() as nursery:
        await nursery.start(worker.run, handler)
        try:
            yield worker
        finally:
            worker.stop()


async def until(predicate: Callable[[], Awaitable[bool]], *, seconds: float = 3_600) -> None:
    """Poll `predicate` in (virtual) time until it holds; fail after `seconds`."""
    with trio.fail_after(seconds):
        while not await predicate():
            await trio.sleep(0.01)


def states_of(info: dict[str, int]) -> dict[str, int]:
    return {k: v for k, v in info.items() if v}
