# Durable, engine-wide cron schedules, built only on the engine's public API.
#
# A schedule is one engine flow of type `cron.schedule` whose id is the schedule's name.
# Its definition (cron, zone, target, overlap, max_failures) is the named value `def`, its
# bookkeeping (next tick, last fired run, live runs, failures, last error) the named value
# `status`, both CBOR. State `scheduled` (due at the next tick, capped at the engine's
# 30-day delay limit) or `disabled` (never claimed). No other store.
#
# A tick: the scheduler claims due `scheduled` schedules under a lease, computes the fire
# tick F (the latest tick at or before now: the catch-up rule, one fire for a whole gap)
# and the next tick N (the first after now), starts the target as flow `<name>@<F>` with an
# idempotent create (the same create again is a no-op), then moves the schedule to N with
# its new status in one transition. The fired flow's id carries the tick, so a crash
# anywhere in between makes the next claim repeat a create that is then a no-op: a tick
# never fires twice. Why not spawn_children: the parent it moves is due at once (it carries
# no due time or named values), and a code run must be created by CodeRunner.start.
#
# Overlap and failures are read from the fired flows when the schedule next comes due:
# terminal ones are counted (failed: +1 and the error kept; completed: reset to 0), live
# ones are kept in `runs`; `skip` fires nothing while `runs` is not empty.
from __future__ import annotations

import builtins
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import cbor2
import trio

from flowactors import (
    Engine,
    EngineClosed,
    Flow,
    FlowExists,
    FlowPolicy,
    FlowTerminal,
    IdempotencyConflict,
    InvalidArgument,
    StaleLease,
    StorageError,
    WrongState,
)

from . import _expr
from ._errors import InvalidSchedule, ScheduleExists, ScheduleNotFound

if TYPE_CHECKING:
    from flowactors.code import CodeRunner

TYPE = "cron.schedule"
Overlap = Literal["skip", "allow"]
MAX_DELAY_MS = 29 * 24 * 3600 * 1000  # under the engine's 30-day limit on due times
_LIVE_STATES = ("scheduled", "disabled", "running")
_MUTABLE = ("scheduled", "disabled")
_KEEP_RUNS = 1000  # live fired flows remembered per schedule (overlap "allow")
_POLICY = FlowPolicy(max_reclaims=1000, exhausted_to="scheduled", history_max_events=1000)


@dataclass(frozen=True)
class FlowTarget:
    """Fire a plain engine flow of `type` (in `state`) carrying `payload`."""

    type: str
    payload: bytes | None = None
    state: str = "queued"


@dataclass(frozen=True)
class CodeTarget:
    """Fire a run of code workflow `workflow` on `input` (needs a CodeRunner)."""

    workflow: str
    input: Any = None


Target = FlowTarget | CodeTarget


@dataclass(frozen=True)
class ScheduleInfo:
    """A schedule as `get` / `list` show it. Times are engine ms (UTC)."""

    name: str
    cron: str
    tz: str
    target: Target
    overlap: Overlap
    max_failures: int
    enabled: bool
    next_fire_ms: int | None
    last_tick_ms: int | None
    last_run: str | None
    failures: int
    last_error: str | None
    fired: int
    skipped: int
    live_runs: tuple[str, ...] = field(default=())


def _target_dict(target: object) -> dict[str, Any]:
    if isinstance(target, FlowTarget):
        if not isinstance(target.type, str) or not target.type or target.type.startswith("__"):
            raise InvalidSchedule(f"target type must be a name, not {target.type!r}")
        if target.payload is not None and not isinstance(target.payload, bytes):
            raise InvalidSchedule("target payload must be bytes or None")
        if not isinstance(target.state, str) or not target.state:
            raise InvalidSchedule("target state must be a name")
        return {"k": "flow", "type": target.type, "p": target.payload, "s": target.state}
    if isinstance(target, CodeTarget):
        if not isinstance(target.workflow, str) or not target.workflow:
            raise InvalidSchedule("target workflow must be a name")
        _check_plain(target.input, "input")
        return {"k": "code", "w": target.workflow, "i": target.input}
    raise InvalidSchedule(f"target must be a FlowTarget or CodeTarget, not {target!r}")


def _check_plain(value: object, path: str) -> None:
    """Plain data only (what a code run's input may hold and reads back the same)."""
    if value is None or isinstance(value, bool | int | float | str | bytes):
        return
    if isinstance(value, list):
        for i, item in enumerate(value):
            _check_plain(item, f"{path}[{i}]")
    elif isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise InvalidSchedule(f"target {path} has a non-string key {key!r}")
            _check_plain(item, f"{path}[{key!r}]")
    else:
        raise InvalidSchedule(f"target {path} is a {type(value).__name__}: not storable")


def _target(d: dict[str, Any]) -> Target:
    if d["k"] == "flow":
        return FlowTarget(d["type"], d["p"], d["s"])
    return CodeTarget(d["w"], d["i"])


def _definition(
    cron: object, tz: object, target: object, overlap: object, max_failures: object
) -> dict[str, Any]:
    """The checked definition, or InvalidSchedule (before anything is written)."""
    _expr.check_cron(cron)
    _expr.zone(tz)
    if overlap not in ("skip", "allow"):
        raise InvalidSchedule(f"overlap must be 'skip' or 'allow', not {overlap!r}")
    if not isinstance(max_failures, int) or isinstance(max_failures, bool) or max_failures < 1:
        raise InvalidSchedule(f"max_failures must be an int >= 1, not {max_failures!r}")
    return {
        "cron": cron,
        "tz": tz,
        "target": _target_dict(target),
        "overlap": overlap,
        "max_failures": max_failures,
    }


def _check_name(name: object) -> str:
    if not isinstance(name, str) or not name or "\x00" in name or len(name.encode()) > 900:
        raise InvalidSchedule(f"schedule name must be 1..900 bytes of text, not {name!r}")
    return name


def _fresh_status(next_ms: int) -> dict[str, Any]:
    return {
        "next": next_ms,
        "last_tick": None,
        "last_run": None,
        "runs": [],
        "failures": 0,
        "last_error": None,
        "fired": 0,
        "skipped": 0,
    }


def _error_text(data: bytes | None) -> str:
    if not data:
        return "failed"
    try:
        return data.decode()
    except UnicodeDecodeError:
        return repr(data)


class Schedules:
    """Create, inspect and change schedules, and run the scheduler that fires them.

    `runner` is needed only to fire CodeTarget schedules. Several schedulers (processes or
    tasks) may run at once: each schedule is claimed under a lease of `lease_ms`.
    """

    def __init__(
        self,
        engine: Engine,
        *,
        runner: CodeRunner | None = None,
        worker: str = "cron",
        lease_ms: int = 30_000,
        poll_ms: int = 60_000,
        batch: int = 100,
    ) -> None:
        for value, what in ((lease_ms, "lease_ms"), (poll_ms, "poll_ms"), (batch, "batch")):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise InvalidArgument(f"{what} must be a positive int, not {value!r}")
        self.engine = engine
        self.runner = runner
        self.worker = worker
        self.lease_ms = lease_ms
        self.poll_ms = poll_ms
        self.batch = batch
        self._wake = trio.Event()
        self._policy_ok = False

    # -- reading --------------------------------------------------------------------------

    async def _flow(self, name: str) -> Flow:
        flow = await self.engine.get(_check_name(name), values=["def", "status"])
        if flow is None or flow.type != TYPE or flow.terminal:
            raise ScheduleNotFound(f"schedule {name!r} not found")
        return flow

    @staticmethod
    def _info(flow: Flow) -> ScheduleInfo:
        d = cbor2.loads(flow.values["def"])
        s = cbor2.loads(flow.values["status"])
        enabled = flow.logical_state != "disabled"
        return ScheduleInfo(
            name=flow.id,
            cron=d["cron"],
            tz=d["tz"],
            target=_target(d["target"]),
            overlap=d["overlap"],
            max_failures=d["max_failures"],
            enabled=enabled,
            next_fire_ms=s["next"] if enabled else None,
            last_tick_ms=s["last_tick"],
            last_run=s["last_run"],
            failures=s["failures"],
            last_error=s["last_error"],
            fired=s["fired"],
            skipped=s["skipped"],
            live_runs=tuple(s["runs"]),
        )

    async def get(self, name: str) -> ScheduleInfo:
        """The schedule `name` (ScheduleNotFound if there is none)."""
        return self._info(await self._flow(name))

    async def list(self) -> list[ScheduleInfo]:
        """Every schedule, enabled or not, by name."""
        names: list[str] = []
        for state in _LIVE_STATES:
            cursor: str | None = None
            while True:
                page = await self.engine.list_flows(TYPE, state, limit=1000, cursor=cursor)
                names.extend(f.id for f in page.items)
                cursor = page.cursor
                if cursor is None:
                    break
        out = []
        for name in sorted(set(names)):
            flow = await self.engine.get(name, values=["def", "status"])
            if flow is not None and not flow.terminal:
                out.append(self._info(flow))
        return out

    # -- changing -------------------------------------------------------------------------

    async def create(
        self,
        name: str,
        cron: str,
        target: Target,
        *,
        tz: str = "UTC",
        overlap: Overlap = "skip",
        max_failures: int = 5,
        enabled: bool = True,
    ) -> ScheduleInfo:
        """A new schedule, first due at the first tick after now. ScheduleExists if the
        name is taken; InvalidSchedule for bad input; either way nothing is written."""
        _check_name(name)
        d = _definition(cron, tz, target, overlap, max_failures)
        if not isinstance(enabled, bool):
            raise InvalidSchedule("enabled must be True or False")
        now = self.engine.now_ms()
        nxt = _expr.next_after(cron, tz, now)
        values = {"def": cbor2.dumps(d), "status": cbor2.dumps(_fresh_status(nxt))}
        state = "scheduled" if enabled else "disabled"
        for again in (True, False):
            try:
                flow = await self.engine.create(
                    name,
                    TYPE,
                    state=state,
                    run_at_ms=min(nxt, now + MAX_DELAY_MS),
                    values=values,
                    retention_ms=0,  # a deleted schedule's name is free after cleanup
                )
            except FlowExists:
                old = await self.engine.get(name)
                if again and old is not None and old.terminal and old.type == TYPE:
                    await self.engine.retention_cleanup()  # drop the deleted schedule
                    continue
                raise ScheduleExists(f"schedule {name!r} already exists") from None
            break
        self._wake.set()
        return self._info(flow._replace(values=values))

    async def _change(
        self, name: str, to_state: str, edit: Any, *, reset: bool = False
    ) -> ScheduleInfo:
        """Rewrite `def`/`status` of a schedule with a transitioning signal guarded by its
        state. While a scheduler holds it (a tick in progress) wait for the tick to end;
        once that lease expired (the scheduler died), take the schedule over."""
        while True:
            flow = await self._flow(name)
            now = self.engine.now_ms()
            deadline = flow.lease_deadline_ms
            if flow.state not in _MUTABLE and (deadline is None or deadline > now):
                await trio.sleep(0.01)  # a tick is in progress: it ends within its lease
                continue
            d = cbor2.loads(flow.values["def"])
            s = cbor2.loads(flow.values["status"])
            if flow.state not in _MUTABLE:
                s["reclaims"] = -1  # the dead tick may have fired: adopt at the next tick
            edit(d, s)
            if to_state == "scheduled" and (reset or flow.state == "disabled"):
                s["next"] = _expr.next_after(d["cron"], d["tz"], now)
            if reset:
                s["failures"] = 0
            values = {"def": cbor2.dumps(d), "status": cbor2.dumps(s)}
            try:
                await self.engine.signal(
                    name,
                    "cron.changed",
                    values=values,
                    if_state=flow.state,
                    transition_to=to_state,
                    run_at_ms=min(s["next"], now + MAX_DELAY_MS),
                )
            except WrongState:
                continue  # claimed or changed meanwhile: read again
            except FlowTerminal:
                raise ScheduleNotFound(f"schedule {name!r} not found") from None
            self._wake.set()
            return await self.get(name)

    async def update(
        self,
        name: str,
        *,
        cron: str | None = None,
        tz: str | None = None,
        target: Target | None = None,
        overlap: Overlap | None = None,
        max_failures: int | None = None,
    ) -> ScheduleInfo:
        """Change the given fields; a new cron or zone re-plans the next tick from now."""
        old = await self.get(name)
        checked = _definition(
            old.cron if cron is None else cron,
            old.tz if tz is None else tz,
            old.target if target is None else target,
            old.overlap if overlap is None else overlap,
            old.max_failures if max_failures is None else max_failures,
        )
        replan = cron is not None or tz is not None

        def edit(d: dict[str, Any], s: dict[str, Any]) -> None:
            d.update(checked)
            if replan:
                s["next"] = _expr.next_after(d["cron"], d["tz"], self.engine.now_ms())

        state = "scheduled" if old.enabled else "disabled"
        return await self._change(name, state, edit)

    async def enable(self, name: str) -> ScheduleInfo:
        """Enable (again): failures reset, next tick planned from now."""
        return await self._change(name, "scheduled", lambda d, s: None, reset=True)

    async def disable(self, name: str) -> ScheduleInfo:
        """Stop firing until `enable`; fired flows are left alone."""
        return await self._change(name, "disabled", lambda d, s: None)

    async def delete(self, name: str) -> None:
        """Remove the schedule (fired flows are left alone); the name is free again."""
        await self._flow(name)
        try:
            await self.engine.cancel(name, force=True, reason=b"schedule deleted")
        except FlowTerminal:
            raise ScheduleNotFound(f"schedule {name!r} not found") from None

    async def trigger(self, name: str) -> str:
        """Fire the schedule's target once, now, out of band (the schedule is not moved and
        overlap is not checked). Returns the fired flow's id `<name>@<now>!`."""
        info = await self.get(name)
        run_id = f"{name}@{self.engine.now_ms()}!"
        await self._start(info.target, run_id, name)
        return run_id

    # -- firing ---------------------------------------------------------------------------

    async def _start(self, target: Target, run_id: str, name: str) -> None:
        if isinstance(target, FlowTarget):
            await self.engine.create(
                run_id,
                target.type,
                state=target.state,
                payload=target.payload,
                correlation_id=name,
                idempotent=True,
            )
        else:
            if self.runner is None:
                raise InvalidSchedule("a CodeTarget needs Schedules(..., runner=CodeRunner)")
            await self.runner.start(target.workflow, run_id, target.input, correlation_id=name)

    async def _count(self, s: dict[str, Any]) -> None:
        """Count the outcomes of fired flows that ended since the last look."""
        live = []
        for run_id in s["runs"]:
            flow = await self.engine.get(run_id)
            if flow is None:
                continue  # gone (retention): its outcome is no longer known
            if not flow.terminal:
                live.append(run_id)
            elif flow.state == "failed":
                s["failures"] += 1
                s["last_error"] = f"{run_id}: {_error_text(flow.error)}"
            elif flow.state == "completed":
                s["failures"] = 0
        s["runs"] = live

    async def _adopt(self, name: str, s: dict[str, Any]) -> None:
        """After a reclaim (a scheduler died holding this schedule): flows it may have
        fired without recording them join `runs`, so overlap and failures see them."""
        cursor: str | None = None
        while True:
            page = await self.engine.by_correlation(name, limit=1000, cursor=cursor)
            for f in page.items:
                if f.id.startswith(f"{name}@") and not f.terminal and f.id not in s["runs"]:
                    s["runs"] = [*s["runs"], f.id][-_KEEP_RUNS:]
                    if not f.id.endswith("!"):  # not a trigger's
                        s["fired"] += 1
                        s["last_run"] = f.id
            cursor = page.cursor
            if cursor is None:
                return

    async def _ensure_policy(self) -> None:
        """The crash budget of a schedule flow: a lease expiring (a scheduler died in a
        tick) counts toward `max_reclaims` and is never reset, so at the budget's end the
        schedule goes back to `scheduled` rather than `failed`; its history is capped."""
        if self._policy_ok:
            return
        current = await self.engine.get_policy(TYPE)
        if (current.max_reclaims, current.exhausted_to) != (1000, "scheduled"):
            await self.engine.install_policy(TYPE, _POLICY)
        self._policy_ok = True

    async def _tick(self, flow: Flow) -> str | None:
        """One claimed schedule: fire its due tick (maybe), plan the next. Returns the id of
        the flow fired, if any."""
        d = cbor2.loads(flow.values["def"])
        s = cbor2.loads(flow.values["status"])
        now = self.engine.now_ms()
        fired = None
        state = "scheduled"
        if s["next"] <= now:
            tick = _expr.last_at_or_before(d["cron"], d["tz"], now)
            s["next"] = _expr.next_after(d["cron"], d["tz"], now)
            if flow.reclaims != s.get("reclaims", 0):
                await self._adopt(flow.id, s)
                s["reclaims"] = flow.reclaims
            await self._count(s)
            run_id = f"{flow.id}@{tick}"
            # This tick's own flow is in `runs` only if a crashed tick fired it: no overlap.
            if s["failures"] >= d["max_failures"]:
                state = "disabled"
            elif d["overlap"] == "skip" and [r for r in s["runs"] if r != run_id]:
                s["skipped"] += 1
            else:
                try:
                    await self._start(_target(d["target"]), run_id, flow.id)
                except IdempotencyConflict:
                    pass  # fired before, under an older definition: still fired once
                except (StorageError, EngineClosed):
                    raise
                except Exception as exc:  # the target refused to start: a failure
                    s["failures"] += 1
                    s["last_error"] = f"{run_id}: {type(exc).__name__}: {exc}"
                    if s["failures"] >= d["max_failures"]:
                        state = "disabled"
                else:
                    fired = run_id
                if fired is not None or state == "scheduled":
                    s["last_tick"] = tick
                if fired is not None:
                    s["last_run"] = run_id
                    if run_id not in s["runs"]:
                        s["runs"] = [*s["runs"], run_id][-_KEEP_RUNS:]
                        s["fired"] += 1
        assert flow.lease_token is not None
        # Changed, deleted or reclaimed meanwhile: whoever holds it now decides.
        with contextlib.suppress(StaleLease, WrongState, FlowTerminal):
            await self.engine.transition(
                flow.id,
                "running",
                state,
                flow.fencing_token,
                lease_token=flow.lease_token,
                run_at_ms=min(s["next"], now + MAX_DELAY_MS),
                values={"status": cbor2.dumps(s)},
            )
        return fired

    async def run_due(self) -> builtins.list[str]:
        """Claim every due schedule and fire it; the ids of the flows fired."""
        await self._ensure_policy()
        fired: builtins.list[str] = []
        while True:
            flows = await self.engine.claim_due(
                TYPE,
                self.worker,
                states=["scheduled"],
                limit=self.batch,
                lease_ms=self.lease_ms,
                values=["def", "status"],
            )
            for flow in flows:
                run_id = await self._tick(flow)
                if run_id is not None:
                    fired.append(run_id)
            if len(flows) < self.batch:
                return fired

    async def _idle_ms(self) -> int:
        """How long to wait: until the earliest due schedule, at most `poll_ms`."""
        page = await self.engine.list_flows(TYPE, "scheduled", limit=1)
        wait = self.poll_ms
        if page.items and page.items[0].next_run_at_ms is not None:
            wait = min(wait, page.items[0].next_run_at_ms - self.engine.now_ms())
        return max(wait, 1)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """The scheduler, until cancelled (`nursery.start(schedules.run)`)."""
        task_status.started()
        while True:
            self._wake = trio.Event()  # before the pass: a change during it is not lost
            await self.run_due()
            wait = await self._idle_ms()
            with trio.move_on_after(wait / 1000):
                await self._wake.wait()

    @asynccontextmanager
    async def running(self) -> AsyncIterator[Schedules]:
        """`async with schedules.running():` the scheduler runs in the background."""
        async with trio.open_nursery() as nursery:
            await nursery.start(self.run)
            try:
                yield self
            finally:
                nursery.cancel_scope.cancel()


__all__ = [
    "TYPE",
    "CodeTarget",
    "FlowTarget",
    "Overlap",
    "ScheduleInfo",
    "Schedules",
    "Target",
]
