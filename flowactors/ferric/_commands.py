# Theory of operation: one coroutine per FLOW command. Each parses its argv (positionals,
# then options by the width table of `_argv`, then items), calls the engine's public API
# and returns the reply shape the SDK decodes (see `_replies`). They run inside the engine's
# Trio thread; `dispatch` is the single entry point, and it turns every flowactors error
# into a `CommandError` whose text carries the substring the SDK classifies it by, and any
# other exception into an "internal error" reply, so no command can take the engine down.
#
# Time: FerricStore's SDK sends its own clock as `NOW` and absolute times (`RUN_AT`) in that
# clock. flowactors uses only the engine's clock, so `NOW` is never used as a time: a
# `RUN_AT` is read as the delay `RUN_AT - NOW` (due now when not in the future), and the
# engine adds that delay to its own clock. Clock skew between client and engine therefore
# cannot move due times, leases or retention.

from __future__ import annotations

import re
import weakref
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import flowactors as fa

from . import _replies as r
from ._argv import (
    AUTO_ANY,
    AUTO_PREFIX,
    READ_WIDTHS,
    Argv,
    CommandError,
    Options,
    auto_partition,
    blob,
    integer,
    lease,
    partition,
    syntax,
    text,
)
from ._query import query

Handler = Callable[[fa.Engine, Argv], Awaitable[Any]]

# Claims whose parent spawned children: (flow id, lease token) -> fencing token. See
# `superseded`. Bounded; kept per engine, in memory only.
_SPAWNED: weakref.WeakKeyDictionary[fa.Engine, OrderedDict[tuple[str, str], int]] = (
    weakref.WeakKeyDictionary()
)
_SPAWNED_MAX = 10_000


def _note_spawn(engine: fa.Engine, flow_id: str, token: str | None, fencing: int) -> None:
    if token is None:
        return
    seen = _SPAWNED.setdefault(engine, OrderedDict())
    seen[(flow_id, token)] = fencing
    while len(seen) > _SPAWNED_MAX:
        seen.popitem(last=False)


def superseded(engine: fa.Engine, flow_id: str, token: str | None, fencing: int) -> bool:
    """True when this claim's holder already spawned children from it.

    FerricStore's SDK documents `spawn_children(...)` followed by `return transition(...)`
    in one handler, but spawning parks the parent (in WAIT_STATE, lease released), so the
    handler's own outcome would be refused as a stale lease and the SDK's worker would stop.
    The spawn decided the parent's next state; the outcome of that same claim (same lease
    token and fencing token) is therefore answered OK and has no effect."""
    seen = _SPAWNED.get(engine)
    return token is not None and seen is not None and seen.get((flow_id, token)) == fencing


TERMINAL = ("completed", "failed", "cancelled")
OK = "OK"


def translate(exc: BaseException) -> BaseException:
    """The error the SDK should see for `exc` (substrings per its classifier)."""
    if isinstance(exc, CommandError):
        return exc
    table: list[tuple[type[BaseException], str]] = [
        (fa.FlowNotFound, "ERR flow not found"),
        (fa.FlowExists, "ERR flow already exists"),
        (fa.IdempotencyConflict, "ERR flow idempotency conflict"),
        (fa.WrongState, "ERR flow wrong state"),
        (fa.StaleLease, "ERR stale flow lease"),
        (fa.FlowTerminal, "ERR flow is terminal; use FLOW.REWIND"),
        (fa.InvalidArgument, "ERR invalid argument"),
        (fa.Overloaded, "ERR busy: flowactors shard queue full retry_after_ms=10"),
        (fa.EngineClosed, "ERR flowactors engine is closed"),
        (fa.StorageError, "ERR flowactors storage error"),
    ]
    for kind, prefix in table:
        if isinstance(exc, kind):
            error = CommandError(f"{prefix}: {exc}")
            error.__cause__ = exc
            return error
    if isinstance(exc, Exception):
        error = CommandError(f"ERR internal error: {type(exc).__name__}: {exc}")
        error.__cause__ = exc
        return error
    return exc


async def dispatch(engine: fa.Engine, argv: Sequence[Any]) -> Any:
    """Run one argv vector on `engine`; raises CommandError (a flowactors.FlowError)."""
    try:
        if not argv:
            raise CommandError("ERR wrong number of arguments: empty command")
        name = text(argv[0], "command").upper()
        handler = COMMANDS.get(name)
        if handler is None:
            raise CommandError(f"ERR unknown command '{name}': not supported by flowactors.ferric")
        return await handler(engine, Argv(name, argv[1:]))
    except Exception as exc:
        raise translate(exc) from exc


# -- shared pieces ---------------------------------------------------------------------


def delay_of(opts: Options, name: str = "RUN_AT") -> int | None:
    """`RUN_AT` as a delay from the command's own `NOW` (None: due now)."""
    run_at = opts.number(name)
    if run_at is None:
        return None
    now = opts.number("NOW")
    delay = run_at - (fa.wall_clock_ms() if now is None else now)
    return delay if delay > 0 else None


def engine_due(engine: fa.Engine, opts: Options) -> int | None:
    delay = delay_of(opts)
    return None if delay is None else engine.now_ms() + delay


def values_of(opts: Options) -> dict[str, bytes] | None:
    values = opts.pairs("VALUE", "VALUE")
    return values or None


def attributes_of(opts: Options, *names: str) -> dict[str, str] | None:
    out: dict[str, str] = {}
    for name in names:
        for key, value in opts.all(name):
            out[text(key, name)] = text(value, name)
    return out or None


def unsupported_values(opts: Options) -> None:
    opts.refuse("VALUE_REF", "DROP_VALUE", "OVERRIDE_VALUE", "PAYLOAD_REF", "ATTRIBUTE_DELETE")


def ok_items(results: Sequence[fa.ItemResult], opts: Options) -> Any:
    """The reply of a batch command: per-item "OK"/error, or one "OK" (RETURN OK_ON_SUCCESS).
    Without `INDEPENDENT true`, the first failed item's error is raised instead."""
    independent = opts.flag("INDEPENDENT")
    if not independent:
        for item in results:
            if item.error is not None:
                raise item.error
    if (opts.text("RETURN") or "").upper() == "OK_ON_SUCCESS" and all(i.ok for i in results):
        return OK
    return [OK if i.ok else r.error_item(translate(i.error or Exception())) for i in results]


def batch_partition(word: str) -> tuple[bool, str | None]:
    """(mixed, partition) of a batch command's first argument."""
    if word.upper() == "MIXED":
        return True, None
    return False, partition(word)


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


def max_active(opts: Options) -> int | None:
    value = opts.one("MAX_ACTIVE_MS")
    if value is None or text(value, "MAX_ACTIVE_MS").upper() == "INFINITY":
        return None
    return integer(value, "MAX_ACTIVE_MS")


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


def _any_partition(opts: Options) -> None:
    """flowactors claims across every partition; a claim limited to some is refused rather
    than answered with flows of other partitions."""
    named = [text(v[0], "PARTITION") for v in opts.all("PARTITION")]
    for values in opts.all("PARTITIONS"):
        named.extend(text(v, "PARTITIONS") for v in values)
    for key in named:
        if key.upper() not in ("AUTO", "ANY", "GLOBAL"):
            raise syntax(
                f"claims limited to partition {key!r} are not supported by flowactors "
                "(its claims take due flows of every partition)"
            )


async def claim_due(engine: fa.Engine, argv: Argv) -> Any:
    flow_type = argv.text("type")
    opts = argv.options(READ_WIDTHS)
    argv.done()
    worker = opts.text("WORKER")
    if worker is None:
        raise CommandError("ERR wrong number of arguments for 'FLOW.CLAIM_DUE': WORKER required")
    _any_partition(opts)
    states = [text(v[0], "STATE") for v in opts.all("STATE")] or None
    ratio = opts.number("RECLAIM_RATIO")
    limit = opts.number("LIMIT") or 1
    requested = [text(v[0], "VALUE") for v in opts.all("VALUE")]

    async def once() -> list[fa.Flow]:
        if argv.command == "FLOW.RECLAIM":
            return await engine.reclaim(
                flow_type,
                worker,
                limit=limit,
                lease_ms=opts.number("LEASE_MS") or 30_000,
                payload=_hydration(opts),
                values=requested,
            )
        return await engine.claim_due(
            flow_type,
            worker,
            states=states,
            limit=limit,
            lease_ms=opts.number("LEASE_MS") or 30_000,
            payload=_hydration(opts),
            values=requested,
            reclaim=opts.flag("RECLAIM_EXPIRED") is not False,
            reclaim_ratio=25 if ratio is None else ratio,
            priority=opts.number("PRIORITY"),
        )

    flows = await once()
    block_ms = opts.number("BLOCK") or 0
    if not flows and block_ms > 0:
        flows = await _blocking(engine, once, block_ms)
    return _claim_reply(flows, opts)


async def _blocking(
    engine: fa.Engine, once: Callable[[], Awaitable[list[fa.Flow]]], block_ms: int
) -> list[fa.Flow]:
    """`BLOCK ms`: the engine has no claim waiters, so poll with a growing pause (1, 2, 4,
    ... 50 ms) until something is claimed or the block time is up."""
    import trio

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


def _fencing(opts: Options, command: str) -> int:
    fencing = opts.number("FENCING")
    if fencing is None:
        raise CommandError(f"ERR wrong number of arguments for '{command}': FENCING is required")
    return fencing


async def transition(engine: fa.Engine, argv: Argv) -> Any:
    flow_id = argv.text("id")
    from_state = argv.text("from state")
    to_state = argv.text("to state")
    opts = argv.options()
    argv.done()
    unsupported_values(opts)
    opts.refuse("STATE_META")
    token, fencing = lease(opts.one("LEASE_TOKEN")), _fencing(opts, argv.command)
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
    fencing = _fencing(opts, argv.command)
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
        fencing_token=_fencing(opts, argv.command),
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
    flow = await engine.get(
        flow_id,
        partition_key=partition(opts.one("PARTITION")),
        payload=_hydration(opts),
        values=requested,
    )
    return None if flow is None else r.record(flow, requested=requested)


async def history(engine: fa.Engine, argv: Argv) -> Any:
    flow_id = argv.text("id")
    opts = argv.options()
    argv.done()
    opts.refuse("FROM_EVENT", "TO_EVENT", "WORKER")
    events = await engine.history(flow_id, partition_key=partition(opts.one("PARTITION")))
    name = opts.text("EVENT")
    lo_ms, hi_ms = opts.number("FROM_MS"), opts.number("TO_MS")
    lo_v, hi_v = opts.number("FROM_VERSION"), opts.number("TO_VERSION")
    picked = [
        e
        for e in events
        if (name is None or e.name == name)
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


# -- policies --------------------------------------------------------------------------

_RETRY_OPTIONS = {
    "MAX_RETRIES": "max_retries",
    "BACKOFF": "backoff",
    "BASE_MS": "base_ms",
    "MAX_MS": "max_ms",
    "JITTER_PCT": "jitter_pct",
    "EXHAUSTED_TO": "exhausted_to",
    "RETENTION_TTL_MS": "retention_ms",
    "RETENTION_TTL": "retention_ms",
    "HISTORY_MAX_EVENTS": "history_max_events",
}


def _settings(opts: Options) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    for option, field in _RETRY_OPTIONS.items():
        if opts.has(option):
            value = opts.one(option)
            fields[field] = (
                text(value, option).lower()
                if option in ("BACKOFF",)
                else text(value, option)
                if option == "EXHAUSTED_TO"
                else integer(value, option)
            )
    return fields


async def policy_set(engine: fa.Engine, argv: Argv) -> Any:
    flow_type = argv.text("type")
    top = argv.options(stop=frozenset({"STATE"}))
    top.refuse("INDEXED_ATTRIBUTES", "INDEXED_STATE_META", "MODE")
    fields = _settings(top)
    if top.has("MAX_ACTIVE_MS"):
        fields["max_active_ms"] = max_active(top)
    states: dict[str, fa.PolicySettings] = {}
    while len(argv):
        argv.take("STATE")
        state = argv.text("state name")
        layer = argv.options(stop=frozenset({"STATE"}))
        mode = layer.text("MODE")
        if mode is not None and mode.upper() != "PARALLEL":
            raise syntax(f"state mode {mode} is not supported by flowactors (parallel only)")
        states[state] = fa.PolicySettings(**_settings(layer))
    expected = top.number("EXPECTED_GENERATION")
    try:
        policy = await engine.install_policy(
            flow_type,
            fa.FlowPolicy(**fields, states=states),
            expected_generation=expected,
            replace=bool(top.flag("REPLACE")),
        )
    except fa.IdempotencyConflict as exc:
        raise CommandError(f"ERR stale flow policy generation: {exc}") from exc
    return _snapshot(flow_type, policy, None)


async def policy_get(engine: fa.Engine, argv: Argv) -> Any:
    flow_type = argv.text("type")
    opts = argv.options()
    argv.done()
    return _snapshot(flow_type, await engine.get_policy(flow_type), opts.text("STATE"))


def _layer(settings: fa.PolicySettings) -> tuple[dict[str, Any], dict[str, Any]]:
    fields = settings.fields()
    retry_keys: tuple[str, ...] = (
        "max_retries",
        "backoff",
        "base_ms",
        "max_ms",
        "jitter_pct",
        "exhausted_to",
    )
    retention_keys: tuple[str, ...] = ("retention_ms", "history_max_events")
    retry: dict[str, Any] = {k: fields[k] for k in retry_keys if k in fields}
    retention: dict[str, Any] = {k: fields[k] for k in retention_keys if k in fields}
    return retry, retention


def _snapshot(flow_type: str, policy: fa.FlowPolicy, state: str | None) -> dict[str, Any]:
    retry, retention = _layer(policy)
    out: dict[str, Any] = {
        "type": flow_type,
        "generation": policy.generation,
        "retry": retry,
        "retention": retention,
        "max_active_ms": policy.max_active_ms,
        "states": {},
    }
    for name, layer in policy.states.items():
        layer_retry, layer_retention = _layer(layer)
        out["states"][name] = {"retry": layer_retry, "retention": layer_retention}
    if state is not None:
        out["state"] = state
        chosen = policy.states.get(state)
        if chosen is not None:
            out["retry"], out["retention"] = _layer(chosen)
    return out


# -- signals, values, fanout, rewind ---------------------------------------------------


async def signal(engine: fa.Engine, argv: Argv) -> Any:
    flow_id = argv.text("id")
    opts = argv.options()
    argv.done()
    unsupported_values(opts)
    opts.refuse("PRIORITY")
    name = opts.text("SIGNAL")
    if name is None:
        raise CommandError("ERR wrong number of arguments for 'FLOW.SIGNAL': SIGNAL required")
    if_states = [text(v[0], "IF_STATE") for v in opts.all("IF_STATE")]
    target = opts.text("TRANSITION_TO")
    try:
        await engine.signal(
            flow_id,
            name,
            values=values_of(opts),
            if_state=if_states or None,
            transition_to=target,
            delay_ms=delay_of(opts) if target is not None else None,
            idempotency_key=opts.text("IDEMPOTENCY") or opts.text("IDEMPOTENCY_KEY"),
            partition_key=partition(opts.one("PARTITION")),
        )
    except fa.WrongState as exc:
        raise CommandError(f"ERR flow state mismatch (wrong state): {exc}") from exc
    except fa.IdempotencyConflict as exc:
        raise CommandError(f"ERR flow signal idempotency conflict: {exc}") from exc
    return OK


async def value_put(engine: fa.Engine, argv: Argv) -> Any:
    data = argv.blob("value")
    opts = argv.options()
    argv.done()
    opts.refuse("TTL", "TTL_MS")
    owner, name = opts.text("OWNER_FLOW_ID"), opts.text("NAME")
    if owner is None or name is None:
        raise syntax(
            "FLOW.VALUE.PUT needs OWNER_FLOW_ID and NAME: flowactors keeps named values on "
            "their flow and has no shared values"
        )
    part = partition(opts.one("PARTITION"))
    before = await engine.get(owner, partition_key=part)
    if before is None:
        raise CommandError(f"ERR flow not found: {owner!r}")
    try:
        flow = await engine.put_value(
            owner, name, data, override=bool(opts.flag("OVERRIDE")), partition_key=part
        )
    except fa.IdempotencyConflict as exc:
        raise CommandError(
            f"ERR flow value {name} already exists with different digest: {exc}"
        ) from exc
    return {
        "ref": r.value_ref(owner, part, name),
        "partition_key": r.partition_of(flow),
        "owner_flow_id": owner,
        "name": name,
        "stored": flow.version != before.version,
        "created": name not in before.value_sizes,
    }


async def value_mget(engine: fa.Engine, argv: Argv) -> Any:
    refs = list(argv.rest())
    cap: int | None = None
    if (
        len(refs) >= 2
        and isinstance(refs[-1], int)
        and text(refs[-2], "option").upper() in ("MAX_BYTES", "MAXBYTES")
    ):
        cap = refs[-1]
        refs = refs[:-2]
    if not refs:
        raise CommandError("ERR wrong number of arguments for 'FLOW.VALUE.MGET'")
    out: list[Any] = []
    for raw in refs:
        flow_id, part, name = r.parse_value_ref(text(raw, "ref"))
        try:
            values = await engine.get_values(flow_id, [name], partition_key=part)
        except fa.FlowNotFound:
            values = {}
        value = values.get(name)
        if value is not None and cap is not None and len(value) > cap:
            out.append({"omitted": True, "size": len(value)})
        else:
            out.append(value)
    return out


async def spawn_children(engine: fa.Engine, argv: Argv) -> Any:
    parent_id = argv.text("parent id")
    opts = argv.options()
    unsupported_values(opts)
    opts.refuse("FROM_STATE")
    marker = argv.text("ITEMS").upper()
    children: list[fa.ChildSpec] = []
    shared_values = values_of(opts)
    if marker == "ITEMS":
        mixed = argv.peek_word() == "MIXED"
        if mixed:
            argv.take("MIXED")
        while len(argv):
            child_id = argv.text("child id")
            child_partition = partition(argv.take("child partition")) if mixed else None
            child_type = argv.text("child type")
            children.append(
                fa.ChildSpec(
                    child_id,
                    child_type,
                    argv.blob("child payload"),
                    partition_key=child_partition,
                    values=shared_values,
                )
            )
    else:
        v2 = marker == "ITEMS_EXT_V2"
        for _ in range(argv.number("ITEMS_EXT count")):
            child_id = argv.text("child id")
            raw_partition = argv.take("child partition")
            child_type = argv.text("child type")
            payload = argv.blob("child payload")
            if v2:
                argv.take("child max_active_ms")
            values = dict(shared_values or {})
            for _ in range(argv.number("value count")):
                value_name = argv.text("value name")  # (read before its value)
                values[value_name] = argv.blob("value")
            if argv.number("value ref count"):
                raise syntax("VALUE_REF children are not supported by flowactors")
            children.append(
                fa.ChildSpec(
                    child_id,
                    child_type,
                    payload,
                    partition_key=partition(raw_partition),
                    values=values or None,
                )
            )
        argv.done()
    wait = (opts.text("WAIT") or "all").lower()
    token, fencing = lease(opts.one("LEASE_TOKEN")), _fencing(opts, argv.command)
    await engine.spawn_children(
        parent_id,
        token,
        fencing,
        group_id=opts.text("GROUP") or "default",
        children=children,
        success_state=opts.text("SUCCESS") or "completed",
        failure_state=opts.text("FAILURE") or "failed",
        wait=wait,  # type: ignore[arg-type]  # checked by the engine
        wait_state=opts.text("WAIT_STATE") or "waiting_children",
        on_child_failed=(opts.text("ON_CHILD_FAILED") or "fail_parent").lower(),  # type: ignore[arg-type]
        on_parent_closed=(opts.text("ON_PARENT_CLOSED") or "cancel_children").lower(),  # type: ignore[arg-type]
        partition_key=partition(opts.one("PARTITION")),
    )
    _note_spawn(engine, parent_id, token, fencing)
    return OK


_EVENT_ID = re.compile(r"^(\d+)-(\d+)$")


async def rewind(engine: fa.Engine, argv: Argv) -> Any:
    flow_id = argv.text("id")
    opts = argv.options()
    argv.done()
    opts.refuse("RUN_AT", "REASON_REF")
    event = opts.text("TO_EVENT")
    if event is None:
        raise CommandError("ERR wrong number of arguments for 'FLOW.REWIND': TO_EVENT required")
    match = _EVENT_ID.match(event)
    if match is None:
        raise CommandError(f"ERR flow history event not found: {event!r}")
    part = partition(opts.one("PARTITION"))
    events = await engine.history(flow_id, partition_key=part)
    if not any(e.event_id == event for e in events):
        raise CommandError(f"ERR flow history event not found: {event!r}")
    await engine.rewind(
        flow_id, int(match.group(2)), expect_state=opts.text("EXPECT_STATE"), partition_key=part
    )
    return OK


async def retention_cleanup(engine: fa.Engine, argv: Argv) -> Any:
    opts = argv.options()
    argv.done()
    report = await engine.retention_cleanup(limit=opts.number("LIMIT") or 1000)
    return {
        "active_timeouts": report["active_timeouts"],
        "deleted": report["deleted"],
        "more?": bool(report["more"]),
        "more": bool(report["more"]),
        "continuation": None,
    }


COMMANDS: dict[str, Handler] = {
    "FLOW.CREATE": create,
    "FLOW.CREATE_MANY": create_many,
    "FLOW.CLAIM_DUE": claim_due,
    "FLOW.RECLAIM": claim_due,
    "FLOW.EXTEND_LEASE": extend_lease,
    "FLOW.TRANSITION": transition,
    "FLOW.TRANSITION_MANY": transition_many,
    "FLOW.COMPLETE": finish,
    "FLOW.FAIL": finish,
    "FLOW.RETRY": finish,
    "FLOW.COMPLETE_MANY": finish_many,
    "FLOW.FAIL_MANY": finish_many,
    "FLOW.RETRY_MANY": finish_many,
    "FLOW.CANCEL": cancel,
    "FLOW.CANCEL_MANY": cancel_many,
    "FLOW.GET": get,
    "FLOW.HISTORY": history,
    "FLOW.INFO": info,
    "FLOW.POLICY.SET": policy_set,
    "FLOW.POLICY.GET": policy_get,
    "FLOW.SIGNAL": signal,
    "FLOW.VALUE.PUT": value_put,
    "FLOW.VALUE.MGET": value_mget,
    "FLOW.SPAWN_CHILDREN": spawn_children,
    "FLOW.REWIND": rewind,
    "FLOW.RETENTION_CLEANUP": retention_cleanup,
    "FLOW.QUERY": query,
}

__all__ = ["AUTO_ANY", "AUTO_PREFIX", "COMMANDS", "auto_partition", "blob", "dispatch"]
