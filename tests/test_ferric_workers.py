"""FerricStore's own workers on flowactors.ferric: the thread-based sync queue worker (several
at once), the asyncio-based async queue worker, and their exception policies (retry, fail).
Waits are bounded; the SDK's workers poll when idle, so the checks poll too."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from ferricstore import (
    AsyncFlowClient,
    AsyncQueueClient,
    CreateItem,
    ExceptionPolicy,
    FlowClient,
    QueueClient,
    RetryPolicy,
)

import flowactors.ferric as ferric

DEADLINE_S = 60.0


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ferric.Embedded]:
    with ferric.embedded(tmp_path / "data", shards=2) as embedded:
        yield embedded


def wait_for(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def test_sync_workers_in_threads_complete_every_job_once(store: ferric.Embedded) -> None:
    client = QueueClient(FlowClient(store.executor))
    jobs = client.queue(type="job")
    n = 400
    for start in range(0, n, 100):
        jobs.enqueue_many([CreateItem(id=f"j{i}", payload=b"x") for i in range(start, start + 100)])
    seen: Counter[str] = Counter()
    lock = threading.Lock()

    def handle(job: Any) -> bytes:
        with lock:
            seen[job.id] += 1
        return job.id.encode()

    workers = [jobs.worker(concurrency=8, batch_size=50).start(handle) for _ in range(4)]
    try:
        wait_for(lambda: client.flow.info("job").get("completed") == n)
    finally:
        for worker in workers:
            worker.stop()
        for worker in workers:
            worker.join(DEADLINE_S)
    assert len(seen) == n and set(seen.values()) == {1}
    assert client.flow.get("j7").result == "j7"


def test_async_worker_on_the_async_executor(store: ferric.Embedded) -> None:
    n = 120

    async def main() -> dict[str, Any]:
        client = AsyncQueueClient(AsyncFlowClient(store.async_executor))
        jobs = client.queue(type="mail")
        await jobs.enqueue_many([CreateItem(id=f"m{i}", payload=b"hi") for i in range(n)])
        handled: list[str] = []

        async def handle(job: Any) -> bytes:
            handled.append(job.id)
            await asyncio.sleep(0)
            return b"sent"

        worker = jobs.worker(concurrency=16, batch_size=40)
        task = asyncio.create_task(worker.run(handle))
        try:
            async with asyncio.timeout(DEADLINE_S):
                while (await jobs.client.info("mail")).get("completed") != n:
                    await asyncio.sleep(0.005)
        finally:
            worker.stop()
            await asyncio.wait_for(task, DEADLINE_S)
        assert sorted(handled) == sorted(f"m{i}" for i in range(n))
        info: dict[str, Any] = await jobs.client.info("mail")
        return info

    info = asyncio.run(main())
    assert info["completed"] == n and info["inflight"] == 0


def test_an_exception_retries_then_the_job_completes(store: ferric.Embedded) -> None:
    client = QueueClient(FlowClient(store.executor))
    jobs = client.queue(type="flaky")
    jobs.install_policy(retry_policy=RetryPolicy(max_retries=5, backoff="fixed", base_ms=1))
    jobs.enqueue("f1", payload=b"x")
    attempts: list[int] = []

    def handle(job: Any) -> bytes:
        attempts.append(1)
        if len(attempts) < 3:
            raise RuntimeError("flaky dependency")
        return b"ok"

    worker = jobs.worker(idle_sleep_s=0.005).start(handle)
    try:
        wait_for(lambda: client.flow.get("f1").state == "completed")
    finally:
        worker.stop()
        worker.join(DEADLINE_S)
    history = client.flow.history("f1")
    retries = [fields for _id, fields in history if fields["event"] == "retry"]
    assert len(attempts) == 3 and len(retries) == 2


def test_exception_policy_fail_fails_the_job(store: ferric.Embedded) -> None:
    client = QueueClient(FlowClient(store.executor))
    jobs = client.queue(type="doomed")
    jobs.enqueue("d1", payload=b"x")

    def handle(job: Any) -> bytes:
        raise ValueError("bad input")

    worker = jobs.worker(exception_policy=ExceptionPolicy.FAIL, idle_sleep_s=0.005).start(handle)
    try:
        wait_for(lambda: client.flow.get("d1").state == "failed")
    finally:
        worker.stop()
        worker.join(DEADLINE_S)
    assert b"bad input" in client.flow.get("d1").error.encode()


def test_async_workflow_worker_runs_a_state_machine(store: ferric.Embedded) -> None:
    from ferricstore import AsyncWorkflowClient, complete, transition

    async def main() -> Any:
        client = AsyncWorkflowClient(AsyncFlowClient(store.async_executor))
        order = client.workflow(
            type="order", states=["created", "charged"], initial_state="created"
        )

        @order.state("created")
        async def created(job: Any) -> Any:
            return transition("charged")

        @order.state("charged")
        async def charged(job: Any) -> Any:
            return complete(result=b"ok:" + job.id.encode())  # compact claims: no payload

        for i in range(5):
            await order.start_flow(f"o{i}", payload=str(i).encode(), idempotent=True)
        task = asyncio.create_task(order.run())  # an async workflow is its own worker
        try:
            async with asyncio.timeout(DEADLINE_S):
                while (await client.flow.info("order")).get("completed") != 5:
                    await asyncio.sleep(0.005)
        finally:
            order.stop()
            await asyncio.wait_for(task, DEADLINE_S)
        return await client.flow.get("o3")

    record = asyncio.run(main())
    assert record.state == "completed" and record.result == "ok:o3"
