# Operator actions, written as the engine's ordinary fenced commands.
#
# Theory of operation. An operator acts on what they saw: each action carries the fence
# of that view (the fencing token, or the state) and the engine refuses it if the flow
# moved on since - the same guards a worker's commands pass. Nothing here bypasses the
# engine: the history records every action like any other event ("cancelled" with
# forced=true when a lease had to be overridden, "rewound", "signaled").
#
#   cancel   engine.cancel with the seen fencing token; a leased flow is cancelled with
#            force (the operator's override), and its children follow by their group's
#            on_parent_closed rule (cancel_children by default): the cascade is the
#            engine's own.
#   rewind   engine.rewind(to_version) fenced by the state the operator saw.
#   signal   engine.signal: passive (an event and named values) or, with transition_to,
#            fenced by if_state = the state the operator saw.
#   retry    a failed flow runs again: a rewind to its newest live event (the last one
#            after which it was not terminal), fenced by expect_state="failed". Attempts,
#            payload and state come back as they were at that event.
from __future__ import annotations

from collections.abc import Mapping

from .. import Engine, Flow, FlowNotFound, InvalidArgument, WrongState
from ._read import latest_live_event

ACTIONS = ("cancel", "rewind", "signal", "retry")


async def cancel(
    engine: Engine,
    flow_id: str,
    *,
    fencing_token: int | None = None,
    reason: str | None = None,
    partition_key: str | None = None,
) -> Flow:
    """Cancel a live flow. `fencing_token` (what the operator saw) must still be current
    for an unleased flow; a leased one is cancelled with force (recorded as forced)."""
    flow = await _require(engine, flow_id, partition_key)
    if fencing_token is not None and fencing_token != flow.fencing_token:
        raise WrongState(
            f"flow {flow_id!r} changed since it was shown (fencing token {flow.fencing_token},"
            f" not {fencing_token}); look again"
        )
    leased = flow.lease_token is not None
    return await engine.cancel(
        flow_id,
        fencing_token=None if leased else flow.fencing_token,
        reason=reason.encode() if reason else None,
        force=leased,
        partition_key=partition_key,
    )


async def rewind(
    engine: Engine,
    flow_id: str,
    to_version: int,
    *,
    expect_state: str | None = None,
    partition_key: str | None = None,
) -> Flow:
    return await engine.rewind(
        flow_id, to_version, expect_state=expect_state, partition_key=partition_key
    )


async def signal(
    engine: Engine,
    flow_id: str,
    name: str,
    *,
    values: Mapping[str, bytes] | None = None,
    transition_to: str | None = None,
    if_state: str | None = None,
    partition_key: str | None = None,
) -> Flow:
    if transition_to and not if_state:
        flow = await _require(engine, flow_id, partition_key)
        if_state = flow.logical_state
    return await engine.signal(
        flow_id,
        name,
        values=values or None,
        transition_to=transition_to or None,
        if_state=if_state if transition_to else None,
        partition_key=partition_key,
    )


async def retry(engine: Engine, flow_id: str, *, partition_key: str | None = None) -> Flow:
    """Run a failed flow again from its newest live event."""
    flow = await _require(engine, flow_id, partition_key)
    if flow.state != "failed":
        raise WrongState(
            f"flow {flow_id!r} is {flow.state}, not failed: only a failed flow "
            "is retried (rewind it to choose an event)"
        )
    event = latest_live_event(await engine.history(flow_id, partition_key=partition_key))
    if event is None:
        raise InvalidArgument(f"flow {flow_id!r} has no stored live event to retry from")
    return await engine.rewind(
        flow_id, event.version, expect_state="failed", partition_key=partition_key
    )


async def _require(engine: Engine, flow_id: str, partition_key: str | None) -> Flow:
    flow = await engine.get(flow_id, partition_key=partition_key)
    if flow is None:
        raise FlowNotFound(f"no flow {flow_id!r}")
    return flow
