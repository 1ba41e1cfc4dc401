"""Real process crashes: SIGKILL a child engine at random moments, reopen, verify.

The child reports each acknowledged create and complete through a pipe. After every kill
the parent reopens the data directory and checks that every acknowledged id is there in
(at least) its acknowledged state: created flows exist, completed flows are completed and
keep their result. SIGKILL keeps the page cache, so this tests process-crash recovery
(torn frames at the tail, half-finished group commits); power loss is simulated elsewhere.

Default run: 10 kills. `scripts/test --long`: 100 kills (about 1.1 s each).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path

import trio
from sigkill_helpers import run_until_killed
from sizing import examples

import flowactors as fa

CHILD = Path(__file__).with_name("crash_child.py")


def _run_until_killed(data_dir: Path, prefix: str, rng: random.Random) -> list[str]:
    return run_until_killed(CHILD, data_dir, prefix, rng.randint(1, 400))


async def _verify(data_dir: Path, created: set[str], completed: set[str]) -> int:
    async with fa.open_engine(data_dir, shards=2) as engine:
        engine._check()
        for flow_id in created:
            flow = await engine.get(flow_id)
            assert flow is not None, f"acknowledged create of {flow_id} lost"
        for flow_id in completed:
            flow = await engine.get(flow_id)
            assert flow is not None and flow.state == "completed", (
                f"acknowledged completion of {flow_id} lost: {flow}"
            )
            assert flow.result == b"ok"
    return len(created) + len(completed)


def test_sigkill_never_loses_acknowledged_work(
    tmp_path: Path, report: Callable[[str], None]
) -> None:
    kills = examples(10, 100)  # about 1.1 s a kill
    rng = random.Random(20261123)
    created: set[str] = set()
    completed: set[str] = set()
    verified = 0
    for round_ in range(kills):
        for line in _run_until_killed(tmp_path, f"r{round_}", rng):
            kind, flow_id = line.split()
            (created if kind == "created" else completed).add(flow_id)
        verified = trio.run(_verify, tmp_path, created, completed)
    report(f"sigkill: {kills} kills, {verified} acknowledged operations verified, lost 0")
    assert created, "the child never acknowledged anything"
