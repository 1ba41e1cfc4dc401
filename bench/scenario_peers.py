"""The `peers` scenario: the same durable job lifecycle on flowactors and on installed peers.

N jobs (20k; 1k with --quick) are enqueued, then each is claimed, run as a no-op and
acknowledged; jobs/s is N over both phases, timed with `time.perf_counter` and measured on a
fresh data directory per run. Every system is configured durably, and its durability
settings are read back from it (not assumed) and printed beside its figure:

- flowactors: `create_many` (1000 per call) -> `claim_due(limit=1000)` -> `complete_many`,
  sync="always" (4 shards; every acknowledged command batch fdatasynced), as `lifecycle`.
- huey (`huey` installed): `SqliteHuey(fsync=True, results=False)`, a no-op task enqueued N
  times (one commit each), then an in-process consumer loop `dequeue()` -> `execute()`, as
  the consumer's worker does; huey's dequeue deletes the row in one transaction (claim and
  ack in one commit; huey is documented at-most-once, so there is no separate ack).
- persist-queue (`persist-queue` installed): `SQLiteAckQueue`, `put` N times, then
  `get(raw=True)` -> `ack(id=...)` per job (one commit each). The queue sets only
  `journal_mode=WAL`; `synchronous` is SQLite's built-in default, read back with PRAGMA.

A peer that is not importable is skipped and named as "not installed"; procrastinate and RQ
are only looked for (a PostgreSQL / Redis listening on localhost) and never driven here.
Ratios are flowactors' jobs/s over each peer's; the floor asks flowactors >= 10x the best
installed peer, and is not evaluated (no key) when no peer is installed. Compare with the
raw fdatasync rate of the same run: SQLite at synchronous=FULL in WAL mode syncs per commit.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio

import flowactors
from flowactors import Ack, CreateSpec

from ._engine_util import FLOW_TYPE, WORKER, create_batches, flow_ids, frozen_inputs, fsyncs
from ._registry import register
from ._session import Floor, Metric, Session

FULL_JOBS = 20_000
QUICK_JOBS = 1_000
CLAIM_LIMIT = 1000
PEER_FLOOR = 10.0  # flowactors jobs/s over the best installed peer's

_SYNCHRONOUS = {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}


@dataclass(frozen=True, slots=True)
class Peer:
    key: str  # peers_<key>_jobs_per_s, peers_flowactors_vs_<key>
    name: str  # the table's wording
    api: str  # the calls driven, for the section title
    module: str  # importable name
    dist: str  # distribution name, for the version
    run: Callable[[Path, int], tuple[float, Durability]]


@dataclass(frozen=True, slots=True)
class Durability:
    """A peer's settings as read back from it: the short form goes beside its figure."""

    synchronous: int  # SQLite PRAGMA synchronous
    journal: str  # SQLite PRAGMA journal_mode
    note: str

    @property
    def durable(self) -> bool:
        return self.synchronous >= 2  # FULL or EXTRA: the WAL is synced at every commit

    @property
    def short(self) -> str:
        name = _SYNCHRONOUS.get(self.synchronous, str(self.synchronous))
        verdict = "durable" if self.durable else "NOT durable on power loss"
        return f"SQLite synchronous={name}, journal {self.journal}: {verdict}"


@dataclass(frozen=True, slots=True)
class Server:
    name: str  # the peer that would use it
    server: str
    port: int
    sockets: tuple[str, ...]


SERVERS = (
    Server("procrastinate", "PostgreSQL", 5432, ("/var/run/postgresql/.s.PGSQL.5432",)),
    Server("rq", "Redis", 6379, ("/var/run/redis/redis-server.sock", "/tmp/redis.sock")),
)


@register("peers")
def peers_scenario(session: Session) -> None:
    """flowactors vs installed peers (huey-SQLite, persist-queue): durable jobs/s side by side."""
    n = QUICK_JOBS if session.quick else FULL_JOBS
    installed = [p for p in PEERS if importlib.util.find_spec(p.module) is not None]
    missing = [p.dist for p in PEERS if p not in installed]
    skipped = [f"{name} (not installed)" for name in missing]
    skipped += [_server_note(s) for s in SERVERS]
    if not installed:
        skipped.append("no peer installed, so the 10x floor is not evaluated")
    session.section(
        f"workload: {n:,} jobs enqueued, then claimed, run as no-ops and acknowledged; "
        f"skipped: {', '.join(skipped)}"
    )
    session.record(Metric("peers_jobs", "jobs per run (each system)", "jobs"), n)

    flowactors_rate = _measure_flowactors(session, n)
    rates: dict[str, float] = {}
    for peer in installed:
        rates[peer.key] = _measure_peer(session, peer, n)

    if not rates:
        session.progress("no peer installed: the 10x floor is not evaluated")
        return
    session.section("ratios: flowactors jobs/s / peer jobs/s (of medians)")
    for peer in installed:
        session.record(
            Metric(f"peers_flowactors_vs_{peer.key}", f"flowactors / {peer.name}", "x"),
            flowactors_rate / rates[peer.key],
        )
    best = max(installed, key=lambda p: rates[p.key])
    session.record(
        Metric(
            "peers_flowactors_vs_best_peer",
            f"flowactors / best installed peer ({best.name})",
            "x",
            Floor("peers_10x_best_peer", ">=", PEER_FLOOR),
        ),
        flowactors_rate / rates[best.key],
    )


# -- flowactors ---------------------------------------------------------------------------------


def _measure_flowactors(session: Session, n: int) -> float:
    session.section(
        f"flowactors {importlib.metadata.version('flowactors')}: create_many(1000) -> "
        f"claim_due(limit={CLAIM_LIMIT}) -> complete_many; durable: sync=always "
        "(fdatasync before every acknowledgement)"
    )
    batches = create_batches(flow_ids(n))

    def once() -> dict[str, float]:
        with session.scratch("peers-flowactors") as path, frozen_inputs():
            seconds, synced = trio.run(_flowactors, path, batches)
        return {
            "peers_flowactors_jobs_per_s": n / seconds,
            "peers_flowactors_jobs_per_fdatasync": n / synced,
        }

    medians = session.measure(
        once,
        [
            Metric("peers_flowactors_jobs_per_s", "flowactors, sync=always (durable)", "jobs/s"),
            Metric("peers_flowactors_jobs_per_fdatasync", "  jobs per fdatasync", "jobs"),
        ],
        what=f"flowactors, {n:,} jobs",
    )
    return medians["peers_flowactors_jobs_per_s"]


async def _flowactors(path: Path, batches: Sequence[Sequence[CreateSpec]]) -> tuple[float, int]:
    clock = time.perf_counter
    n = sum(len(b) for b in batches)
    async with flowactors.open_engine(path, sync="always") as engine:
        before = fsyncs(engine)
        started = clock()
        for batch in batches:
            created = await engine.create_many(FLOW_TYPE, batch)
            if not all(r.ok for r in created):
                raise RuntimeError(f"create_many failed: {created[0].error!r}")
        done = 0
        while done < n:
            flows = await engine.claim_due(FLOW_TYPE, WORKER, limit=CLAIM_LIMIT)
            if not flows:
                raise RuntimeError(f"claim_due found nothing after {done:,} of {n:,} jobs")
            # the no-op job runs here
            completed = await engine.complete_many(
                [Ack(f.id, f.lease_token, f.fencing_token) for f in flows]
            )
            if not all(r.ok for r in completed):
                raise RuntimeError(f"complete_many failed: {completed[0].error!r}")
            done += len(flows)
        seconds = clock() - started
        synced = fsyncs(engine) - before
        info = await engine.info(FLOW_TYPE)
        if info != {"completed": n}:
            raise RuntimeError(f"engine holds {info}, expected {n:,} completed jobs")
    return seconds, synced


# -- peers --------------------------------------------------------------------------------------


def _measure_peer(session: Session, peer: Peer, n: int) -> float:
    version = importlib.metadata.version(peer.dist)
    with session.scratch(f"peers-{peer.key}-probe") as path:
        _, durability = peer.run(path, 1)
    session.section(f"{peer.dist} {version}: {peer.api}; {durability.note}")
    key = f"peers_{peer.key}_jobs_per_s"

    def once() -> dict[str, float]:
        with session.scratch(f"peers-{peer.key}") as path:
            rate, _ = peer.run(path, n)
        return {key: rate}

    medians = session.measure(
        once,
        [Metric(key, f"{peer.name} ({durability.short})", "jobs/s")],
        what=f"{peer.dist}, {n:,} jobs",
    )
    return medians[key]


def _sqlite_settings(conn: Any) -> tuple[int, str]:
    level = int(conn.execute("PRAGMA synchronous").fetchone()[0])
    journal = str(conn.execute("PRAGMA journal_mode").fetchone()[0])
    return level, journal


def _huey(path: Path, n: int) -> tuple[float, Durability]:
    huey_module = importlib.import_module("huey")
    huey = huey_module.SqliteHuey(
        "bench", filename=str(path / "huey.db"), fsync=True, results=False
    )
    ran = [0]

    def noop() -> None:
        ran[0] += 1

    task = huey.task(name="noop")(noop)
    clock = time.perf_counter
    started = clock()
    for _ in range(n):
        task()
    while (message := huey.dequeue()) is not None:
        huey.execute(message)
    seconds = clock() - started
    if ran[0] != n or huey.pending_count() != 0:
        raise RuntimeError(f"huey ran {ran[0]:,} of {n:,} jobs")
    level, journal = _sqlite_settings(huey.storage.conn)
    settings = Durability(level, journal, "fsync=True sets synchronous=FULL; at-most-once (no ack)")
    huey.storage.close()
    return n / seconds, settings


def _persist_queue(path: Path, n: int) -> tuple[float, Durability]:
    persistqueue = importlib.import_module("persistqueue")
    queue = persistqueue.SQLiteAckQueue(str(path / "queue"), auto_commit=True)
    try:
        clock = time.perf_counter
        started = clock()
        for i in range(n):
            queue.put(i)
        acked = 0
        while queue.qsize() > 0:
            item = queue.get(block=False, raw=True)
            # the no-op job runs here
            if queue.ack(id=item["pqid"]) is not None:
                acked += 1
        seconds = clock() - started
        if acked != n or queue.acked_count() != n:
            raise RuntimeError(f"persist-queue acked {acked:,} of {n:,} jobs")
        level, journal = _sqlite_settings(queue._putter)
    finally:
        queue.close()
    note = "persist-queue sets journal_mode=WAL only; synchronous is SQLite's default"
    return n / seconds, Durability(level, journal, note)


PEERS = (
    Peer(
        "huey_sqlite",
        "huey SqliteHuey",
        "SqliteHuey(fsync=True, results=False): task() -> dequeue() -> execute()",
        "huey",
        "huey",
        _huey,
    ),
    Peer(
        "persist_queue_sqlite_ack",
        "persist-queue SQLiteAckQueue",
        "SQLiteAckQueue: put() -> get(raw=True) -> ack(id=...)",
        "persistqueue",
        "persist-queue",
        _persist_queue,
    ),
)


# -- servers we only look for ---------------------------------------------------------------


def _server_note(server: Server) -> str:
    if _listening(server):
        return f"{server.name} ({server.server} reachable, not driven by this scenario)"
    return f"{server.name} (no {server.server} on localhost:{server.port})"


def _listening(server: Server) -> bool:
    for unix in server.sockets:
        if Path(unix).exists():
            try:
                with socket.socket(socket.AF_UNIX) as s:
                    s.settimeout(0.2)
                    s.connect(unix)
                return True
            except OSError:
                pass
    try:
        with socket.create_connection(("127.0.0.1", server.port), timeout=0.2):
            return True
    except OSError:
        return False
