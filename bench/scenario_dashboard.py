"""The `dashboard` scenario: what serving the dashboard costs the engine.

The lifecycle scenario's bulk run (create_many -> claim_due(1000) -> complete_many,
sync="always", default shards (1); 200k flows, 20k with --quick), alternately without and with the
dashboard served by the same Trio program and a browser-like poller: a thread that GETs
the overview page (the HTML, whose queries are a superset of what the page's script polls
at /api/overview) over TCP every 500 ms (100 ms with --quick, so a short run sees polls)
and checks each answer is 200. Runs alternate so that both see the same machine weather.
Reported: flows/s of each, the ratio of their medians (the issue's bar: with the poller,
within 5% of the figure without it) and the median of each pair's ratio, the polls
answered, and - a figure the machine's weather moves far less - the latency of one poll
against an idle engine holding the run's flows: it bounds the event-loop time a poll
costs, so idle latency / interval bounds the share of the loop the dashboard takes.
"""

from __future__ import annotations

import contextlib
import http.client
import statistics
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlsplit

import trio

import flowactors
from flowactors import CreateSpec, ops

from ._engine_util import FLOW_TYPE, WORKER, create_batches, flow_ids, frozen_inputs
from ._registry import register
from ._session import Floor, Metric, Session
from .scenario_lifecycle import _bulk

FULL_FLOWS, QUICK_FLOWS = 200_000, 20_000
POLL_S, QUICK_POLL_S = 0.5, 0.1


class Poller:
    """A thread that GETs `path` every `every` seconds until stopped (like a browser tab)."""

    def __init__(self, url: str, path: str, every: float) -> None:
        self.url, self.path, self.every = url, path, every
        self.polls = 0
        self.latencies: list[float] = []  # seconds per answered poll
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)

    def once(self) -> None:
        """One poll (blocking)."""
        parts = urlsplit(self.url)
        started = time.monotonic()
        conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=30)
        try:
            conn.request("GET", self.path)
            reply = conn.getresponse()
            reply.read()
            if reply.status != 200:
                self.errors.append(f"HTTP {reply.status}")
            self.polls += 1
            self.latencies.append(time.monotonic() - started)
        finally:
            conn.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            # OSError: the run ended and its server with it; the last poll finds no one.
            with contextlib.suppress(OSError):
                self.once()
            self._stop.wait(max(0.0, self.every - (time.monotonic() - started)))


@register("dashboard")
def dashboard_scenario(session: Session) -> None:
    """lifecycle bulk without / with the dashboard served and its overview polled."""
    n = QUICK_FLOWS if session.quick else FULL_FLOWS
    every = QUICK_POLL_S if session.quick else POLL_S
    session.section(
        f"lifecycle bulk, {n:,} flows, alternately without and with the dashboard's overview "
        f"polled every {every * 1000:g} ms"
    )
    batches = create_batches(flow_ids(n))
    samples: dict[str, list[float]] = {"without": [], "with": [], "polls": [], "latency": []}

    def one(polled: bool) -> float:
        poller: list[Poller] = []

        async def serve(engine: flowactors.Engine, nursery: trio.Nursery) -> None:
            url = await nursery.start(
                lambda task_status: ops.serve_dashboard(engine, port=0, task_status=task_status)
            )
            p = Poller(url, "/", every)
            p.start()
            poller.append(p)

        with session.scratch("dashboard") as path, frozen_inputs():
            try:
                b = trio.run(_bulk, Path(path), batches, serve if polled else None)
            finally:
                for p in poller:
                    p.stop()
        if poller:
            if poller[0].errors:
                raise RuntimeError(f"the poller saw errors: {poller[0].errors[:3]}")
            samples["polls"].append(poller[0].polls)
            samples["latency"].extend(poller[0].latencies)
        return b.flows / b.seconds

    session.progress("warm-up (without, with)")
    one(False)
    one(True)
    samples["polls"].clear()
    samples["latency"].clear()
    for r in range(session.repeats):
        session.progress(f"{r + 1}/{session.repeats}: without, then with the poller")
        samples["without"].append(one(False))
        samples["with"].append(one(True))

    metrics = {
        "without": Metric("dashboard_without_flows_per_s", "no dashboard", "flows/s"),
        "with": Metric(
            "dashboard_polled_flows_per_s", "dashboard served, overview polled", "flows/s"
        ),
    }
    pairs = [w / wo for wo, w in zip(samples["without"], samples["with"], strict=True)]
    session.measure(
        lambda: {metrics[k].key: samples[k].pop(0) for k in ("without", "with")},
        list(metrics.values()),
        what="recorded runs",
        warmup=False,
    )
    session.record(
        Metric(
            "dashboard_polled_vs_without",
            "polled / without (medians)",
            "ratio",
            Floor("dashboard_cost", ">=", 0.95, "within 5%"),
        ),
        session.value("dashboard_polled_flows_per_s")
        / session.value("dashboard_without_flows_per_s"),
    )
    session.record(
        Metric("dashboard_pair_ratio_median", "median of each pair's polled / without", "ratio"),
        statistics.median(pairs),
    )
    session.record(
        Metric("dashboard_polls_per_run", "overview polls answered per run (median)", "polls"),
        statistics.median(samples["polls"]),
    )
    session.record(
        Metric(
            "dashboard_busy_poll_latency_ms",
            "one poll during the run, request to answer (median; mostly queued behind batches)",
            "ms",
        ),
        statistics.median(samples["latency"]) * 1000,
    )
    idle = _idle_poll_seconds(session, batches)
    session.record(
        Metric(
            "dashboard_idle_poll_ms",
            f"one poll of an idle engine holding {n:,} flows (median of 20)",
            "ms",
        ),
        idle * 1000,
    )
    # An idle poll's latency bounds the event-loop time one poll costs (it also counts the
    # client thread and the socket): at one poll per `every` s, the loop's share is at most
    session.record(
        Metric(
            "dashboard_loop_share_bound", "  so polls take at most this share of the loop", "ratio"
        ),
        idle / every,
    )


def _idle_poll_seconds(session: Session, batches: Sequence[Sequence[CreateSpec]]) -> float:
    """Median latency of 20 sequential overview polls against an idle engine holding the
    run's flows (a thousand of them running, so the stuck-flows query has work)."""

    async def main(path: Path) -> float:
        async with flowactors.open_engine(path) as engine, trio.open_nursery() as nursery:
            for batch in batches:
                await engine.create_many(FLOW_TYPE, batch)
            await engine.claim_due(FLOW_TYPE, WORKER, limit=1000)
            url = await nursery.start(
                lambda task_status: ops.serve_dashboard(engine, port=0, task_status=task_status)
            )
            poller = Poller(url, "/", 0.0)
            times = []
            for _ in range(21):
                started = time.perf_counter()
                await trio.to_thread.run_sync(poller.once)
                times.append(time.perf_counter() - started)
            nursery.cancel_scope.cancel()
        return statistics.median(times[1:])

    session.progress("idle polls")
    with session.scratch("idle") as path:
        return trio.run(main, Path(path))
