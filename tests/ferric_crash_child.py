"""Child process for the ferric SIGKILL test: FerricStore's SDK producing jobs and a
thread-based SDK queue worker completing them, on an embedded flowactors engine, until the
parent kills it. A recording executor (ours, wrapped around flowactors.ferric's, between the
SDK and the engine) prints one line per acknowledged item, flushed after the reply:
`created <id>` for each OK item of FLOW.CREATE_MANY and `completed <id>` for each OK item
of FLOW.COMPLETE_MANY, so the parent knows what the engine promised.
"""

from __future__ import annotations

import sys
import threading
from typing import Any

from ferricstore import CreateItem, FlowClient, QueueClient

import flowactors.ferric as ferric

LEASE_MS = 500  # short, so the parent's drain reclaims what the killed worker held


class Recording:
    def __init__(self, inner: ferric.Executor) -> None:
        self._inner = inner
        self._lock = threading.Lock()

    def execute_command(self, *args: Any) -> Any:
        reply = self._inner.execute_command(*args)
        name = args[0]
        if name in ("FLOW.CREATE_MANY", "FLOW.COMPLETE_MANY"):
            ids = _item_ids(args)
            oks = reply if isinstance(reply, list) else [reply] * len(ids)
            kind = "created" if name == "FLOW.CREATE_MANY" else "completed"
            lines = "".join(f"{kind} {i}\n" for i, ok in zip(ids, oks, strict=True) if ok == "OK")
            with self._lock:
                sys.stdout.write(lines)
                sys.stdout.flush()
        return reply


def _item_ids(args: tuple[Any, ...]) -> list[str]:
    items = list(args[args.index("ITEMS") + 1 :])
    if args[0] == "FLOW.CREATE_MANY":  # id payload (AUTO)
        return [str(i) for i in items[0::2]]
    width = 4 if args[1] == "MIXED" else 3  # id [partition] lease fencing
    return [str(i) for i in items[0::width]]


def main(data_dir: str, prefix: str) -> None:
    store = ferric.embedded(data_dir, shards=2)
    client = QueueClient(FlowClient(Recording(store.executor)))
    jobs = client.queue(type="job")
    jobs.worker(batch_size=15, lease_ms=LEASE_MS, idle_sleep_s=0.001).start(lambda job: b"ok")
    n = 0
    while True:
        jobs.enqueue_many(
            [CreateItem(id=f"{prefix}-{n + i}", payload=b"p" * 64) for i in range(20)]
        )
        n += 20


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
