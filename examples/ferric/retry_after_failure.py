"""Seed 001, "Retry After Failure" (FerricFlow shape), run by FerricStore's own SDK on an
embedded flowactors engine. Only the client's construction differs from the seed.

The card processor rate-limits the first two attempts; the retry state is durable and the
worker claims the flow again when its backoff is over.

Run: python examples/ferric/retry_after_failure.py [data_dir]
"""

from __future__ import annotations

from dataclasses import dataclass

from _harness import data_dir, stop_when
from ferricstore import ExceptionPolicy, FlowClient, RetryPolicy, WorkflowClient, retry, transition

import flowactors.ferric

calls: list[bytes] = []


@dataclass
class ChargeResult:
    rate_limited: bool


def charge_card(payload: bytes) -> ChargeResult:
    calls.append(payload)
    return ChargeResult(rate_limited=len(calls) < 3)


with flowactors.ferric.embedded(data_dir()) as store:
    # The seed: client = WorkflowClient.from_url("redis://127.0.0.1:6379/0")
    client = WorkflowClient(FlowClient(store.executor))
    order = client.workflow(
        type="order",
        initial_state="charge",
        retry_policy=RetryPolicy(max_retries=5, backoff="exponential"),
    )

    @order.state("charge", exception_policy=ExceptionPolicy.RETRY)
    def charge(job):
        result = charge_card(job.payload)
        if result.rate_limited:
            return retry(error=b"rate limited")
        return transition("ship")

    @order.state("ship")
    def ship(job):
        return transition("shipped")

    order.install_policy()
    order.start("order-1", payload=b"card:4242", idempotent=True)
    with stop_when(lambda: order.get("order-1").state == "shipped"):
        order.worker(states=["charge", "ship"]).run()

    record = order.get("order-1")
    retries = [f for _id, f in order.history("order-1") if f["event"] == "retry"]
    print(f"order-1 {record.state} after {len(calls)} charge attempts; {len(retries)} retries")
