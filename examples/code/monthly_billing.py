"""A monthly billing loop with continue_as_new: charge, sleep 30 days, and start the next
cycle as a fresh run (so no journal grows without bound). Twelve cycles run in virtual
time; the chain shares one correlation id."""

from __future__ import annotations

from typing import Any

from _common import run

from flowactors.code import CodeRunner, Context, days, workflow


async def charge(customer: str, cycle: int) -> str:
    return f"inv-{customer}-{cycle:02d}"


@workflow
async def billing(ctx: Context, state: dict[str, Any]) -> Any:
    invoice = await ctx.activity(charge, state["customer"], state["cycle"])
    await ctx.timer(days(30))
    if state["cycle"] >= 12:
        return {"year_complete": True, "last_invoice": invoice}
    return ctx.continue_as_new({**state, "cycle": state["cycle"] + 1})


async def main(runner: CodeRunner) -> None:
    # A year of virtual time: workers poll daily (due timers wake them at once anyway).
    start = {"customer": "c7", "cycle": 1}
    result = await runner.execute(billing, "cust-7", start, max_idle_ms=days(1))
    chain = sorted(
        (await runner.engine.by_correlation("cust-7")).items, key=lambda f: f.created_at_ms
    )
    print("cust-7:", result)
    print(f"chain of {len(chain)} runs: {chain[0].id} .. {chain[-1].id}")
    print("first run:", (await runner.describe("cust-7")).result)


if __name__ == "__main__":
    # Long leases and polls only so that a year of virtual time needs few ticks.
    run(main, lease_ms=days(2), poll_ms=days(1))
