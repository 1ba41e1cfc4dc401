"""Durable, engine-wide cron schedules (issue 18): fire a plain flow or a code workflow
run at every tick of a 5-field cron expression in a time zone.

    from flowactors.cron import FlowTarget, Schedules

    schedules = Schedules(engine)
    await schedules.create("nightly-report", "0 3 * * *", FlowTarget("report"),
                           tz="Europe/Berlin")
    async with schedules.running():
        ...

A schedule is one engine flow; each tick fires at most once, across crashes. See
docs/cron.md.
"""

from ._schedules import (
    SCHEDULE_TYPE,
    FlowTarget,
    Overlap,
    ScheduleBusy,
    ScheduleExists,
    ScheduleInfo,
    ScheduleNotFound,
    Schedules,
    Target,
    WorkflowTarget,
    next_tick,
)

__all__ = [
    "SCHEDULE_TYPE",
    "FlowTarget",
    "Overlap",
    "ScheduleBusy",
    "ScheduleExists",
    "ScheduleInfo",
    "ScheduleNotFound",
    "Schedules",
    "Target",
    "WorkflowTarget",
    "next_tick",
]
