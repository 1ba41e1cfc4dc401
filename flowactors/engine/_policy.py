"""Flow policies on disk and their field-wise merge.

A policy is stored as CBOR `{"generation": n, "fields": {...}, "states": {state: {...}}}`
under `P<type>` in every shard's log (see `Engine.install_policy`); only fields that are
set are written, so "inherit" survives a round trip.
"""

from __future__ import annotations

from typing import Any

import cbor2

from ._errors import CorruptLog
from ._types import FlowPolicy, PolicySettings


def encode_policy(policy: FlowPolicy) -> bytes:
    data: bytes = cbor2.dumps(
        {
            "generation": policy.generation,
            "fields": policy.fields(),
            "states": {name: layer.fields() for name, layer in policy.states.items()},
        }
    )
    return data


def decode_policy(data: bytes, where: str) -> FlowPolicy:
    try:
        raw: Any = cbor2.loads(data)
        states = {name: PolicySettings(**f) for name, f in raw["states"].items()}
        return FlowPolicy(**raw["fields"], states=states, generation=raw["generation"])
    except Exception as exc:  # any decoding failure is corruption of that key
        raise CorruptLog(where, 0, f"unreadable flow policy: {exc}") from exc


def merge_policy(current: FlowPolicy, patch: FlowPolicy) -> FlowPolicy:
    """`patch` over `current`, field by field, state layers too."""
    fields = {**current.fields(), **patch.fields()}
    states = dict(current.states)
    for name, layer in patch.states.items():
        base = states.get(name)
        states[name] = (
            PolicySettings(**{**base.fields(), **layer.fields()}) if base is not None else layer
        )
    return FlowPolicy(**fields, states=states, generation=current.generation)
