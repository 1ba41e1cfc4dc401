"""Seed 003's order pipeline: validate, charge through a payment child workflow (the
parent waits without holding a worker), confirm by starting an e-mail child and not
waiting for it. Each step's context is saved before the next one runs."""

from __future__ import annotations

from typing import Any

from _common import run

import flowactors as fa
from flowactors.steps import Err, Ok, Pipelines, StepContext, StepFailed, StepRetry, steps

payment = steps("payment")


@payment.step
async def authorize(ctx: StepContext, data: dict[str, Any]) -> dict[str, Any]:
    return {"payment_id": f"pay-{ctx.run_id.split('/')[0]}", "amount": data["amount"]}


email = steps("email")


@email.step
async def send(ctx: StepContext, data: dict[str, Any]) -> dict[str, Any]:
    return {"sent_to": data["to"]}


process_order = steps("process_order", queue="orders")


@process_order.step
async def validate(ctx: StepContext, data: dict[str, Any]) -> dict[str, Any]:
    return {**data, "order_id": ctx.input["id"], "total": sum(data["items"].values())}


async def refund(result: dict[str, Any]) -> None:
    print(f"refund {result['payment_id']}")


@process_order.step(retry=StepRetry(max_attempts=5, backoff="exponential"), compensate=refund)
async def charge(ctx: StepContext, data: dict[str, Any]) -> dict[str, Any]:
    match await ctx.call_workflow(payment, {"amount": data["total"]}, ref="pay"):
        case Ok(result):
            return {**data, "payment_id": result["payment_id"]}
        case Err(reason):
            raise StepFailed(f"payment failed: {reason['message']}")
    raise AssertionError("unreachable")


@process_order.step
async def confirm(ctx: StepContext, data: dict[str, Any]) -> dict[str, Any]:
    email_id = await ctx.start_workflow(email, {"to": data["email"]}, ref="confirmation")
    return {**data, "email_workflow_id": email_id}


async def main(engine: fa.Engine) -> None:
    runs = Pipelines(engine, [process_order, payment, email])
    order = {"id": "order-1", "items": {"book": 12, "pen": 3}, "email": "ann@example.com"}
    await runs.start(process_order, "order-1", order)
    async with runs.running():
        result = await runs.result("order-1")
        sent = await runs.result(result["email_workflow_id"])
    view = await runs.describe("order-1")
    print(f"steps done: {', '.join(view.done)}")
    print(f"order-1: paid {result['payment_id']} for {result['total']}, e-mail {sent}")


if __name__ == "__main__":
    run(main)
