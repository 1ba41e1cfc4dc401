"""The measuring session a scenario is handed: repeats, statistics, floors, scratch space.

A scenario calls `session.measure(fn, metrics)`: `fn` runs once as a warm-up (discarded),
then `repeats` times; each call returns one sample per metric and times only what it
measures itself. The session keeps median / min / max per metric, in the order measured,
for the report. `record` keeps a single computed value (a ratio, a size) beside them.
Floors are the project's stated targets: informational, judged on the median.
"""

from __future__ import annotations

import shutil
import statistics
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal


@dataclass(frozen=True, slots=True)
class Floor:
    """A stated target: `value op threshold`; reported as `floor_<name>_ok`."""

    name: str
    op: Literal[">=", "<="]
    threshold: float
    note: str = ""

    def holds(self, value: float) -> bool:
        return value >= self.threshold if self.op == ">=" else value <= self.threshold


@dataclass(frozen=True, slots=True)
class Metric:
    key: str  # the flat JSON key, units included: wal_batch_api_records_per_s
    label: str  # the table's wording
    unit: str
    floor: Floor | None = None


@dataclass(frozen=True, slots=True)
class Stats:
    median: float
    min: float
    max: float
    samples: tuple[float, ...]

    @classmethod
    def of(cls, samples: Sequence[float]) -> Stats:
        if not samples:
            raise ValueError("no samples")
        return cls(statistics.median(samples), min(samples), max(samples), tuple(samples))


@dataclass(frozen=True, slots=True)
class Row:
    section: str
    metric: Metric
    stats: Stats
    repeated: bool  # False: a single computed value (ratio, size), no min/max to show


class Session:
    def __init__(
        self,
        *,
        quick: bool,
        repeats: int,
        workdir: Path,
        progress: Callable[[str], None] = lambda _msg: None,
    ) -> None:
        if repeats < 1:
            raise ValueError("repeats must be at least 1")
        self.quick = quick
        self.repeats = repeats
        self.workdir = workdir
        self.rows: list[Row] = []
        self._section = ""
        self._progress = progress
        self._scratch_count = 0

    def section(self, title: str) -> None:
        """Rows recorded from now on are grouped under `title` in the table."""
        self._section = title

    def progress(self, message: str) -> None:
        self._progress(message)

    @contextmanager
    def scratch(self, name: str) -> Iterator[Path]:
        """A fresh empty directory under the work directory, removed on exit."""
        self._scratch_count += 1
        path = self.workdir / f"{self._scratch_count:04d}-{name}"
        path.mkdir()
        try:
            yield path
        finally:
            shutil.rmtree(path, ignore_errors=True)

    def measure(
        self,
        fn: Callable[[], Mapping[str, float]],
        metrics: Sequence[Metric],
        *,
        what: str,
        warmup: bool = True,
    ) -> dict[str, float]:
        """Warm up, run `fn` `repeats` times, keep the samples; return the medians."""
        wanted = {m.key for m in metrics}
        samples: dict[str, list[float]] = {m.key: [] for m in metrics}
        runs = [False] * warmup + [True] * self.repeats
        for i, counted in enumerate(runs):
            tag = "warm-up" if not counted else f"{i + 1 - warmup}/{self.repeats}"
            self._progress(f"{what} ({tag})")
            out = fn()
            if set(out) != wanted:
                raise KeyError(f"{what}: returned {sorted(out)}, expected {sorted(wanted)}")
            if counted:
                for key, value in out.items():
                    samples[key].append(float(value))
        medians: dict[str, float] = {}
        for m in metrics:
            stats = Stats.of(samples[m.key])
            self._add(Row(self._section, m, stats, repeated=True))
            medians[m.key] = stats.median
        return medians

    def record(self, metric: Metric, value: float) -> float:
        """Keep one computed value (a ratio of medians, a size) as a row."""
        v = float(value)
        self._add(Row(self._section, metric, Stats(v, v, v, (v,)), repeated=False))
        return v

    def value(self, key: str) -> float:
        """The median of a row recorded earlier in this session."""
        for row in self.rows:
            if row.metric.key == key:
                return row.stats.median
        raise KeyError(key)

    def _add(self, row: Row) -> None:
        if any(r.metric.key == row.metric.key for r in self.rows):
            raise ValueError(f"metric {row.metric.key!r} recorded twice")
        self.rows.append(row)
