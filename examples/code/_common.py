"""Shared by the code-workflow examples: an engine on a temporary (or given) directory whose
clock is Trio's, run under MockClock(autojump): timers of hours or days pass in virtual
time, so each example finishes in about a second."""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Awaitable, Callable
from typing import Any

import trio
import trio.testing

import flowactors as fa
from flowactors.code import CodeRunner


def run(main: Callable[[CodeRunner], Awaitable[None]], **runner_options: Any) -> None:
    runner_options.setdefault("poll_ms", 3_600_000)
    runner_options.setdefault("recheck_ms", 3_600_000)

    async def session(data_dir: str) -> None:
        async with fa.open_engine(
            data_dir, clock=fa.trio_clock_ms, io_threads=False, maintenance_interval_ms=None
        ) as engine:
            await main(CodeRunner(engine, **runner_options))

    def go(data_dir: str) -> None:
        trio.run(session, data_dir, clock=trio.testing.MockClock(autojump_threshold=0))

    if len(sys.argv) > 1:
        go(sys.argv[1])
        return
    with tempfile.TemporaryDirectory(prefix="flowactors-code-example-") as data_dir:
        go(data_dir)
