"""flowactors: a durable workflow engine embedded in a Trio program.

async with flowactors.open_engine("data") as engine:
    await engine.create("order-1", "order", payload=b"...")
    for job in await engine.claim_due("order", "worker-1", limit=10):
        await engine.complete(job.id, job.lease_token, job.fencing_token)

The SDK above it (Workflow, Client, Worker) turns handlers into those explicit commands.
"""

from .engine._engine import Engine, open_engine, slot_of, trio_clock_ms, wall_clock_ms
from .engine._errors import (
    CorruptLog,
    DataDirDamaged,
    DataDirLocked,
    EngineClosed,
    FlowError,
    FlowExists,
    FlowNotFound,
    FlowTerminal,
    IdempotencyConflict,
    InternalError,
    InvalidArgument,
    Overloaded,
    ShardBroken,
    StaleLease,
    StorageError,
    WrongState,
)
from .engine._retry import backoff_delay_ms
from .engine._tuning import tune_gc
from .engine._types import (
    Ack,
    ChildSpec,
    ChildStatus,
    ContinueSpec,
    CreateSpec,
    EngineRecovery,
    Flow,
    FlowPolicy,
    HistoryEvent,
    ItemResult,
    Page,
    PolicySettings,
    RetryPolicy,
    ShardRecovery,
)
from .sdk._client import Client, Queue
from .sdk._outcomes import (
    Complete,
    ExceptionPolicy,
    Fail,
    Outcome,
    Retry,
    RetryOr,
    Spawn,
    StateRetry,
    Transition,
    complete,
    fail,
    retry,
    retry_or,
    spawn,
    transition,
)
from .sdk._worker import Worker, WorkerStatistics
from .sdk._workflow import Context, State, Workflow

# isort: split
# Code-first workflows (issue 17) import the names above from this package: they come last.
from . import code
from .code import workflow

# isort: split
# Cron schedules (issue 18) build on the engine and start code runs: after code.
from . import cron

__all__ = [
    "Ack",
    "ChildSpec",
    "ChildStatus",
    "Client",
    "ContinueSpec",
    "Complete",
    "Context",
    "CorruptLog",
    "CreateSpec",
    "DataDirDamaged",
    "DataDirLocked",
    "Engine",
    "EngineClosed",
    "EngineRecovery",
    "ExceptionPolicy",
    "Fail",
    "Flow",
    "FlowError",
    "FlowExists",
    "FlowNotFound",
    "FlowPolicy",
    "FlowTerminal",
    "HistoryEvent",
    "IdempotencyConflict",
    "InternalError",
    "InvalidArgument",
    "ItemResult",
    "Outcome",
    "Overloaded",
    "Page",
    "PolicySettings",
    "Queue",
    "Retry",
    "RetryOr",
    "RetryPolicy",
    "ShardBroken",
    "ShardRecovery",
    "Spawn",
    "StaleLease",
    "State",
    "StateRetry",
    "StorageError",
    "Transition",
    "Worker",
    "WorkerStatistics",
    "Workflow",
    "WrongState",
    "code",
    "cron",
    "backoff_delay_ms",
    "complete",
    "fail",
    "open_engine",
    "retry",
    "retry_or",
    "slot_of",
    "spawn",
    "transition",
    "tune_gc",
    "trio_clock_ms",
    "wall_clock_ms",
    "workflow",
]
