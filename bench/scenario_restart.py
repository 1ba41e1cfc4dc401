"""The `restart` scenario: how long an engine with many live flows takes to come back.

N live flows (1M; 50k with --quick), queued and never completed, with 100-byte payloads,
are created with sync="never" and `create_many` (1000 per call), and the engine is closed
cleanly (its logs write their hints). Then, timed from entering `open_engine` until
`await engine.info(type)` reports all N flows queued: the restart (4 shards: each log
opened from its hints, the shard state rebuilt from the newest event of every flow).
Then the same after deleting every `shard-*/*.hint` before each run ("without hints": the
logs scan their segments and write the hints again). The page cache is warm: this is the
CPU cost of recovery, not the disk's read speed. Closing is not timed.
"""

from __future__ import annotations

import gc
import time
from pathlib import Path

import trio

import flowactors

from ._engine_util import build_live, delete_hints, dir_bytes, expect_live, size_label
from ._registry import register
from ._session import Floor, Metric, Session

PAYLOAD_BYTES = 100
SECONDS_PER_MILLION_FLOWS = 10.0  # floor, with hints (aim: 5 s)


@register("restart")
def restart_scenario(session: Session) -> None:
    """engine: restart time with N live flows (1M), with and without hint files."""
    n = 50_000 if session.quick else 1_000_000
    label = size_label(n)
    prefix = f"restart_{label}_live_flows"
    session.section(f"restart with {n:,} live flows (100-byte payloads, warm page cache)")
    with session.scratch("restart") as path:
        session.progress(f"building {n:,} live flows")
        rate = build_live(path, n, PAYLOAD_BYTES)
        gc.collect()
        session.record(Metric("restart_live_flows", "live flows in the engine", "flows"), n)
        session.record(
            Metric(
                "restart_build_flows_per_s", "building them: create_many, sync=never", "flows/s"
            ),
            rate,
        )
        session.record(
            Metric("restart_data_dir_bytes_per_live_flow", "data dir bytes per live flow", "bytes"),
            dir_bytes(path) / n,
        )
        scaled = n != 1_000_000
        floor = Floor(
            prefix,
            "<=",
            SECONDS_PER_MILLION_FLOWS * n / 1e6,
            "10 s per 1M, scaled" if scaled else "aim 5 s",
        )

        def with_hints() -> dict[str, float]:
            return {f"{prefix}_seconds": _restart(path, n)}

        session.measure(
            with_hints,
            [Metric(f"{prefix}_seconds", "open_engine until info() answers", "s", floor)],
            what=f"restart with {n:,} live flows",
        )

        def without_hints() -> dict[str, float]:
            if delete_hints(path) == 0:
                raise RuntimeError(f"no hint files under {path}")
            return {f"{prefix}_without_hints_seconds": _restart(path, n)}

        session.measure(
            without_hints,
            [
                Metric(
                    f"{prefix}_without_hints_seconds",
                    "the same after deleting shard-*/*.hint",
                    "s",
                )
            ],
            what=f"restart with {n:,} live flows without hints",
        )

    session.section("ratios (of medians)")
    with_s = session.value(f"{prefix}_seconds")
    session.record(
        Metric(
            "restart_seconds_per_million_live_flows",
            "restart seconds per 1M live flows",
            "s",
        ),
        with_s * 1e6 / n,
    )
    session.record(
        Metric("restart_hints_speedup", "restart without hints / with hints", "x"),
        session.value(f"{prefix}_without_hints_seconds") / with_s,
    )


def _restart(path: Path, n: int) -> float:
    gc.collect()
    return trio.run(_open_until_usable, path, n)


async def _open_until_usable(path: Path, n: int) -> float:
    started = time.perf_counter()
    async with flowactors.open_engine(path) as engine:
        await expect_live(engine, n)
        return time.perf_counter() - started
