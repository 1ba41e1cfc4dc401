"""Seed 001, value refs for large optional data: an order carries a large invoice PDF and
a small customer snapshot as named values; the worker asks only for the customer."""

from __future__ import annotations

import trio
from _run import run

import flowactors
from flowactors import Client

seen: dict[str, int] = {}


def handle_customer_step(job: flowactors.Context) -> bytes:
    for name, data in job.values.items():
        seen[name] = len(data)
    return b"customer handled"


async def main(data_dir: str) -> None:
    invoice_pdf_bytes = b"%PDF-1.7 " + b"x" * 2_000_000
    customer_snapshot_bytes = b'{"name": "Ada", "tier": "gold"}'
    async with flowactors.open_engine(data_dir) as engine:
        orders = Client(engine).queue(type="order")
        await orders.enqueue(
            "order-1",
            payload=b"small routing bytes",
            values={"invoice": invoice_pdf_bytes, "customer": customer_snapshot_bytes},
        )
        worker = orders.worker(claim_values=["customer"])
        async with trio.open_nursery() as nursery:
            await nursery.start(worker.run, handle_customer_step)
            while (await orders.info()).get("completed", 0) < 1:
                await trio.sleep(0.01)
            worker.stop()
        stored = await engine.get_values("order-1", ["invoice"])
        print(f"hydrated {seen}; the invoice stayed stored ({len(stored['invoice']):,} bytes)")
        assert seen == {"customer": len(customer_snapshot_bytes)}


if __name__ == "__main__":
    run(main)
