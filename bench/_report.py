"""Presenting an outcome: the rich table, the flat JSON object, the saved result file.

The flat object is the machine-readable contract: one level, descriptive keys with their
units (`wal_batch_api_records_per_s`), `<key>_min` / `<key>_max` beside each repeated
median, `floor_<name>_ok` booleans, and `machine_*` facts.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict
from pathlib import Path

from rich import box
from rich.console import Console
from rich.table import Table

from ._runner import Outcome
from ._session import Floor, Row

RESULTS_DIR = Path(__file__).parent / "results"

Flat = dict[str, str | int | float | bool]


def flatten(outcome: Outcome) -> Flat:
    flat: Flat = {
        "scenario": outcome.scenario,
        "quick": outcome.quick,
        "repeats": outcome.repeats,
        "date": outcome.started.isoformat(timespec="seconds"),
        "elapsed_s": _round(outcome.elapsed_s),
    }
    flat.update(outcome.machine.flat())
    floors: Flat = {}
    for row in outcome.rows:
        key, stats = row.metric.key, row.stats
        flat[key] = _round(stats.median)
        if row.repeated:
            flat[f"{key}_min"] = _round(stats.min)
            flat[f"{key}_max"] = _round(stats.max)
        floor = row.metric.floor
        if floor is not None:
            floors[f"floor_{floor.name}_ok"] = floor.holds(stats.median)
    flat.update(floors)
    return flat


def render(outcome: Outcome, console: Console) -> None:
    m = outcome.machine
    facts = Table(box=box.SIMPLE, show_header=False, title="machine", title_justify="left")
    facts.add_column(style="dim")
    facts.add_column()
    facts.add_row("host", m.hostname)
    facts.add_row("cpu", f"{m.cores} cores, {m.cpu_model}")
    facts.add_row("memory", f"{m.memory_bytes / 2**30:.1f} GiB")
    facts.add_row("python", m.python)
    facts.add_row("platform", m.platform)
    facts.add_row("data dir", f"{m.fs_type} on {m.fs_device} at {m.fs_mount}")
    facts.add_row("free disk", f"{m.free_disk_bytes / 2**30:.1f} GiB")
    facts.add_row("gc", m.gc)
    console.print(facts)

    mode = " --quick" if outcome.quick else ""
    title = (
        f"bench {outcome.scenario}{mode}: median of {outcome.repeats} after a warm-up, "
        f"{outcome.started:%Y-%m-%d %H:%M} UTC, {outcome.elapsed_s:.1f} s"
    )
    table = Table(box=box.SIMPLE_HEAD, title=title, title_justify="left")
    table.add_column("metric")
    for name in ("median", "min", "max"):
        table.add_column(name, justify="right")
    table.add_column("unit", style="dim")
    table.add_column("floor", justify="right")
    table.add_column("")
    section = None
    for row in outcome.rows:
        if row.section != section:
            section = row.section
            table.add_row(f"[bold]{section}[/bold]")
        table.add_row(*_cells(row))
    console.print(table)


def _cells(row: Row) -> list[str]:
    s, floor = row.stats, row.metric.floor
    spread = [_num(s.min), _num(s.max)] if row.repeated else ["", ""]
    verdict = ""
    if floor is not None:
        verdict = "[green]pass[/green]" if floor.holds(s.median) else "[bold red]FAIL[/bold red]"
    return [
        f"  {row.metric.label}",
        _num(s.median),
        *spread,
        row.metric.unit,
        _floor(floor),
        verdict,
    ]


def _floor(floor: Floor | None) -> str:
    if floor is None:
        return ""
    text = f"{'≥' if floor.op == '>=' else '≤'} {_num(floor.threshold)}"
    return f"{text} ({floor.note})" if floor.note else text


def _num(v: float) -> str:
    if math.isnan(v) or math.isinf(v):
        return str(v)
    a = abs(v)
    if a >= 1000:
        return f"{v:,.0f}"
    if a >= 100:
        return f"{v:.1f}"
    if a >= 1:
        return f"{v:.2f}"
    return f"{v:.3g}"


def _round(v: float) -> float:
    """Six significant digits: the JSON stays readable and loses nothing measurable."""
    return float(f"{v:.6g}")


def save(outcome: Outcome, flat: Flat, command: str, directory: Path = RESULTS_DIR) -> Path:
    """Write the result file `YYYY-MM-DD-<scenario>-<machine>.json` (never overwriting)."""
    stem = f"{outcome.started:%Y-%m-%d}-{outcome.scenario}-{outcome.machine.short_name()}"
    path = directory / f"{stem}.json"
    n = 1
    while path.exists():
        n += 1
        path = directory / f"{stem}-{n}.json"
    record = {
        "date": outcome.started.isoformat(timespec="seconds"),
        "scenario": outcome.scenario,
        "command": command,
        "machine": asdict(outcome.machine),
        "result": flat,
    }
    directory.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return path
