"""Seed 001, retry after failure: a rate-limited charge retries with exponential backoff
(durably scheduled), then moves on to shipping."""

from __future__ import annotations

import trio
from _run import run

import flowactors
from flowactors import Client, ExceptionPolicy, RetryPolicy, complete, retry, transition

attempts: list[int] = []


async def main(data_dir: str) -> None:
    async with flowactors.open_engine(data_dir) as engine:
        order = Client(engine).workflow(
            type="order",
            initial_state="charge",
            retry_policy=RetryPolicy(max_retries=5, backoff="exponential", base_ms=20, max_ms=200),
        )

        @order.state("charge", exception_policy=ExceptionPolicy.RETRY)
        def charge(job: flowactors.Context) -> flowactors.Outcome:
            attempts.append(job.attempts)
            if job.attempts < 2:
                return retry(error=b"rate limited")  # the first two calls are rate limited
            if job.attempts == 2:
                raise ConnectionError("gateway timeout")  # an exception retries too
            return transition("ship")

        @order.state("ship")
        def ship(job: flowactors.Context) -> flowactors.Outcome:
            return complete(result=b"shipped")

        await order.start("order-1", payload=b"card:4242")
        worker = order.worker(idle_ms=5, max_idle_ms=20)
        async with trio.open_nursery() as nursery:
            await nursery.start(worker.run)
            while (await order.info()).get("completed", 0) < 1:
                await trio.sleep(0.01)
            worker.stop()
        flow = await order.get("order-1")
        assert flow is not None and flow.state == "completed"
        retries = [e for e in await order.history("order-1") if e.name == "retry"]
        print(f"charged after attempts {attempts}; {len(retries)} durable retries; {flow.result!r}")
        assert attempts == [0, 1, 2, 3]


if __name__ == "__main__":
    run(main)
