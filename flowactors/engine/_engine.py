"""The embeddable engine: `open_engine` and the one public `Engine` object.

`async with open_engine(path) as engine:` checks the data directory's layout (`_layout`),
opens its N shards (fixed when the directory is created; default 1, see
`_layout.DEFAULT_SHARDS` for why), each with its own wal directory `path/shard-NNN`, rebuilds
their state from the logs (or the records saved at the last clean close), runs one actor
task per shard and the cross-shard couriers, and closes them all on exit.

`Engine` is one object whose methods live by concern, each in its own file:
`_routing.Routing` (where a flow lives, request plumbing), `_commands.Commands` (create,
claim, outcomes, values), `_coordination.Coordination` (fanout, signals, rewind, policies,
the courier) and `_reads.Reads` (reads, queries, maintenance); here only what spans them:
statistics, the invariant check and closing.
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any

import trio

import wal

from . import _layout, _tuning
from . import _machine as m
from ._commands import Commands
from ._coordination import Coordination
from ._errors import (
    InvalidArgument,
    StorageError,
    translate,
)
from ._reads import Reads
from ._record import (
    ID,
    NEXT_RUN_AT,
    PARTITION,
    STATE,
    TERMINAL,
)
from ._routing import SLOTS, router, slot_of, slot_table, trio_clock_ms, wall_clock_ms
from ._shard import Shard
from ._types import (
    EngineRecovery,
    RetryPolicy,
)

__all__ = [
    "SLOTS",
    "Engine",
    "open_engine",
    "router",
    "slot_of",
    "slot_table",
    "trio_clock_ms",
    "wall_clock_ms",
]

_log = logging.getLogger("flowactors")


class Engine(Commands, Coordination, Reads):
    """The flowactors engine. Create it with `open_engine`.

    One object; its methods live by concern: routing and request plumbing
    (`_routing.Routing`), commands on flows (`_commands`), coordination between flows
    (`_coordination`), reads and maintenance (`_reads`); shard lifecycle here."""

    def statistics(self) -> dict[str, Any]:
        """Per-shard counters and log statistics (for monitoring and benchmarks).

        Besides the flow, request and commit counts: `queue_depth` (requests waiting in
        the shard's channel), `outbox` (cross-shard messages not yet delivered),
        `commands` ({(command name, error name or "ok"): count}; a batch of items counts
        once, under its first item's command; queries are "Query"), `events` (history
        events applied, by name) and `maintenance` (retention passes and their work)."""
        return {
            "shards": [
                {
                    "index": s.index,
                    "flows": len(s.state.records),
                    "requests": s.requests,
                    "commits": s.commits,
                    "broken": s.broken is not None,
                    "queue_depth": s.send.statistics().current_buffer_used,
                    "outbox": len(s.outbox),
                    "commands": {
                        (
                            "Query" if kind is None else kind.__name__,
                            "ok" if error is None else error.__name__,
                        ): n
                        for (kind, error), n in list(s.command_counts.items())
                    },
                    "events": dict(s.event_counts),
                    "maintenance": dict(s.maintenance),
                    "log": s.log.statistics(),
                }
                for s in self._shards
            ]
        }

    def _check(self) -> None:
        """Invariants of every shard (tests): indexes match records, logs consistent."""
        for shard in self._shards:
            shard.state._check()
            shard.log._check()
            for record in shard.state.records.values():
                assert self._locate(record[ID], None) == shard.index
                if record[PARTITION] is not None:
                    assert self.shard_for(record[ID], record[PARTITION]) == shard.index
                assert record[STATE] not in TERMINAL or record[NEXT_RUN_AT] is None

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._background.cancel()
        for shard in self._shards:
            await shard.send.aclose()


def _report_recovery(recovery: EngineRecovery) -> None:
    """Say what open repaired: a warning per repair, so an operator sees it happened."""
    if recovery.adopted:
        _log.warning(
            "adopted a data directory made by an older flowactors (engine %s): shard "
            "identities and log manifests written; their checks apply from now on",
            recovery.engine_id,
        )
    for shard in recovery.shards:
        for r in shard.repairs:
            if r.kind == "manifest-rebuilt" and recovery.adopted:
                continue
            _log.warning(
                "shard %d: recovery repaired %s: %s at offset %d (%d bytes dropped): %s",
                shard.index,
                r.kind,
                r.path,
                r.offset,
                r.dropped_bytes,
                r.reason,
            )
        if shard.merge is not None:
            _log.warning("shard %d: a merge cut short by a crash was %s", shard.index, shard.merge)
    _log.info(
        "opened engine %s: %d flows on %d shards in %.3f s",
        recovery.engine_id,
        sum(s.flows for s in recovery.shards),
        len(recovery.shards),
        max((s.seconds for s in recovery.shards), default=0.0),
    )


@asynccontextmanager
async def open_engine(
    path: str | os.PathLike[str],
    *,
    shards: int | None = None,
    sync: str = "always",
    clock: Callable[[], int] | None = None,
    retry_policy: RetryPolicy | None = None,
    type_policies: Mapping[str, RetryPolicy] | None = None,
    queue_capacity: int = 4096,
    queue_timeout_ms: int | None = None,
    segment_max_bytes: int = 64 * 1024 * 1024,
    maintenance_interval_ms: int | None = 60_000,
    io_threads: bool = True,
    fs: wal.FileSystem | None = None,
) -> AsyncIterator[Engine]:
    """Open (creating if needed) an engine in `path`, inside the running Trio program.

    `shards`: how many shards a new engine gets (default 1: see `_layout.DEFAULT_SHARDS`);
    an existing one keeps the count it was created with, and None opens it whatever that
    is (a different number given is an InvalidArgument).

    `clock` returns engine time in ms (default: wall clock; use `trio_clock_ms` with
    Trio's MockClock in tests). `sync` is the wal sync mode (`always` is durable).
    Every `maintenance_interval_ms` of engine time (None: never), each shard runs a
    bounded pass with its next batch of work: it fails flows past their max_active_ms
    and deletes terminal flows past their retention. It rides on traffic rather than a
    timer, so an idle engine does nothing and Trio's MockClock never jumps for it.
    By default the event loop runs on while a commit is on its way to disk (its
    fdatasync goes through Linux AIO, or a worker thread where AIO is missing; see
    `wal/_aio.py`). `io_threads=False` runs each commit's write and fdatasync inside the
    event loop (blocking it): for tests on `trio.testing.MockClock(autojump_threshold=0)`,
    where waiting on the disk lets virtual time leap ahead by however long it takes.
    """
    if not isinstance(path, str | os.PathLike):
        raise InvalidArgument(f"path must be a str or os.PathLike, not {type(path).__name__}")
    root = os.fspath(path)
    if shards is not None:
        m.check_int(shards, "shards", 1, SLOTS)
    m.check_int(queue_capacity, "queue_capacity", 1, 1 << 20)
    if maintenance_interval_ms is not None:
        m.check_int(maintenance_interval_ms, "maintenance_interval_ms", 1, m.MAX_DELAY_MS)
    files = fs or wal.OsFileSystem()
    try:
        layout = await trio.to_thread.run_sync(_layout.check, files, root, shards)
    except OSError as exc:
        raise StorageError(f"cannot open the data directory {root}: {exc}") from exc
    except wal.WalError as exc:
        raise translate(exc) from exc
    config = m.Config(
        retry_policy=retry_policy or RetryPolicy(),
        type_policies=dict(type_policies or {}),
    )
    clock_fn = clock or wall_clock_ms
    opened: list[Shard] = []
    try:
        shards = layout.shards
        for i in range(shards):
            opened.append(
                await Shard.open(
                    i,
                    _layout.shard_dir(root, i),
                    config,
                    clock_fn,
                    sync=sync,
                    capacity=queue_capacity,
                    segment_max_bytes=segment_max_bytes,
                    fs=files,
                    route=router(shards),
                    maintenance_ms=maintenance_interval_ms,
                    io_threads=io_threads,
                    adopt=layout.adopt,
                )
            )
        try:
            await trio.to_thread.run_sync(layout.finish, files)
        except OSError as exc:
            raise StorageError(f"cannot record the data directory's layout: {exc}") from exc
    except BaseException:
        with trio.CancelScope(shield=True):
            for shard in opened:
                await shard.aclose()
        raise
    engine = Engine(root, opened, config, clock_fn, queue_timeout_ms)
    engine.recovery = EngineRecovery(
        engine_id=layout.engine_id,
        created=layout.created,
        adopted=layout.adopt,
        shards=tuple(s.recovery for s in opened if s.recovery is not None),
    )
    _report_recovery(engine.recovery)
    body_error: BaseException | None = None
    try:
        with _tuning.idle_collection():  # (if `tune_gc` asked for it: see _tuning)
            async with trio.open_nursery() as nursery:
                for shard in opened:
                    nursery.start_soon(shard.run)
                try:
                    await engine._recover_policies()
                    nursery.start_soon(engine._run_couriers)
                    yield engine
                except BaseException as exc:
                    # Kept out of the nursery so callers see their own exception, not a group.
                    body_error = exc
                finally:
                    with trio.CancelScope(shield=True):
                        await engine.aclose()
    finally:
        with trio.CancelScope(shield=True):
            for shard in opened:
                await shard.aclose()
    if body_error is not None:
        raise body_error
