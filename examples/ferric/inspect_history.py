"""Seed 001, "Inspecting History And State", run by FerricStore's own SDK on an embedded
flowactors engine.

Differences from the seed, both from the SDK (0.13), not from the engine: the SDK's
workflows have no `children()`; its `by_parent()` lists a parent's children. And its
listing helpers require a `partition_key`: flows created without one are found with
`flowactors.ferric.AUTO_ANY` ("__flow_auto__", every auto-partitioned flow).

Run: python examples/ferric/inspect_history.py [data_dir]
"""

from __future__ import annotations

from _harness import data_dir, stop_when
from ferricstore import ChildSpec, FlowClient, WorkflowClient, complete, fail, transition

import flowactors.ferric
from flowactors.ferric import AUTO_ANY

with flowactors.ferric.embedded(data_dir()) as store:
    # The seed: client = WorkflowClient.from_url("redis://127.0.0.1:6379/0")
    client = WorkflowClient(FlowClient(store.executor))
    order = client.workflow(type="order", initial_state="created")

    @order.state("created")
    def created(job):
        if job.payload == b"bad card":
            return fail(error=b"card declined")
        job.flow.spawn_children(
            [ChildSpec(id=f"{job.id}:line:{n}", type="order-line", payload=b"") for n in (1, 2)],
            wait_state="packing",
        )
        return transition("packing")

    line = client.workflow(type="order-line", initial_state="queued")

    @line.state("queued")
    def pack(job):
        return complete(result=b"packed")

    order.start("order-1", payload=b"good card", idempotent=True)
    order.start("order-2", payload=b"bad card", idempotent=True)
    with stop_when(lambda: order.get("order-2").state == "failed"):
        order.worker(states=["created"]).run()
    with stop_when(lambda: order.get("order-1").state == "completed"):
        line.worker(states=["queued"]).run()

    record = order.get("order-1")
    history = order.history("order-1")
    children = order.by_parent("order-1", partition_key=record.partition_key)
    failed = order.terminals(state="failed", count=100, partition_key=AUTO_ANY)
    print(f"order-1 {record.state}; history {[fields['event'] for _id, fields in history]}")
    print(f"children {sorted((c.id, c.state) for c in children)}")
    print(f"failed {[(f.id, f.state) for f in failed]}")
