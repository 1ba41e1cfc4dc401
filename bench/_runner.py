"""One run of one scenario: work directory, machine facts, baselines, the scenario.

Every scenario gets the same frame: a fresh temporary directory under the data dir (removed
afterwards, also on failure), the machine's facts, and baselines measured in this run: the
disk's raw fdatasync and sequential-write rates, and the interpreter's speed on a fixed
pure-Python workload, before the scenario and again after it.

Why the interpreter's speed: every engine figure is bound by one interpreter thread, and
the 2-core VM's CPU speed moves by up to 2x within minutes (the same loop of 3M additions
took 262 ms and 496 ms ten minutes apart). Measured before and after, it tells a slow run
from a slow VM, and a before/after gap shows the speed changed during the scenario.
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
RAW_PYTHON = Metric(
    "raw_python_kops_per_s", "interpreter: fixed pure-Python workload, before", "kops/s"
)
RAW_PYTHON_AFTER = Metric("raw_python_after_kops_per_s", "  the same, after the scenario", "kops/s")

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
        session.section("interpreter baseline, again")
        session.measure(
            lambda: {RAW_PYTHON_AFTER.key: python_rate(0.05 if quick else 0.3)},
            [RAW_PYTHON_AFTER],
            what="interpreter speed, after",
        )
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
    session.section("baselines")
    with session.scratch("baseline") as path:
        session.measure(
            lambda: {RAW_FDATASYNC.key: _disk.fdatasync_rate(path, seconds)},
            [RAW_FDATASYNC],
            what="raw fdatasync rate",
        )
        session.measure(
            partial(_sequential, path, seconds), [RAW_SEQUENTIAL], what="raw sequential write"
        )
    session.measure(
        lambda: {RAW_PYTHON.key: python_rate(0.05 if session.quick else 0.3)},
        [RAW_PYTHON],
        what="interpreter speed",
    )


def python_rate(seconds: float) -> float:
    """Thousands of operations per second of a fixed pure-Python workload shaped like the
    engine's own (a call, a tuple, an f-string, dict stores and lookups per operation),
    run for about `seconds` in rounds of 10,000."""
    ops = 0
    started = time.perf_counter()
    deadline = started + seconds
    while True:
        ops += _python_round(10_000)
        now = time.perf_counter()
        if now >= deadline:
            return ops / (now - started) / 1000


def _python_round(n: int) -> int:
    table: dict[str, tuple[int, str, int]] = {}
    for i in range(n):
        key = f"k{i & 1023}"
        table[key] = (i, key, i * 3)
        if table.get(key) is None or len(table) > 512:
            table.clear()
    return n


def _sequential(path: Path, seconds: float) -> dict[str, float]:
    return {RAW_SEQUENTIAL.key: _disk.sequential_write_rate(path, seconds) / 1e6}
