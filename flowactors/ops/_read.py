# What an operator looks at, gathered from the engine's public queries.
#
# Theory of operation. Every view (the dashboard's pages, its JSON endpoints, the operator
# CLI's tables and --json) is built from the plain data these functions return, so the web
# and the terminal always agree. They use only the public Engine API - counts, stuck,
# terminals, list_flows, by_parent / by_root / by_correlation, get, history, children,
# get_values, statistics() - so they are ordinary queries: each is answered by the shard
# actors between batches, like any caller's. Each is bounded (page limits, a capped
# payload preview) so that a dashboard polling the overview costs the engine a few
# queries, not a scan.
#
# Bytes from flows (payloads, results, errors, named values) are never trusted: `preview`
# turns them into text (UTF-8, else CBOR decoded to JSON-ish text, else hex), and only the
# HTML layer decides how to show that text (escaped).
from __future__ import annotations

import io
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import cbor2

from flowactors.asl import event_chunk_names
from flowactors.code import journal_names

from .. import ChildStatus, Engine, Flow, FlowNotFound, HistoryEvent, InvalidArgument, Page

TERMINAL_STATES = ("cancelled", "completed", "failed")
PREVIEW_BYTES = 4096
ASL_TYPE = "asl"
ASL_CHUNK_PREFIX = "ev:"
CODE_TYPE = "code"  # a code workflow run (flowactors.code): its journal in `j:NNNNNN` values
CODE_CHUNK_PREFIX = "j:"
MAX_ASL_CHUNKS = 200
RECENT_WINDOWS_MS = (1_000, 10_000, 60_000, 3_600_000, 86_400_000, None)  # widened as needed


@dataclass(frozen=True, slots=True)
class Preview:
    """Bytes as text: `kind` is text, cbor or hex; `truncated` if only a prefix is shown."""

    kind: str
    text: str
    size: int
    truncated: bool

    def as_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "text": self.text,
            "size": self.size,
            "truncated": self.truncated,
        }


def preview(data: bytes | None, cap: int = PREVIEW_BYTES, size: int | None = None) -> Preview:
    """Show bytes as text without trusting them."""
    if data is None:
        return Preview("none", "", 0, False)
    total = len(data) if size is None else size
    head = bytes(data[:cap])
    truncated = total > len(head)
    text = _as_text(head, truncated)
    if text is not None:
        return Preview("text", text, total, truncated)
    if not truncated:
        stream = io.BytesIO(head)
        try:
            value = cbor2.CBORDecoder(stream).decode()
        except Exception:  # any bytes: "not CBOR" is an answer, not an error
            pass
        else:
            if stream.tell() == len(head):  # one whole CBOR item, nothing after it
                return Preview("cbor", json_text(value, indent=1), total, False)
    return Preview("hex", head.hex(" ", 2), total, truncated)


def json_text(value: Any, indent: int | None = None) -> str:
    """Decoded data as JSON text for people; repr where JSON has no form for it (a map
    with non-string keys, say)."""
    try:
        return json.dumps(value, default=repr, indent=indent, ensure_ascii=False)
    except (TypeError, ValueError):
        return repr(value)


def _as_text(head: bytes, truncated: bool) -> str | None:
    """UTF-8 text with no control characters but line breaks and tabs, else None. A cut
    prefix may end inside a character: up to three trailing bytes are dropped for it."""
    for drop in range(4 if truncated else 1):
        try:
            text = head[: len(head) - drop].decode("utf-8")
        except UnicodeDecodeError:
            continue
        if all(ch.isprintable() or ch in "\n\r\t" for ch in text):
            return text
        return None
    return None


def flow_json(flow: Flow) -> dict[str, Any]:
    """A flow as JSON-able data (bytes as previews, values as sizes only)."""
    out: dict[str, Any] = {}
    for name in Flow._fields:
        value = getattr(flow, name)
        if name in ("payload", "result", "error"):
            out[name] = None if value is None else preview(value).as_json()
        elif name == "values":
            continue
        elif isinstance(value, Mapping):
            out[name] = dict(value)
        else:
            out[name] = value
    out["logical_state"] = flow.logical_state
    return out


def event_json(event: HistoryEvent) -> dict[str, Any]:
    return {
        "event_id": event.event_id,
        "name": event.name,
        "at_ms": event.at_ms,
        "version": event.version,
        "state": event.state,
        "run_state": event.run_state,
        "attempts": event.attempts,
        "fencing_token": event.fencing_token,
        "lease_owner": event.lease_owner,
        "next_run_at_ms": event.next_run_at_ms,
        "meta": {
            k: v if isinstance(v, str | int | float | bool | None) else repr(v)
            for k, v in event.meta.items()
        },
    }


# -- the overview ----------------------------------------------------------------------


@dataclass(slots=True)
class Overview:
    now_ms: int
    counts: dict[str, dict[str, int]]
    states: list[str]
    totals: dict[str, Any]
    shards: list[dict[str, Any]]
    stuck: list[Flow]
    failures: list[Flow]

    def as_json(self) -> dict[str, Any]:
        return {
            "now_ms": self.now_ms,
            "counts": self.counts,
            "states": self.states,
            "totals": self.totals,
            "shards": self.shards,
            "stuck": [flow_json(f) for f in self.stuck],
            "failures": [flow_json(f) for f in self.failures],
        }


def live_figures(engine: Engine) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Totals and per-shard figures from `engine.statistics()` (no shard round trip)."""
    shards = []
    totals: dict[str, Any] = dict.fromkeys(
        (
            "flows",
            "requests",
            "commits",
            "fsyncs",
            "frames",
            "records",
            "log_bytes",
            "live_bytes",
            "queue_depth",
            "outbox",
            "merges",
            "broken_shards",
        ),
        0,
    )
    totals["sync_seconds"] = 0.0
    for s in engine.statistics()["shards"]:
        log = s["log"]
        row = {
            "index": s["index"],
            "flows": s["flows"],
            "requests": s["requests"],
            "commits": log.commits,
            "fsyncs": log.fsyncs,
            "frames": log.frames_written,
            "records": log.records_written,
            "log_bytes": log.total_bytes,
            "live_bytes": log.live_bytes,
            "segments": log.segments,
            "queue_depth": s["queue_depth"],
            "outbox": s["outbox"],
            "merges": log.merges,
            "broken": s["broken"],
            "sync_seconds": log.sync_seconds_total,
            "mean_batch": round(log.mean_batch_frames, 2),
            "sync_via": log.sync_via,  # how commits reach the disk: aio, thread, inline
        }
        shards.append(row)
        for key in totals:
            if key == "broken_shards":
                totals[key] += int(s["broken"])
            elif key in row:
                totals[key] += row[key]
    return totals, shards


async def overview(engine: Engine, *, stuck_limit: int = 10, failure_limit: int = 10) -> Overview:
    counts = await engine.counts()
    now = engine.now_ms()
    states = sorted({s for per in counts.values() for s in per}, key=_state_order)
    totals, shards = live_figures(engine)
    stuck: list[Flow] = []
    failures: list[Flow] = []
    for flow_type, per in counts.items():
        if per.get("running"):
            stuck.extend((await engine.stuck(flow_type, limit=stuck_limit)).items)
        if per.get("failed"):
            failures.extend(await recent_failures(engine, flow_type, now, failure_limit))
    stuck.sort(key=lambda f: f.lease_deadline_ms or 0)
    failures.sort(key=lambda f: f.updated_at_ms, reverse=True)
    return Overview(
        now,
        counts,
        states,
        totals,
        shards,
        stuck[:stuck_limit],
        await _with_errors(engine, failures[:failure_limit]),
    )


async def _with_errors(engine: Engine, flows: list[Flow]) -> list[Flow]:
    """The flows again with their error bytes (pages carry no outcome bytes)."""
    out = []
    for f in flows:
        full = await engine.get(f.id, partition_key=f.partition_key)
        out.append(full if full is not None else f)
    return out


async def recent_failures(engine: Engine, flow_type: str, now: int, limit: int) -> list[Flow]:
    """The newest failed flows of a type: `terminals` answers oldest first, so the window
    is widened (a second, ten, a minute, an hour, a day, all time) until it holds `limit`
    of them, and the newest of its first page (500) are kept."""
    found: list[Flow] = []
    for window in RECENT_WINDOWS_MS:
        from_ms = None if window is None else max(now - window, 0)
        page = await engine.terminals(flow_type, state="failed", from_ms=from_ms, limit=500)
        found = page.items
        if len(found) >= limit:
            break
    return sorted(found, key=lambda f: f.updated_at_ms, reverse=True)[:limit]


def _state_order(state: str) -> tuple[int, str]:
    """Live states first (alphabetical), then running, then the terminal ones."""
    if state in TERMINAL_STATES:
        return (2, str(TERMINAL_STATES.index(state)))
    return (1, state) if state == "running" else (0, state)


# -- the list --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ListFilter:
    """The list view's filter. Lineage ids pick the query (post-filtered by type, state and
    time); otherwise `type` with `state` lists one state, and a terminal state (or
    `state="terminal"`) with a time range asks `terminals`."""

    type: str = ""
    state: str = ""
    parent: str = ""
    root: str = ""
    correlation: str = ""
    from_ms: int | None = None
    to_ms: int | None = None
    limit: int = 50
    cursor: str | None = None

    def as_query(self, **changes: Any) -> dict[str, str]:
        """The filter as URL query parameters (only those that are set)."""
        values: dict[str, Any] = {
            "type": self.type,
            "state": self.state,
            "parent": self.parent,
            "root": self.root,
            "correlation": self.correlation,
            "from_ms": self.from_ms,
            "to_ms": self.to_ms,
            "limit": self.limit if self.limit != 50 else None,
            "cursor": self.cursor,
        }
        values.update(changes)
        return {k: str(v) for k, v in values.items() if v not in (None, "")}


@dataclass(slots=True)
class FlowList:
    filter: ListFilter
    flows: list[Flow]
    cursor: str | None
    note: str = ""
    types: list[str] = field(default_factory=list)
    states: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {
            "flows": [flow_json(f) for f in self.flows],
            "cursor": self.cursor,
            "note": self.note,
        }


async def list_flows(engine: Engine, flt: ListFilter) -> FlowList:
    counts = await engine.counts()
    types = sorted(counts)
    states = sorted({s for per in counts.values() for s in per}, key=_state_order)
    if flt.parent or flt.root or flt.correlation:
        page = await _lineage_page(engine, flt)
        flows = [f for f in page.items if _matches(f, flt)]
        note = (
            ""
            if len(flows) == len(page.items)
            else (
                f"{len(page.items) - len(flows)} of this page's flows hidden by the type, "
                "state or time filter"
            )
        )
        return FlowList(flt, flows, page.cursor, note, types, states)
    if not flt.type:
        return FlowList(
            flt,
            [],
            None,
            "choose a flow type (or a parent, root or correlation id) to list flows",
            types,
            states,
        )
    terminal_query = flt.state == "terminal" or (
        flt.state in TERMINAL_STATES and (flt.from_ms is not None or flt.to_ms is not None)
    )
    if terminal_query:
        page = await engine.terminals(
            flt.type,
            state=None if flt.state == "terminal" else flt.state,
            from_ms=flt.from_ms,
            to_ms=flt.to_ms,
            limit=flt.limit,
            cursor=flt.cursor,
        )
        return FlowList(flt, page.items, page.cursor, "", types, states)
    state = flt.state
    if not state:
        present = sorted(counts.get(flt.type, {}), key=_state_order)
        if not present:
            return FlowList(flt, [], None, f"no flows of type {flt.type!r}", types, states)
        state = present[0]
    page = await engine.list_flows(flt.type, state, limit=flt.limit, cursor=flt.cursor)
    flows = [f for f in page.items if _in_time(f, flt)]
    note = "" if flt.state else f"showing state {state!r}: choose a state to list another"
    return FlowList(flt, flows, page.cursor, note, types, states)


async def _lineage_page(engine: Engine, flt: ListFilter) -> Page:
    if sum(bool(x) for x in (flt.parent, flt.root, flt.correlation)) > 1:
        raise InvalidArgument("filter by one of parent, root or correlation id at a time")
    if flt.parent:
        return await engine.by_parent(flt.parent, limit=flt.limit, cursor=flt.cursor)
    if flt.root:
        return await engine.by_root(flt.root, limit=flt.limit, cursor=flt.cursor)
    return await engine.by_correlation(flt.correlation, limit=flt.limit, cursor=flt.cursor)


def parse_time_ms(text: str | None, what: str) -> int | None:
    """A time bound as engine ms: an integer, or an ISO 8601 date / time (UTC unless it
    names its offset); None for an empty one."""
    if text is None or not text.strip():
        return None
    text = text.strip()
    try:
        return int(text)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidArgument(
            f"{what} must be engine ms or an ISO time like 2026-12-03T08:00, not {text!r}"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def _in_time(flow: Flow, flt: ListFilter) -> bool:
    if flt.from_ms is not None and flow.updated_at_ms < flt.from_ms:
        return False
    return flt.to_ms is None or flow.updated_at_ms <= flt.to_ms


def _matches(flow: Flow, flt: ListFilter) -> bool:
    if flt.type and flow.type != flt.type:
        return False
    if flt.state == "terminal":
        if not flow.terminal:
            return False
    elif flt.state and flow.state != flt.state:
        return False
    return _in_time(flow, flt)


# -- one flow --------------------------------------------------------------------------


@dataclass(slots=True)
class AslStep:
    chunk: str
    events: list[dict[str, Any]]


@dataclass(slots=True)
class FlowDetail:
    flow: Flow
    history: list[HistoryEvent]
    children: list[ChildStatus]
    child_flows: dict[str, Flow]
    asl_steps: list[AslStep] | None
    steps_of: str | None = None  # "asl" or "code": whose step chunks `asl_steps` holds

    def as_json(self) -> dict[str, Any]:
        return {
            "flow": flow_json(self.flow),
            "values": dict(self.flow.value_sizes),
            "history": [event_json(e) for e in self.history],
            "children": [
                {
                    "id": ch.id,
                    "group_id": ch.group_id,
                    "type": ch.type,
                    "noted": ch.state,
                    "state": self.child_flows[ch.id].state if ch.id in self.child_flows else None,
                }
                for ch in self.children
            ],
            "asl_steps": None
            if self.asl_steps is None
            else [{"chunk": s.chunk, "events": s.events} for s in self.asl_steps],
        }


async def flow_detail(
    engine: Engine, flow_id: str, *, partition_key: str | None = None
) -> FlowDetail:
    flow = await engine.get(flow_id, partition_key=partition_key, payload=PREVIEW_BYTES)
    if flow is None:
        raise FlowNotFound(f"no flow {flow_id!r}")
    history = await engine.history(flow_id, partition_key=partition_key)
    children = await engine.children(flow_id, partition_key=partition_key)
    child_flows: dict[str, Flow] = {}
    if children:
        page = await engine.by_parent(flow_id, limit=500)
        child_flows = {f.id: f for f in page.items}
    steps, steps_of = None, None
    if flow.type == ASL_TYPE:
        steps, steps_of = await asl_steps(engine, flow), "asl"
    elif flow.type == CODE_TYPE:
        steps, steps_of = await asl_steps(engine, flow, CODE_CHUNK_PREFIX), "code"
    return FlowDetail(flow, history, children, child_flows, steps, steps_of)


async def asl_steps(engine: Engine, flow: Flow, prefix: str = ASL_CHUNK_PREFIX) -> list[AslStep]:
    """An ASL execution's steps: its `ev:NNNNNN` named values, each a CBOR list of the
    interpreter's event dicts, newest MAX_ASL_CHUNKS. A code workflow's journal has the
    same shape under `j:` (events keyed pos / at). Both are laid out as
    flowactors/sdk/_journal.py says: a chunk per step, then binary levels (a level's chunk
    shows as one step holding the steps merged into it)."""
    if prefix == CODE_CHUNK_PREFIX:
        names = journal_names(flow.value_sizes)
    else:
        names = event_chunk_names(flow.value_sizes)
    names = names[-MAX_ASL_CHUNKS:]
    if not names:
        return []
    values = await engine.get_values(flow.id, names, partition_key=flow.partition_key)
    steps = []
    for name in names:
        try:
            events = cbor2.loads(values[name]) if name in values else []
        except Exception:  # shown, not trusted: a damaged chunk is a row saying so
            events = [{"type": "(undecodable chunk)"}]
        if not isinstance(events, list):
            events = [{"type": "(not a list)", "value": repr(events)}]
        steps.append(AslStep(name, [e if isinstance(e, dict) else {"value": e} for e in events]))
    return steps


async def read_value(
    engine: Engine, flow_id: str, name: str, *, partition_key: str | None = None
) -> Preview:
    values = await engine.get_values(flow_id, [name], partition_key=partition_key)
    if name not in values:
        raise FlowNotFound(f"flow {flow_id!r} has no value {name!r}")
    return preview(values[name], cap=64 * 1024)


def latest_live_event(history: Sequence[HistoryEvent]) -> HistoryEvent | None:
    """The newest event after which the flow was not terminal: where `retry` rewinds to."""
    for event in reversed(history):
        if event.state not in TERMINAL_STATES:
            return event
    return None
