"""Seed 001, "Signals And External Events" (FerricFlow shape), run by FerricStore's own SDK
on an embedded flowactors engine. Only the client's construction differs from the seed.

Run: python examples/ferric/approval_signal.py [data_dir]
"""

from __future__ import annotations

from _harness import data_dir
from ferricstore import FlowClient, WorkflowClient

import flowactors.ferric

with flowactors.ferric.embedded(data_dir()) as store:
    # The seed: client = WorkflowClient.from_url("redis://127.0.0.1:6379/0")
    client = WorkflowClient(FlowClient(store.executor))
    approval = client.workflow(type="approval", initial_state="waiting")
    approval.start("approval-1", payload=b"invoice:123", idempotent=True)
    for _delivery in range(2):  # delivered twice: the idempotency key makes it count once
        approval.signal(
            "approval-1",
            signal="approved",
            if_state="waiting",
            transition_to="approved",
            idempotency_key="approve-approval-1",
        )

    record = approval.get("approval-1")
    events = [fields["event"] for _id, fields in approval.history("approval-1")]
    print(f"approval-1 {record.state}; history {events}")
