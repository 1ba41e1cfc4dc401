# Cron expressions and time zones: validation and tick arithmetic, pure (no clock, no I/O).
#
# A tick is a UTC millisecond timestamp. `cronsim` evaluates the 5-field expression on
# wall-clock time in the schedule's zone (zoneinfo), so DST is what cronsim does: a wall
# time that falls in a spring-forward gap fires at the first instant after the gap; in a
# fall-back overlap a daily/fixed-hour entry fires once (first occurrence) while an entry
# matching every hour fires in both passes of the repeated hour (docs/cron.md, tested).
from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

from ._errors import InvalidSchedule

_MS = timedelta(milliseconds=1)


def check_cron(expr: object) -> str:
    """`expr` if it is a standard 5-field cron expression, else InvalidSchedule."""
    if not isinstance(expr, str):
        raise InvalidSchedule(f"cron expression must be a string, not {type(expr).__name__}")
    if len(expr.split()) != 5:
        raise InvalidSchedule(f"cron expression {expr!r} must have 5 fields")
    try:
        CronSim(expr, datetime(2000, 1, 1, tzinfo=UTC))
    except (CronSimError, ValueError) as exc:
        raise InvalidSchedule(f"bad cron expression {expr!r}: {exc}") from None
    return expr


def zone(name: object) -> ZoneInfo:
    """The IANA time zone `name`, else InvalidSchedule."""
    if not isinstance(name, str) or not name or "\x00" in name:
        raise InvalidSchedule(f"time zone must be an IANA name, not {name!r}")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise InvalidSchedule(f"unknown time zone {name!r}") from None


def _dt(ms: int, tz: ZoneInfo) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC).astimezone(tz)


def _ms(dt: datetime) -> int:
    return int(dt.timestamp() * 1000)


def next_after(expr: str, tz: str, ms: int) -> int:
    """The first tick strictly after `ms`."""
    return _ms(next(CronSim(expr, _dt(ms, zone(tz)))))


def last_at_or_before(expr: str, tz: str, ms: int) -> int:
    """The latest tick at or before `ms`."""
    return _ms(next(CronSim(expr, _dt(ms, zone(tz)) + _MS, reverse=True)))
