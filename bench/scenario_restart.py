"""The `restart` scenario: how long an engine with many live flows takes to come back.

N live flows (1M; 50k with --quick), queued and never completed, with 100-byte payloads,
are created with sync="never" and `create_many` (1000 per call), and the engine is closed
cleanly. Then, timed from entering `open_engine` until `await engine.info(type)` reports
all N flows queued (default shards: 1; closing is not timed), three restarts:

- after a crash: every `shard-*/records.ckpt` deleted first, so each shard rebuilds its
  state from the newest event of every flow (as after a crash, when the checkpoint no
  longer matches the log); the logs open from their hint files. The floor applies here:
  it is the worst case;
- after a clean close: the checkpoint saved at the previous close is loaded instead;
- without hints either: checkpoints and `shard-*/*.hint` deleted (the logs scan their
  segments and write the hints again).

The page cache is warm: this is the CPU cost of recovery, not the disk's read speed.
"""

from __future__ import annotations

import gc
import time
from pathlib import Path

import trio

import flowactors

from ._engine_util import (
    build_live,
    delete_checkpoints,
    delete_hints,
    dir_bytes,
    expect_live,
    size_label,
)
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

        def after_crash() -> dict[str, float]:
            delete_checkpoints(path)
            return {f"{prefix}_seconds": _restart(path, n)}

        session.measure(
            after_crash,
            [
                Metric(
                    f"{prefix}_seconds",
                    "after a crash: state rebuilt from the log (hints kept)",
                    "s",
                    floor,
                )
            ],
            what=f"restart with {n:,} live flows, no checkpoint",
        )

        def after_clean_close() -> dict[str, float]:
            return {f"{prefix}_clean_seconds": _restart(path, n)}  # the last close saved

        session.measure(
            after_clean_close,
            [
                Metric(
                    f"{prefix}_clean_seconds",
                    "after a clean close: records from the checkpoint",
                    "s",
                )
            ],
            what=f"restart with {n:,} live flows from the checkpoint",
        )

        def without_hints() -> dict[str, float]:
            delete_checkpoints(path)
            if delete_hints(path) == 0:
                raise RuntimeError(f"no hint files under {path}")
            return {f"{prefix}_without_hints_seconds": _restart(path, n)}

        session.measure(
            without_hints,
            [
                Metric(
                    f"{prefix}_without_hints_seconds",
                    "the crash case after also deleting shard-*/*.hint",
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
            "restart seconds per 1M live flows (after a crash)",
            "s",
        ),
        with_s * 1e6 / n,
    )
    session.record(
        Metric("restart_hints_speedup", "restart without hints / with hints", "x"),
        session.value(f"{prefix}_without_hints_seconds") / with_s,
    )
    session.record(
        Metric("restart_checkpoint_speedup", "restart after a crash / after a clean close", "x"),
        with_s / session.value(f"{prefix}_clean_seconds"),
    )


def _restart(path: Path, n: int) -> float:
    gc.collect()
    return trio.run(_open_until_usable, path, n)


async def _open_until_usable(path: Path, n: int) -> float:
    started = time.perf_counter()
    async with flowactors.open_engine(path) as engine:
        await expect_live(engine, n)
        return time.perf_counter() - started
