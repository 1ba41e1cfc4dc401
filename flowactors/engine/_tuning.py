"""Process-wide tuning a program running an engine may opt into: CPython's cyclic GC.

Why. A busy engine allocates many short-lived containers (requests, decisions, events,
replies; a code workflow's journal events and effects) while holding many long-lived ones
(every live flow's record, the indexes, each in-flight run's suspended coroutine). CPython
runs a young-generation collection every 700 net container allocations, and each one also
walks whatever survived since the last: with thousands of runs in flight that is most of
them. Measured on the 2-core VM (`bench codeflow`, 10k runs): the collector took about a
third of the process's CPU. A young generation of 50,000 cut that to a few percent; at
10k step pipelines in flight it still took 15-19% (`bench steps`: 25-40 collections of
about 30 ms), and 200,000 cuts that to 4% (3-4 collections, 0.3-0.5 s instead of 1.1-1.9
s of 8-12 s; +12% pipelines/s where the VM held still, +2-6% on the code-first twin).
The price is garbage cycles living a little longer (memory, not correctness: nothing in
flowactors relies on the collector to release a resource), and longer collections
(below).

The collector's thresholds belong to the whole process, so nothing in flowactors changes
them on its own: the application decides, once, at startup (`flowactors.tune_gc()`).
`python -m bench` does, and says so in its table; `--gc default` measures without it.

Tail latency. A young collection walks every flow record made since the last one (then
untracks it: its fields are plain values), scattered in memory: in `bench latency`'s open
loop one collection at 50,000 took 15-30 ms, and the p99 of single commands in the
3-second windows it fell in was 23-30 ms (5-9 ms in the others). `tune_gc(idle_gen0=N)`
has every engine opened afterwards collect the young generation early, when it holds N
objects or more and the event loop is about to wait (nothing runnable: a Trio instrument,
one per run). A pause lasts in proportion to N: 6-15 ms at N = 20,000 (a third of the
objects are records), 1.0-2.4 ms at 5,000. "About to wait" is not "idle for long": under
load the next arrival comes a fraction of a millisecond later and waits out the pause,
so the worst commands of a 3-second window at 4,000 lifecycles/s clustered in the 50 ms
around the one or two collections at 20,000 (p99 of create 6-15 ms over six runs), and
were spread over the window at 5,000 (6.0-7.8 ms over seven); the collector's total time
was the same (9-12 ms per 3 s). It is
off by default because a loop that waits now and then pays for it: with thousands of runs
in flight each early collection walks them all again (`bench steps`, 10k pipelines: 17
collections, 1.1 s, instead of 3 and 0.4 s). A program serving single commands with a
tail-latency target turns it on; `bench latency` does.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

import trio

from ._errors import InvalidArgument

TUNED_GEN0 = 200_000
LATENCY_IDLE_GEN0 = 5_000  # what `bench latency` asks for (see above)
_idle_gen0: int | None = None  # set by tune_gc


def tune_gc(
    gen0: int = TUNED_GEN0, *, idle_gen0: int | None = None, freeze: bool = False
) -> tuple[int, int, int]:
    """Raise the young-generation threshold of CPython's cyclic GC to `gen0` container
    allocations (the older generations' thresholds are kept) and return the thresholds
    it replaced, so `gc.set_threshold(*old)` undoes it. With `idle_gen0` (default None:
    never), engines opened from now on also collect the young generation when it holds
    that many objects and their event loop is about to wait (for tail latency, see
    above); a later call without it turns that off again. With `freeze`, also move every object
    alive now to the permanent generation (`gc.freeze()`): call it after opening the
    engine, so a full collection no longer walks the recovered records."""
    global _idle_gen0
    if isinstance(gen0, bool) or not isinstance(gen0, int) or gen0 < 1:
        raise InvalidArgument(f"gen0 must be a positive int, got {gen0!r}")
    if idle_gen0 is not None and (
        isinstance(idle_gen0, bool) or not isinstance(idle_gen0, int) or idle_gen0 < 1
    ):
        raise InvalidArgument(f"idle_gen0 must be a positive int or None, got {idle_gen0!r}")
    old = gc.get_threshold()
    gc.set_threshold(gen0, old[1], old[2])
    _idle_gen0 = idle_gen0
    if freeze:
        gc.freeze()
    return old


class IdleCollector(trio.abc.Instrument):
    """Collects the young generation when the loop is about to wait and it is big enough."""

    def __init__(self, min_objects: int) -> None:
        self.min_objects = min_objects
        self.users = 0  # open engines of this run relying on it
        self.collections = 0

    def before_io_wait(self, timeout: float) -> None:
        if timeout > 0 and gc.get_count()[0] >= self.min_objects and gc.isenabled():
            gc.collect(0)
            self.collections += 1


_COLLECTOR: trio.lowlevel.RunVar[IdleCollector | None] = trio.lowlevel.RunVar(
    "flowactors_idle_collector", default=None
)


@contextmanager
def idle_collection() -> Iterator[IdleCollector | None]:
    """While this is entered, the current Trio run has the idle collector `tune_gc` asked
    for (one per run, however many engines are open in it); nothing if it asked none."""
    if _idle_gen0 is None:
        yield None
        return
    collector = _COLLECTOR.get()
    if collector is None:
        collector = IdleCollector(_idle_gen0)
        _COLLECTOR.set(collector)
        trio.lowlevel.add_instrument(collector)
    collector.users += 1
    try:
        yield collector
    finally:
        collector.users -= 1
        if collector.users == 0:
            _COLLECTOR.set(None)
            trio.lowlevel.remove_instrument(collector)
