# Theory of operation: the shapes FerricStore's SDK decodes, built from flowactors values.
# A record is a map keyed by field name (the SDK's `FlowRecord.from_resp` reads str or bytes
# keys); lease tokens travel as bytes; flows without a partition key report their auto
# partition; named values are listed as refs (`value_refs`) that FLOW.VALUE.MGET resolves.
# Compact claim rows are `[id, partition, lease, fencing(, run_state)(, attributes)]`;
# history entries are `[event_id, fields]`; batch items are "OK" or `["error", message]`.

from __future__ import annotations

import json
from typing import Any

import flowactors as fa

from ._argv import CommandError, auto_partition

VALUE_REF_PREFIX = "fav1:"


def partition_of(flow: fa.Flow) -> str:
    return flow.partition_key if flow.partition_key is not None else auto_partition(flow.id)


def value_ref(flow_id: str, partition_key: str | None, name: str) -> str:
    """A ref naming one named value of one flow (opaque to the SDK)."""
    return VALUE_REF_PREFIX + json.dumps([flow_id, partition_key, name], separators=(",", ":"))


def parse_value_ref(ref: str) -> tuple[str, str | None, str]:
    if ref.startswith(VALUE_REF_PREFIX):
        try:
            flow_id, partition_key, name = json.loads(ref[len(VALUE_REF_PREFIX) :])
        except (ValueError, TypeError):
            pass
        else:
            if (
                isinstance(flow_id, str)
                and isinstance(name, str)
                and (partition_key is None or isinstance(partition_key, str))
            ):
                return flow_id, partition_key, name
    raise CommandError(f"ERR flow value ref not found: {ref!r} is not a flowactors value ref")


def record(flow: fa.Flow, *, requested: tuple[str, ...] = ()) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": flow.id,
        "type": flow.type,
        "state": flow.state,
        "run_state": flow.run_state,
        "version": flow.version,
        "attempts": flow.attempts,
        "fencing_token": flow.fencing_token,
        "lease_owner": flow.lease_owner,
        "lease_token": flow.lease_token.encode() if flow.lease_token is not None else None,
        "lease_deadline_ms": flow.lease_deadline_ms,
        "created_at_ms": flow.created_at_ms,
        "updated_at_ms": flow.updated_at_ms,
        "next_run_at_ms": flow.next_run_at_ms,
        "priority": flow.priority,
        "partition_key": partition_of(flow),
        "attributes": dict(flow.attributes),
        "parent_flow_id": flow.parent_id,
        "root_flow_id": flow.root_id,
        "correlation_id": flow.correlation_id,
        "payload": flow.payload,
        "payload_size": flow.payload_size,
        "result": flow.result,
        "error": flow.error,
        "value_refs": {
            name: {"ref": value_ref(flow.id, flow.partition_key, name), "size": size}
            for name, size in flow.value_sizes.items()
        },
        "value_sizes": dict(flow.value_sizes),
    }
    if requested:
        out["values"] = {n: flow.values[n] for n in requested if n in flow.values}
        missing = {n: True for n in requested if n not in flow.values}
        if missing:
            out["value_missing"] = missing
    return out


def compact_row(flow: fa.Flow, *, state: bool, attributes: bool) -> list[Any]:
    row: list[Any] = [
        flow.id,
        partition_of(flow),
        (flow.lease_token or "").encode(),
        flow.fencing_token,
    ]
    if state:
        row.append(flow.run_state)
    if attributes:
        row.append(dict(flow.attributes))
    return row


def history_entry(event: fa.HistoryEvent) -> list[Any]:
    fields: dict[str, Any] = {
        "event": event.name,
        "version": event.version,
        "at": event.at_ms,
        "state": event.state,
        "run_state": event.run_state,
        "attempts": event.attempts,
        "fencing_token": event.fencing_token,
        "lease_owner": event.lease_owner,
        "next_run_at_ms": event.next_run_at_ms,
    }
    for key, value in event.meta.items():
        fields.setdefault(str(key), value)
    return [event.event_id, fields]


def error_item(exc: BaseException) -> list[Any]:
    return ["error", str(exc)]
