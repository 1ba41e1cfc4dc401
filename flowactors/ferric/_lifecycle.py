# Theory of operation: the FLOW commands of a flow's life, each parsing its argv and calling
# the engine's public API: creation (one, many), claims and leases, outcomes (transition,
# complete, retry, fail, cancel and their batch forms) and the reads of one flow (get,
# history) or one type (info). Replies are the shapes of `_replies`; refusals go through
# `_common`. A claim drains every partition, or the named ones in turn; flows created
# without a partition key (FerricStore's auto partitions) are claimed all together.

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import trio

import flowactors as fa

from . import _replies as r
from ._argv import READ_WIDTHS, Argv, CommandError, Options, lease, partition, syntax, text
from ._common import (
    OK,
    TERMINAL,
    attributes_of,
    batch_partition,
    delay_of,
    engine_due,
    fencing_of,
    max_active,
    ok_items,
    superseded,
    unsupported_values,
    values_of,
)

# -- creation --------------------------------------------------------------------------


async def create(engine: fa.Engine, argv: Argv) -> Any:
    flow_id = argv.text("id")
    opts = argv.options()
    argv.done()
    unsupported_values(opts)
    opts.refuse("STATE_META", "HISTORY_HOT_MAX_EVENTS", "HISTORY_MAX_EVENTS")
    flow_type = opts.text("TYPE")
    if flow_type is None:
        raise CommandError("ERR wrong number of arguments for 'FLOW.CREATE': TYPE is required")
    await engine.create(
        flow_id,
        flow_type,
        state=opts.text("STATE") or "queued",
        payload=opts.blob("PAYLOAD"),
        partition_key=partition(opts.one("PARTITION")),
        delay_ms=delay_of(opts),
        priority=opts.number("PRIORITY") or 0,
        values=values_of(opts),
        attributes=attributes_of(opts, "ATTRIBUTE"),
        parent_id=opts.text("PARENT_FLOW_ID"),
        root_id=opts.text("ROOT_FLOW_ID"),
        correlation_id=opts.text("CORRELATION_ID"),
        idempotent=bool(opts.flag("IDEMPOTENT")),
        max_active_ms=max_active(opts),
        retention_ms=opts.number("RETENTION_TTL_MS") or opts.number("RETENTION_TTL"),
    )
    return OK


async def create_many(engine: fa.Engine, argv: Argv) -> Any:
    mixed, shared_partition = batch_partition(argv.text("partition"))
    opts = argv.options()
    unsupported_values(opts)
    opts.refuse("STATE_META")
    flow_type = opts.text("TYPE")
    if flow_type is None:
        raise CommandError("ERR wrong number of arguments for 'FLOW.CREATE_MANY': TYPE is required")
    marker = argv.text("ITEMS")
    shared_values = values_of(opts)
    shared_attributes = attributes_of(opts, "ATTRIBUTE")
    specs: list[fa.CreateSpec] = []
    if marker.upper() == "ITEMS":
        while len(argv):
            item_id = argv.text("item id")
            item_partition = partition(argv.take("item partition")) if mixed else None
            specs.append(
                fa.CreateSpec(
                    item_id,
                    argv.blob("item payload"),
                    item_partition,
                    values=shared_values,
                    attributes=shared_attributes,
                )
            )
    else:
        v2 = marker.upper() == "ITEMS_EXT_V2"
        for _ in range(argv.number("ITEMS_EXT count")):
            item_id = argv.text("item id")
            raw_partition = argv.take("item partition")
            payload = argv.blob("item payload")
            if v2:
                argv.take("item max_active_ms")  # per-item deadlines: see docs/ferric.md
            values = dict(shared_values or {})
            for _ in range(argv.number("value count")):
                value_name = argv.text("value name")  # (read before its value)
                values[value_name] = argv.blob("value")
            if argv.number("value ref count"):
                raise syntax("VALUE_REF items are not supported by flowactors")
            specs.append(
                fa.CreateSpec(
                    item_id,
                    payload,
                    partition(raw_partition),
                    values=values or None,
                    attributes=shared_attributes,
                )
            )
        argv.done()
    if not specs:
        raise CommandError("ERR wrong number of arguments for 'FLOW.CREATE_MANY': no items")
    due = engine_due(engine, opts)
    results = await engine.create_many(
        flow_type,
        specs,
        state=opts.text("STATE") or "queued",
        partition_key=shared_partition,
        priority=opts.number("PRIORITY") or 0,
        run_at_ms=due,
        idempotent=bool(opts.flag("IDEMPOTENT")),
        max_active_ms=max_active(opts),
        retention_ms=opts.number("RETENTION_TTL_MS") or opts.number("RETENTION_TTL"),
    )
    return ok_items(results, opts)


# -- claims and leases -----------------------------------------------------------------


def _claim_reply(flows: list[fa.Flow], opts: Options) -> list[Any]:
    mode = (opts.text("RETURN") or "RECORDS").upper()
    requested = tuple(text(v[0], "VALUE") for v in opts.all("VALUE"))
    if mode in ("RECORDS", "JOBS"):
        return [r.record(f, requested=requested) for f in flows]
    if mode.startswith("JOBS_COMPACT"):
        return [
            r.compact_row(f, state="STATE" in mode, attributes=mode.endswith("ATTRS"))
            for f in flows
        ]
    raise syntax(f"RETURN {mode} is not supported for claims")


def _hydration(opts: Options) -> bool | int:
    if opts.has("NOPAYLOAD"):
        return False
    cap = opts.number("MAXBYTES")
    return cap if cap is not None else True


def _claim_partitions(opts: Options) -> list[str | None]:
    """The partitions a claim drains, in order: [None] for every partition (no option, or
    AUTO / ANY / GLOBAL), else the named ones. An auto bucket `__flow_auto__:<n>` cannot be
    claimed alone (flowactors keeps those flows without a key) and is refused."""
    named = [v[0] for v in opts.all("PARTITION")]
    for values in opts.all("PARTITIONS"):
        named.extend(values)
    keys: list[str | None] = []
    for raw in named:
        word = text(raw, "PARTITION")
        if word.upper() in ("AUTO", "ANY", "GLOBAL"):
            return [None]
        key = partition(word)
        if key is None:
            raise syntax(
                f"claims limited to auto partition {word!r} are not supported by flowactors "
                "(flows created without a partition key are claimed with AUTO)"
            )
        if key not in keys:
            keys.append(key)
    return keys or [None]


async def claim_due(engine: fa.Engine, argv: Argv) -> Any:
    flow_type = argv.text("type")
    opts = argv.options(READ_WIDTHS)
    argv.done()
    worker = opts.text("WORKER")
    if worker is None:
        raise CommandError("ERR wrong number of arguments for 'FLOW.CLAIM_DUE': WORKER required")
    partitions = _claim_partitions(opts)
    states = [text(v[0], "STATE") for v in opts.all("STATE")] or None
    ratio = opts.number("RECLAIM_RATIO")
    limit = opts.number("LIMIT") or 1
    requested = [text(v[0], "VALUE") for v in opts.all("VALUE")]
    lease_ms = opts.number("LEASE_MS") or 30_000
    priority = opts.number("PRIORITY")

    async def one(key: str | None, count: int) -> list[fa.Flow]:
        if argv.command == "FLOW.RECLAIM":
            return await engine.reclaim(
                flow_type,
                worker,
                states=states,
                limit=count,
                lease_ms=lease_ms,
                payload=_hydration(opts),
                values=requested,
                priority=priority,
                partition_key=key,
            )
        return await engine.claim_due(
            flow_type,
            worker,
            states=states,
            limit=count,
            lease_ms=lease_ms,
            payload=_hydration(opts),
            values=requested,
            reclaim=opts.flag("RECLAIM_EXPIRED") is not False,
            reclaim_ratio=25 if ratio is None else ratio,
            priority=priority,
            partition_key=key,
        )

    async def once() -> list[fa.Flow]:
        # Several partitions: drained in the order given until `limit` flows are claimed
        # (each claim is atomic; the whole command is not, as with FerricStore per shard).
        flows: list[fa.Flow] = []
        for key in partitions:
            flows.extend(await one(key, limit - len(flows)))
            if len(flows) >= limit:
                break
        return flows

    flows = await once()
    block_ms = opts.number("BLOCK") or 0
    if not flows and block_ms > 0:
        flows = await _blocking(once, block_ms)
    return _claim_reply(flows, opts)


async def _blocking(once: Callable[[], Awaitable[list[fa.Flow]]], block_ms: int) -> list[fa.Flow]:
    """`BLOCK ms`: the engine has no claim waiters, so poll with a growing pause (1, 2, 4,
    ... 50 ms) until something is claimed or the block time is up."""
    deadline = trio.current_time() + min(block_ms, 60_000) / 1000
    pause = 0.001
    while True:
        left = deadline - trio.current_time()
        if left <= 0:
            return []
        await trio.sleep(min(pause, left))
        pause = min(pause * 2, 0.05)
        flows = await once()
        if flows:
            return flows


async def extend_lease(engine: fa.Engine, argv: Argv) -> Any:
    flow_id = argv.text("id")
    token = lease(argv.take("lease token")) or ""
    opts = argv.options()
    argv.done()
    fencing = opts.number("FENCING")
    if fencing is None:
        raise CommandError("ERR wrong number of arguments for 'FLOW.EXTEND_LEASE': FENCING")
    flow = await engine.extend_lease(
        flow_id,
        token,
        fencing,
        lease_ms=opts.number("LEASE_MS") or 30_000,
        partition_key=partition(opts.one("PARTITION")),
    )
    if (opts.text("RETURN") or "").upper() == "OK_ON_SUCCESS":
        return OK
    return r.record(flow)


# -- outcomes --------------------------------------------------------------------------


async def transition(engine: fa.Engine, argv: Argv) -> Any:
    flow_id = argv.text("id")
    from_state = argv.text("from state")
    to_state = argv.text("to state")
    opts = argv.options()
    argv.done()
    unsupported_values(opts)
    opts.refuse("STATE_META")
    token, fencing = lease(opts.one("LEASE_TOKEN")), fencing_of(opts, argv.command)
    if superseded(engine, flow_id, token, fencing):
        return OK
    await engine.transition(
        flow_id,
        from_state,
        to_state,
        fencing,
        lease_token=token,
        delay_ms=delay_of(opts),
        priority=opts.number("PRIORITY"),
        payload=opts.blob("PAYLOAD"),
        values=values_of(opts),
        attributes=attributes_of(opts, "ATTRIBUTE_MERGE", "ATTRIBUTE"),
        partition_key=partition(opts.one("PARTITION")),
    )
    return OK


async def finish(engine: fa.Engine, argv: Argv) -> Any:
    """FLOW.COMPLETE / FLOW.FAIL / FLOW.RETRY <id> <lease> FENCING n ..."""
    flow_id = argv.text("id")
    token = lease(argv.take("lease token"))
    opts = argv.options()
    argv.done()
    unsupported_values(opts)
    opts.refuse("STATE_META", "ATTRIBUTE_MERGE", "TTL")
    fencing = fencing_of(opts, argv.command)
    part = partition(opts.one("PARTITION"))
    if superseded(engine, flow_id, token, fencing):
        return OK
    if argv.command == "FLOW.COMPLETE":
        opts.refuse("PAYLOAD")
        await engine.complete(
            flow_id,
            token,
            fencing,
            result=opts.blob("RESULT"),
            values=values_of(opts),
            partition_key=part,
        )
    elif argv.command == "FLOW.FAIL":
        opts.refuse("PAYLOAD")
        await engine.fail(
            flow_id,
            token,
            fencing,
            error=opts.blob("ERROR"),
            values=values_of(opts),
            partition_key=part,
        )
    else:
        opts.refuse("VALUE")
        await engine.retry(
            flow_id,
            token,
            fencing,
            error=opts.blob("ERROR"),
            delay_ms=delay_of(opts),
            payload=opts.blob("PAYLOAD"),
            max_retries=opts.number("MAX_RETRIES"),
            exhausted_to=opts.text("EXHAUSTED_TO"),
            partition_key=part,
        )
    return OK


async def cancel(engine: fa.Engine, argv: Argv) -> Any:
    flow_id = argv.text("id")
    opts = argv.options()
    argv.done()
    unsupported_values(opts)
    opts.refuse("TTL", "VALUE", "ATTRIBUTE_MERGE", "STATE_META")
    await engine.cancel(
        flow_id,
        fencing_token=fencing_of(opts, argv.command),
        lease_token=lease(opts.one("LEASE_TOKEN")),
        reason=opts.blob("REASON"),
        partition_key=partition(opts.one("PARTITION")),
    )
    return OK


async def finish_many(engine: fa.Engine, argv: Argv) -> Any:
    """FLOW.COMPLETE_MANY / FAIL_MANY / RETRY_MANY <p|MIXED> ... ITEMS {id [p] lease f}*"""
    mixed, shared = batch_partition(argv.text("partition"))
    opts = argv.options()
    unsupported_values(opts)
    opts.refuse("VALUE", "STATE_META", "ATTRIBUTE_MERGE", "TTL", "PAYLOAD")
    if argv.text("ITEMS").upper() != "ITEMS":
        raise syntax(f"{argv.command} takes ITEMS")
    data = opts.blob("RESULT" if argv.command == "FLOW.COMPLETE_MANY" else "ERROR")
    acks: list[fa.Ack] = []
    while len(argv):
        item_id = argv.text("item id")
        item_partition = partition(argv.take("item partition")) if mixed else shared
        token = lease(argv.take("item lease"))
        acks.append(fa.Ack(item_id, token, argv.number("item fencing"), data, item_partition))
    if not acks:
        raise CommandError(f"ERR wrong number of arguments for '{argv.command}': no items")

    async def run(live: list[fa.Ack]) -> list[fa.ItemResult]:
        if argv.command == "FLOW.COMPLETE_MANY":
            return await engine.complete_many(live)
        if argv.command == "FLOW.FAIL_MANY":
            return await engine.fail_many(live)
        if opts.has("RUN_AT"):
            delay = delay_of(opts)
            return [await _retry_one(engine, a, delay) for a in live]
        return await engine.retry_many(live)

    return ok_items(await _live_items(engine, acks, run), opts)


async def _live_items(
    engine: fa.Engine,
    acks: list[fa.Ack],
    run: Callable[[list[fa.Ack]], Awaitable[list[fa.ItemResult]]],
) -> list[fa.ItemResult]:
    """`run` on the acks whose claim was not superseded by a spawn; those are "OK"."""
    done = [superseded(engine, a.id, a.lease_token, a.fencing_token) for a in acks]
    live = [a for a, skip in zip(acks, done, strict=True) if not skip]
    results = iter(await run(live) if live else [])
    return [
        fa.ItemResult(a.id) if skip else next(results) for a, skip in zip(acks, done, strict=True)
    ]


async def _retry_one(engine: fa.Engine, ack: fa.Ack, delay: int | None) -> fa.ItemResult:
    try:
        flow = await engine.retry(
            ack.id,
            ack.lease_token,
            ack.fencing_token,
            error=ack.data,
            delay_ms=delay,
            partition_key=ack.partition_key,
        )
    except fa.FlowError as exc:
        return fa.ItemResult(ack.id, None, exc)
    return fa.ItemResult(ack.id, flow)


async def cancel_many(engine: fa.Engine, argv: Argv) -> Any:
    """FLOW.CANCEL_MANY <p|MIXED> [REASON] ... ITEMS {id [p] fencing}*"""
    mixed, shared = batch_partition(argv.text("partition"))
    opts = argv.options()
    opts.refuse("TTL")
    if argv.text("ITEMS").upper() != "ITEMS":
        raise syntax("FLOW.CANCEL_MANY takes ITEMS")
    reason = opts.blob("REASON")
    results: list[fa.ItemResult] = []
    items: list[tuple[str, str | None, int]] = []
    while len(argv):
        item_id = argv.text("item id")
        item_partition = partition(argv.take("item partition")) if mixed else shared
        items.append((item_id, item_partition, argv.number("item fencing")))
    if not items:
        raise CommandError("ERR wrong number of arguments for 'FLOW.CANCEL_MANY': no items")
    for item_id, item_partition, fencing in items:
        try:
            flow = await engine.cancel(
                item_id, fencing_token=fencing, reason=reason, partition_key=item_partition
            )
        except fa.FlowError as exc:
            results.append(fa.ItemResult(item_id, None, exc))
        else:
            results.append(fa.ItemResult(item_id, flow))
    return ok_items(results, opts)


async def transition_many(engine: fa.Engine, argv: Argv) -> Any:
    """FLOW.TRANSITION_MANY <p|MIXED> <from> <to> ... ITEMS {id [p] fencing lease|-}*"""
    mixed, shared = batch_partition(argv.text("partition"))
    from_state = argv.text("from state")
    to_state = argv.text("to state")
    opts = argv.options()
    unsupported_values(opts)
    opts.refuse("VALUE", "STATE_META", "ATTRIBUTE_MERGE")
    if argv.text("ITEMS").upper() != "ITEMS":
        raise syntax("FLOW.TRANSITION_MANY takes ITEMS")
    acks: list[fa.Ack] = []
    while len(argv):
        item_id = argv.text("item id")
        item_partition = partition(argv.take("item partition")) if mixed else shared
        fencing = argv.number("item fencing")
        acks.append(fa.Ack(item_id, lease(argv.take("item lease")), fencing, None, item_partition))
    if not acks:
        raise CommandError("ERR wrong number of arguments for 'FLOW.TRANSITION_MANY': no items")
    payload, priority = opts.blob("PAYLOAD"), opts.number("PRIORITY")
    delay = delay_of(opts)

    async def run(live: list[fa.Ack]) -> list[fa.ItemResult]:
        if payload is None and priority is None:
            return await engine.transition_many(live, from_state, to_state, delay_ms=delay)
        results: list[fa.ItemResult] = []
        for a in live:
            try:
                flow = await engine.transition(
                    a.id,
                    from_state,
                    to_state,
                    a.fencing_token,
                    lease_token=a.lease_token,
                    delay_ms=delay,
                    priority=priority,
                    payload=payload,
                    partition_key=a.partition_key,
                )
            except fa.FlowError as exc:
                results.append(fa.ItemResult(a.id, None, exc))
            else:
                results.append(fa.ItemResult(a.id, flow))
        return results

    return ok_items(await _live_items(engine, acks, run), opts)


# -- reads -----------------------------------------------------------------------------


async def get(engine: fa.Engine, argv: Argv) -> Any:
    flow_id = argv.text("id")
    opts = argv.options(READ_WIDTHS)
    argv.done()
    requested = tuple(text(v[0], "VALUE") for v in opts.all("VALUE"))
    flow = await engine.get(flow_id, payload=_hydration(opts), values=requested)
    if flow is None:
        return None
    wire = opts.one("PARTITION")
    if wire is not None and text(wire, "PARTITION") not in (r.partition_of(flow), "GLOBAL"):
        return None  # another partition's key: FerricStore answers nil, as for any absent key
    return r.record(flow, requested=requested)


async def history(engine: fa.Engine, argv: Argv) -> Any:
    flow_id = argv.text("id")
    opts = argv.options()
    argv.done()
    events = await engine.history(flow_id, partition_key=partition(opts.one("PARTITION")))
    ids = [e.event_id for e in events]
    first, last = 0, len(events)
    for option in ("FROM_EVENT", "TO_EVENT"):
        event_id = opts.text(option)
        if event_id is None:
            continue
        if event_id not in ids:
            raise CommandError(f"ERR flow history event not found: {event_id!r}")
        if option == "FROM_EVENT":
            first = ids.index(event_id)
        else:
            last = ids.index(event_id) + 1
    name, worker = opts.text("EVENT"), opts.text("WORKER")
    lo_ms, hi_ms = opts.number("FROM_MS"), opts.number("TO_MS")
    lo_v, hi_v = opts.number("FROM_VERSION"), opts.number("TO_VERSION")
    picked = [
        e
        for e in events[first:last]
        if (name is None or e.name == name)
        and (worker is None or e.lease_owner == worker)
        and (lo_ms is None or e.at_ms >= lo_ms)
        and (hi_ms is None or e.at_ms <= hi_ms)
        and (lo_v is None or e.version >= lo_v)
        and (hi_v is None or e.version <= hi_v)
    ]
    if opts.flag("REV"):
        picked.reverse()
    count = opts.number("COUNT")
    if count is not None:
        picked = picked[: max(count, 0)]
    return [r.history_entry(e) for e in picked]


async def info(engine: fa.Engine, argv: Argv) -> Any:
    flow_type = argv.text("type")
    opts = argv.options()
    argv.done()
    part = opts.one("PARTITION")
    key = partition(part)
    counts = await engine.info(flow_type, partition_key=key)
    out: dict[str, Any] = {"type": flow_type, "partition_key": None if key is None else key}
    for state, n in counts.items():
        out["inflight" if state == "running" else state] = n
    out.setdefault("inflight", 0)
    for state in ("queued", *TERMINAL):
        out.setdefault(state, 0)
    return out
