"""Seed 001, signals and external events: an approval waits until a durable, idempotent,
state-guarded signal moves it on (needs the engine coordination API, issue 4)."""

from __future__ import annotations

from _run import run

import flowactors
from flowactors import Client


async def main(data_dir: str) -> None:
    async with flowactors.open_engine(data_dir) as engine:
        approval = Client(engine).workflow(type="approval", initial_state="waiting")
        await approval.start("approval-1", payload=b"invoice:123", idempotent=True)
        for _ in range(2):  # a replayed signal with the same key is a no-op
            await approval.signal(
                "approval-1",
                "approved",
                if_state="waiting",
                transition_to="approved",
                idempotency_key="approve-approval-1",
            )
        flow = await approval.get("approval-1")
        assert flow is not None and flow.state == "approved"
        print("approval-1", flow.state, [e.name for e in await approval.history("approval-1")])


if __name__ == "__main__":
    run(main)
