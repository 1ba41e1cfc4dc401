# Prometheus metrics of an engine, computed at scrape time.
#
# Theory of operation. Nothing here instruments the engine's hot path: the shards already
# keep plain counters (requests, commits, commands by kind and outcome, history events by
# name, the wal's batch-size and fdatasync histograms, queue and outbox sizes), and
# `engine.statistics()` copies them out without a round trip. `EngineCollector.collect()`
# turns one such copy into metric families when Prometheus scrapes. The only figures that
# need the shards' help - flows by type and state, and stuck flows - come from two async
# queries that `refresh()` runs; the dashboard's /metrics handler awaits `refresh()` before
# each scrape, and a program that serves its own registry calls it on its own schedule.
#
# Why prometheus_client rather than OpenTelemetry: one small pure-Python dependency, custom
# collectors that read a snapshot (no instrument calls on hot paths), and a text format that
# Prometheus scrapes directly and that the OpenTelemetry Collector's Prometheus receiver
# also ingests - so it serves both worlds.
#
# Approximations (also in docs/operations.md):
# - commands_total counts requests answered by the shard actors; a batch of items (a
#   courier delivery, complete_many's slow items) counts once, under its first item's
#   command, with the request's own outcome; queries count as "Query".
# - lease expiries are counted when a claim reclaims the flow (event "reclaimed"); a lease
#   that expired and was never reclaimed shows in flowactors_stuck_flows instead, and one
#   that exhausted max_reclaims counts as a dead letter.
# - dead letters are "exhausted" events: retries or reclaims out of budget.
# - stuck_flows saturates at STUCK_CAP per type (one bounded query each).
# - history events are counted when applied to memory, before their commit: a commit that
#   fails breaks the shard (flowactors_shard_broken goes to 1), so the excess never grows.
from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from .. import Engine

STUCK_CAP = 1000
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class EngineCollector(Collector):
    """A Prometheus collector for one engine. Register it in any CollectorRegistry; call
    `await refresh()` before scrapes to update flows by type/state and stuck flows."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._counts: dict[str, dict[str, int]] = {}
        self._stuck: dict[str, int] = {}

    async def refresh(self) -> None:
        counts = await self.engine.counts()
        stuck = {}
        for flow_type, per in counts.items():
            if per.get("running"):
                page = await self.engine.stuck(flow_type, limit=STUCK_CAP)
                stuck[flow_type] = len(page.items)
            else:
                stuck[flow_type] = 0
        self._counts, self._stuck = counts, stuck

    def collect(self) -> Iterator[Metric]:
        shards = self.engine.statistics()["shards"]
        yield from _flow_gauges(self._counts, self._stuck)
        yield from _command_counters(shards)
        yield from _shard_metrics(shards)
        yield from _histograms(shards)


def _flow_gauges(counts: dict[str, dict[str, int]], stuck: dict[str, int]) -> Iterator[Metric]:
    flows = GaugeMetricFamily(
        "flowactors_flows", "Flows by type and state (running included)", labels=["type", "state"]
    )
    for flow_type, per in counts.items():
        for state, n in per.items():
            flows.add_metric([flow_type, state], n)
    yield flows
    stuck_g = GaugeMetricFamily(
        "flowactors_stuck_flows",
        f"Running flows whose lease expired and that no claim reclaimed (capped at {STUCK_CAP})",
        labels=["type"],
    )
    for flow_type, n in stuck.items():
        stuck_g.add_metric([flow_type], n)
    yield stuck_g


_EVENT_COUNTERS = (
    ("flowactors_retries_total", "Retries scheduled (history event retry)", ("retry",)),
    (
        "flowactors_reclaims_total",
        "Flows claimed again after their lease expired (history event reclaimed)",
        ("reclaimed",),
    ),
    (
        "flowactors_lease_expiries_total",
        "Expired leases seen by claims (approximated by reclaims)",
        ("reclaimed",),
    ),
    (
        "flowactors_dead_letters_total",
        "Flows out of retry or reclaim budget, moved to exhausted_to (history event exhausted)",
        ("exhausted",),
    ),
)


def _command_counters(shards: list[dict[str, Any]]) -> Iterator[Metric]:
    commands = CounterMetricFamily(
        "flowactors_commands",
        "Requests answered by the shard actors, by command and outcome (ok or error class)",
        labels=["command", "outcome"],
    )
    for (kind, outcome), n in sorted(_summed(s["commands"] for s in shards).items()):
        commands.add_metric([kind, outcome], n)
    yield commands
    events = _summed(s["events"] for s in shards)
    history = CounterMetricFamily(
        "flowactors_history_events", "History events written, by name", labels=["event"]
    )
    for name, n in sorted(events.items()):
        history.add_metric([name], n)
    yield history
    for metric, doc, names in _EVENT_COUNTERS:
        yield CounterMetricFamily(
            metric.removesuffix("_total"), doc, value=sum(events.get(n, 0) for n in names)
        )
    maintenance = _summed(s["maintenance"] for s in shards)
    for key, doc in (
        ("passes", "Retention and max_active_ms maintenance passes"),
        ("active_timeouts", "Live flows failed for exceeding max_active_ms"),
        ("deleted", "Terminal flows deleted by retention"),
    ):
        yield CounterMetricFamily(
            f"flowactors_maintenance_{key}", doc, value=maintenance.get(key, 0)
        )


def _summed(dicts: Iterable[dict[Any, int]]) -> dict[Any, int]:
    out: dict[Any, int] = {}
    for d in dicts:
        for key, n in d.items():
            out[key] = out.get(key, 0) + n
    return out


def _shard_metrics(shards: list[dict[str, Any]]) -> Iterator[Metric]:
    gauge, counter = GaugeMetricFamily, CounterMetricFamily
    per_shard: list[tuple[type, str, str, Callable[[dict[str, Any]], float]]] = [
        (gauge, "shard_flows", "Flows held by the shard", lambda s: s["flows"]),
        (counter, "requests", "Requests answered", lambda s: s["requests"]),
        (counter, "commits", "Group commits", lambda s: s["log"].commits),
        (counter, "fsyncs", "fdatasync calls", lambda s: s["log"].fsyncs),
        (
            counter,
            "log_written_bytes",
            "Bytes appended to the log",
            lambda s: s["log"].bytes_written,
        ),
        (counter, "log_records_written", "Log records written", lambda s: s["log"].records_written),
        (gauge, "log_bytes", "Log size on disk", lambda s: s["log"].total_bytes),
        (gauge, "log_live_bytes", "Log bytes the keydir references", lambda s: s["log"].live_bytes),
        (gauge, "log_segments", "Log segment files", lambda s: s["log"].segments),
        (counter, "merge_runs", "Log merges (compactions) run", lambda s: s["log"].merges),
        (
            gauge,
            "request_queue_depth",
            "Requests waiting in the channel",
            lambda s: s["queue_depth"],
        ),
        (gauge, "courier_backlog", "Cross-shard messages not yet delivered", lambda s: s["outbox"]),
        (gauge, "shard_broken", "1 if the shard is poisoned", lambda s: int(s["broken"])),
    ]
    for kind, name, doc, read in per_shard:
        metric = kind(f"flowactors_{name}", doc, labels=["shard"])
        for s in shards:
            metric.add_metric([str(s["index"])], read(s))
        yield metric
    # How commits reach the disk (aio, thread, inline): a thread where AIO was expected is
    # worth an alert, since it costs single commands their tail latency (wal/_aio.py).
    via = GaugeMetricFamily(
        "flowactors_commit_sync_path",
        "1 for the way the shard's last commit was fdatasync'd",
        labels=["shard", "path"],
    )
    for s in shards:
        if s["log"].sync_via:
            via.add_metric([str(s["index"]), s["log"].sync_via], 1)
    yield via


def _histograms(shards: list[dict[str, Any]]) -> Iterator[Metric]:
    batch = _summed(s["log"].batch_frames_histogram for s in shards)
    frames = sum(s["log"].frames_written for s in shards)
    yield _power_histogram(
        "flowactors_commit_batch_frames", "Frames per group commit", batch, 1.0, frames
    )
    syncs = _summed(s["log"].sync_micros_histogram for s in shards)
    seconds = sum(s["log"].sync_seconds_total for s in shards)
    yield _power_histogram(
        "flowactors_fdatasync_seconds", "fdatasync latency of commits", syncs, 1e-6, seconds
    )


def _power_histogram(
    name: str, doc: str, counts: dict[int, int], scale: float, total: float
) -> HistogramMetricFamily:
    """A histogram from power-of-two buckets (bucket b holds values <= b): every power of
    two from 1 to the largest seen, cumulative, so bucket bounds stay stable as it grows."""
    top = max(counts, default=1)
    bounds = [1 << i for i in range(top.bit_length())]
    buckets: list[tuple[str, float]] = []
    running = 0
    for bound in bounds:
        running += counts.get(bound, 0)
        buckets.append((_le(bound * scale), running))
    buckets.append(("+Inf", running))
    metric = HistogramMetricFamily(name, doc)
    metric.add_metric([], buckets, sum_value=total)
    return metric


def _le(value: float) -> str:
    return repr(float(value))


def registry_for(engine: Engine) -> tuple[CollectorRegistry, EngineCollector]:
    """A fresh registry holding only this engine's collector."""
    registry = CollectorRegistry(auto_describe=False)
    collector = EngineCollector(engine)
    registry.register(collector)
    return registry, collector


async def scrape(collector: EngineCollector, registry: CollectorRegistry) -> bytes:
    """Refresh, then render the Prometheus text format."""
    await collector.refresh()
    body: bytes = generate_latest(registry)
    return body
