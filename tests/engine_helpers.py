"""Shared helpers for the engine tests: a hand-driven clock and an engine that checks its
invariants after every call."""

from __future__ import annotations

import inspect
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import flowactors as fa

START_MS = 1_000_000


class FakeClock:
    """Engine time in ms that moves only when a test says so."""

    def __init__(self, now: int = START_MS) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now

    def advance(self, ms: int) -> None:
        assert ms >= 0
        self.now += ms


class Checked:
    """Forwards to an `Engine`; every async call (success or error) is followed by
    `engine._check()`, so each test step checks indexes against records and the logs."""

    def __init__(self, engine: fa.Engine) -> None:
        self.raw = engine

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.raw, name)
        if not inspect.iscoroutinefunction(attr):
            return attr

        async def call(*args: Any, **kwargs: Any) -> Any:
            try:
                return await attr(*args, **kwargs)
            finally:
                self.raw._check()

        return call


@asynccontextmanager
async def open_checked(
    path: str | os.PathLike[str], clock: FakeClock, **options: Any
) -> AsyncIterator[Any]:
    """`open_engine` on the fake clock, yielding a `Checked` engine (typed Any so tests
    call the Engine API without casts). Four shards unless told (a new engine's default
    is one): the engine tests are where the cross-shard paths must run."""
    options.setdefault("shards", 4)
    async with fa.open_engine(path, clock=clock, **options) as engine:
        engine._check()
        yield Checked(engine)
        engine._check()


def written(engine: Any) -> int:
    """Total wal records written by every shard since the engine opened."""
    raw = engine.raw if isinstance(engine, Checked) else engine
    return sum(s["log"].records_written for s in raw.statistics()["shards"])


def names(events: list[fa.HistoryEvent]) -> list[str]:
    return [e.name for e in events]
