"""`flowactors inspect DATA_DIR`: what a data directory holds, as rich tables.

Without options: flows per type and state (running included). `--flow ID` (with
`--partition-key` for a partitioned flow): that flow's record and its whole history.
The directory must already be an engine directory (its ENGINE file names the shard count);
inspect never creates one. It opens the engine like any caller - so a directory another
process holds is refused with DataDirLocked, and damage is reported as CorruptLog.
"""

from __future__ import annotations

import trio
from rich.console import Console
from rich.table import Table

from ..engine._engine import open_engine
from ..engine._errors import FlowNotFound
from ..engine._types import Flow, HistoryEvent
from ._cli import engine_shards


def run_inspect(
    data_dir: str, flow_id: str | None, partition_key: str | None, console: Console
) -> None:
    shards = engine_shards(data_dir)
    trio.run(_inspect, data_dir, shards, flow_id, partition_key, console)


async def _inspect(
    data_dir: str,
    shards: int,
    flow_id: str | None,
    partition_key: str | None,
    console: Console,
) -> None:
    async with open_engine(data_dir, shards=shards) as engine:
        if flow_id is None:
            console.print(_counts_table(data_dir, await engine.counts()))
            return
        flow = await engine.get(flow_id, partition_key=partition_key, payload=256)
        if flow is None:
            where = f" in partition {partition_key!r}" if partition_key else ""
            raise FlowNotFound(f"no flow {flow_id!r}{where} in {data_dir}")
        console.print(_flow_table(flow))
        console.print(
            _history_table(flow_id, await engine.history(flow_id, partition_key=partition_key))
        )


def _counts_table(data_dir: str, counts: dict[str, dict[str, int]]) -> Table:
    states = sorted({s for per in counts.values() for s in per})
    table = Table(title=f"flows in {data_dir}")
    table.add_column("type")
    for state in states:
        table.add_column(state, justify="right")
    table.add_column("total", justify="right")
    for flow_type in sorted(counts):
        per = counts[flow_type]
        table.add_row(flow_type, *(f"{per.get(s, 0):,}" for s in states), f"{sum(per.values()):,}")
    if not counts:
        table.caption = "no flows"
    return table


def _flow_table(flow: Flow) -> Table:
    table = Table(title=f"flow {flow.id}")
    table.add_column("field")
    table.add_column("value")
    for name in Flow._fields:
        value = getattr(flow, name)
        if name in ("payload", "result", "error") and value is not None:
            value = bytes(value[:256])
        if value in (None, {}, b"") or (name == "payload_omitted" and not value):
            continue
        table.add_row(name, repr(value) if isinstance(value, bytes) else str(value))
    return table


def _history_table(flow_id: str, events: list[HistoryEvent]) -> Table:
    table = Table(title=f"history of {flow_id} ({len(events)} events)")
    for column in ("event", "at ms", "version", "state", "run state", "attempts", "fencing"):
        table.add_column(column, justify="right" if column != "event" else "left")
    table.add_column("details")
    for e in events:
        table.add_row(
            e.name,
            str(e.at_ms),
            str(e.version),
            e.state,
            e.run_state or "",
            str(e.attempts),
            str(e.fencing_token),
            ", ".join(f"{k}={v}" for k, v in e.meta.items()),
        )
    return table
