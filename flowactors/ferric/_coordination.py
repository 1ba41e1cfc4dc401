# Theory of operation: the FLOW commands that coordinate flows, each parsing its argv and
# calling the engine's public API: type policies (set as a merge or a replacement, guarded
# by generation), signals, named values (refs name a flow's value and resolve through it),
# fanout (children spawned under the parent's claim), rewind to a history event, and a
# retention pass. FerricStore's shared values, FIFO lanes and indexed metadata have no
# engine counterpart and are refused.

from __future__ import annotations

import re
from typing import Any, Literal, TypeVar

import flowactors as fa

from . import _replies as r
from ._argv import Argv, CommandError, Options, integer, lease, partition, syntax, text
from ._common import (
    OK,
    delay_of,
    fencing_of,
    max_active,
    note_spawn,
    unsupported_values,
    values_of,
)

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
        if not opts.has(option):
            continue
        value = opts.one(option)
        if option == "BACKOFF":
            fields[field] = text(value, option).lower()
        elif option == "EXHAUSTED_TO":
            fields[field] = text(value, option)
        else:
            fields[field] = integer(value, option)
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


_WAITS: dict[str, Literal["all", "any", "none"]] = {"all": "all", "any": "any", "none": "none"}
_ON_CHILD_FAILED: dict[str, Literal["fail_parent", "ignore"]] = {
    "fail_parent": "fail_parent",
    "ignore": "ignore",
}
_ON_PARENT_CLOSED: dict[str, Literal["cancel_children", "abandon_children"]] = {
    "cancel_children": "cancel_children",
    "abandon_children": "abandon_children",
}
C = TypeVar("C")


def _choice(choices: dict[str, C], word: str, what: str) -> C:
    found = choices.get(word.lower())
    if found is None:
        raise syntax(f"{what} must be one of {', '.join(choices)}, not {word!r}")
    return found


async def spawn_children(engine: fa.Engine, argv: Argv) -> Any:
    parent_id = argv.text("parent id")
    opts = argv.options()
    unsupported_values(opts)
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
    token, fencing = lease(opts.one("LEASE_TOKEN")), fencing_of(opts, argv.command)
    from_state = opts.text("FROM_STATE")
    if from_state is not None:
        # A guard the engine's spawn does not take: checked first. The spawn itself is
        # fenced, so a change in between is caught by the fencing and lease checks.
        parent = await engine.get(parent_id, partition_key=partition(opts.one("PARTITION")))
        if parent is None:
            raise CommandError(f"ERR flow not found: {parent_id!r}")
        if from_state not in (parent.state, parent.run_state):
            raise CommandError(
                f"ERR flow wrong state: {parent_id!r} is {parent.state!r}, not {from_state!r}"
            )
    await engine.spawn_children(
        parent_id,
        token,
        fencing,
        group_id=opts.text("GROUP") or "default",
        children=children,
        success_state=opts.text("SUCCESS") or "completed",
        failure_state=opts.text("FAILURE") or "failed",
        wait=_choice(_WAITS, wait, "WAIT"),
        wait_state=opts.text("WAIT_STATE") or "waiting_children",
        on_child_failed=_choice(
            _ON_CHILD_FAILED, opts.text("ON_CHILD_FAILED") or "fail_parent", "ON_CHILD_FAILED"
        ),
        on_parent_closed=_choice(
            _ON_PARENT_CLOSED,
            opts.text("ON_PARENT_CLOSED") or "cancel_children",
            "ON_PARENT_CLOSED",
        ),
        partition_key=partition(opts.one("PARTITION")),
    )
    note_spawn(engine, parent_id, token, fencing)
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
