"""The SDK's typed bridge to the engine's coordination API (issue 4: children, signals,
rewind, policies, paged reads).

The SDK calls those Engine methods by their agreed names and arguments through the
`Coordination` protocol below, so it type-checks whether or not the engine already has
them. On an engine without them the call raises `CoordinationUnavailable` (a FlowError)
instead of an AttributeError. The new public value types (ChildSpec, Page, FlowPolicy,
PolicySettings) are looked up on the `flowactors` package at call time, for the same reason;
until they land they are typed `Any` here.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence
from typing import Any, Protocol, cast

from ._errors import FlowError
from ._types import Flow


class CoordinationUnavailable(FlowError):
    """This engine has no coordination API yet (children, signals, rewind, policies)."""


class Coordination(Protocol):
    async def spawn_children(
        self,
        parent_id: str,
        lease_token: str | None,
        fencing_token: int,
        *,
        group_id: str,
        children: Sequence[Any],
        wait: str = ...,
        wait_state: str = ...,
        success_state: str,
        failure_state: str,
        on_child_failed: str = ...,
        on_parent_closed: str = ...,
        partition_key: str | None = ...,
    ) -> Flow: ...

    async def children(
        self, parent_id: str, *, group_id: str | None = ..., partition_key: str | None = ...
    ) -> list[Any]: ...

    async def signal(
        self,
        flow_id: str,
        name: str,
        *,
        values: Mapping[str, bytes] | None = ...,
        if_state: str | Sequence[str] | None = ...,
        transition_to: str | None = ...,
        run_at_ms: int | None = ...,
        idempotency_key: str | None = ...,
        partition_key: str | None = ...,
    ) -> Flow: ...

    async def rewind(
        self,
        flow_id: str,
        to_version: int,
        *,
        expect_state: str | None = ...,
        partition_key: str | None = ...,
    ) -> Flow: ...

    async def install_policy(
        self, type: str, policy: Any, *, expected_generation: int | None = ..., replace: bool = ...
    ) -> Any: ...

    async def get_policy(self, type: str) -> Any: ...

    async def list_flows(
        self, type: str, state: str, *, limit: int = ..., cursor: str | None = ...
    ) -> Any: ...

    async def by_parent(
        self, parent_id: str, *, limit: int = ..., cursor: str | None = ...
    ) -> Any: ...

    async def by_root(self, root_id: str, *, limit: int = ..., cursor: str | None = ...) -> Any: ...

    async def by_correlation(
        self, correlation_id: str, *, limit: int = ..., cursor: str | None = ...
    ) -> Any: ...

    async def stuck(
        self, type: str, *, older_than_ms: int = ..., limit: int = ..., cursor: str | None = ...
    ) -> Any: ...

    async def terminals(
        self,
        type: str,
        *,
        state: str | None = ...,
        from_ms: int | None = ...,
        to_ms: int | None = ...,
        limit: int = ...,
        cursor: str | None = ...,
    ) -> Any: ...

    async def retention_cleanup(self, *, limit: int = ...) -> dict[str, int]: ...


def available(engine: object) -> bool:
    return hasattr(engine, "signal") and hasattr(engine, "spawn_children")


def coordination(engine: object) -> Coordination:
    """The engine as a `Coordination`, or CoordinationUnavailable."""
    if not available(engine):
        raise CoordinationUnavailable(
            "this engine has no coordination API (issue 4: children, signals, rewind, "
            "policies, paged reads) yet"
        )
    return cast(Coordination, engine)


def public_type(name: str) -> Any:
    """A coordination value type (ChildSpec, FlowPolicy, ...) from the flowactors package."""
    found = getattr(importlib.import_module("flowactors"), name, None)
    if found is None:
        raise CoordinationUnavailable(f"flowactors.{name} is not available in this version")
    return found
