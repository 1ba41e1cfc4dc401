"""/metrics: the Prometheus text format parses, and the counters move with the work done."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio
from engine_helpers import FakeClock
from ops_helpers import arequest, seed
from prometheus_client.parser import text_string_to_metric_families

import flowactors as fa
from flowactors import ops


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def _total(
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str
) -> float:
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= set(ls))


async def test_metrics_move_with_work(tmp_path: Path) -> None:
    clock = FakeClock()
    opened = fa.open_engine(tmp_path / "d", shards=2, clock=clock)
    async with opened as engine, trio.open_nursery() as n:
        url = await n.start(
            lambda task_status: ops.serve_dashboard(engine, port=0, task_status=task_status)
        )
        before = _samples((await arequest(url, "/metrics")).text)
        assert _total(before, "flowactors_commits_total") == 0
        await seed(engine)
        reply = await arequest(url, "/metrics")
        assert reply.status == 200 and reply.headers["content-type"].startswith("text/plain")
        after = _samples(reply.text)
        assert _total(after, "flowactors_flows", type="order", state="failed") == 1
        assert _total(after, "flowactors_flows", type="mail", state="queued") == 2
        assert _total(after, "flowactors_commands_total", command="Create", outcome="ok") >= 6
        assert _total(after, "flowactors_commands_total", command="Fail", outcome="ok") == 1
        assert _total(after, "flowactors_history_events_total", event="claimed") == 4
        assert _total(after, "flowactors_commits_total") > 0
        assert _total(after, "flowactors_fsyncs_total") > 0
        assert _total(after, "flowactors_log_bytes") > 0
        assert _total(after, "flowactors_commit_batch_frames_count") == _total(
            after, "flowactors_commits_total"
        )
        assert _total(after, "flowactors_commit_batch_frames_bucket", le="+Inf") > 0
        syncs = _total(after, "flowactors_fdatasync_seconds_count")
        assert syncs == _total(after, "flowactors_fsyncs_total") and syncs > 0
        assert _total(after, "flowactors_fdatasync_seconds_sum") > 0
        assert _total(after, "flowactors_request_queue_depth") == 0
        assert _total(after, "flowactors_courier_backlog") == 0
        paths = {
            dict(labels)["path"]
            for (name, labels), value in after.items()
            if name == "flowactors_commit_sync_path" and value == 1
        }
        assert paths and paths <= {"aio", "thread"}  # (a machine without AIO: the thread)

        # errors count under their class; retries, reclaims and dead letters move
        with pytest.raises(fa.FlowTerminal):
            await engine.cancel("o-done")
        await engine.create("r-1", "job", run_at_ms=0)
        [job] = await engine.claim_due("job", "w", limit=1, lease_ms=1)
        await engine.retry("r-1", job.lease_token, job.fencing_token, delay_ms=0, max_retries=0)
        await engine.create("r-2", "job")
        [job] = await engine.claim_due("job", "w", limit=1, lease_ms=1)
        clock.advance(10)  # the lease runs out
        assert await engine.reclaim("job", "w2", limit=1)
        await engine.create("r-3", "job")
        [job] = await engine.claim_due("job", "w", states=["queued"], limit=1)
        await engine.retry(job.id, job.lease_token, job.fencing_token, max_retries=5)
        await engine.compact()
        later = _samples((await arequest(url, "/metrics")).text)
        assert (
            _total(later, "flowactors_commands_total", command="Cancel", outcome="FlowTerminal")
            == 1
        )
        assert _total(later, "flowactors_dead_letters_total") == 1  # r-1 out of retries
        assert _total(later, "flowactors_retries_total") == 1  # r-3
        assert _total(later, "flowactors_reclaims_total") == 1
        assert _total(later, "flowactors_lease_expiries_total") == 1
        assert _total(later, "flowactors_merge_runs_total") >= 1
        assert _total(later, "flowactors_commits_total") > _total(after, "flowactors_commits_total")
        n.cancel_scope.cancel()


async def test_collector_in_a_registry_of_ones_own(tmp_path: Path) -> None:
    async with fa.open_engine(tmp_path / "d", shards=1) as engine:
        registry, collector = ops.registry_for(engine)
        await engine.create("a", "t")
        await collector.refresh()
        assert registry.get_sample_value("flowactors_flows", {"type": "t", "state": "queued"}) == 1
        assert registry.get_sample_value("flowactors_stuck_flows", {"type": "t"}) == 0
