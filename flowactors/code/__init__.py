"""Code-first durable workflows: plain `async def` code whose effects are journaled and
replayed (issue 17).

    from flowactors.code import workflow, CodeRunner, hours

    @workflow(version=1)
    async def order_flow(ctx, order):
        total = await ctx.activity(check_items, order["items"])
        await ctx.signal("fraud_review", timeout=hours(24))
        return {"total": total}

    runner = CodeRunner(engine)
    await runner.start(order_flow, "order-1", {"items": [...]})
    async with runner.running():
        print(await runner.result("order-1"))

One engine flow per run; its journal lives in named values written by the command that
moves the flow. See docs/code-workflows.md.
"""

from ._define import (
    REGISTRY,
    ActivityRef,
    ChildHandle,
    ContinueAsNew,
    Registry,
    Timeout,
    WorkflowDef,
    pure,
    workflow,
)
from ._errors import (
    ActivityError,
    ChildCancelled,
    ChildFailed,
    ChildIdCollision,
    DeterminismViolation,
    NonDeterminismError,
    NonRetryable,
    RunCancelled,
    SuspendLeakError,
    UnknownWorkflow,
    UnstorableValue,
    VersionMismatch,
    WorkflowFailed,
)
from ._replay import Context, Effect, Replay, fold
from ._runner import ActivityInfo, CodeRunner, RunInfo, activity_info, journal_names
from ._scan import DENYLIST, scan, trust_modules
from ._values import days, hours, minutes, seconds

__all__ = [
    "DENYLIST",
    "REGISTRY",
    "ActivityError",
    "ActivityInfo",
    "ActivityRef",
    "ChildCancelled",
    "ChildFailed",
    "ChildHandle",
    "ChildIdCollision",
    "CodeRunner",
    "Context",
    "ContinueAsNew",
    "DeterminismViolation",
    "Effect",
    "NonDeterminismError",
    "NonRetryable",
    "Registry",
    "Replay",
    "RunCancelled",
    "RunInfo",
    "SuspendLeakError",
    "Timeout",
    "UnknownWorkflow",
    "UnstorableValue",
    "VersionMismatch",
    "WorkflowDef",
    "WorkflowFailed",
    "activity_info",
    "days",
    "fold",
    "hours",
    "journal_names",
    "minutes",
    "pure",
    "scan",
    "seconds",
    "trust_modules",
    "workflow",
]
