"""Seed 001, state-machine workflow: an order goes created -> charged -> completed, each
state a handler returning an explicit transition or completion."""

from __future__ import annotations

import trio
from _run import run

import flowactors
from flowactors import Client, complete, transition

charged_orders: list[str] = []


async def main(data_dir: str) -> None:
    async with flowactors.open_engine(data_dir) as engine:
        order = Client(engine).workflow(type="order", initial_state="created")

        @order.state("created")
        def created(job: flowactors.Context) -> flowactors.Outcome:
            charged_orders.append(job.id)  # charge_card(job.payload)
            return transition("charged")

        @order.state("charged")
        async def charged(job: flowactors.Context) -> flowactors.Outcome:
            return complete(result=b"ok")  # send_receipt(job.id)

        await order.start("order-1", payload=b"order payload", idempotent=True)
        worker = order.worker(states=["created", "charged"])
        async with trio.open_nursery() as nursery:
            await nursery.start(worker.run)
            while (await order.info()).get("completed", 0) < 1:
                await trio.sleep(0.01)
            worker.stop()
        record = await order.get("order-1")
        assert record is not None and record.state == "completed" and record.result == b"ok"
        print("order-1", record.state, [e.name for e in await order.history("order-1")])


if __name__ == "__main__":
    run(main)
