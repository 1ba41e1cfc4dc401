# Timestamps as ASL writes them (RFC 3339 with an uppercase T and a Z or numeric offset) and
# as the interpreter keeps them (integer milliseconds since the Unix epoch). No clock here.
from __future__ import annotations

import datetime as dt
import re

_TS_RE = re.compile(r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(\.\d+)?(Z|[+-]\d{2}:\d{2})")


def parse_timestamp_ms(text: object) -> int | None:
    """Milliseconds since the epoch, or None if `text` is not an ASL timestamp."""
    if not isinstance(text, str):
        return None
    m = _TS_RE.fullmatch(text)
    if not m:
        return None
    year, month, day, hour, minute, second = (int(m.group(i)) for i in range(1, 7))
    frac = m.group(7) or ""
    micro = int((frac[1:] + "000000")[:6]) if frac else 0
    zone = m.group(8)
    if zone == "Z":
        tz = dt.UTC
    else:
        sign = 1 if zone[0] == "+" else -1
        hh, mm = int(zone[1:3]), int(zone[4:6])
        if hh > 23 or mm > 59:
            return None
        tz = dt.timezone(sign * dt.timedelta(hours=hh, minutes=mm))
    try:
        when = dt.datetime(year, month, day, hour, minute, second, micro, tzinfo=tz)
    except ValueError:
        return None
    delta = when - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000


def parse_timestamp_us(text: object) -> int | None:
    """Microsecond precision, for Choice comparisons of fractional seconds."""
    ms = parse_timestamp_ms(text)
    if ms is None:
        return None
    assert isinstance(text, str)
    m = _TS_RE.fullmatch(text)
    assert m is not None
    frac = m.group(7) or ""
    micro = int((frac[1:] + "000000")[:6]) if frac else 0
    return ms * 1000 + micro % 1000


def format_ms(ms: int) -> str:
    """ISO 8601 UTC with milliseconds, as AWS shows `$$.Execution.StartTime`."""
    when = dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(milliseconds=ms)
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"
