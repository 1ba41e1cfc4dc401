"""Seed 000: a declarative billing workflow (created -> charged -> completed), partitioned
by tenant and invoice, with a per-state lease, payload cap and retry override."""

from __future__ import annotations

from _run import run

import flowactors
from flowactors import State, StateRetry, Workflow, complete, fail, retry_or


class BillingFlow(Workflow):
    type = "billing"
    partition_by = ("tenant_id", "invoice_id")
    initial_state = "created"
    states = {  # noqa: RUF012
        "created": State(
            lease_ms=60_000,
            claim_payload=True,
            payload_max_bytes=64_000,
            retry=StateRetry(max_retries=8, backoff="exponential", base_ms=1_000, max_ms=3_600_000),
            on_ok="charged",
            on_error=retry_or("failed"),
        ),
        "charged": State(on_ok=complete(), on_error=fail()),
    }


async def charge(job: flowactors.Context) -> bytes:
    assert job.payload is not None
    return b"charge:" + job.payload  # becomes the payload of "charged"


async def record(job: flowactors.Context) -> bytes:
    return b"receipt for " + job.id.encode()


async def main(data_dir: str) -> None:
    async with flowactors.open_engine(data_dir) as engine:
        billing = BillingFlow(engine)
        attrs = {"tenant_id": "t1", "invoice_id": "inv-1"}
        await billing.create("bill-1", payload=b"42.00 EUR", attributes=attrs, idempotent=True)

        # Step by step, as with seed 000's claim_due / handle:
        [job] = await billing.claim_due("created")
        await billing.handle(job, charge)
        [job] = await billing.claim_due("charged")
        await billing.handle(job, record)

        flow = await billing.get("bill-1", attributes=attrs)
        assert flow is not None
        history = [e.name for e in await billing.history("bill-1", attributes=attrs)]
        print(f"bill-1 {flow.state} in partition {flow.partition_key}: {flow.result!r}")
        print("history:", " -> ".join(history))
        assert flow.state == "completed"


if __name__ == "__main__":
    run(main)
