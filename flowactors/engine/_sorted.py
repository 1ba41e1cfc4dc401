"""`SortedIndex`: sortedcontainers' SortedList with the two batch operations the shard's
batch paths need, `add_all` and `remove_all`.

Why. A batch of creates, claims or outcomes moves hundreds of flows between the shard's
sorted indexes at once, and nearly always at their ends: a new due, lease, terminal or
retention entry carries the engine's current time, so it sorts after everything already
there (the tail), and a claim or an outcome takes the oldest entries (the head). One
`SortedList.add` costs ~0.5 us and one `remove` ~1.2 us of Python; at an end, a whole batch
is a few C-level list operations.

How. Both check that the batch really sits at an end (the head check compares the
batch with the first entries in C) and otherwise fall back to one `add` / `remove` per
value, so they are always correct, only sometimes fast. They use SortedList's internal
layout (`_lists` of sorted sublists, their `_maxes`, `_len`, `_load`, the positional
`_index` they reset), unchanged since sortedcontainers 2.0; pyproject pins `<3`, and the
tests run SortedList's own `_check()` after every batch operation.
"""

from __future__ import annotations

from typing import Any

from sortedcontainers import SortedList

_SMALL = 4  # fewer values: the per-value methods cost less than the checks


class SortedIndex(SortedList):  # type: ignore[misc]  # sortedcontainers ships no types
    def add_all(self, values: list[Any]) -> None:
        """Add every value of `values` (in any order)."""
        if len(values) < _SMALL:
            for value in values:
                self.add(value)
            return
        values = sorted(values)
        lists: list[list[Any]] = self._lists
        maxes: list[Any] = self._maxes
        if not maxes:
            self.update(values)  # chunks the sorted values itself
            return
        if values[0] < maxes[-1]:  # not all at the tail
            for value in values:
                self.add(value)
            return
        load: int = self._load
        last = lists[-1]
        last.extend(values)
        if len(last) > load << 1:
            # Full sublists of `load` (SortedList keeps every sublist but the last at
            # least half full and none above twice full).
            del lists[-1]
            del maxes[-1]
            chunks = [last[i : i + load] for i in range(0, len(last), load)]
            lists.extend(chunks)
            maxes.extend([chunk[-1] for chunk in chunks])
        else:
            maxes[-1] = last[-1]
        self._len += len(values)
        del self._index[:]

    def remove_all(self, values: list[Any]) -> None:
        """Remove every value of `values` (each present once, any order); ValueError, as
        `remove` raises, when one is missing."""
        n = len(values)
        if n < _SMALL:
            for value in values:
                self.remove(value)
            return
        values = sorted(values)
        lists: list[list[Any]] = self._lists
        maxes: list[Any] = self._maxes
        head: list[Any] = []
        for sub in lists:
            need = n - len(head)
            if len(sub) >= need:
                head += sub[:need]
                break
            head += sub
        if head != values:  # not the head: one by one
            for value in values:
                self.remove(value)
            return
        k = n
        while k and len(lists[0]) <= k:
            k -= len(lists[0])
            del lists[0]
            del maxes[0]
        if k:
            del lists[0][:k]  # its max, the last item, stays
        half = self._load >> 1
        if len(lists) > 1 and len(lists[0]) < half:
            # Too small a first sublist: merge it into the next, and split that in two
            # halves when it grew past twice the load.
            merged = lists[0] + lists[1]
            del lists[:2]
            del maxes[:2]
            if len(merged) > self._load << 1:
                mid = len(merged) >> 1
                parts = [merged[:mid], merged[mid:]]
            else:
                parts = [merged]
            lists[0:0] = parts
            maxes[0:0] = [part[-1] for part in parts]
        self._len -= n
        del self._index[:]
