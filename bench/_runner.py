"""One run of one scenario: work directory, machine facts, disk baselines, the scenario.

Every scenario gets the same frame: a fresh temporary directory under the data dir (removed
afterwards, also on failure), the machine's facts, and the disk's raw fdatasync and
sequential-write rates measured in this run, before the scenario, as its baselines.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

from . import _disk
from ._machine import Machine, describe
from ._registry import Scenario
from ._session import Metric, Row, Session

RAW_FDATASYNC = Metric("raw_fdatasync_per_s", "raw fdatasync (4 KiB append + fdatasync)", "syncs/s")
RAW_SEQUENTIAL = Metric(
    "raw_seq_write_mb_per_s", "raw sequential write (1 MiB appends + fdatasync)", "MB/s"
)

DEFAULT_REPEATS = 3
QUICK_REPEATS = 1


@dataclass(frozen=True, slots=True)
class Outcome:
    scenario: str
    quick: bool
    repeats: int
    started: datetime
    elapsed_s: float
    machine: Machine
    rows: tuple[Row, ...]


def run(
    name: str,
    scenario: Scenario,
    *,
    quick: bool,
    repeats: int | None = None,
    data_dir: Path | None = None,
    progress: Callable[[str], None] = lambda _msg: None,
) -> Outcome:
    parent = data_dir if data_dir is not None else Path(tempfile.gettempdir())
    parent.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix=f"bench-{name}-", dir=parent))
    started = datetime.now(UTC)
    t0 = time.perf_counter()
    try:
        machine = describe(workdir)
        session = Session(
            quick=quick,
            repeats=repeats or (QUICK_REPEATS if quick else DEFAULT_REPEATS),
            workdir=workdir,
            progress=progress,
        )
        measure_baselines(session)
        scenario(session)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return Outcome(
        scenario=name,
        quick=quick,
        repeats=session.repeats,
        started=started,
        elapsed_s=time.perf_counter() - t0,
        machine=machine,
        rows=tuple(session.rows),
    )


def measure_baselines(session: Session) -> None:
    seconds = 0.2 if session.quick else 1.0
    session.section("disk baseline")
    with session.scratch("baseline") as path:
        session.measure(
            lambda: {RAW_FDATASYNC.key: _disk.fdatasync_rate(path, seconds)},
            [RAW_FDATASYNC],
            what="raw fdatasync rate",
        )
        session.measure(
            partial(_sequential, path, seconds), [RAW_SEQUENTIAL], what="raw sequential write"
        )


def _sequential(path: Path, seconds: float) -> dict[str, float]:
    return {RAW_SEQUENTIAL.key: _disk.sequential_write_rate(path, seconds) / 1e6}
