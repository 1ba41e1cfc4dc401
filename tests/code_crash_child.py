"""Child process for the code-workflow SIGKILL test: starts `n` runs of a 3-activity
workflow and works them to the end, printing (flushed) one line per acknowledged start,
per activity execution and per result seen."""

from __future__ import annotations

import sys

import trio

import flowactors as fa
from flowactors.code import CodeRunner, Context, Registry, activity_info, workflow

REG = Registry()


async def step(n: int) -> int:
    print(f"ran {activity_info().idempotency_key}", flush=True)
    await trio.sleep(0.001)
    return n + 1


@workflow(check=False, registry=REG)
async def three(ctx: Context, n: int) -> int:
    a = await ctx.activity(step, n)
    b = await ctx.activity(step, a)
    return int(await ctx.activity(step, b))


async def main(data_dir: str, n: int) -> None:
    async with fa.open_engine(data_dir, shards=2) as engine:
        runner = CodeRunner(engine, REG, lease_ms=2_000, recheck_ms=500)
        for i in range(n):
            await runner.start(three, f"w{i}", i)
            print(f"started w{i}", flush=True)
        async with runner.running(max_idle_ms=50):
            for i in range(n):
                print(f"done w{i} {await runner.result(f'w{i}')}", flush=True)


if __name__ == "__main__":
    trio.run(main, sys.argv[1], int(sys.argv[2]))
