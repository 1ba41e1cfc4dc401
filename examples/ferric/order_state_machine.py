"""Seed 001, "State-Machine Workflow" (FerricFlow shape), run by FerricStore's own SDK on an
embedded flowactors engine. Only the client's construction differs from the seed.

Run: python examples/ferric/order_state_machine.py [data_dir]
"""

from __future__ import annotations

from _harness import data_dir, stop_when
from ferricstore import FlowClient, WorkflowClient, complete, transition

import flowactors.ferric

steps: list[str] = []


def charge_card(payload: object) -> None:
    steps.append("charged")


def send_receipt(order_id: str) -> None:
    steps.append(f"receipt for {order_id}")


with flowactors.ferric.embedded(data_dir()) as store:
    # The seed: client = WorkflowClient.from_url("redis://127.0.0.1:6379/0")
    client = WorkflowClient(FlowClient(store.executor))
    order = client.workflow(type="order", initial_state="created")

    @order.state("created")
    def created(job):
        charge_card(job.payload)
        return transition("charged")

    @order.state("charged")
    def charged(job):
        send_receipt(job.id)
        return complete(result=b"ok")

    order.start("order-1", payload=b"order payload", idempotent=True)
    with stop_when(lambda: order.get("order-1").state == "completed"):
        order.worker(states=["created", "charged"]).run()

    record = order.get("order-1")
    print(f"order-1 {record.state} with result {record.result!r} after {steps}")
