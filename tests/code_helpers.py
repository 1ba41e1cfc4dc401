"""Shared by the code-workflow tests: a CodeRunner on an engine in Trio's virtual time."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from typing import Any

from sdk_helpers import trio_engine

from flowactors.code import CodeRunner, Context, Registry, WorkflowDef, workflow


def registry(*workflows: WorkflowDef) -> Registry:
    reg = Registry()
    for wf in workflows:
        reg.add(wf)
    return reg


@asynccontextmanager
async def code_runner(
    path: str | os.PathLike[str], workflows: Iterable[WorkflowDef] | Registry, **options: Any
) -> AsyncIterator[CodeRunner]:
    async with trio_engine(path) as engine:
        yield CodeRunner(engine, workflows, **options)


LOOP = Registry()


async def bump(n: int) -> int:
    return n + 1


@workflow(check=False, registry=LOOP)
async def counter(ctx: Context, k: int) -> int:
    """k activities in a row, each its own step (a long run when k is large)."""
    total = 0
    for i in range(k):
        total += await ctx.activity(bump, i)
    return total
