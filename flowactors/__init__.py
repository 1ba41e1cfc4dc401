"""flowactors: a durable workflow engine embedded in a Trio program.

async with flowactors.open_engine("data") as engine:
    await engine.create("order-1", "order", payload=b"...")
    for job in await engine.claim_due("order", "worker-1", limit=10):
        await engine.complete(job.id, job.lease_token, job.fencing_token)
"""

from ._engine import Engine, open_engine, slot_of, trio_clock_ms, wall_clock_ms
from ._errors import (
    CorruptLog,
    DataDirLocked,
    EngineClosed,
    FlowError,
    FlowExists,
    FlowNotFound,
    FlowTerminal,
    IdempotencyConflict,
    InvalidArgument,
    Overloaded,
    ShardBroken,
    StaleLease,
    StorageError,
    WrongState,
)
from ._retry import backoff_delay_ms
from ._types import (
    Ack,
    ChildSpec,
    ChildStatus,
    CreateSpec,
    Flow,
    FlowPolicy,
    HistoryEvent,
    ItemResult,
    Page,
    PolicySettings,
    RetryPolicy,
)

__all__ = [
    "Ack",
    "ChildSpec",
    "ChildStatus",
    "CorruptLog",
    "CreateSpec",
    "DataDirLocked",
    "Engine",
    "EngineClosed",
    "Flow",
    "FlowError",
    "FlowExists",
    "FlowNotFound",
    "FlowPolicy",
    "FlowTerminal",
    "HistoryEvent",
    "IdempotencyConflict",
    "InvalidArgument",
    "ItemResult",
    "Overloaded",
    "Page",
    "PolicySettings",
    "RetryPolicy",
    "ShardBroken",
    "StaleLease",
    "StorageError",
    "WrongState",
    "backoff_delay_ms",
    "open_engine",
    "slot_of",
    "trio_clock_ms",
    "wall_clock_ms",
]
