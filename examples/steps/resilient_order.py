"""Seed 003's resilient_order: the payment child fails; the parent branches on the
failure (a backup payment method) instead of failing itself."""

from __future__ import annotations

from typing import Any

from _common import run

import flowactors as fa
from flowactors.steps import Err, Ok, Pipelines, StepContext, StepFailed, steps

card = steps("card_payment")


@card.step
async def charge_card(ctx: StepContext, data: dict[str, Any]) -> dict[str, Any]:
    raise StepFailed("card declined")


invoice = steps("invoice_payment")


@invoice.step
async def send_invoice(ctx: StepContext, data: dict[str, Any]) -> dict[str, Any]:
    return {"method": "invoice", "amount": data["amount"]}


resilient_order = steps("resilient_order")


@resilient_order.step
async def pay(ctx: StepContext, data: dict[str, Any]) -> dict[str, Any]:
    match await ctx.call_workflow(card, {"amount": data["total"]}, ref="card"):
        case Ok(result):
            return {**data, "paid": result}
        case Err(reason):
            backup = await ctx.call_workflow(invoice, {"amount": data["total"]}, ref="invoice")
            assert isinstance(backup, Ok)
            return {**data, "paid": backup.result, "card_error": reason["message"]}
    raise AssertionError("unreachable")


async def main(engine: fa.Engine) -> None:
    runs = Pipelines(engine, [resilient_order, card, invoice])
    await runs.start(resilient_order, "order-7", {"total": 99})
    async with runs.running():
        result = await runs.result("order-7")
    failed = [k.run_id for k in await runs.list_children("order-7", status="failed")]
    print(f"order-7 paid by {result['paid']['method']} after {result['card_error']!r}")
    print(f"failed children: {failed}")


if __name__ == "__main__":
    run(main)
