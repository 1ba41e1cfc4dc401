"""Seed 001, durable queue item: enqueue emails idempotently; a worker sends them."""

from __future__ import annotations

import trio
from _run import run

import flowactors
from flowactors import Client

sent: list[bytes] = []


def send_email(job: flowactors.Context) -> bytes:
    # A sync handler: the worker runs it in a thread.
    assert job.payload is not None
    sent.append(job.payload)
    return b"sent"


async def main(data_dir: str) -> None:
    async with flowactors.open_engine(data_dir) as engine:
        emails = Client(engine).queue(type="email")
        for i in range(20):
            await emails.enqueue(f"email-{i}", payload=f"user-{i}".encode(), idempotent=True)
        await emails.enqueue("email-0", payload=b"user-0", idempotent=True)  # a replay: no-op

        worker = emails.worker(state="queued", concurrency=100, batch_size=500)
        async with trio.open_nursery() as nursery:
            await nursery.start(worker.run, send_email)
            while (await emails.info()).get("completed", 0) < 20:
                await trio.sleep(0.01)
            worker.stop()
        stats = worker.statistics()
        print(
            f"sent {len(sent)} emails; completed {stats.completed}, lost leases {stats.lost_leases}"
        )
        assert len(sent) == 20 and stats.completed == 20


if __name__ == "__main__":
    run(main)
