"""The workflow-code shape of each pattern of seed 001, run durably: a durable queue item,
a state machine, signals, retry after failure, fanout to child runs, and value refs (the
big data stays outside; activities get a reference)."""

from __future__ import annotations

from typing import Any

from _common import run

import flowactors as fa
from flowactors.code import CodeRunner, Context, workflow

SENT: list[str] = []
ATTEMPTS: dict[str, int] = {}
BLOBS = {"invoice-1": b"%PDF" + b"x" * 100_000}  # a blob store the activities read


async def send_email(user_id: str) -> str:
    SENT.append(user_id)
    return f"sent to {user_id}"


async def charge_card(order_id: str) -> str:
    ATTEMPTS[order_id] = ATTEMPTS.get(order_id, 0) + 1
    if order_id == "flaky-1" and ATTEMPTS[order_id] < 3:
        raise ConnectionError("rate limited")
    return f"ch-{order_id}"


async def send_receipt(charge_id: str) -> str:
    return f"receipt for {charge_id}"


async def process_invoice(ref: str) -> int:
    return len(BLOBS[ref])


@workflow
async def email(ctx: Context, user_id: str) -> str:  # durable queue item
    return str(await ctx.activity(send_email, user_id))


@workflow
async def order(ctx: Context, order_id: str) -> str:  # state machine: code is the states
    charge_id = await ctx.activity(charge_card, order_id)
    await ctx.activity(send_receipt, charge_id)
    return "ok"


@workflow
async def approval(ctx: Context, invoice: str) -> str:  # signals
    decision = await ctx.signal("approved")
    return f"{invoice} approved by {decision['by']}"


@workflow
async def retrying(ctx: Context, order_id: str) -> str:  # retry after failure
    policy = fa.RetryPolicy(max_retries=5, backoff="exponential", base_ms=500)
    return str(await ctx.activity(charge_card, order_id, retry=policy))


@workflow
async def device(ctx: Context, device_id: str) -> str:
    return f"{device_id}: updated"


@workflow
async def campaign(ctx: Context, device_ids: list[str]) -> list[Any]:  # fanout
    children = [ctx.start_child(device, d, id=f"device:{d}") for d in device_ids]
    return [await ctx.await_child(c) for c in children]


@workflow
async def invoice(ctx: Context, ref: str) -> int:  # value refs
    return int(await ctx.activity(process_invoice, ref))


async def main(runner: CodeRunner) -> None:
    for i in range(3):
        await runner.start(email, f"email-{i}", f"user-{i}")
    await runner.start(order, "order-1", "order-1")
    await runner.start(approval, "approval-1", "invoice:123")
    await runner.start(retrying, "retry-1", "flaky-1")
    await runner.start(campaign, "campaign-1", ["d1", "d2", "d3"])
    await runner.start(invoice, "invoice-1", "invoice-1")
    await runner.signal("approval-1", "approved", {"by": "ops"}, delivery_id="approve-1")
    async with runner.running(max_idle_ms=60_000):
        emails = [await runner.result(f"email-{i}") for i in range(3)]
        print(f"queue item: {len(emails)} emails sent ({', '.join(SENT)})")
        print("state machine: order-1", await runner.result("order-1"))
        print("signals:", await runner.result("approval-1"))
        print(f"retry: {await runner.result('retry-1')} after {ATTEMPTS['flaky-1']} attempts")
        print("fanout:", await runner.result("campaign-1"))
        print(f"value refs: processed {await runner.result('invoice-1')} bytes by reference")


if __name__ == "__main__":
    run(main)
