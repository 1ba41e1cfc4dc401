"""Process-wide tuning a program running an engine may opt into: CPython's cyclic GC.

Why. A busy engine allocates many short-lived containers (requests, decisions, events,
replies; a code workflow's journal events and effects) while holding many long-lived ones
(every live flow's record, the indexes, each in-flight run's suspended coroutine). CPython
runs a young-generation collection every 700 net container allocations, and each one also
walks whatever survived since the last: with thousands of runs in flight that is most of
them. Measured on the 2-core VM (`bench codeflow`, 10k runs): the collector took about a
third of the process's CPU. A young generation of 50,000 cuts that to a few percent, at
the price of garbage cycles living a little longer (memory, not correctness: nothing in
flowactors relies on the collector to release a resource).

The collector's thresholds belong to the whole process, so nothing in flowactors changes
them on its own: the application decides, once, at startup (`flowactors.tune_gc()`).
`python -m bench` does, and says so in its table; `--gc default` measures without it.
"""

from __future__ import annotations

import gc

from ._errors import InvalidArgument

TUNED_GEN0 = 50_000


def tune_gc(gen0: int = TUNED_GEN0, *, freeze: bool = False) -> tuple[int, int, int]:
    """Raise the young-generation threshold of CPython's cyclic GC to `gen0` container
    allocations (the older generations' thresholds are kept) and return the thresholds
    it replaced, so `gc.set_threshold(*old)` undoes it. With `freeze`, also move every
    object alive now to the permanent generation (`gc.freeze()`): call it after opening
    the engine, so a full collection no longer walks the recovered records."""
    if isinstance(gen0, bool) or not isinstance(gen0, int) or gen0 < 1:
        raise InvalidArgument(f"gen0 must be a positive int, got {gen0!r}")
    old = gc.get_threshold()
    gc.set_threshold(gen0, old[1], old[2])
    if freeze:
        gc.freeze()
    return old
