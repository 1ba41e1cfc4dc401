"""A saga as a code workflow: book a flight, a hotel and a car; the car rental fails, so
every booking made so far is compensated, newest first, each exactly once (a failing
compensation is journaled and the unwinding goes on)."""

from __future__ import annotations

from typing import Any

from _common import run

from flowactors.code import ActivityError, CodeRunner, Context, workflow

LEDGER: list[str] = []


async def book(kind: str, trip: str) -> str:
    if kind == "car":
        raise RuntimeError("no cars left")
    LEDGER.append(f"book {kind}")
    return f"{kind}-{trip}"


async def cancel_booking(booking: str) -> str:
    LEDGER.append(f"cancel {booking}")
    return f"cancelled {booking}"


@workflow
async def trip(ctx: Context, trip_id: str) -> dict[str, Any]:
    booked = []
    try:
        for kind in ("flight", "hotel", "car"):
            ref = await ctx.activity(book, kind, trip_id, compensate=cancel_booking)
            booked.append(ref.result)
    except ActivityError as exc:
        undone = await ctx.compensate_all()
        return {"failed": exc.message, "undone": undone}
    return {"booked": booked}


async def main(runner: CodeRunner) -> None:
    print("trip-1:", await runner.execute(trip, "trip-1", "t1"))
    print("ledger:", LEDGER)


if __name__ == "__main__":
    run(main)
