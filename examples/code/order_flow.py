"""Continuum's OrderFlow (seed 004) as a code workflow: validate, charge with exponential
retry, then wait up to 24 hours for a fraud review; ship when approved or when nobody
answered, refund when rejected.

Three orders: one approved, one rejected (its charge is compensated), one that nobody
reviews (the 24-hour timeout wins, in virtual time)."""

from __future__ import annotations

from typing import Any

from _common import run

import flowactors as fa
from flowactors.code import CodeRunner, Context, Timeout, hours, workflow

FAILURES = {"order-1": 2}  # the card processor fails the first two attempts of order-1


async def check_items(items: list[dict[str, Any]]) -> dict[str, Any]:
    return {"total": sum(i["price"] * i["qty"] for i in items)}


async def charge_card(order_id: str, total: int) -> str:
    if FAILURES.get(order_id, 0) > 0:
        FAILURES[order_id] -= 1
        raise ConnectionError("card processor unavailable")
    return f"ch-{order_id}-{total}"


async def refund(charge_id: str) -> str:
    return f"refunded {charge_id}"


async def ship(order_id: str) -> str:
    return f"trk-{order_id}"


@workflow(version=1, retention_ms=hours(24 * 30))
async def order_flow(ctx: Context, order: dict[str, Any]) -> dict[str, Any]:
    validated = await ctx.activity(check_items, order["items"])
    charge = await ctx.activity(
        charge_card,
        order["id"],
        validated["total"],
        retry=fa.RetryPolicy(max_retries=5, backoff="exponential", base_ms=1_000),
        compensate=refund,
    )
    match await ctx.signal("fraud_review", timeout=hours(24)):
        case Timeout():
            tracking = await ctx.activity(ship, order["id"])
            return {"shipped": tracking, "review": "timeout"}
        case {"ok": True}:
            tracking = await ctx.activity(ship, order["id"])
            return {"shipped": tracking, "review": "approved"}
        case _:
            undone = await ctx.compensate_all()
            return {"error": "rejected", "charge": charge.result, "undone": undone}


async def main(runner: CodeRunner) -> None:
    items = [{"sku": "a", "price": 5, "qty": 2}, {"sku": "b", "price": 7, "qty": 1}]
    for n in (1, 2, 3):
        await runner.start(order_flow, f"order-{n}", {"id": f"order-{n}", "items": items})
    await runner.signal("order-1", "fraud_review", {"ok": True}, delivery_id="review-1")
    await runner.signal("order-2", "fraud_review", {"ok": False}, delivery_id="review-2")
    async with runner.running(max_idle_ms=3_600_000):
        for n in (1, 2, 3):
            print(f"order-{n}:", await runner.result(f"order-{n}"))
    retries = [e for e in await runner.history("order-1") if e["type"] == "attempt_failed"]
    waits = [e["retry_at"] - e["at"] for e in retries]
    print(f"order-1 charge retried {len(retries)} times, waits {waits} ms")


if __name__ == "__main__":
    run(main)
