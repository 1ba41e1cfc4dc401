"""Durable, engine-wide cron schedules (part of issue 18).

    from flowactors.cron import Schedules, FlowTarget

    schedules = Schedules(engine)
    await schedules.create("nightly-report", "0 2 * * *", FlowTarget("report"),
                           tz="Europe/Berlin")
    async with schedules.running():      # claims due schedules under a lease, fires them
        ...

Each schedule is an engine flow (type `cron.schedule`, id = its name) due at its next
tick; each tick fires flow `<name>@<tick ms>` at most once. See docs/cron.md.
"""

from ._errors import InvalidSchedule, ScheduleExists, ScheduleNotFound
from ._schedules import TYPE, CodeTarget, FlowTarget, Overlap, ScheduleInfo, Schedules, Target

__all__ = [
    "TYPE",
    "CodeTarget",
    "FlowTarget",
    "InvalidSchedule",
    "Overlap",
    "ScheduleExists",
    "ScheduleInfo",
    "ScheduleNotFound",
    "Schedules",
    "Target",
]
