"""The `peers` scenario: the same durable job lifecycle on flowactors and on installed peers.

N jobs (20k; 1k with --quick) are enqueued, then each is claimed, run as a no-op and
acknowledged; jobs/s is N over both phases, timed with `time.perf_counter` and measured on a
fresh data directory per run. Every system is configured durably where it has a setting
for it, and its durability settings are read back from it (not assumed) and printed beside
its figure:

- flowactors: `create_many` (1000 per call) -> `claim_due(limit=1000)` -> `complete_many`,
  sync="always" (default shards: 1; every acknowledged command batch fdatasynced), as `lifecycle`.
- huey (`huey` installed): `SqliteHuey(fsync=True, results=False)`, a no-op task enqueued N
  times (one commit each), then an in-process consumer loop `dequeue()` -> `execute()`, as
  the consumer's worker does; huey's dequeue deletes the row in one transaction (claim and
  ack in one commit; huey is documented at-most-once, so there is no separate ack).
- persist-queue (`persist-queue` installed): `SQLiteAckQueue`, `put` N times, then
  `get(raw=True)` -> `ack(id=...)` per job (one commit each). The queue sets only
  `journal_mode=WAL`; `synchronous` is SQLite's built-in default, read back with PRAGMA.
- DBOS Transact (`dbos` installed), on a SQLite system database (`system_database_url`
  sqlite:///<file>): N no-op workflows enqueued on a DBOS queue (`Queue.enqueue`), then
  each handle's `get_result()`; DBOS's own queue thread claims them and runs each in its
  executor, recording PENDING and SUCCESS, in this process. The workflow body is the no-op,
  with no step: a step would add a checkpoint the other peers' jobs do not pay. The queue
  thread and the handles poll the database, by default once a second; both poll every
  0.1 s, so an idle second is not counted as DBOS's time. DBOS sets neither `synchronous`
  nor `journal_mode` on its connections and offers no setting for them: SQLite's defaults,
  read back with PRAGMA on a connection from DBOS's own pool. It runs 1,000 jobs (as under
  --quick): at about 100-200 jobs/s, a repeat takes 5-10 s.

- RQ (`rq` installed, a Redis on localhost:6379): `Queue.enqueue` N times, then one
  `SimpleWorker` (no fork per job) in burst mode; Redis's `appendonly` / `appendfsync` are
  read back with CONFIG GET (durable only with appendonly yes, appendfsync always).
- procrastinate (`procrastinate` installed, a PostgreSQL at $FLOWACTORS_BENCH_PG, default
  postgresql://bench:bench@127.0.0.1:5432/bench): `defer_async` N times, then one worker
  with `wait=False` until the queue is empty; its tables live in their own schema
  (`flowactors_bench`, dropped and rebuilt per run); `fsync` and `synchronous_commit` are
  read back with SHOW.
  RQ and procrastinate run 2,000 jobs (the same N under --quick): at 100-300 jobs/s a
  20k run would take minutes per repeat, and jobs/s is a rate.

A peer that is not importable, or whose server does not answer, is skipped and named with
the reason. Ratios are flowactors' jobs/s over each peer's; the floor asks flowactors >=
10x the best installed peer, and is not evaluated (no key) when no peer is installed.
Compare with the raw fdatasync rate of the same run: SQLite at synchronous=FULL in WAL
mode syncs per commit.

Servers from Debian's packages, for a run beside the SQLite peers:

    apt-get install -y redis-server postgresql
    redis-server --port 6379 --bind 127.0.0.1 --appendonly yes --appendfsync always \
        --dir /tmp --daemonize yes
    pg_ctlcluster 15 main start
    su postgres -c "psql -c \"CREATE ROLE bench LOGIN PASSWORD 'bench'\""
    su postgres -c "psql -c 'CREATE DATABASE bench OWNER bench'"
"""

from __future__ import annotations

import asyncio
import functools
import importlib
import importlib.metadata
import importlib.util
import os
import socket
import time
from collections import Counter
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
SINGLE_FLOOR = 4.0  # the same, flowactors driven one job per call
SINGLE_TASKS = 100  # producer tasks, and as many worker tasks, in the one-job-per-call row

_SYNCHRONOUS = {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}


@dataclass(frozen=True, slots=True)
class Peer:
    key: str  # peers_<key>_jobs_per_s, peers_flowactors_vs_<key>
    name: str  # the table's wording
    api: str  # the calls driven, for the section title
    module: str  # importable name
    dist: str  # distribution name, for the version
    run: Callable[[Path, int], tuple[float, Durability]]
    probe: Callable[[], str | None] | None = None  # why it cannot run here, or None
    jobs: int | None = None  # fewer jobs than the others' (a slow peer), None: the same


@dataclass(frozen=True, slots=True)
class Durability:
    """A peer's settings as read back from it: `short` goes beside its figure."""

    short: str
    durable: bool
    note: str


def _sqlite_durability(level: int, journal: str, note: str) -> Durability:
    # FULL syncs the WAL, or the rollback journal and the database, at every commit; in WAL,
    # TRUNCATE and PERSIST mode it also syncs the commit point. In DELETE mode the commit
    # point is the journal's unlink, which SQLite syncs to the directory only at EXTRA: at
    # FULL a power loss just after a commit can find the journal and roll that commit back.
    durable = (level >= 2 and journal.lower() in ("wal", "truncate", "persist")) or (
        level >= 3 and journal.lower() == "delete"
    )
    name = _SYNCHRONOUS.get(level, str(level))
    verdict = "durable" if durable else "NOT durable on power loss"
    return Durability(f"SQLite synchronous={name}, journal {journal}: {verdict}", durable, note)


@dataclass(frozen=True, slots=True)
class Server:
    name: str  # the peer that would use it
    server: str
    port: int
    sockets: tuple[str, ...]


@register("peers")
def peers_scenario(session: Session) -> None:
    """flowactors vs installed peers (huey, persist-queue, DBOS, RQ, procrastinate): jobs/s."""
    n = QUICK_JOBS if session.quick else FULL_JOBS
    skipped = []
    installed = []
    for peer in PEERS:
        if importlib.util.find_spec(peer.module) is None:
            skipped.append(f"{peer.dist} (not installed)")
        elif peer.probe is not None and (reason := peer.probe()) is not None:
            skipped.append(f"{peer.dist} ({reason})")
        else:
            installed.append(peer)
    if not installed:
        skipped.append("no peer installed, so the 10x floor is not evaluated")
    session.section(
        f"workload: {n:,} jobs enqueued, then claimed, run as no-ops and acknowledged; "
        f"skipped: {', '.join(skipped) or 'none'}"
    )
    session.record(Metric("peers_jobs", "jobs per run (each system)", "jobs"), n)

    flowactors_rate = _measure_flowactors(session, n)
    single_rate = _measure_flowactors_single(session, n)
    rates: dict[str, float] = {}
    for peer in installed:
        jobs = n if peer.jobs is None or session.quick else peer.jobs
        rates[peer.key] = _measure_peer(session, peer, jobs)

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
    session.record(
        Metric(
            "peers_flowactors_single_vs_best_peer",
            f"one job per call: flowactors / best installed peer ({best.name})",
            "x",
            Floor("peers_single_4x_best_peer", ">=", SINGLE_FLOOR),
        ),
        single_rate / rates[best.key],
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


def _measure_flowactors_single(session: Session, n: int) -> float:
    session.section(
        f"flowactors, one job per call: {SINGLE_TASKS} producer tasks each create() one job "
        f"at a time, {SINGLE_TASKS} worker tasks each claim_due(limit=1) -> complete() one "
        "at a time (a worker finding nothing waits for a create's wake); sync=always"
    )

    def once() -> dict[str, float]:
        with session.scratch("peers-flowactors-single") as path:
            seconds, synced = trio.run(_flowactors_single, path, n)
        return {
            "peers_flowactors_single_jobs_per_s": n / seconds,
            "peers_flowactors_single_commands_per_fdatasync": 3 * n / synced,
        }

    medians = session.measure(
        once,
        [
            Metric(
                "peers_flowactors_single_jobs_per_s",
                "flowactors one job per call, sync=always (durable)",
                "jobs/s",
            ),
            Metric(
                "peers_flowactors_single_commands_per_fdatasync",
                "  commands per fdatasync",
                "commands",
            ),
        ],
        what=f"flowactors one job per call, {n:,} jobs",
    )
    return medians["peers_flowactors_single_jobs_per_s"]


async def _flowactors_single(path: Path, n: int) -> tuple[float, int]:
    """Producers and workers run together, every command a single call; the run ends
    when all `n` jobs are completed. A worker that finds nothing parks until a producer
    says it created a job, one wake per job (what an in-process worker pool does, as the
    SDK's `Worker.wake`), rather than polling; a wake given while nobody waits is kept."""
    clock = time.perf_counter
    done = 0
    news = trio.Semaphore(0)
    async with flowactors.open_engine(path, sync="always") as engine:
        before = fsyncs(engine)

        async def produce(k: int) -> None:
            for i in range(k, n, SINGLE_TASKS):
                await engine.create(f"job-{i:09d}", FLOW_TYPE)
                news.release()

        async def work() -> None:
            nonlocal done
            while done < n:
                got = await engine.claim_due(FLOW_TYPE, WORKER, limit=1)
                if not got:
                    await news.acquire()
                    continue
                job = got[0]
                # the no-op job runs here
                await engine.complete(job.id, job.lease_token, job.fencing_token)
                done += 1
            for _ in range(SINGLE_TASKS):  # the first to finish wakes the idle ones
                news.release()

        started = clock()
        async with trio.open_nursery() as nursery:
            for k in range(SINGLE_TASKS):
                nursery.start_soon(produce, k)
                nursery.start_soon(work)
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
    note = "fsync=True sets synchronous=FULL; at-most-once (no ack)"
    settings = _sqlite_durability(level, journal, note)
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
    return n / seconds, _sqlite_durability(level, journal, note)


DBOS_QUEUE = "flowactors_bench"
# How often DBOS's queue thread looks for enqueued workflows, and a handle for its result
# (DBOS's default for both: 1 s).
DBOS_POLL_S = 0.1


def _dbos(path: Path, n: int, *, steps: bool = False) -> tuple[float, Durability]:
    """DBOS on a SQLite system database: enqueue N no-op workflows (with `steps`, N
    workflows of three steps, as `bench codeflow` runs) on a DBOS queue, then wait on
    each handle while DBOS's queue thread claims and runs them, in this process."""
    dbos = importlib.import_module("dbos").DBOS
    noop = _dbos_three_steps() if steps else _dbos_noop_workflow()
    config = {
        "name": "flowactors_bench",
        "system_database_url": f"sqlite:///{path / 'dbos.sqlite'}",
        "log_level": "WARNING",  # no INFO lines per launch, queue and shutdown
    }
    # DBOS is a process-wide singleton: DBOS(...) makes it, destroy() discards it, so the
    # probe, the warm-up and every repeat each launch a fresh one on a fresh file.
    app = dbos(config=config)
    try:
        dbos.launch()
        queue = dbos.register_queue(DBOS_QUEUE, polling_interval_sec=DBOS_POLL_S)
        clock = time.perf_counter
        started = clock()
        handles = [queue.enqueue(noop, i) if steps else queue.enqueue(noop) for i in range(n)]
        for handle in handles:
            handle.get_result(polling_interval_sec=DBOS_POLL_S)  # raises if it failed
        seconds = clock() - started
        workflows = dbos.list_workflows(queue_name=DBOS_QUEUE, load_input=False, load_output=False)
        statuses = Counter(w.status for w in workflows)
        if statuses != {"SUCCESS": n}:
            raise RuntimeError(f"DBOS holds {dict(statuses)}, expected {n:,} successful workflows")
        # PRAGMA synchronous is per connection: read it on one from DBOS's own engine, set up
        # by DBOS's connect hook (IMMEDIATE transactions, busy_timeout, foreign_keys).
        with app._sys_db.engine.connect() as conn:
            level, journal = _sqlite_settings(conn.connection.dbapi_connection)
    finally:
        dbos.destroy()
    note = "DBOS leaves synchronous and journal_mode at SQLite's defaults"
    return n / seconds, _sqlite_durability(level, journal, note)


@functools.cache
def _dbos_noop_workflow() -> Callable[[], None]:
    """The no-op workflow, registered once per process: DBOS keeps registrations in a
    registry that outlives `DBOS.destroy()`, and imports it only once DBOS is installed."""
    dbos = importlib.import_module("dbos").DBOS
    workflow: Callable[[], None] = dbos.workflow(name="flowactors_bench_noop")(_dbos_noop)
    return workflow


def _dbos_noop() -> None:
    """The job DBOS runs: a workflow with no step."""


@functools.cache
def _dbos_three_steps() -> Callable[[int], str]:
    """`bench codeflow`'s workflow in DBOS: three steps, each checkpointed by DBOS in its
    system database before the next runs (registered once per process, as above)."""
    dbos = importlib.import_module("dbos").DBOS
    validate = dbos.step(name="flowactors_bench_validate")(_add_one)
    charge = dbos.step(name="flowactors_bench_charge")(_double)
    ship = dbos.step(name="flowactors_bench_ship")(_label)

    def order(n: int) -> str:
        return str(ship(charge(validate(n))))

    workflow: Callable[[int], str] = dbos.workflow(name="flowactors_bench_order")(order)
    return workflow


def _add_one(n: int) -> int:
    return n + 1


def _double(n: int) -> int:
    return n * 2


def _label(n: int) -> str:
    return f"shipped {n}"


REDIS = Server("rq", "Redis", 6379, ("/var/run/redis/redis-server.sock", "/tmp/redis.sock"))
# procrastinate's database: its tables go into their own schema, dropped and rebuilt per run.
POSTGRES_DSN = os.environ.get(
    "FLOWACTORS_BENCH_PG", "postgresql://bench:bench@127.0.0.1:5432/bench"
)
PG_SCHEMA = "flowactors_bench"


def _redis_probe() -> str | None:
    return None if _listening(REDIS) else f"no Redis on localhost:{REDIS.port}"


def _postgres_probe() -> str | None:
    if importlib.util.find_spec("psycopg") is None:
        return "psycopg not installed"
    psycopg = importlib.import_module("psycopg")
    try:
        psycopg.connect(POSTGRES_DSN, connect_timeout=2).close()
    except psycopg.Error as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return f"no PostgreSQL at $FLOWACTORS_BENCH_PG: {first[:80]}"
    return None


def _procrastinate(path: Path, n: int) -> tuple[float, Durability]:
    """procrastinate on PostgreSQL: defer N no-op jobs, then one worker runs them until
    the queue is empty (`wait=False`), in this process, on asyncio."""
    return asyncio.run(_procrastinate_async(n))


async def _procrastinate_async(n: int) -> tuple[float, Durability]:
    psycopg = importlib.import_module("psycopg")
    procrastinate = importlib.import_module("procrastinate")
    with psycopg.connect(POSTGRES_DSN, autocommit=True) as conn:
        conn.execute("SET client_min_messages TO warning")  # no NOTICE per dropped object
        conn.execute(f"DROP SCHEMA IF EXISTS {PG_SCHEMA} CASCADE")
        conn.execute(f"CREATE SCHEMA {PG_SCHEMA}")
        fsync = conn.execute("SHOW fsync").fetchone()[0]
        commit = conn.execute("SHOW synchronous_commit").fetchone()[0]
    connector = procrastinate.PsycopgConnector(
        conninfo=POSTGRES_DSN, kwargs={"options": f"-c search_path={PG_SCHEMA}"}
    )
    app = procrastinate.App(connector=connector)
    noop = app.task(name="noop")(_noop_job)
    async with app.open_async():
        await app.schema_manager.apply_schema_async()
        clock = time.perf_counter
        started = clock()
        for _ in range(n):
            await noop.defer_async()
        await app.run_worker_async(wait=False, install_signal_handlers=False, listen_notify=False)
        seconds = clock() - started
    with psycopg.connect(POSTGRES_DSN, autocommit=True) as conn:
        query = f"SELECT count(*) FROM {PG_SCHEMA}.procrastinate_jobs WHERE status = 'succeeded'"
        done = conn.execute(query).fetchone()[0]
    if done != n:
        raise RuntimeError(f"procrastinate ran {done:,} of {n:,} jobs")
    durable = fsync == "on" and commit in ("on", "remote_write", "remote_apply")
    verdict = "durable" if durable else "NOT durable on power loss"
    short = f"PostgreSQL fsync={fsync}, synchronous_commit={commit}: {verdict}"
    note = "one transaction per defer; the worker fetches and finishes each job in its own"
    return n / seconds, Durability(short, durable, note)


def _rq(path: Path, n: int) -> tuple[float, Durability]:
    """RQ on the Redis at localhost:6379: enqueue N no-op jobs, then one `SimpleWorker`
    (no fork per job) works the queue in burst mode, in this process."""
    redis = importlib.import_module("redis")
    rq = importlib.import_module("rq")
    conn = redis.Redis(host="127.0.0.1", port=REDIS.port)
    appendonly = conn.config_get("appendonly")["appendonly"]
    appendfsync = conn.config_get("appendfsync")["appendfsync"]
    queue = rq.Queue(f"flowactors-bench-{path.name}", connection=conn)
    queue.empty()
    clock = time.perf_counter
    started = clock()
    for _ in range(n):
        queue.enqueue(f"{__name__}._noop_job", result_ttl=0)
    rq.SimpleWorker([queue], connection=conn).work(burst=True, logging_level="WARNING")
    seconds = clock() - started
    failed = queue.failed_job_registry.count
    if queue.count or failed:
        raise RuntimeError(f"rq left {queue.count:,} jobs queued and {failed:,} failed")
    durable = appendonly == "yes" and appendfsync == "always"
    verdict = "durable" if durable else "NOT durable on power loss"
    short = f"Redis appendonly={appendonly}, appendfsync={appendfsync}: {verdict}"
    note = "one job per enqueue; the worker acks by moving the job to its registries"
    return n / seconds, Durability(short, durable, note)


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
    Peer(
        "dbos_sqlite",
        "DBOS on SQLite",
        "Queue.enqueue() x N, then WorkflowHandle.get_result(); DBOS's queue thread runs them",
        "dbos",
        "dbos",
        _dbos,
        jobs=1_000,
    ),
    Peer(
        "rq_redis",
        "RQ on Redis",
        "Queue.enqueue() x N, then SimpleWorker.work(burst=True)",
        "rq",
        "rq",
        _rq,
        probe=_redis_probe,
        jobs=2_000,
    ),
    Peer(
        "procrastinate_postgres",
        "procrastinate on PostgreSQL",
        "task.defer_async() x N, then run_worker_async(wait=False)",
        "procrastinate",
        "procrastinate",
        _procrastinate,
        probe=_postgres_probe,
        jobs=2_000,
    ),
)


# -- reaching a local server ---------------------------------------------------------------


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


def _noop_job() -> None:
    """The job RQ and procrastinate workers run (importable by its dotted name)."""
