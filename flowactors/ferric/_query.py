# Theory of operation: FerricStore answers its SDK's listing helpers (`list`, `terminals`,
# `failures`, `by_parent`, `by_root`, `by_correlation`, `stuck`) with FLOW.QUERY, a small
# SQL-shaped language (FQL1). This module understands exactly the shapes those helpers
# compile, `FROM runs WHERE p AND p ... ORDER BY f ASC|DESC LIMIT n RETURN RECORDS` with
# predicates `field = @param`, `field IN (@a, @b)` and `field BETWEEN @a AND @b`, and answers
# them from flowactors' own queries (lineage, terminals, per-state listing, stuck leases),
# filtered by partition and time window. Any other query text is refused with a syntax
# error. Results come in one page (no cursors): at most LIMIT (<= 100) records.
#
# Partition: the SDK requires a partition_key on every helper. A flow created without one
# lives in FerricStore's auto partition `__flow_auto__:<n>`; `__flow_auto__` (no bucket)
# matches every flow created without a partition key, which is what a single embedded
# engine usually wants.

from __future__ import annotations

import re
from typing import Any

import flowactors as fa

from . import _replies as r
from ._argv import AUTO_ANY, AUTO_PREFIX, Argv, auto_partition, integer, syntax, text

RESULT_CONTRACT = "ferric.flow.query.result/v1"
_TOKEN = re.compile(r"\(|\)|,|=|@?[A-Za-z_][A-Za-z0-9_.]*|\d+")
_LINEAGE = ("parent_flow_id", "root_flow_id", "correlation_id")
_FIELDS = {"partition_key", "type", "state", *_LINEAGE, "updated_at_ms", "lease_deadline_ms"}
_TERMINAL = ("completed", "failed", "cancelled")
_MAX_PAGES = 50


class Query:
    def __init__(self) -> None:
        self.equal: dict[str, Any] = {}
        self.among: dict[str, list[Any]] = {}
        self.between: dict[str, tuple[int, int]] = {}
        self.order = "updated_at_ms"
        self.descending = False
        self.limit = 100


def parse(source: str, params: dict[str, Any]) -> Query:
    tokens = _TOKEN.findall(source)
    if "".join(tokens).replace(" ", "") != re.sub(r"\s+", "", source):
        raise syntax("FLOW.QUERY text has characters outside the supported FQL1 subset")
    pos = 0

    def word() -> str:
        nonlocal pos
        if pos >= len(tokens):
            raise syntax("FLOW.QUERY text ends early")
        pos += 1
        return str(tokens[pos - 1])

    def expect(*words: str) -> None:
        for w in words:
            got = word()
            if got.upper() != w:
                raise syntax(f"FLOW.QUERY expected {w}, found {got}")

    def param() -> Any:
        name = word()
        if not name.startswith("@") or name[1:] not in params:
            raise syntax(f"FLOW.QUERY parameter {name} is not given")
        return params[name[1:]]

    q = Query()
    expect("FROM", "RUNS", "WHERE")
    while True:
        field = word().lower()
        if field not in _FIELDS:
            raise syntax(f"FLOW.QUERY field {field} is not supported by flowactors")
        op = word().upper()
        if op == "=":
            q.equal[field] = param()
        elif op == "IN":
            expect("(")
            items = [param()]
            while (sep := word()) == ",":
                items.append(param())
            if sep != ")":
                raise syntax("FLOW.QUERY IN list must end with )")
            q.among[field] = items
        elif op == "BETWEEN":
            low = integer(param(), field)
            expect("AND")
            q.between[field] = (low, integer(param(), field))
        else:
            raise syntax(f"FLOW.QUERY operator {op} is not supported by flowactors")
        if pos < len(tokens) and tokens[pos].upper() == "AND":
            pos += 1
            continue
        break
    expect("ORDER", "BY")
    q.order = word().lower()
    direction = word().upper()
    if q.order not in ("updated_at_ms", "lease_deadline_ms") or direction not in ("ASC", "DESC"):
        raise syntax("FLOW.QUERY ORDER BY must be updated_at_ms or lease_deadline_ms ASC|DESC")
    q.descending = direction == "DESC"
    expect("LIMIT")
    q.limit = integer(word(), "LIMIT")
    if not 1 <= q.limit <= 100:
        raise syntax("FLOW.QUERY LIMIT must be 1..100")
    expect("RETURN", "RECORDS")
    if pos != len(tokens):
        raise syntax(f"FLOW.QUERY unexpected {tokens[pos]}")
    return q


def _partition_matches(flow: fa.Flow, wanted: str | None) -> bool:
    if wanted is None:
        return True
    if wanted == AUTO_ANY:
        return flow.partition_key is None
    if wanted.startswith(AUTO_PREFIX):
        return flow.partition_key is None and auto_partition(flow.id) == wanted
    return flow.partition_key == wanted


async def _pages(engine: fa.Engine, q: Query) -> list[fa.Flow]:
    """Candidate flows from the engine query that fits the predicates best."""
    lineage = next((f for f in _LINEAGE if f in q.equal), None)
    flow_type = q.equal.get("type")
    states = q.among.get("state") or ([q.equal["state"]] if "state" in q.equal else [])
    states = [text(s, "state") for s in states]
    found: list[fa.Flow] = []

    async def drain(fetch: Any) -> None:
        cursor: str | None = None
        for _ in range(_MAX_PAGES):
            page = await fetch(cursor)
            found.extend(page.items)
            cursor = page.cursor
            if cursor is None:
                return

    if lineage is not None:
        ident = text(q.equal[lineage], lineage)
        method = {
            "parent_flow_id": engine.by_parent,
            "root_flow_id": engine.by_root,
            "correlation_id": engine.by_correlation,
        }[lineage]
        await drain(lambda c: method(ident, limit=100, cursor=c))
        return found
    if flow_type is None:
        raise syntax("FLOW.QUERY needs a type or a lineage predicate in flowactors")
    ftype = text(flow_type, "type")
    if "lease_deadline_ms" in q.between:
        if states != ["running"]:
            raise syntax("FLOW.QUERY lease_deadline_ms needs state = running")
        # The bound is in client time; flowactors keeps its own clock, so only "expired
        # for at least (now - bound)" is kept, measured on the engine's clock.
        await drain(lambda c: engine.stuck(ftype, limit=100, cursor=c))
        return found
    if not states:
        raise syntax("FLOW.QUERY needs a state predicate in flowactors")
    if all(s in _TERMINAL for s in states):
        only = states[0] if len(states) == 1 else None
        await drain(lambda c: engine.terminals(ftype, state=only, limit=100, cursor=c))
        return [f for f in found if f.state in states]
    for state in states:
        await drain(lambda c, s=state: engine.list_flows(ftype, s, limit=100, cursor=c))
    return found


async def query(engine: fa.Engine, argv: Argv) -> Any:
    language = argv.text("language")
    if language.upper() != "FQL1":
        raise syntax(f"FLOW.QUERY language {language} is not supported (FQL1 only)")
    source = argv.text("query")
    params: dict[str, Any] = {}
    while len(argv):
        key = argv.text("parameter name")
        params[key] = argv.take(f"parameter {key}")
    q = parse(source, params)
    flows = await _pages(engine, q)
    wanted = q.equal.get("partition_key")
    want_partition = None if wanted is None else text(wanted, "partition_key")
    lineage = any(f in q.equal for f in _LINEAGE)
    if lineage and want_partition is not None and want_partition.startswith(AUTO_PREFIX):
        # Children of an auto-partitioned parent are auto-partitioned by their own ids in
        # flowactors (FerricStore puts them in the parent's bucket): match them all.
        want_partition = AUTO_ANY
    states = q.among.get("state") or ([q.equal["state"]] if "state" in q.equal else [])
    names = {text(s, "state") for s in states}
    flow_type = q.equal.get("type")
    window = q.between.get("updated_at_ms")
    picked = [
        f
        for f in flows
        if _partition_matches(f, want_partition)
        and (not names or f.state in names)
        and (flow_type is None or f.type == text(flow_type, "type"))
        and (window is None or window[0] <= f.updated_at_ms <= window[1])
    ]
    if q.order == "lease_deadline_ms":
        picked.sort(key=lambda f: (f.lease_deadline_ms or 0, f.id), reverse=q.descending)
    else:
        picked.sort(key=lambda f: (f.updated_at_ms, f.id), reverse=q.descending)
    records = [r.record(f) for f in picked[: q.limit]]
    scanned = max(len(flows), len(records))
    return {
        "version": RESULT_CONTRACT,
        "records": records,
        "page": {"has_more": False, "cursor": None},
        "quality": {
            "exactness": "exact",
            "freshness": "current",
            "coverage": "complete",
            "pagination": "none",
        },
        "usage": {
            "range_seeks": 1,
            "range_pages": 1,
            "scanned_entries": scanned,
            "scanned_bytes": 0,
            "hydrated_records": 0,
            "residual_checks": 0,
            "duplicate_entries": 0,
            "result_records": len(records),
            "response_bytes": 0,
            "memory_high_water_bytes": 0,
            "wall_time_us": 0,
        },
    }
