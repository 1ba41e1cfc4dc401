"""Seed 001, "Durable Queue Item" (FerricFlow shape), run by FerricStore's own SDK on an
embedded flowactors engine. Only the client's construction differs from the seed.

Run: python examples/ferric/email_queue.py [data_dir]
"""

from __future__ import annotations

from _harness import data_dir, stop_when
from ferricstore import FlowClient, QueueClient

import flowactors.ferric

sent: list[object] = []


def send(payload: object) -> None:
    sent.append(payload)


with flowactors.ferric.embedded(data_dir()) as store:
    # The seed: client = QueueClient.from_url("redis://127.0.0.1:6379/0")
    client = QueueClient(FlowClient(store.executor))
    emails = client.queue(type="email")
    emails.enqueue("email-1", payload=b"user-1", idempotent=True)

    def send_email(job):
        send(job.payload)
        return b"sent"

    with stop_when(lambda: emails.client.get("email-1").state == "completed"):
        emails.worker(state="queued", concurrency=100, batch_size=500).run(send_email)

    record = emails.client.get("email-1")
    print(f"email-1 {record.state}, result {record.result!r}, handler ran {len(sent)} time(s)")
