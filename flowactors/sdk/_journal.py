# A log of events kept in a flow's named values, laid out so that a flow of any length
# keeps a bounded number of them: the journal of a code run (`j:`, flowactors.code) and the
# event log of an ASL execution (`ev:`, flowactors.asl).
#
# Every step that adds events stores them as one "unit". The first FLAT units each get a
# value of their own, `<prefix>000001`, `<prefix>000002`, ... (what every flow wrote before
# levels existed, and all a short one ever needs). Later units go to levels `<prefix>L00`,
# `<prefix>L01`, ... counted like a binary number: level k, when not empty, holds exactly
# 2^k units, and the units past the flat ones are the sum of the non-empty levels. A new
# unit goes to the lowest empty level k, merged with the units of levels k-1 .. 0, which are
# emptied (set to an empty CBOR list: values are never deleted, only overwritten). So a flow
# of n units keeps at most FLAT + log2(n) + 1 values, each event is rewritten at most
# log2(n) times, and a step's command carries O(log n) events on average.
#
# Why it matters: the engine keeps a flow's value names in its record, and every write of
# the record (every step) stores the record again, in the log and in its history event.
# With a value per unit, the n-th step cost O(n) bytes, and a code run of 2,000 activities
# wrote 43 MB; a long flow grew quadratically.
#
# The log is the flat units in order, then the levels from the highest down (the oldest
# units are in the highest level). A reader that knows an earlier layout of the same flow
# keeps the levels that cannot have changed since (the same binary digits above them) and
# reads only the others.
from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import cbor2

FLAT = 16
EMPTY = cbor2.dumps([])

Events = list[dict[str, Any]]


def flat_name(prefix: str, n: int) -> str:
    return f"{prefix}{n:06d}"


def level_name(prefix: str, k: int) -> str:
    return f"{prefix}L{k:02d}"


@dataclass(frozen=True, slots=True)
class Layout:
    """Which journal values a flow holds: its flat units (names, in order) and its
    non-empty levels (level -> name), read from the flow's value sizes alone."""

    flat: list[str]
    levels: dict[int, str]

    @property
    def units(self) -> int:
        return len(self.flat) + sum(1 << k for k in self.levels)


def layout(value_sizes: Mapping[str, int], prefix: str) -> Layout:
    flat: list[tuple[int, str]] = []
    levels: dict[int, str] = {}
    level = prefix + "L"
    for name, size in value_sizes.items():
        if not name.startswith(prefix):
            continue
        if name.startswith(level):
            if size > len(EMPTY):
                levels[int(name[len(level) :])] = name
        else:
            flat.append((int(name[len(prefix) :]), name))
    flat.sort()
    return Layout([name for _n, name in flat], levels)


def names_in_order(value_sizes: Mapping[str, int], prefix: str) -> list[str]:
    """The names of a flow's journal values, in journal order, empty levels left out
    (`value_sizes` is the flow's `Flow.value_sizes`)."""
    now = layout(value_sizes, prefix)
    return [*now.flat, *(now.levels[k] for k in sorted(now.levels, reverse=True))]


def units(value_sizes: Mapping[str, int], prefix: str) -> int:
    """How many units `value_sizes` says are stored (what a kept journal is checked by,
    once per claim: counted without building the layout)."""
    level = prefix + "L"
    n = 0
    for name, size in value_sizes.items():
        if name.startswith(prefix):
            if not name.startswith(level):
                n += 1
            elif size > len(EMPTY):
                n += 1 << int(name[len(level) :])
    return n


@dataclass(frozen=True, slots=True)
class Journal:
    """A flow's stored journal as this process knows it: `units` stored, their `events` in
    order, `flat_events` of them in the flat values, and the events each non-empty level
    holds (`levels`: level -> count)."""

    units: int
    events: Events
    flat: int
    flat_events: int
    levels: dict[int, int]


NEW = Journal(0, [], 0, 0, {})


def extend(journal: Journal, new: Events, prefix: str) -> tuple[dict[str, bytes] | None, Journal]:
    """The values that store `new` as the next unit (None when `new` is empty), and the
    journal they make."""
    if not new:
        return None, journal
    events = journal.events + new
    if journal.flat < FLAT and not journal.levels:
        n = journal.flat + 1
        return {flat_name(prefix, n): cbor2.dumps(new)}, Journal(
            journal.units + 1, events, n, journal.flat_events + len(new), {}
        )
    k = 0
    while k in journal.levels:
        k += 1
    below = sum(journal.levels[i] for i in range(k))  # levels k-1 .. 0: the newest events
    merged = journal.events[len(journal.events) - below :] + new if below else new
    values = {level_name(prefix, k): cbor2.dumps(merged)}
    for i in range(k):
        values[level_name(prefix, i)] = EMPTY
    levels = {i: n for i, n in journal.levels.items() if i > k}
    levels[k] = len(merged)
    return values, Journal(journal.units + 1, events, journal.flat, journal.flat_events, levels)


def plan(known: Journal | None, now: Layout) -> tuple[int, list[str]]:
    """How to read the journal `now` describes, knowing `known` (an earlier journal of the
    same flow, or None): how many of `known`'s events to keep, and the names to read after
    them, in journal order."""
    levels_desc = sorted(now.levels, reverse=True)
    if known is None or known.flat > len(now.flat) or known.units > now.units:
        return 0, [*now.flat, *(now.levels[k] for k in levels_desc)]
    if known.flat < len(now.flat):  # new flat units: no level existed then
        return known.flat_events, [
            *now.flat[known.flat :],
            *(now.levels[k] for k in levels_desc),
        ]
    # The same flat units; levels agree from the top down as long as the binary digits
    # above and at them are the same (then they hold the same units, hence events).
    keep = known.flat_events
    top = max([*known.levels, *now.levels, -1])
    read: list[str] = []
    same = True
    for k in range(top, -1, -1):
        if same and (k in known.levels) == (k in now.levels):
            if k in known.levels:
                keep += known.levels[k]
            continue
        same = False
        if k in now.levels:
            read.append(now.levels[k])
    return keep, read


def assemble(
    known: Journal | None, now: Layout, keep: int, chunks: Iterable[tuple[str, Events]]
) -> Journal:
    """The journal read by `plan`: `known`'s first `keep` events, then each chunk's."""
    events: Events = list(known.events[:keep]) if known is not None and keep else []
    flat_events = known.flat_events if known is not None and keep else 0
    counts: dict[str, int] = {}
    flat_names = set(now.flat)
    for name, got in chunks:
        events.extend(got)
        counts[name] = len(got)
        if name in flat_names:
            flat_events += len(got)
    levels: dict[int, int] = {}
    for k, name in now.levels.items():
        if name in counts:
            levels[k] = counts[name]
        else:  # kept: unchanged since `known`
            assert known is not None
            levels[k] = known.levels[k]
    return Journal(now.units, events, len(now.flat), flat_events, levels)
