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
- `terminal[(type, state)]`: a SortedList of `(updated_at, id)` for terminal records (time
  window queries); `parked[(type, state)]`: a SortedList of ids of live records with no due
  time (parents waiting for children). With `due`, every record sits in exactly one of
  these three, so listing a (type, state) never scans other flows.
- `deadlines`: a SortedList of `(active_deadline, id)` for live records with max_active_ms.
- `part_counts[(type, partition, state)]`: counts per partition, for records that have one.
- `part_due[(type, state, partition)]`: the `due` entries of the records that have a
  partition, per partition, so a claim for one tenant ranges its own entries instead of
  walking past every other tenant's due flows on the shard. Records without a partition
  (most) never pay for it.
- `foreign`: ids of the records that do not live on their id's home shard (created in a
  partition that routes elsewhere, or children placed on their parent's shard). With each
  shard's records, it is how the engine finds a flow from its id alone: the home shard's
  records, else the shard whose `foreign` holds it. Only a record with a partition or a
  parent can be foreign, so plain records never pay for it.

Two structures are not derived from records but from their own keys in the log (rebuilt
by recovery from those keys): `noted[parent]`, the children whose terminal outcome the
parent has counted (fanout idempotency).

One structure is transient, owned by the shard for the frame it is building:
`open_outcomes[parent]` = (version, meta) of the parent's child-outcome event written
earlier in that same frame, which a later outcome for the same group extends in place
(same version) instead of writing one event per child. Empty between frames.

`_check()` recomputes every index from the records and compares; tests call it after each
step.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from operator import itemgetter
from typing import Any

from ._record import (
    ACTIVE_DEADLINE,
    CORRELATION_ID,
    ID,
    LEASE_DEADLINE,
    LEASE_TOKEN,
    NEXT_RUN_AT,
    PARENT_ID,
    PARTITION,
    PRIORITY,
    RETENTION_UNTIL,
    ROOT_ID,
    STATE,
    TERMINAL,
    TYPE,
    UPDATED_AT,
    Record,
)
from ._sorted import SortedIndex

DueKey = tuple[int, int, str]

# Every field an index reads: a new version equal on all of them sits where the old one
# did, so `put` only swaps the record (a parked parent counting its children).
_PLACE = itemgetter(
    TYPE,
    STATE,
    NEXT_RUN_AT,
    PRIORITY,
    UPDATED_AT,
    PARTITION,
    ACTIVE_DEADLINE,
    PARENT_ID,
    ROOT_ID,
    CORRELATION_ID,
    RETENTION_UNTIL,
)


# The fields that put a record into the lineage, partition and deadline indexes: a record
# with all of them None (most) is "plain", and `put_many` indexes it inline.
_LINKS = itemgetter(PARTITION, ACTIVE_DEADLINE, PARENT_ID, ROOT_ID, CORRELATION_ID)
_NO_LINKS = (None, None, None, None, None)


# Fewer records than this go through `put` one by one in `put_many` (measured: below
# about 8 records the gathering costs more than one `put` each).
_GATHER = 8
# Due indexes of at most this many entries are scanned whole by `iter_due` rather than
# ranged once per priority (each `irange` bisects and builds a generator: ~1 us).
_SCAN = 16


class ShardState:
    __slots__ = (
        "_sorted_list",
        "by_correlation",
        "by_root",
        "children",
        "counts",
        "deadlines",
        "due",
        "due_types",
        "foreign",
        "index",
        "noted",
        "open_outcomes",
        "parked",
        "part_counts",
        "part_due",
        "records",
        "retention",
        "route",
        "terminal",
    )

    def __init__(self, index: int = 0, route: Callable[[str], int] | None = None) -> None:
        # Which shard this is, and the engine's routing function (routing key -> shard):
        # fanout decides purely whether a child or parent lives here or elsewhere.
        self.index = index
        self.route: Callable[[str], int] = route or (lambda key: 0)
        self.records: dict[str, Record] = {}
        self.due: dict[tuple[str, str], SortedIndex] = {}
        # The same sorted indexes by type, then state: which states of a type have due
        # entries, without a scan of every key (claims ask it; so does the engine's
        # routing of a claim, `may_claim`, to skip shards with nothing to give).
        self.due_types: dict[str, dict[str, SortedIndex]] = {}
        self.counts: dict[tuple[str, str], int] = {}
        self.children: dict[str, set[str]] = {}
        self.by_root: dict[str, set[str]] = {}
        self.by_correlation: dict[str, set[str]] = {}
        self.retention: SortedIndex = SortedIndex()
        self.terminal: dict[tuple[str, str], SortedIndex] = {}
        self.parked: dict[tuple[str, str], SortedIndex] = {}
        self.deadlines: SortedIndex = SortedIndex()
        self.part_counts: dict[tuple[str, str, str], int] = {}
        self.foreign: set[str] = set()
        self.noted: dict[str, set[str]] = {}
        self.open_outcomes: dict[str, tuple[int, dict[str, Any]]] = {}
        self.part_due: dict[tuple[str, str, str], SortedIndex] = {}
        self._sorted_list: type = SortedIndex

    def get(self, flow_id: str) -> Record | None:
        return self.records.get(flow_id)

    def put(self, record: Record) -> None:
        """Insert or replace a record, keeping every index in step."""
        old = self.records.get(record[ID])
        if old is not None:
            # (state first: claims and outcomes change it, and skip the two gets)
            if old[STATE] == record[STATE] and _PLACE(old) == _PLACE(record):
                self.records[record[ID]] = record
                return
            self._unindex(old)
        self.records[record[ID]] = record
        self._index(record)

    def put_many(self, batch: list[Record]) -> None:
        """`put` of each record in turn (distinct ids), with the same resulting indexes.

        Plain records (see `_LINKS`) whose predecessor, if any, is plain too are indexed
        together: their state counts move once per key, and their sorted entries leave
        and join each index in one `remove_all` / `add_all` (mostly at its head and its
        tail: see `SortedIndex`). Removals go before additions, which is `put`'s order
        for every record, since no two records of the batch share an entry (entries end
        with the id). Other records go through `put`, after what is pending is applied."""
        if len(batch) < _GATHER:  # (a few records: gathering costs more than it saves)
            for record in batch:
                self.put(record)
            return
        records = self.records
        get = records.get
        moved: dict[tuple[str, str], int] = {}
        # index name -> key -> entries leaving / joining ("retention" has one key, None)
        leave: dict[str, dict[Any, list[Any]]] = {"due": {}, "terminal": {}, "parked": {}}
        join: dict[str, dict[Any, list[Any]]] = {"due": {}, "terminal": {}, "parked": {}}
        leave_due, leave_terminal, leave_parked = leave["due"], leave["terminal"], leave["parked"]
        join_due, join_terminal, join_parked = join["due"], join["terminal"], join["parked"]
        leave_retention: list[tuple[int, str]] = []
        join_retention: list[tuple[int, str]] = []
        for r in batch:
            fid = r[ID]
            old = get(fid)
            if _LINKS(r) != _NO_LINKS or (old is not None and _LINKS(old) != _NO_LINKS):
                self._apply_moves(moved, leave, join, leave_retention, join_retention)
                self.put(r)
                continue
            if old is not None:
                key = (old[TYPE], old[STATE])
                moved[key] = moved.get(key, 0) - 1
                if old[NEXT_RUN_AT] is not None:
                    entries = leave_due.get(key)
                    if entries is None:
                        entries = leave_due[key] = []
                    entries.append((-old[PRIORITY], old[NEXT_RUN_AT], fid))
                elif old[STATE] in TERMINAL:
                    entries = leave_terminal.get(key)
                    if entries is None:
                        entries = leave_terminal[key] = []
                    entries.append((old[UPDATED_AT], fid))
                else:
                    entries = leave_parked.get(key)
                    if entries is None:
                        entries = leave_parked[key] = []
                    entries.append(fid)
                if old[RETENTION_UNTIL] is not None:
                    leave_retention.append((old[RETENTION_UNTIL], fid))
            records[fid] = r
            key = (r[TYPE], r[STATE])
            moved[key] = moved.get(key, 0) + 1
            if r[NEXT_RUN_AT] is not None:
                entries = join_due.get(key)
                if entries is None:
                    entries = join_due[key] = []
                entries.append((-r[PRIORITY], r[NEXT_RUN_AT], fid))
            elif r[STATE] in TERMINAL:
                entries = join_terminal.get(key)
                if entries is None:
                    entries = join_terminal[key] = []
                entries.append((r[UPDATED_AT], fid))
            else:
                entries = join_parked.get(key)
                if entries is None:
                    entries = join_parked[key] = []
                entries.append(fid)
            if r[RETENTION_UNTIL] is not None:
                join_retention.append((r[RETENTION_UNTIL], fid))
        self._apply_moves(moved, leave, join, leave_retention, join_retention)

    def _apply_moves(
        self,
        moved: dict[tuple[str, str], int],
        leave: dict[str, dict[Any, list[Any]]],
        join: dict[str, dict[Any, list[Any]]],
        leave_retention: list[tuple[int, str]],
        join_retention: list[tuple[int, str]],
    ) -> None:
        """Apply what `put_many` gathered, and empty the gathering (it goes on)."""
        counts = self.counts
        for key, delta in moved.items():
            n = counts.get(key, 0) + delta
            if n:
                counts[key] = n
            else:
                counts.pop(key, None)
        moved.clear()
        for name, index in (
            ("due", self.due),
            ("terminal", self.terminal),
            ("parked", self.parked),
        ):
            gone = leave[name]
            for key, entries in gone.items():
                index[key].remove_all(entries)
            for key, entries in join[name].items():
                sl = index.get(key)
                if sl is None:
                    sl = index[key] = SortedIndex()
                    if index is self.due:
                        self.due_types.setdefault(key[0], {})[key[1]] = sl
                sl.add_all(entries)
            for key in gone:
                if key in index and not index[key]:
                    del index[key]
                    if index is self.due:
                        self._forget_due(key)
            gone.clear()
            join[name].clear()
        if leave_retention:
            self.retention.remove_all(leave_retention)
            leave_retention.clear()
        if join_retention:
            self.retention.add_all(join_retention)
            join_retention.clear()

    def load(self, records: list[Record]) -> None:
        """Recovery: index many records at once. Runs the same `_index` as `put`, but the
        sorted indexes collect into plain lists that are sorted once at the end."""
        saved = (self.due, self.terminal, self.parked, self.retention, self.deadlines)
        saved_part = self.part_due
        self.due, self.terminal, self.parked, self.part_due = {}, {}, {}, {}
        # (lists that answer `add`, standing in for the sorted indexes while loading)
        self.retention, self.deadlines = _Bulk(), _Bulk()  # type: ignore[assignment]
        self._sorted_list = _Bulk
        try:
            for r in records:
                self.records[r[ID]] = r
                self._index(r)
        finally:
            bulk = (self.due, self.terminal, self.parked, self.retention, self.deadlines)
            loaded_part: dict[Any, Any] = self.part_due
            self.due, self.terminal, self.parked, self.retention, self.deadlines = saved
            self.part_due = saved_part
            self._sorted_list = SortedIndex
        for part_key, part_entries in loaded_part.items():
            part_sl = self.part_due.get(part_key)
            if part_sl is None:
                self.part_due[part_key] = SortedIndex(part_entries)
            else:
                part_sl.update(part_entries)
        for mine, loaded in zip((self.due, self.terminal, self.parked), bulk[:3], strict=True):
            for key, entries in loaded.items():
                sl = mine.get(key)
                if sl is None:
                    mine[key] = SortedIndex(entries)
                else:
                    sl.update(entries)
        self.retention.update(bulk[3])
        self.deadlines.update(bulk[4])
        self.due_types.clear()
        for (flow_type, st), sl in self.due.items():
            self.due_types.setdefault(flow_type, {})[st] = sl

    def remove(self, flow_id: str) -> None:
        old = self.records.pop(flow_id, None)
        if old is not None:
            self._unindex(old)

    def _index(self, r: Record) -> None:
        key = (r[TYPE], r[STATE])
        self.counts[key] = self.counts.get(key, 0) + 1
        if r[NEXT_RUN_AT] is not None:
            sl = self.due.get(key)
            if sl is None:
                sl = self.due[key] = self._sorted_list()
                self.due_types.setdefault(key[0], {})[key[1]] = sl
            sl.add((-r[PRIORITY], r[NEXT_RUN_AT], r[ID]))
        elif r[STATE] in TERMINAL:
            sl = self.terminal.get(key)
            if sl is None:
                sl = self.terminal[key] = self._sorted_list()
            sl.add((r[UPDATED_AT], r[ID]))
        else:
            sl = self.parked.get(key)
            if sl is None:
                sl = self.parked[key] = self._sorted_list()
            sl.add(r[ID])
        if r[PARTITION] is not None:
            pkey = (r[TYPE], r[PARTITION], r[STATE])
            self.part_counts[pkey] = self.part_counts.get(pkey, 0) + 1
            if r[NEXT_RUN_AT] is not None:
                dkey = (r[TYPE], r[STATE], r[PARTITION])
                sl = self.part_due.get(dkey)
                if sl is None:
                    sl = self.part_due[dkey] = self._sorted_list()
                sl.add((-r[PRIORITY], r[NEXT_RUN_AT], r[ID]))
            if self.route(r[ID]) != self.index:
                self.foreign.add(r[ID])
        if r[ACTIVE_DEADLINE] is not None and r[STATE] not in TERMINAL:
            self.deadlines.add((r[ACTIVE_DEADLINE], r[ID]))
        if r[PARENT_ID] is not None:
            self.children.setdefault(r[PARENT_ID], set()).add(r[ID])
            if r[PARTITION] is None and self.route(r[ID]) != self.index:
                self.foreign.add(r[ID])
        if r[ROOT_ID] is not None:
            self.by_root.setdefault(r[ROOT_ID], set()).add(r[ID])
        if r[CORRELATION_ID] is not None:
            self.by_correlation.setdefault(r[CORRELATION_ID], set()).add(r[ID])
        if r[RETENTION_UNTIL] is not None:
            self.retention.add((r[RETENTION_UNTIL], r[ID]))

    def _unindex(self, r: Record) -> None:
        key = (r[TYPE], r[STATE])
        left = self.counts[key] - 1
        if left:
            self.counts[key] = left
        else:
            del self.counts[key]
        if r[NEXT_RUN_AT] is not None:
            sl = self.due[key]
            sl.remove((-r[PRIORITY], r[NEXT_RUN_AT], r[ID]))
            if not sl:
                del self.due[key]
                self._forget_due(key)
        elif r[STATE] in TERMINAL:
            sl = self.terminal[key]
            sl.remove((r[UPDATED_AT], r[ID]))
            if not sl:
                del self.terminal[key]
        else:
            sl = self.parked[key]
            sl.remove(r[ID])
            if not sl:
                del self.parked[key]
        if r[PARTITION] is not None:
            pkey = (r[TYPE], r[PARTITION], r[STATE])
            n = self.part_counts[pkey] - 1
            if n:
                self.part_counts[pkey] = n
            else:
                del self.part_counts[pkey]
            if r[NEXT_RUN_AT] is not None:
                dkey = (r[TYPE], r[STATE], r[PARTITION])
                sl = self.part_due[dkey]
                sl.remove((-r[PRIORITY], r[NEXT_RUN_AT], r[ID]))
                if not sl:
                    del self.part_due[dkey]
            self.foreign.discard(r[ID])
        elif r[PARENT_ID] is not None:
            self.foreign.discard(r[ID])
        if r[ACTIVE_DEADLINE] is not None and r[STATE] not in TERMINAL:
            self.deadlines.remove((r[ACTIVE_DEADLINE], r[ID]))
        if r[PARENT_ID] is not None:
            _discard(self.children, r[PARENT_ID], r[ID])
        if r[ROOT_ID] is not None:
            _discard(self.by_root, r[ROOT_ID], r[ID])
        if r[CORRELATION_ID] is not None:
            _discard(self.by_correlation, r[CORRELATION_ID], r[ID])
        if r[RETENTION_UNTIL] is not None:
            self.retention.remove((r[RETENTION_UNTIL], r[ID]))

    def note_child(self, parent_id: str, child_id: str) -> None:
        self.noted.setdefault(parent_id, set()).add(child_id)

    def noted_child(self, parent_id: str, child_id: str) -> bool:
        kids = self.noted.get(parent_id)
        return kids is not None and child_id in kids

    def _forget_due(self, key: tuple[str, str]) -> None:
        states = self.due_types[key[0]]
        del states[key[1]]
        if not states:
            del self.due_types[key[0]]

    def due_states(self, flow_type: str) -> list[str]:
        """States of `flow_type` that have due entries (running excluded)."""
        states = self.due_types.get(flow_type)
        if states is None:
            return []
        return [s for s in states if s != "running"]

    def lease_expired(self, flow_type: str, now: int) -> bool:
        """Whether some running flow of `flow_type` holds a lease expired at `now` (a claim
        with `reclaim` would take it)."""
        by_state = self.due_types.get(flow_type)
        sl = None if by_state is None else by_state.get("running")
        return sl is not None and _band_due(sl, (2, 1, 0), now)

    def may_claim(
        self,
        flow_type: str,
        states: tuple[str, ...] | None,
        reclaim: bool,
        only_expired: bool,
        priority: int | None,
        now: int,
    ) -> bool:
        """Whether a claim of `flow_type` with these filters could take anything here
        (see `claim_band`)."""
        return self.claim_band(flow_type, states, reclaim, only_expired, priority, now) >= 0

    def claim_band(
        self,
        flow_type: str,
        states: tuple[str, ...] | None,
        reclaim: bool,
        only_expired: bool,
        priority: int | None,
        now: int,
    ) -> int:
        """The highest priority band in which a claim of `flow_type` with these filters
        could take something here: some due entry (or, with `reclaim`, an expired lease)
        of a wanted state is due at `now`; -1 when there is none. Never -1 when the claim
        would take a flow (partition filters and policies are not looked at: a band may
        still claim nothing). Read by the engine, outside the actor, to send a claim only
        where there is work, the highest band first."""
        by_state = self.due_types.get(flow_type)
        if by_state is None:
            return -1
        best = -1
        for st, sl in by_state.items():
            if st == "running":
                if not reclaim:
                    continue
            elif only_expired or (states is not None and st not in states):
                continue
            if priority is not None:
                if _band_due(sl, (priority,), now):
                    return priority
                continue
            first = sl[0]
            top = -first[0]  # the highest band this list holds
            if top <= best:
                continue  # nothing here can beat what was found
            if first[1] <= now:  # the first entry of the first band is due
                if top == 2:
                    return 2
                best = top
                continue
            for p in range(top, best, -1):  # its bands above the best found, highest first
                if _band_due(sl, (p,), now):
                    best = p
                    break
        return best

    def iter_due(
        self,
        flow_type: str,
        state: str,
        now: int,
        priority: int | None = None,
        partition: str | None = None,
    ) -> Iterator[DueKey]:
        """Due entries of (type, state) with due time <= now: priority 2, 1, 0, then time;
        with `partition`, only that partition's (from its own index)."""
        if partition is None:
            sl = self.due.get((flow_type, state))
        else:
            sl = self.part_due.get((flow_type, state, partition))
        if sl is None:
            return
        if len(sl) <= _SCAN:
            # A few entries (a small queue, a flow type of its own): one pass in sorted
            # order, (-p, due, id), is cheaper than three bisected ranges.
            for key in sl:
                if key[1] <= now and (priority is None or key[0] == -priority):
                    yield key
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
        terminal: dict[tuple[str, str], list[tuple[int, str]]] = {}
        parked: dict[tuple[str, str], list[str]] = {}
        deadlines: list[tuple[int, str]] = []
        part_counts: dict[tuple[str, str, str], int] = {}
        part_due: dict[tuple[str, str, str], list[DueKey]] = {}
        foreign = {fid for fid in self.records if self.route(fid) != self.index}
        assert foreign == self.foreign, "foreign index drifted"
        for fid, r in self.records.items():
            assert fid == r[ID], f"record {r[ID]!r} filed under {fid!r}"
            key = (r[TYPE], r[STATE])
            counts[key] = counts.get(key, 0) + 1
            if r[STATE] in TERMINAL:
                assert r[NEXT_RUN_AT] is None, f"terminal {fid!r} has a due time"
                assert r[LEASE_TOKEN] is None, f"terminal {fid!r} holds a lease"
            if r[STATE] == "running":
                assert r[LEASE_TOKEN] is not None and r[LEASE_DEADLINE] is not None, fid
                assert r[NEXT_RUN_AT] == r[LEASE_DEADLINE], f"running {fid!r} due != deadline"
            else:
                assert r[LEASE_TOKEN] is None, f"{fid!r} in {r[STATE]!r} holds a lease"
            assert 0 <= r[PRIORITY] <= 2
            if r[NEXT_RUN_AT] is not None:
                due.setdefault(key, []).append((-r[PRIORITY], r[NEXT_RUN_AT], r[ID]))
            elif r[STATE] in TERMINAL:
                terminal.setdefault(key, []).append((r[UPDATED_AT], fid))
            else:
                parked.setdefault(key, []).append(fid)
            if r[PARTITION] is not None:
                pkey = (r[TYPE], r[PARTITION], r[STATE])
                part_counts[pkey] = part_counts.get(pkey, 0) + 1
                if r[NEXT_RUN_AT] is not None:
                    dkey = (r[TYPE], r[STATE], r[PARTITION])
                    part_due.setdefault(dkey, []).append((-r[PRIORITY], r[NEXT_RUN_AT], fid))
            if r[ACTIVE_DEADLINE] is not None and r[STATE] not in TERMINAL:
                deadlines.append((r[ACTIVE_DEADLINE], fid))
            if r[PARENT_ID] is not None:
                children.setdefault(r[PARENT_ID], set()).add(fid)
            if r[ROOT_ID] is not None:
                by_root.setdefault(r[ROOT_ID], set()).add(fid)
            if r[CORRELATION_ID] is not None:
                by_corr.setdefault(r[CORRELATION_ID], set()).add(fid)
            if r[RETENTION_UNTIL] is not None:
                retention.append((r[RETENTION_UNTIL], fid))
        assert counts == self.counts, "state counts drifted"
        assert {k: sorted(v) for k, v in due.items()} == {
            k: list(v) for k, v in self.due.items()
        }, "due index drifted"
        for sl in self.due.values():
            sl._check()
        by_type: dict[str, dict[str, SortedIndex]] = {}
        for (flow_type, st), sl in self.due.items():
            by_type.setdefault(flow_type, {})[st] = sl
        assert by_type.keys() == self.due_types.keys(), "due types drifted"
        for flow_type, by_state in by_type.items():
            held = self.due_types[flow_type]
            assert held.keys() == by_state.keys(), f"due states of {flow_type!r} drifted"
            assert all(held[st] is sl for st, sl in by_state.items()), "due types drifted"
        assert children == self.children, "children index drifted"
        assert by_root == self.by_root, "root index drifted"
        assert by_corr == self.by_correlation, "correlation index drifted"
        assert sorted(retention) == list(self.retention), "retention index drifted"
        self.retention._check()
        lists = (("terminal", self.terminal, terminal), ("parked", self.parked, parked))
        for name, mine, want in lists:
            assert {k: sorted(v) for k, v in want.items()} == {
                k: list(v) for k, v in mine.items()
            }, f"{name} index drifted"
            for sl in mine.values():
                sl._check()
        assert sorted(deadlines) == list(self.deadlines), "deadline index drifted"
        self.deadlines._check()
        assert part_counts == self.part_counts, "partition counts drifted"
        assert {k: sorted(v) for k, v in part_due.items()} == {
            k: list(v) for k, v in self.part_due.items()
        }, "partition due index drifted"
        for sl in self.part_due.values():
            sl._check()
        for parent, kids in self.noted.items():
            assert kids, f"empty noted set for {parent!r}"
        assert not self.open_outcomes, "an outcome event left open after its frame"
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


def _band_due(sl: Any, bands: tuple[int, ...], now: int) -> bool:
    """Whether one of the priority `bands` of a per-(type, state) due list has an entry
    due at `now`: the first entry of band -p is its earliest due time."""
    for p in bands:
        i = sl.bisect_left((-p,))
        if i < len(sl):
            entry = sl[i]
            if entry[0] == -p and entry[1] <= now:
                return True
    return False
