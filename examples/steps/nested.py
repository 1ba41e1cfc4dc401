"""Seed 003's nesting: workflow A calls B, which calls C; each waits for its child
without holding a worker, and each child's result flows back up."""

from __future__ import annotations

from _common import run

import flowactors as fa
from flowactors.steps import Ok, Pipelines, StepContext, steps

a, b, c = steps("A"), steps("B"), steps("C")


@a.step
async def a_step(ctx: StepContext, data: list[str]) -> list[str]:
    got = await ctx.call_workflow(b, [*data, "A"], ref="b")
    assert isinstance(got, Ok)
    return list(got.result)


@b.step
async def b_step(ctx: StepContext, data: list[str]) -> list[str]:
    got = await ctx.call_workflow(c, [*data, "B"], ref="c")
    assert isinstance(got, Ok)
    return list(got.result)


@c.step
async def c_step(ctx: StepContext, data: list[str]) -> list[str]:
    return [*data, "C"]


async def main(engine: fa.Engine) -> None:
    runs = Pipelines(engine, [a, b, c])
    await runs.start(a, "abc", [])
    async with runs.running():
        print(f"A -> B -> C: {' -> '.join(await runs.result('abc'))}")
    print(f"children: {[k.run_id for k in await runs.list_children('abc/b')]}")


if __name__ == "__main__":
    run(main)
