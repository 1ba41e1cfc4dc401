"""Shared by the step-pipeline examples: an engine on a temporary (or given) directory
whose clock is Trio's, run under MockClock(autojump), so waits pass in virtual time."""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Awaitable, Callable

import trio
import trio.testing

import flowactors as fa


def run(main: Callable[[fa.Engine], Awaitable[None]]) -> None:
    async def session(data_dir: str) -> None:
        async with fa.open_engine(
            data_dir, clock=fa.trio_clock_ms, io_threads=False, maintenance_interval_ms=None
        ) as engine:
            await main(engine)

    def go(data_dir: str) -> None:
        trio.run(session, data_dir, clock=trio.testing.MockClock(autojump_threshold=0))

    if len(sys.argv) > 1:
        go(sys.argv[1])
    else:
        with tempfile.TemporaryDirectory(prefix="flowactors-example-") as d:
            go(d)
