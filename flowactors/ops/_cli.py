# The operator CLI: `flowactors flows | show | cancel | rewind | signal | retry | compact |
# stats | dashboard DATA_DIR ...`.
#
# Theory of operation. Each command opens the data directory itself, as an ordinary engine
# (its shard count read from DATA_DIR/ENGINE; a directory that is not an engine's is
# refused, never created), does one thing through `_read` / `_commands` - the same code the
# dashboard runs - prints it as rich tables (or JSON with --json), and closes the engine.
# While another engine holds the directory, opening it fails with DataDirLocked, which is
# reported on one line with what to do instead (use that program's dashboard). Errors are
# FlowErrors, printed by flowactors.__main__ as `flowactors: Kind: message`, exit 1.
from __future__ import annotations

import argparse
import json
import os
import signal
from collections.abc import Awaitable, Callable
from typing import Any

import trio
from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from .. import DataDirLocked, Engine, Flow, InvalidArgument, open_engine
from . import _commands, _read
from ._serve import DEFAULT_PORT, serve_dashboard

TOKEN_ENV = "FLOWACTORS_DASHBOARD_TOKEN"


def add_parsers(sub: Any) -> None:
    """Add the operator commands to `flowactors`' subparsers."""

    def command(name: str, help: str) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = sub.add_parser(name, help=help)
        p.add_argument("data_dir", metavar="DATA_DIR", help="an engine data directory")
        if name != "dashboard":
            p.add_argument("--json", action="store_true", help="print JSON, for scripts")
        return p

    def flow_ref(p: argparse.ArgumentParser) -> None:
        p.add_argument("flow_id", metavar="ID", help="the flow's id")
        p.add_argument("--partition-key", metavar="KEY", help="its partition key, if any")

    p = command("flows", "list flows (by type and state, lineage or end time)")
    p.add_argument("--type", default="", help="flow type")
    p.add_argument("--state", default="", help="state (or 'terminal' with a time range)")
    p.add_argument("--parent", default="", metavar="ID", help="children of this flow")
    p.add_argument("--root", default="", metavar="ID", help="descendants of this root")
    p.add_argument("--correlation", default="", metavar="ID", help="flows of this correlation id")
    p.add_argument(
        "--from",
        dest="from_ms",
        metavar="TIME",
        help="updated / ended at or after (engine ms, or ISO time, UTC)",
    )
    p.add_argument(
        "--to",
        dest="to_ms",
        metavar="TIME",
        help="updated / ended at or before (engine ms, or ISO time, UTC)",
    )
    p.add_argument("--limit", type=int, default=50, help="page size (1..500)")
    p.add_argument("--cursor", help="the cursor a previous page printed")
    flow_ref(command("show", "one flow: record, history, values, children, ASL steps"))
    p = command("cancel", "cancel a live flow (children follow their group's rule)")
    flow_ref(p)
    p.add_argument("--reason", help="recorded as the flow's error")
    p.add_argument("--fencing-token", type=int, help="refuse unless the flow still has it")
    p = command("rewind", "restore a flow as it was after one of its history events")
    flow_ref(p)
    p.add_argument("version", type=int, metavar="VERSION", help="the event's version")
    p.add_argument("--expect-state", help="refuse unless the flow is in this state")
    p = command("signal", "deliver a signal (optionally moving the flow)")
    flow_ref(p)
    p.add_argument("name", metavar="NAME", help="the signal name")
    p.add_argument(
        "--value",
        action="append",
        default=[],
        metavar="NAME=TEXT",
        help="a named value to store with it (repeatable)",
    )
    p.add_argument("--transition-to", metavar="STATE", help="move the flow to this state")
    p.add_argument("--if-state", metavar="STATE", help="only from this state (default: now's)")
    flow_ref(command("retry", "run a failed flow again from its newest live event"))
    command("compact", "merge every shard's closed log segments")
    command("stats", "per-shard figures and flows by type and state")
    p = command("dashboard", "serve the web dashboard and /metrics for DATA_DIR")
    p.add_argument("--host", default="127.0.0.1", help="bind address (default: loopback)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT})")
    p.add_argument("--token", help=f"access token (or ${TOKEN_ENV}); required off loopback")
    p.add_argument("--read-only", action="store_true", help="hide and refuse every action")


def engine_shards(data_dir: str) -> int:
    """The shard count recorded in DATA_DIR/ENGINE (InvalidArgument if it is not one)."""
    path = os.path.join(data_dir, "ENGINE")
    if not os.path.isdir(data_dir):
        raise InvalidArgument(f"{data_dir} does not exist")
    try:
        with open(path, "rb") as f:
            return int(json.loads(f.read())["shards"])
    except FileNotFoundError:
        raise InvalidArgument(
            f"{data_dir} is not a flowactors data directory (no ENGINE file)"
        ) from None
    except (ValueError, KeyError, TypeError) as exc:
        raise InvalidArgument(f"{path} is damaged: {exc}") from None


def run(args: argparse.Namespace, console: Console) -> int:
    """Run one operator command; FlowErrors propagate to the caller."""
    shards = engine_shards(args.data_dir)
    handler = _HANDLERS[args.command]
    return trio.run(_with_engine, args, shards, handler, console)


async def _with_engine(
    args: argparse.Namespace,
    shards: int,
    handler: Callable[[Engine, argparse.Namespace, Console], Awaitable[int]],
    console: Console,
) -> int:
    try:
        opened = open_engine(args.data_dir, shards=shards, maintenance_interval_ms=None)
        async with opened as engine:
            return await handler(engine, args, console)
    except DataDirLocked as exc:
        raise DataDirLocked(
            f"{args.data_dir} is held by a running engine ({exc}); operate it through that "
            "program (its dashboard), or stop it first"
        ) from None


def _row(table: Table, *cells: object) -> None:
    """A table row of plain text: flow data is never read as rich markup."""
    table.add_row(*(Text(str(c)) for c in cells))


def _print_json(console: Console, data: Any) -> None:
    console.print_json(json.dumps(data, default=repr), highlight=False)


def _ms(ms: int | None) -> str:
    return "" if ms is None else str(ms)


def _flows_table(title: str, flows: list[Flow]) -> Table:
    table = Table(title=Text(title))
    for column in ("id", "type", "state", "attempts", "updated ms", "due ms", "parent"):
        table.add_column(column, justify="right" if column in ("attempts",) else "left")
    for f in flows:
        state = f.state + (f" ({f.run_state})" if f.run_state else "")
        _row(
            table,
            f.id,
            f.type,
            state,
            str(f.attempts),
            _ms(f.updated_at_ms),
            _ms(f.next_run_at_ms),
            f.parent_id or "",
        )
    if not flows:
        table.caption = "no flows"
    return table


async def _flows(engine: Engine, args: argparse.Namespace, console: Console) -> int:
    flt = _read.ListFilter(
        type=args.type,
        state=args.state,
        parent=args.parent,
        root=args.root,
        correlation=args.correlation,
        from_ms=_read.parse_time_ms(args.from_ms, "--from"),
        to_ms=_read.parse_time_ms(args.to_ms, "--to"),
        limit=args.limit,
        cursor=args.cursor,
    )
    if not 1 <= flt.limit <= 500:
        raise InvalidArgument("--limit must be within 1..500")
    listing = await _read.list_flows(engine, flt)
    if args.json:
        _print_json(console, listing.as_json())
        return 0
    console.print(_flows_table(f"flows in {args.data_dir}", listing.flows))
    if listing.note:
        console.print(listing.note, style="dim", highlight=False, markup=False)
    if listing.cursor:
        console.print(f"next page: --cursor {listing.cursor}", highlight=False, markup=False)
    return 0


async def _show(engine: Engine, args: argparse.Namespace, console: Console) -> int:
    detail = await _read.flow_detail(engine, args.flow_id, partition_key=args.partition_key)
    if args.json:
        _print_json(console, detail.as_json())
        return 0
    f = detail.flow
    record = Table(title=Text(f"flow {f.id}"), show_header=False)
    record.add_column("field", style="dim")
    record.add_column("value")
    for name, value in _read.flow_json(f).items():
        if value in (None, {}, "", False) and name not in ("attempts",):
            continue
        if isinstance(value, dict) and "text" in value:
            value = f"{value['kind']}, {value['size']} bytes: {value['text'][:200]}"
        _row(record, name, str(value))
    console.print(record)
    history = Table(title=f"history ({len(detail.history)} events)")
    for column in ("version", "event", "at ms", "state", "attempts", "fencing", "details"):
        history.add_column(column)
    for e in detail.history:
        _row(
            history,
            str(e.version),
            e.name,
            str(e.at_ms),
            e.state + (f" ({e.run_state})" if e.run_state else ""),
            str(e.attempts),
            str(e.fencing_token),
            ", ".join(f"{k}={v}" for k, v in e.meta.items()),
        )
    console.print(history)
    if f.value_sizes:
        values = Table(title="named values")
        values.add_column("name")
        values.add_column("bytes", justify="right")
        for name, size in sorted(f.value_sizes.items()):
            _row(values, name, str(size))
        console.print(values)
    if detail.children:
        children = Table(title="children")
        for column in ("id", "group", "type", "state", "counted by parent"):
            children.add_column(column)
        for ch in detail.children:
            state = detail.child_flows[ch.id].state if ch.id in detail.child_flows else "?"
            _row(children, ch.id, ch.group_id, ch.type, state, ch.state)
        console.print(children)
    if detail.asl_steps:
        code = detail.steps_of == "code"
        id_key, time_key = ("pos", "at") if code else ("id", "timestamp")
        steps = Table(title="Code workflow journal" if code else "ASL steps")
        for column in ("step", "position" if code else "event", "type", "details"):
            steps.add_column(column)
        for n, step in enumerate(detail.asl_steps, 1):
            for event in step.events:
                rest = {k: v for k, v in event.items() if k not in (id_key, "type", time_key)}
                _row(
                    steps,
                    str(n),
                    str(event.get(id_key, "")),
                    str(event.get("type", "")),
                    _read.json_text(rest)[:120],
                )
        console.print(steps)
    return 0


def _done(console: Console, args: argparse.Namespace, flow: Flow, what: str) -> int:
    if args.json:
        _print_json(console, _read.flow_json(flow))
    else:
        console.print(f"{what}: flow {flow.id} is now {flow.state}", highlight=False, markup=False)
    return 0


async def _cancel(engine: Engine, args: argparse.Namespace, console: Console) -> int:
    flow = await _commands.cancel(
        engine,
        args.flow_id,
        fencing_token=args.fencing_token,
        reason=args.reason,
        partition_key=args.partition_key,
    )
    await engine.settle()  # let the cascade reach children on other shards
    return _done(console, args, flow, "cancelled")


async def _rewind(engine: Engine, args: argparse.Namespace, console: Console) -> int:
    flow = await _commands.rewind(
        engine,
        args.flow_id,
        args.version,
        expect_state=args.expect_state,
        partition_key=args.partition_key,
    )
    return _done(console, args, flow, f"rewound to v{args.version}")


async def _signal(engine: Engine, args: argparse.Namespace, console: Console) -> int:
    values = {}
    for item in args.value:
        name, sep, text = item.partition("=")
        if not sep or not name:
            raise InvalidArgument(f"--value takes NAME=TEXT, not {item!r}")
        values[name] = text.encode()
    flow = await _commands.signal(
        engine,
        args.flow_id,
        args.name,
        values=values,
        transition_to=args.transition_to,
        if_state=args.if_state,
        partition_key=args.partition_key,
    )
    return _done(console, args, flow, f"signal {args.name!r} delivered")


async def _retry(engine: Engine, args: argparse.Namespace, console: Console) -> int:
    flow = await _commands.retry(engine, args.flow_id, partition_key=args.partition_key)
    return _done(console, args, flow, "retrying")


async def _compact(engine: Engine, args: argparse.Namespace, console: Console) -> int:
    before = sum(s["log"].total_bytes for s in engine.statistics()["shards"])
    # One engine call merges every shard: the bar shows it running, then done.
    progress = Progress(
        SpinnerColumn(),
        TextColumn(f"merging {engine.shard_count} shards"),
        BarColumn(),
        TimeElapsedColumn(),
        console=console,
        disable=args.json,
    )
    with progress:
        task = progress.add_task("merge", total=1)
        report = await engine.compact()
        progress.update(task, completed=1)
    after = sum(s["log"].total_bytes for s in engine.statistics()["shards"])
    result = {"bytes_before": before, "bytes_after": after, **report}
    if args.json:
        _print_json(console, result)
    else:
        console.print(
            f"log {before:,} -> {after:,} bytes ({report['bytes_reclaimed']:,} reclaimed)",
            highlight=False,
        )
    return 0


async def _stats(engine: Engine, args: argparse.Namespace, console: Console) -> int:
    counts = await engine.counts()
    totals, shards = _read.live_figures(engine)
    if args.json:
        _print_json(console, {"counts": counts, "totals": totals, "shards": shards})
        return 0
    table = Table(title=f"shards of {args.data_dir}")
    columns = (
        "index",
        "flows",
        "log_bytes",
        "live_bytes",
        "segments",
        "merges",
        "outbox",
        "broken",
    )
    for column in columns:
        table.add_column(column.replace("_", " "), justify="right")
    for s in shards:
        _row(
            table,
            *(
                f"{s[c]:,}" if isinstance(s[c], int) and not isinstance(s[c], bool) else str(s[c])
                for c in columns
            ),
        )
    console.print(table)
    per = Table(title="flows by type and state")
    states = sorted({s for p in counts.values() for s in p})
    per.add_column("type")
    for state in states:
        per.add_column(Text(state), justify="right")
    for flow_type, p in counts.items():
        _row(per, flow_type, *(f"{p.get(s, 0):,}" for s in states))
    if not counts:
        per.caption = "no flows"
    console.print(per)
    return 0


async def _dashboard(engine: Engine, args: argparse.Namespace, console: Console) -> int:
    token = args.token or os.environ.get(TOKEN_ENV) or None
    # Ctrl-C or SIGTERM stops the server and closes the engine cleanly (exit 0).
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            url = await nursery.start(
                lambda task_status: serve_dashboard(
                    engine,
                    args.host,
                    args.port,
                    token=token,
                    read_only=args.read_only,
                    data_dir=args.data_dir,
                    task_status=task_status,
                )
            )
            mode = " (read-only)" if args.read_only else ""
            console.print(
                f"dashboard for {args.data_dir}{mode} at {url}  (Ctrl-C stops it)",
                highlight=False,
                markup=False,
            )
            async for _signum in signals:
                nursery.cancel_scope.cancel()
                break
    return 0


_HANDLERS: dict[str, Callable[[Engine, argparse.Namespace, Console], Awaitable[int]]] = {
    "flows": _flows,
    "show": _show,
    "cancel": _cancel,
    "rewind": _rewind,
    "signal": _signal,
    "retry": _retry,
    "compact": _compact,
    "stats": _stats,
    "dashboard": _dashboard,
}
