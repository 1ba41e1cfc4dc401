"""One shard's in-memory state: records and their hot indexes. No I/O, no clock.

Indexes, all derived from the records (so recovery rebuilds them by re-applying each
record through the same `put`):

- `due[(type, state)]`: a SortedList of `(-priority, next_run_at, id)` for every record with
  a due time. Claims read it in priority order, then due-time order. Running records sit
  here under state `running` with their lease deadline as due time, so an expired lease is
  just an overdue entry: lease expiry needs no sweeper.
- `counts[(type, state)]`: number of records per state (terminal states included).
- lineage: `children[parent]`, `by_root[root]` (only for flows that are not their own root),
  `by_correlation[correlation]`: sets of ids.
- `retention`: a SortedList of `(retention_until, id)` for terminal records.

`_check()` recomputes every index from the records and compares; tests call it after each
step.
"""

from __future__ import annotations

from collections.abc import Iterator

from sortedcontainers import SortedList

from ._record import TERMINAL, Record

DueKey = tuple[int, int, str]


class ShardState:
    __slots__ = (
        "_sorted_list",
        "by_correlation",
        "by_root",
        "children",
        "counts",
        "due",
        "records",
        "retention",
    )

    def __init__(self) -> None:
        self.records: dict[str, Record] = {}
        self.due: dict[tuple[str, str], SortedList] = {}
        self.counts: dict[tuple[str, str], int] = {}
        self.children: dict[str, set[str]] = {}
        self.by_root: dict[str, set[str]] = {}
        self.by_correlation: dict[str, set[str]] = {}
        self.retention: SortedList = SortedList()
        self._sorted_list: type = SortedList

    def get(self, flow_id: str) -> Record | None:
        return self.records.get(flow_id)

    def put(self, record: Record) -> None:
        """Insert or replace a record, keeping every index in step."""
        old = self.records.get(record.id)
        if old is not None:
            self._unindex(old)
        self.records[record.id] = record
        self._index(record)

    def load(self, records: list[Record]) -> None:
        """Recovery: index many records at once. Runs the same `_index` as `put`, but the
        sorted indexes collect into plain lists that are sorted once at the end."""
        due, retention = self.due, self.retention
        self.due = {}
        self.retention = _Bulk()
        self._sorted_list = _Bulk
        try:
            for r in records:
                self.records[r.id] = r
                self._index(r)
        finally:
            bulk_due, bulk_retention = self.due, self.retention
            self.due, self.retention = due, retention
            self._sorted_list = SortedList
        for key, entries in bulk_due.items():
            sl = self.due.get(key)
            if sl is None:
                self.due[key] = SortedList(entries)
            else:
                sl.update(entries)
        self.retention.update(bulk_retention)

    def remove(self, flow_id: str) -> None:
        old = self.records.pop(flow_id, None)
        if old is not None:
            self._unindex(old)

    def _index(self, r: Record) -> None:
        key = (r.type, r.state)
        self.counts[key] = self.counts.get(key, 0) + 1
        if r.next_run_at is not None:
            sl = self.due.get(key)
            if sl is None:
                sl = self.due[key] = self._sorted_list()
            sl.add((-r.priority, r.next_run_at, r.id))
        if r.parent_id is not None:
            self.children.setdefault(r.parent_id, set()).add(r.id)
        if r.root_id is not None:
            self.by_root.setdefault(r.root_id, set()).add(r.id)
        if r.correlation_id is not None:
            self.by_correlation.setdefault(r.correlation_id, set()).add(r.id)
        if r.retention_until is not None:
            self.retention.add((r.retention_until, r.id))

    def _unindex(self, r: Record) -> None:
        key = (r.type, r.state)
        left = self.counts[key] - 1
        if left:
            self.counts[key] = left
        else:
            del self.counts[key]
        if r.next_run_at is not None:
            sl = self.due[key]
            sl.remove((-r.priority, r.next_run_at, r.id))
            if not sl:
                del self.due[key]
        if r.parent_id is not None:
            _discard(self.children, r.parent_id, r.id)
        if r.root_id is not None:
            _discard(self.by_root, r.root_id, r.id)
        if r.correlation_id is not None:
            _discard(self.by_correlation, r.correlation_id, r.id)
        if r.retention_until is not None:
            self.retention.remove((r.retention_until, r.id))

    def due_states(self, flow_type: str) -> list[str]:
        """States of `flow_type` that have due entries (running excluded)."""
        return [s for (t, s) in self.due if t == flow_type and s != "running"]

    def iter_due(
        self, flow_type: str, state: str, now: int, priority: int | None = None
    ) -> Iterator[DueKey]:
        """Due entries of (type, state) with due time <= now: priority 2, 1, 0, then time."""
        sl = self.due.get((flow_type, state))
        if sl is None:
            return
        for p in (2, 1, 0) if priority is None else (priority,):
            # (-p, now + 1) sorts after every (-p, due <= now, id), whatever the id.
            yield from sl.irange((-p,), (-p, now + 1), inclusive=(True, False))

    def _check(self) -> None:
        """Invariant: every index equals what the records imply."""
        counts: dict[tuple[str, str], int] = {}
        due: dict[tuple[str, str], list[DueKey]] = {}
        children: dict[str, set[str]] = {}
        by_root: dict[str, set[str]] = {}
        by_corr: dict[str, set[str]] = {}
        retention: list[tuple[int, str]] = []
        for fid, r in self.records.items():
            assert fid == r.id, f"record {r.id!r} filed under {fid!r}"
            key = (r.type, r.state)
            counts[key] = counts.get(key, 0) + 1
            if r.terminal:
                assert r.next_run_at is None, f"terminal {fid!r} has a due time"
                assert r.lease_token is None, f"terminal {fid!r} holds a lease"
            if r.state == "running":
                assert r.lease_token is not None and r.lease_deadline is not None, fid
                assert r.next_run_at == r.lease_deadline, f"running {fid!r} due != deadline"
            else:
                assert r.lease_token is None, f"{fid!r} in {r.state!r} holds a lease"
            assert 0 <= r.priority <= 2
            if r.next_run_at is not None:
                due.setdefault(key, []).append((-r.priority, r.next_run_at, r.id))
            if r.parent_id is not None:
                children.setdefault(r.parent_id, set()).add(fid)
            if r.root_id is not None:
                by_root.setdefault(r.root_id, set()).add(fid)
            if r.correlation_id is not None:
                by_corr.setdefault(r.correlation_id, set()).add(fid)
            if r.retention_until is not None:
                retention.append((r.retention_until, fid))
        assert counts == self.counts, "state counts drifted"
        assert {k: sorted(v) for k, v in due.items()} == {
            k: list(v) for k, v in self.due.items()
        }, "due index drifted"
        for sl in self.due.values():
            sl._check()
        assert children == self.children, "children index drifted"
        assert by_root == self.by_root, "root index drifted"
        assert by_corr == self.by_correlation, "correlation index drifted"
        assert sorted(retention) == list(self.retention), "retention index drifted"
        self.retention._check()
        for _t, s in counts:
            assert s not in TERMINAL or (_t, s) not in self.due


class _Bulk(list):  # type: ignore[type-arg]
    """A list that answers `add`, standing in for a SortedList during bulk loads."""

    add = list.append


def _discard(index: dict[str, set[str]], key: str, member: str) -> None:
    members = index[key]
    members.discard(member)
    if not members:
        del index[key]
