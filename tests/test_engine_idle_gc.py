"""`tune_gc(idle_gen0=...)`: engines collect the young generation when their event loop is
about to wait and it holds that many objects; one collector per Trio run, gone once the
last engine of the run closed; none unless asked for."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

import flowactors as fa
from flowactors.engine import _tuning


@pytest.fixture
def tuned() -> Iterator[None]:
    before = gc.get_threshold()
    fa.tune_gc(idle_gen0=1_000)
    try:
        yield
    finally:
        fa.tune_gc(before[0], idle_gen0=None)
        gc.set_threshold(*before)


def _collector() -> _tuning.IdleCollector | None:
    return _tuning._COLLECTOR.get()


async def _allocate_and_wait(n: int) -> list[list[int]]:
    kept = [[i] for i in range(n)]  # tracked containers, alive: the young generation grows
    await trio.sleep(0.005)  # (real time: the loop waits for the timer)
    return kept


async def test_the_young_generation_is_collected_while_the_loop_waits(
    tmp_path: Path, tuned: None
) -> None:
    async with fa.open_engine(tmp_path / "a") as engine:
        collector = _collector()
        assert collector is not None and collector.min_objects == 1_000
        before = collector.collections
        kept = await _allocate_and_wait(5_000)
        assert collector.collections > before
        assert gc.get_count()[0] < 5_000
        async with fa.open_engine(tmp_path / "b"):
            assert _collector() is collector  # one per run
        assert _collector() is collector  # the first engine still uses it
        await engine.create("f", "t")
        del kept
    assert _collector() is None  # the last engine closed: the instrument is gone


async def test_nothing_is_installed_unless_asked(tmp_path: Path) -> None:
    assert _tuning._idle_gen0 is None
    async with fa.open_engine(tmp_path):
        assert _collector() is None


async def test_a_busy_loop_is_not_interrupted(tmp_path: Path, tuned: None) -> None:
    """Collections happen only when the loop is about to wait, never while tasks run."""
    async with fa.open_engine(tmp_path):
        collector = _collector()
        assert collector is not None
        gc.collect()
        before = collector.collections
        kept = [[i] for i in range(5_000)]
        for _ in range(100):
            await trio.lowlevel.checkpoint()  # runnable at once: the loop never waits
        assert collector.collections == before
        del kept
