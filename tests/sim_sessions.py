"""Engine sessions on one simulated disk (wal.testing.SimulatedFileSystem) with virtual
time (Trio's MockClock) continuing across them: the power-loss suites of the programming
models (code workflows, step pipelines) run their bodies through it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import trio
import trio.testing

import flowactors as fa
from wal.testing import SimulatedFileSystem

PATH = "/data/engine"


def new_fs(seed: int) -> SimulatedFileSystem:
    fs = SimulatedFileSystem(seed)
    fs.makedirs("/data")
    fs.sync_dir("/")
    return fs


class SimSessions:
    """Each `run` opens the engine on the disk, awaits `body(engine)` and closes it; a
    power loss (whatever the engine raised when the disk halted) is returned, not raised.
    The engine's clock continues from where the previous session stopped."""

    def __init__(self, fs: SimulatedFileSystem) -> None:
        self.fs = fs
        self.base_ms = 0

    def run(self, body: Callable[[fa.Engine], Awaitable[Any]]) -> BaseException | None:
        end_ms = [self.base_ms]

        async def main() -> None:
            base = self.base_ms

            def clock() -> int:
                return base + fa.trio_clock_ms()

            try:
                async with fa.open_engine(
                    PATH,
                    shards=2,
                    fs=self.fs,
                    clock=clock,
                    io_threads=False,
                    maintenance_interval_ms=None,
                ) as engine:
                    await body(engine)
            finally:
                end_ms[0] = clock()

        try:
            trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
        except AssertionError:
            raise
        except BaseException as exc:  # the power loss, as the engine reports it
            return exc
        finally:
            self.base_ms = end_ms[0] + 1
        return None
