"""Seed 001 fanout (and seed 000's children): a campaign spawns one child flow per device,
waits for all of them, then completes (needs the engine coordination API, issue 4)."""

from __future__ import annotations

import trio
from _run import run

import flowactors
from flowactors import Client, spawn

DEVICES = ["d1", "d2", "d3"]


async def main(data_dir: str) -> None:
    async with flowactors.open_engine(data_dir) as engine:
        client = Client(engine)
        campaign = client.workflow(type="campaign", initial_state="dispatch")
        device = client.workflow(type="device-command", initial_state="queued")

        @campaign.state("dispatch")
        def dispatch(job: flowactors.Context) -> flowactors.Outcome:
            return spawn(
                [
                    device.child(
                        f"device:{d}:cmd:{job.id}",
                        payload=d.encode(),
                        partition_key=job.partition_key,  # children live on the parent's shard
                    )
                    for d in DEVICES
                ],
                group_id="devices",
                wait="all",
                wait_state="waiting_for_children",
                success_state="done",
                failure_state="some_failed",
            )
            # (an async handler may instead `await job.spawn_children([...], ...)`)

        @campaign.state("done")
        def done(job: flowactors.Context) -> bytes:
            return b"all devices commanded"

        @device.state("queued")
        def command(job: flowactors.Context) -> bytes:
            return b"ack from " + (job.payload or b"")

        await campaign.start("campaign-1")
        workers = [campaign.worker(), device.worker()]
        async with trio.open_nursery() as nursery:
            for worker in workers:
                await nursery.start(worker.run)
            while (await campaign.info()).get("completed", 0) < 1:
                await trio.sleep(0.01)
            for worker in workers:
                worker.stop()
        children = await campaign.children("campaign-1")
        print("campaign-1 completed; children:", sorted((c.id, c.state) for c in children))
        assert {c.state for c in children} == {"completed"}


if __name__ == "__main__":
    run(main)
