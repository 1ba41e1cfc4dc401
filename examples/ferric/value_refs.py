"""Seed 001, "Value Refs For Large Optional Data" (FerricFlow shape), run by FerricStore's
own SDK on an embedded flowactors engine. Only the client's construction differs.

Only the requested value ("customer") is hydrated for the worker; the invoice stays stored
as a named value of the flow, readable later through its ref.

Run: python examples/ferric/value_refs.py [data_dir]
"""

from __future__ import annotations

from _harness import data_dir, stop_when
from ferricstore import FlowClient, QueueClient

import flowactors.ferric

invoice_pdf_bytes = b"%PDF-1.7 " + b"x" * 200_000
customer_snapshot_bytes = b'{"id": 42, "name": "Ada"}'
seen: list[dict[str, object]] = []


def handle_customer_step(job):
    seen.append(dict(job.values or {}))
    return b"done"


with flowactors.ferric.embedded(data_dir()) as store:
    # The seed: client = QueueClient.from_url("redis://127.0.0.1:6379/0")
    client = QueueClient(FlowClient(store.executor))
    orders = client.queue(type="order")
    orders.enqueue(
        "order-1",
        payload=b"small routing bytes",
        values={"invoice": invoice_pdf_bytes, "customer": customer_snapshot_bytes},
    )
    with stop_when(lambda: orders.client.get("order-1").state == "completed"):
        orders.worker(claim_values=["customer"]).run(handle_customer_step)

    record = orders.client.get("order-1")
    invoice_ref = record.value_refs["invoice"]["ref"]
    (invoice,) = orders.client.value_mget([invoice_ref])
    print(
        f"order-1 {record.state}; the worker saw values {sorted(seen[0])}; "
        f"the invoice stayed stored ({len(invoice)} bytes)"
    )
