"""An expense claim as a step pipeline: checks run side by side as child runs (a parallel
block), a branch on the amount, and a person's approval for big claims (human input),
with a deadline. Run: `python examples/steps/expense_approval.py` (virtual time: the
two-day deadline passes in a blink)."""

from __future__ import annotations

from typing import Any

import trio
from _common import run

import flowactors as fa
from flowactors.steps import Pipelines, StepContext, StepFailed, steps

DAY = 86_400_000

expense = steps("expense", queue="finance", priority=1)


@expense.step
async def validate(ctx: StepContext, data: dict[str, Any]) -> dict[str, Any]:
    if data["amount"] <= 0:
        raise StepFailed("the amount must be positive")
    return {**data, "currency": data.get("currency", "EUR")}


checks = expense.parallel("checks", on_error="complete_all")


@checks.step
async def receipt_present(ctx: StepContext, data: dict[str, Any]) -> bool:
    return bool(data.get("receipt"))


@checks.step
async def within_policy(ctx: StepContext, data: dict[str, Any]) -> bool:
    return data["category"] in ("travel", "meals", "books")


by_size = expense.branch("by_size", on=lambda data: data["amount"] > 500)


@by_size.case(True)
async def ask_manager(ctx: StepContext, data: dict[str, Any]) -> dict[str, Any]:
    decision = await ctx.wait_for_approval(
        "manager", prompt=f"approve {data['amount']} {data['currency']} for {data['who']}?",
        timeout=2 * DAY, timeout_value="expired",
    )  # fmt: skip
    return {**data, "approved": decision}


@by_size.otherwise
async def auto_approve(ctx: StepContext, data: dict[str, Any]) -> dict[str, Any]:
    ok = all(outcome == ["ok", True] for outcome in data["__results__"].values())
    return {**data, "approved": ok}


@expense.step
async def settle(ctx: StepContext, data: dict[str, Any]) -> str:
    verdict = "paid" if data["approved"] is True else f"not paid ({data['approved']})"
    return f"{data['who']}: {data['amount']} {data['currency']} {verdict}"


async def main(engine: fa.Engine) -> None:
    # (in virtual time, idle polling would be most of the run: rely on wakes and alarms)
    runs = Pipelines(engine, [expense], poll_ms=DAY, recheck_ms=DAY)
    quiet = {"max_idle_ms": DAY}
    claims = {
        "exp-1": {"who": "ann", "amount": 80, "category": "meals", "receipt": True},
        "exp-2": {"who": "bob", "amount": 1_900, "category": "travel", "receipt": True},
        "exp-3": {"who": "eve", "amount": 700, "category": "travel", "receipt": True},
    }
    for run_id, claim in claims.items():
        await runs.start(expense, run_id, claim)
    async with runs.running(**quiet):
        await trio.sleep(1)
        for pending in await runs.list_pending_inputs(name="manager"):
            print(f"waiting for {pending.name}: {pending.prompt}")
        await runs.provide_input("exp-2", "manager", True)  # eve's manager is away
        for run_id in claims:
            print(await runs.result(run_id))


if __name__ == "__main__":
    run(main)
