"""A process running FerricStore's SDK (producer and thread-based queue worker) on
flowactors.ferric is SIGKILLed at random moments; no acknowledged job is lost.

The child (tests/ferric_crash_child.py) reports every acknowledged create and completion.
After each kill the parent reopens the data directory: every acknowledged job exists, and
every acknowledged completion is completed with its result. At the end an SDK worker in
this process drains the queue: every job ever acknowledged as created gets completed
(leases the killed workers held are reclaimed once they expire), so none was lost.
"""

from __future__ import annotations

import random
import time
from pathlib import Path

import pytest
from ferricstore import FlowClient, QueueClient
from sigkill_helpers import run_until_killed

import flowactors.ferric as ferric

CHILD = Path(__file__).with_name("ferric_crash_child.py")


def _run_until_killed(data_dir: Path, prefix: str, rng: random.Random) -> list[str]:
    return run_until_killed(CHILD, data_dir, prefix, rng.randint(20, 400))


def _verify(data_dir: Path, created: set[str], completed: set[str]) -> None:
    with ferric.embedded(data_dir, shards=2) as store:
        client = FlowClient(store.executor)
        for job_id in created:
            assert client.get(job_id) is not None, f"acknowledged create of {job_id} lost"
        for job_id in completed:
            record = client.get(job_id)
            assert record is not None and record.state == "completed", f"{job_id}: {record}"
            assert record.result == "ok"


def _drain(data_dir: Path, created: set[str]) -> int:
    with ferric.embedded(data_dir, shards=2) as store:
        client = QueueClient(FlowClient(store.executor))
        jobs = client.queue(type="job")
        worker = jobs.worker(batch_size=100, idle_sleep_s=0.005).start(lambda job: b"ok")
        deadline = time.monotonic() + 60
        try:
            while True:
                info = client.flow.info("job")
                if info.get("queued", 0) == 0 and info.get("inflight", 0) == 0:
                    break
                assert time.monotonic() < deadline, f"not drained: {info}"
                time.sleep(0.01)
        finally:
            worker.stop()
            worker.join(30)
        for job_id in created:
            record = client.flow.get(job_id)
            assert record is not None and record.state == "completed", f"{job_id}: {record}"
        return int(info.get("completed", 0))


def test_sigkill_of_an_sdk_worker_loses_no_acknowledged_job(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    kills = 40 if request.config.getoption("--long") else 4
    rng = random.Random(20261203)
    created: set[str] = set()
    completed: set[str] = set()
    for round_ in range(kills):
        for line in _run_until_killed(tmp_path, f"r{round_}", rng):
            kind, job_id = line.split()
            (created if kind == "created" else completed).add(job_id)
        _verify(tmp_path, created, completed)
    assert created and completed, "the child acknowledged no creates or no completions"
    total = _drain(tmp_path, created)
    print(f"\nferric sigkill: {kills} kills, {len(created)} acknowledged jobs, {total} completed")
