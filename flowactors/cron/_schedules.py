# Durable cron schedules over the engine's public API: what a schedule is, how it fires.
#
# Storage. A schedule is one engine flow of type "cron.schedule" whose id is the schedule's
# name. Its payload, CBOR, holds the whole definition and bookkeeping (cron expression, time
# zone, target, overlap policy, max_failures, the tick it is waiting for, the last flow it
# fired, consecutive failures, the last error, counters, enabled). Its state is "scheduled"
# (due at its next tick), "running" (a scheduler holds it under a lease, mid-tick) or
# "disabled" (claimed by nobody); delete cancels it. Nothing else is stored anywhere.
# A change that keeps the state goes through "updating" and back: the engine takes a second
# unleased transition to the state a flow is already in, under the same fencing token, for
# a replay of the first and writes nothing. "updating" is claimed like "scheduled" and the
# payload's `enabled` decides, so a crash between the two steps loses nothing.
#
# A tick. The scheduler claims due schedules under a lease and, for each, (1) accounts for
# the flow it fired last time if that one has ended (failed: one more consecutive failure;
# completed: the count goes back to 0), (2) disables the schedule once failures reach
# max_failures, (3) fires, unless the overlap policy is "skip" and the last fired flow is
# still live, and (4) moves the schedule back to "scheduled", due at its next tick after
# now, with the new bookkeeping in its payload. The fired flow's id is
# "<schedule>@<tick ms>", where the tick is the one stored in the payload before the tick
# began, and the create is idempotent: a scheduler that dies between (3) and (4) leaves the
# schedule leased; whoever reclaims it after the lease runs out repeats the tick from the
# same payload and gets the flow already created, never a second one. So each tick fires at
# most once, and a tick is lost only if the schedule is deleted or disabled meanwhile.
#
# The fired flow's request is a function of the stored payload alone (never of `now`), so a
# repeated tick's idempotent create matches the first one exactly.
#
# Catch-up. The next tick is always the first one after now, so after downtime the ticks
# missed fire once in all, as the tick stored before the downtime, and the schedule
# continues from now; `missed` counts the ticks passed over that way.
from __future__ import annotations

import logging
import math
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import cbor2
import trio
from cronsim import CronSim, CronSimError

import flowactors as fa

if TYPE_CHECKING:
    from flowactors.code import CodeRunner

log = logging.getLogger("flowactors.cron")

SCHEDULE_TYPE = "cron.schedule"
SCHEDULED, DISABLED, UPDATING = "scheduled", "disabled", "updating"
Overlap = Literal["skip", "allow"]
MAX_COVERED = 10_000  # ticks one catch-up counts as missed at most (bounds the counting)
_BUSY_RETRIES = 50  # a schedule mid-tick is released within one tick's few commands


class ScheduleNotFound(fa.FlowNotFound):
    """No schedule of that name (or it was deleted)."""


class ScheduleExists(fa.FlowExists):
    """A schedule of that name exists (a deleted one keeps its name until the engine's
    retention removes it)."""


class ScheduleBusy(fa.FlowError):
    """The schedule stayed in a scheduler's hands while this call retried; try again."""


@dataclass(frozen=True, slots=True)
class FlowTarget:
    """Fire: create a plain engine flow of `type` (claimed by whatever works that type)."""

    type: str
    payload: bytes | None = None
    state: str = "queued"
    attributes: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class WorkflowTarget:
    """Fire: start a run of the code workflow named `workflow` on `input` (needs the
    `Schedules` to have been given a CodeRunner)."""

    workflow: str
    input: Any = None


Target = FlowTarget | WorkflowTarget


@dataclass(frozen=True, slots=True)
class ScheduleInfo:
    """A schedule as stored. Times are engine milliseconds."""

    name: str
    cron: str
    tz: str
    target: Target
    overlap: Overlap
    max_failures: int
    enabled: bool
    next_ms: int | None  # the tick it waits for (None when disabled)
    last_fired: str | None  # the id of the flow it fired last
    failures: int  # consecutive fired flows that ended failed (or could not start)
    last_error: str | None
    fired: int
    skipped: int  # ticks not fired because the last fired flow was still live
    missed: int  # ticks passed over after downtime (each gap fired once, as its first tick)


def next_tick(cron: str, tz: str, after_ms: int) -> int:
    """The first tick of `cron` in time zone `tz` strictly after `after_ms` (engine ms
    since the epoch). InvalidArgument for a bad expression or zone, or one never due."""
    zone = _zone(tz)
    start = datetime.fromtimestamp(after_ms / 1000, zone)
    try:
        tick = next(CronSim(cron, start))
    except (CronSimError, StopIteration, ValueError) as exc:
        raise fa.InvalidArgument(f"cron expression {cron!r}: {exc or 'never due'}") from None
    return math.floor(tick.timestamp() * 1000)


def _ticks_between(cron: str, tz: str, after_ms: int, until_ms: int) -> int:
    """How many ticks fall in (after_ms, until_ms], counted up to MAX_COVERED."""
    ticks = CronSim(cron, datetime.fromtimestamp(after_ms / 1000, _zone(tz)))
    n = 0
    while n < MAX_COVERED and math.floor(next(ticks).timestamp() * 1000) <= until_ms:
        n += 1
    return n


def _zone(tz: str) -> ZoneInfo:
    if not isinstance(tz, str) or not tz:
        raise fa.InvalidArgument("tz must be an IANA time zone name, e.g. 'Europe/Berlin'")
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise fa.InvalidArgument(f"unknown time zone {tz!r}") from None


def _check_name(name: object) -> str:
    if not isinstance(name, str) or not name or len(name) > 200:
        raise fa.InvalidArgument("a schedule name is a non-empty string of at most 200 chars")
    if "@" in name or not name.isprintable():
        raise fa.InvalidArgument(f"schedule name {name!r}: no '@' or unprintable characters")
    return name


def _check_overlap(overlap: object) -> Overlap:
    if overlap not in ("skip", "allow"):
        raise fa.InvalidArgument(f"overlap must be 'skip' or 'allow', not {overlap!r}")
    return overlap


def _check_max_failures(n: object) -> int:
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise fa.InvalidArgument(f"max_failures must be a positive int, not {n!r}")
    return n


def _encode_target(target: object) -> dict[str, Any]:
    if isinstance(target, FlowTarget):
        if not isinstance(target.type, str) or not target.type:
            raise fa.InvalidArgument("FlowTarget.type must be a non-empty string")
        if target.payload is not None and not isinstance(target.payload, bytes):
            raise fa.InvalidArgument("FlowTarget.payload must be bytes or None")
        if not isinstance(target.state, str) or not target.state:
            raise fa.InvalidArgument("FlowTarget.state must be a non-empty string")
        attrs = dict(target.attributes)
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in attrs.items()):
            raise fa.InvalidArgument("FlowTarget.attributes must map str to str")
        return {"k": "flow", "t": target.type, "p": target.payload, "s": target.state, "a": attrs}
    if isinstance(target, WorkflowTarget):
        if not isinstance(target.workflow, str) or not target.workflow:
            raise fa.InvalidArgument("WorkflowTarget.workflow must be a workflow's name")
        try:
            cbor2.dumps(target.input)
        except (cbor2.CBOREncodeError, TypeError, ValueError) as exc:
            raise fa.InvalidArgument(f"WorkflowTarget.input cannot be stored: {exc}") from None
        return {"k": "code", "w": target.workflow, "i": target.input}
    raise fa.InvalidArgument(f"target must be a FlowTarget or WorkflowTarget, not {target!r}")


def _decode_target(raw: Mapping[str, Any]) -> Target:
    if raw["k"] == "flow":
        return FlowTarget(raw["t"], raw["p"], raw["s"], dict(raw["a"]))
    return WorkflowTarget(raw["w"], raw["i"])


def _info(flow: fa.Flow) -> ScheduleInfo:
    d = cbor2.loads(flow.payload or b"")
    enabled = bool(d["enabled"])
    return ScheduleInfo(
        name=flow.id,
        cron=d["cron"],
        tz=d["tz"],
        target=_decode_target(d["target"]),
        overlap=d["overlap"],
        max_failures=d["max_failures"],
        enabled=enabled,
        next_ms=d["next_ms"] if enabled else None,
        last_fired=d["last_fired"],
        failures=d["failures"],
        last_error=d["last_error"],
        fired=d["fired"],
        skipped=d["skipped"],
        missed=d["missed"],
    )


class Schedules:
    """Durable, engine-wide cron schedules: the client API and the scheduler.

        schedules = Schedules(engine, runner=code_runner)   # runner only for workflows
        await schedules.create("nightly", "0 3 * * *", FlowTarget("report"), tz="UTC")
        async with schedules.running():                      # fire due ticks meanwhile
            ...

    Any number of processes may run a scheduler on one engine's schedules in turn (each
    tick is claimed under a lease); in one process, one is enough."""

    def __init__(
        self,
        engine: fa.Engine,
        *,
        runner: CodeRunner | None = None,
        worker: str = "cron-scheduler",
        lease_ms: int = 60_000,
        poll_ms: int = 60_000,
        batch: int = 100,
    ) -> None:
        for name, value in (("lease_ms", lease_ms), ("poll_ms", poll_ms), ("batch", batch)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise fa.InvalidArgument(f"{name} must be a positive int")
        self.engine = engine
        self.runner = runner
        self.worker = worker
        self.lease_ms = lease_ms
        self.poll_ms = poll_ms
        self.batch = batch
        self._wake = trio.Event()

    # -- the client API -------------------------------------------------------------------

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
        """Create schedule `name`: fire `target` at every tick of the 5-field `cron`
        expression in time zone `tz`. ScheduleExists if the name is taken."""
        _check_name(name)
        _check_overlap(overlap)
        _check_max_failures(max_failures)
        if not isinstance(cron, str):
            raise fa.InvalidArgument("cron must be a string such as '*/5 * * * *'")
        if not isinstance(enabled, bool):
            raise fa.InvalidArgument("enabled must be a bool")
        encoded = _encode_target(target)
        self._check_target(target)
        next_ms = next_tick(cron, tz, self.engine.now_ms())
        d = {
            "v": 1, "cron": cron, "tz": tz, "target": encoded, "overlap": overlap,
            "max_failures": max_failures, "next_ms": next_ms, "last_fired": None,
            "pending": None, "failures": 0, "last_error": None, "fired": 0, "skipped": 0,
            "enabled": enabled, "missed": 0,
        }  # fmt: skip
        try:
            flow = await self.engine.create(
                name,
                SCHEDULE_TYPE,
                state=SCHEDULED if enabled else DISABLED,
                payload=cbor2.dumps(d, canonical=True),
                run_at_ms=next_ms,
            )
        except fa.FlowExists:
            raise ScheduleExists(f"schedule {name!r} exists") from None
        self._wake.set()
        return _info(flow._replace(payload=cbor2.dumps(d, canonical=True)))

    async def get(self, name: str) -> ScheduleInfo:
        """The schedule as stored; ScheduleNotFound if there is none (or it was deleted)."""
        return _info(await self._get(name))

    async def list(self) -> list[ScheduleInfo]:
        """Every schedule, enabled ones by next tick, then disabled ones."""
        out: list[ScheduleInfo] = []
        for state in (SCHEDULED, UPDATING, "running", DISABLED):
            cursor: str | None = None
            while True:
                page = await self.engine.list_flows(SCHEDULE_TYPE, state, limit=500, cursor=cursor)
                for flow in page.items:
                    full = await self.engine.get(flow.id, payload=True)
                    if full is not None and not full.terminal:
                        out.append(_info(full))
                if page.cursor is None:
                    break
                cursor = page.cursor
        return out

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
        """Change what is given; a new cron or zone moves the next tick to the first one
        after now under the new rule."""
        if overlap is not None:
            _check_overlap(overlap)
        if max_failures is not None:
            _check_max_failures(max_failures)
        if cron is not None and not isinstance(cron, str):
            raise fa.InvalidArgument("cron must be a string")
        encoded = None
        if target is not None:
            encoded = _encode_target(target)
            self._check_target(target)

        def change(d: dict[str, Any], state: str) -> tuple[str, dict[str, Any]]:
            if cron is not None or tz is not None:
                d["cron"] = d["cron"] if cron is None else cron
                d["tz"] = d["tz"] if tz is None else tz
                d["next_ms"] = next_tick(d["cron"], d["tz"], self.engine.now_ms())
            if encoded is not None:
                d["target"] = encoded
            if overlap is not None:
                d["overlap"] = overlap
            if max_failures is not None:
                d["max_failures"] = max_failures
            return state, d

        return await self._change(name, change)

    async def enable(self, name: str) -> ScheduleInfo:
        """Fire again from the first tick after now; consecutive failures back to 0."""

        def change(d: dict[str, Any], state: str) -> tuple[str, dict[str, Any]]:
            if not d["enabled"]:
                d["next_ms"] = next_tick(d["cron"], d["tz"], self.engine.now_ms())
                d["failures"] = 0
            d["enabled"] = True
            return SCHEDULED, d

        return await self._change(name, change)

    async def disable(self, name: str) -> ScheduleInfo:
        """Stop firing (kept, with its bookkeeping, until enabled or deleted)."""

        def change(d: dict[str, Any], state: str) -> tuple[str, dict[str, Any]]:
            d["enabled"] = False
            return DISABLED, d

        return await self._change(name, change)

    async def delete(self, name: str) -> None:
        """Remove the schedule (its flow is cancelled; fired flows are left alone)."""
        for _ in range(_BUSY_RETRIES):
            flow = await self._get(name)
            if flow.state == "running":
                await trio.sleep(0.01)
                continue
            try:
                await self.engine.cancel(name, fencing_token=flow.fencing_token, reason=b"deleted")
                return
            except (fa.StaleLease, fa.WrongState):
                continue
            except fa.FlowTerminal:
                raise ScheduleNotFound(f"no schedule {name!r}") from None
        raise ScheduleBusy(f"schedule {name!r} stayed busy; try again")

    async def trigger(self, name: str) -> str:
        """Fire the schedule's target once now, out of band: the flow (or run) id
        "<name>@manual-<now ms>". It does not move the next tick and is not counted in
        the overlap or failure bookkeeping."""
        flow = await self._get(name)
        d = cbor2.loads(flow.payload or b"")
        now = self.engine.now_ms()
        fired_id = f"{name}@manual-{now}"
        await self._fire(name, d["target"], fired_id, now)
        return fired_id

    # -- the scheduler --------------------------------------------------------------------

    @asynccontextmanager
    async def running(self) -> AsyncIterator[Schedules]:
        """Run the scheduler in the background for the block's duration."""
        async with trio.open_nursery() as nursery:
            await nursery.start(self.run)
            try:
                yield self
            finally:
                nursery.cancel_scope.cancel()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Fire due ticks until cancelled (nursery.start-able)."""
        task_status.started()
        while True:
            wake = self._wake
            claimed = await self.engine.claim_due(
                SCHEDULE_TYPE,
                self.worker,
                states=[SCHEDULED, UPDATING],
                limit=self.batch,
                lease_ms=self.lease_ms,
                payload=True,
            )
            for flow in claimed:
                try:
                    await self._tick(flow)
                except fa.FlowError as exc:  # deleted / updated meanwhile, a lost lease
                    log.warning("cron: tick of %s not finished: %r", flow.id, exc)
            if len(claimed) == self.batch:
                continue
            # Sleep until the first schedule is due, or a lease a dead scheduler left
            # runs out (the lists come sorted by due time / lease deadline).
            wait_ms = self.poll_ms
            now = self.engine.now_ms()
            for state in (SCHEDULED, UPDATING, "running"):
                first = await self.engine.list_flows(SCHEDULE_TYPE, state, limit=1)
                if first.items:
                    f = first.items[0]
                    at = f.lease_deadline_ms if state == "running" else f.next_run_at_ms
                    if at is not None:
                        wait_ms = max(0, min(wait_ms, at - now + 1))
            with trio.move_on_after(wait_ms / 1000):
                await wake.wait()
            if wake.is_set():
                self._wake = trio.Event()

    async def _tick(self, flow: fa.Flow) -> None:
        name = flow.id
        d = cbor2.loads(flow.payload or b"")
        now = self.engine.now_ms()
        tick = d["next_ms"]
        live = False
        pending = d["pending"]
        if pending is not None:  # the last fired flow: has it ended since?
            fired = await self.engine.get(pending)
            if fired is None or fired.terminal:
                d["pending"] = None
                if fired is not None and fired.state == "failed":
                    d["failures"] += 1
                    d["last_error"] = _text(fired.error) or f"{pending} failed"
                elif fired is not None and fired.state == "completed":
                    d["failures"] = 0
            else:
                live = True
        to_state = SCHEDULED
        if not d["enabled"]:  # disabled, and its "updating" step cut short by a crash
            to_state = DISABLED
        elif d["failures"] >= d["max_failures"]:
            to_state = DISABLED
            d["enabled"] = False
        elif live and d["overlap"] == "skip":
            d["skipped"] += 1
        else:
            fired_id = f"{name}@{tick}"
            d["missed"] += _ticks_between(d["cron"], d["tz"], tick, now)
            try:
                await self._fire(name, d["target"], fired_id, tick)
            except fa.IdempotencyConflict:  # this tick's id, taken by an earlier try of it
                d["fired"] += 1
                d["last_fired"] = d["pending"] = fired_id
            except fa.FlowError as exc:
                if isinstance(exc, fa.StorageError | fa.EngineClosed):
                    raise
                d["failures"] += 1
                d["last_error"] = f"{type(exc).__name__}: {exc}"
                if d["failures"] >= d["max_failures"]:
                    to_state = DISABLED
                    d["enabled"] = False
            else:
                d["fired"] += 1
                d["last_fired"] = d["pending"] = fired_id
        d["next_ms"] = next_tick(d["cron"], d["tz"], max(now, tick))
        await self.engine.transition(
            name,
            "running",
            to_state,
            flow.fencing_token,
            lease_token=flow.lease_token,
            run_at_ms=d["next_ms"],
            payload=cbor2.dumps(d, canonical=True),
        )

    async def _fire(self, name: str, target: Mapping[str, Any], fired_id: str, tick: int) -> None:
        attributes = {"cron.schedule": name, "cron.tick_ms": str(tick)}
        if target["k"] == "flow":
            await self.engine.create(
                fired_id,
                target["t"],
                state=target["s"],
                payload=target["p"],
                attributes={**target["a"], **attributes},
                correlation_id=name,
                idempotent=True,
            )
            return
        if self.runner is None:
            raise fa.InvalidArgument(
                f"schedule {name!r} starts workflow {target['w']!r}, but these Schedules "
                "were given no CodeRunner"
            )
        await self.runner.start(
            target["w"], fired_id, target["i"], idempotent=True, correlation_id=name
        )

    # -- helpers --------------------------------------------------------------------------

    def _check_target(self, target: Target) -> None:
        if isinstance(target, WorkflowTarget) and self.runner is None:
            raise fa.InvalidArgument("a WorkflowTarget needs Schedules(engine, runner=...)")

    async def _get(self, name: str) -> fa.Flow:
        _check_name(name)
        flow = await self.engine.get(name, payload=True)
        if flow is None or flow.type != SCHEDULE_TYPE or flow.terminal:
            raise ScheduleNotFound(f"no schedule {name!r}")
        return flow

    async def _change(self, name: str, change: Any) -> ScheduleInfo:
        """Read, change and write back the schedule, fenced; retried while a scheduler
        holds it mid-tick or it moved between the read and the write."""
        for _ in range(_BUSY_RETRIES):
            flow = await self._get(name)
            if flow.state == "running":
                await trio.sleep(0.01)
                continue
            state, d = change(cbor2.loads(flow.payload or b""), flow.state)
            payload = cbor2.dumps(d, canonical=True)
            step = UPDATING if state == flow.state else state
            try:
                moved = await self.engine.transition(
                    name,
                    flow.state,
                    step,
                    flow.fencing_token,
                    run_at_ms=d["next_ms"],
                    payload=payload,
                )
                if step != state:
                    moved = await self.engine.transition(
                        name, step, state, moved.fencing_token, run_at_ms=d["next_ms"]
                    )
            except (fa.StaleLease, fa.WrongState):
                continue
            self._wake.set()
            return _info(moved._replace(payload=payload))
        raise ScheduleBusy(f"schedule {name!r} stayed busy; try again")


def _text(data: bytes | None) -> str | None:
    if data is None:
        return None
    return data.decode("utf-8", "replace")
