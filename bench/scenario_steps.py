"""The `steps` scenario: a 3-step pipeline whose middle step calls a one-step child
pipeline, started and run to completion durably; beside it, the same work written as a
code workflow (3 activities, the middle one a child run of one activity).

Each pipeline run is a parent run and a child run. The parent's first step runs; its
second step asks for the child (`call_workflow`), which ends that attempt: the parent's
workflow code starts the child and waits for it without holding a worker; the child's
step runs and the child completes, which wakes the parent; the second step runs again,
finds the child's result, and the third step ends the run. The code-first twin does the
same through `ctx.child` with no step re-run. One worker (concurrency 2000, batch 1000),
default shards (1), sync=always. N = 10k pipelines (1k with --quick). Floor: 1,500 pipelines/s on
the 2-core VM (issue 18).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import trio

import flowactors
from flowactors.code import CodeRunner, Context, workflow
from flowactors.steps import Ok, Pipelines, StepContext, steps

from . import scenario_codeflow as codeflow
from ._engine_util import frozen_inputs
from ._registry import register
from ._session import Floor, Metric, Session

STEPS_FLOOR = 1_500.0  # pipelines/s end to end, one process
BATCH = 1000
CONCURRENCY = 2000

payment = steps("bench_payment")


@payment.step
async def take(ctx: StepContext, data: int) -> int:
    return data * 2


order = steps("bench_order")


@order.step
async def validate(ctx: StepContext, data: int) -> int:
    return data + 1


@order.step
async def charge(ctx: StepContext, data: int) -> int:
    got = await ctx.call_workflow(payment, data, ref="pay")
    assert isinstance(got, Ok)
    return int(got.result)


@order.step
async def ship(ctx: StepContext, data: int) -> str:
    return f"shipped {data}"


# The code-first twin, on `bench codeflow`'s activities (validate: n + 1, charge: n * 2,
# ship: "shipped n"), the middle one a child run.


@workflow(check=False)
async def code_payment(ctx: Context, n: int) -> int:
    return int(await ctx.activity(codeflow.charge, n))


@workflow(check=False)
async def code_order(ctx: Context, n: int) -> str:
    a = await ctx.activity(codeflow.validate, n)
    b = await ctx.child(code_payment, a, id="pay")
    return str(await ctx.activity(codeflow.ship, b))


async def _run(path: Path, names: list[str], kind: str) -> tuple[float, int]:
    async with flowactors.open_engine(path, maintenance_interval_ms=None) as engine:
        hosting: Callable[..., AbstractAsyncContextManager[Any]]
        if kind == "steps":
            pipelines = Pipelines(engine, [order, payment])
            runner, target, hosting = pipelines.runner, order.workflow, pipelines.running
        else:
            runner = CodeRunner(engine, [code_order, code_payment])
            target, hosting = code_order, runner.running
        return await codeflow.run_all(engine, runner, target, names, hosting, flows=2 * len(names))


@register("steps")
def steps_scenario(session: Session) -> None:
    """Step pipelines: 3 steps, the middle one calling a child; and the code-first twin."""
    n = 1_000 if session.quick else 10_000
    session.section(
        f"{n:,} runs of a 3-step pipeline whose middle step calls a one-step child "
        f"(one worker, concurrency {CONCURRENCY}, sync=always)"
    )
    session.record(Metric("steps_runs", "runs per measurement", "runs"), n)
    names = [f"order-{i:08d}" for i in range(n)]

    def once(kind: str) -> dict[str, float]:
        with session.scratch(kind) as path, frozen_inputs():
            seconds, synced = trio.run(_run, path, names, kind)
        return {f"{kind}_pipelines_per_s": n / seconds, f"{kind}_per_fdatasync": n / synced}

    session.measure(
        lambda: once("steps"),
        [
            Metric(
                "steps_pipelines_per_s",
                "step pipeline: 3 steps + a child pipeline, end to end",
                "pipelines/s",
                Floor("steps", ">=", STEPS_FLOOR, "issue 18"),
            ),
            Metric("steps_per_fdatasync", "  pipelines per fdatasync", "pipelines"),
        ],
        what=f"{n:,} step pipelines",
    )
    session.measure(
        lambda: once("code"),
        [
            Metric(
                "code_pipelines_per_s",
                "the same as a code workflow (2 activities + a child of 1)",
                "workflows/s",
            ),
            Metric("code_per_fdatasync", "  workflows per fdatasync", "workflows"),
        ],
        what=f"{n:,} code workflows with a child",
    )
    session.section("ratios (of medians)")
    session.record(
        Metric("steps_vs_code", "step pipelines/s / code workflows/s", "x"),
        session.value("steps_pipelines_per_s") / session.value("code_pipelines_per_s"),
    )
    try:
        raw = session.value("raw_fdatasync_per_s")
    except KeyError:
        return
    session.record(
        Metric("steps_per_fsync_equivalent", "step pipelines/s / raw fdatasync/s", "pipelines"),
        session.value("steps_pipelines_per_s") / raw,
    )
