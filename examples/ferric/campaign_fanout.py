"""Seed 001, "Fanout" (FerricFlow shape), run by FerricStore's own SDK on an embedded
flowactors engine. Only the client's construction differs from the seed.

The parent waits in `wait_state` ("done") while its children run, and moves on to the
group's success state (default "completed") once every child completed. Its handler's
`transition("waiting_for_children")` comes after the spawn already parked it: the executor
answers it OK without effect (see docs/ferric.md, "spawn_children then transition").

Run: python examples/ferric/campaign_fanout.py [data_dir]
"""

from __future__ import annotations

from _harness import data_dir, stop_when
from ferricstore import ChildSpec, FlowClient, WorkflowClient, complete, transition

import flowactors.ferric

device_ids = ["d1", "d2", "d3"]

with flowactors.ferric.embedded(data_dir()) as store:
    # The seed: client = WorkflowClient.from_url("redis://127.0.0.1:6379/0")
    client = WorkflowClient(FlowClient(store.executor))
    campaign = client.workflow(type="campaign", initial_state="dispatch")

    @campaign.state("dispatch")
    def dispatch(job):
        job.flow.spawn_children(
            [
                ChildSpec(
                    id=f"device:{device_id}:cmd:{job.id}",
                    type="device-command",
                    payload=device_id.encode(),
                )
                for device_id in device_ids
            ],
            wait_state="done",
        )
        return transition("waiting_for_children")

    device = client.workflow(type="device-command", initial_state="queued")

    @device.state("queued")
    def send_command(job):
        return complete(result=b"ack:" + job.payload)

    campaign.start("campaign-1", payload=b"firmware 1.2", idempotent=True)
    with stop_when(lambda: campaign.get("campaign-1").state not in ("dispatch", "running")):
        campaign.worker(states=["dispatch"]).run()
    parked = campaign.get("campaign-1").state
    with stop_when(lambda: campaign.get("campaign-1").state == "completed"):
        device.worker(states=["queued"]).run()

    record = campaign.get("campaign-1")
    children = campaign.by_parent("campaign-1", partition_key=record.partition_key)
    print(
        f"campaign-1 waited in {parked!r}, then {record.state}; children "
        f"{sorted((c.id, c.state) for c in children)}"
    )
