# The cron package's errors: each a FlowError subclass of the engine error a caller would
# otherwise meet, so `except InvalidArgument` / `except FlowNotFound` keep working.
from __future__ import annotations

from flowactors import FlowExists, FlowNotFound, InvalidArgument


class InvalidSchedule(InvalidArgument):
    """A bad cron expression, time zone, overlap policy, target or limit; nothing written."""


class ScheduleExists(FlowExists):
    """`create` of a schedule name already in use."""


class ScheduleNotFound(FlowNotFound):
    """No schedule of that name."""
