"""The dashboard's step view shows a code workflow's journal (its `j:` chunks), in the
page and in `flowactors show`'s data, as it does an ASL execution's steps."""

from __future__ import annotations

from pathlib import Path

import trio
import trio.testing
from code_helpers import LOOP, code_runner, counter, registry

from flowactors.code import Context, workflow
from flowactors.ops import _pages, _read


async def triple(x: int) -> int:
    return x * 3


@workflow(check=False)
async def journaled(ctx: Context, n: int) -> int:
    a: int = await ctx.activity(triple, n)
    return a + 1


async def test_a_code_run_shows_its_journal(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    async with code_runner(tmp_path, registry(journaled)) as r:
        assert await r.execute(journaled, "run-1", 2) == 7
        detail = await _read.flow_detail(r.engine, "run-1")
        assert detail.steps_of == "code" and detail.asl_steps
        events = [e for step in detail.asl_steps for e in step.events]
        assert events == await r.history("run-1")
        assert any(e.get("kind") == "activity" for e in events)
        assert detail.as_json()["asl_steps"]
        panel = str(_pages.asl_panel(detail))
        assert "Code workflow journal" in panel and "scheduled" in panel


async def test_a_long_run_shows_its_journal_in_order(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """Past its first 16 steps a run's journal is kept in binary levels: the step view
    lists the per-step chunks, then the levels oldest first, and no empty level."""
    async with code_runner(tmp_path, LOOP) as r:
        assert await r.execute(counter, "long", 40) == sum(range(1, 41))
        detail = await _read.flow_detail(r.engine, "long")
        names = [step.chunk for step in detail.asl_steps]
        assert names[:16] == [f"j:{n:06d}" for n in range(1, 17)]
        assert names[16:] == sorted(names[16:], reverse=True) and all(
            n.startswith("j:L") for n in names[16:]
        )
        events = [e for step in detail.asl_steps for e in step.events]
        assert events == await r.history("long")
