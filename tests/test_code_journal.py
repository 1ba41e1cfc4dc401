"""The journal layout of code runs and ASL executions (`flowactors.sdk._journal`) against a
simple model: the journal is every unit's events in order, whatever the values it is
stored in.

Units are stored by `extend` into a dict of named values, as the engine would store them
(a value is set or overwritten, never deleted). After each unit, reading the values from
nothing, and from any journal known earlier (the runner's cache, possibly stale), gives
exactly the events so far; the number of journal values stays within FLAT + log2(units)
+ 1; and the journal `extend` returned is the one a reader assembles.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import trio
import trio.testing
from code_helpers import LOOP, code_runner, counter
from hypothesis import given, settings
from hypothesis import strategies as st

from flowactors.code import _values, journal_names
from flowactors.sdk import _journal as jl

Store = dict[str, bytes]
P = "j:"  # (any prefix: the code runner's)


def _read(store: Store, known: jl.Journal | None) -> jl.Journal:
    now = jl.layout({name: len(data) for name, data in store.items()}, P)
    keep, names = jl.plan(known, now)
    chunks = [(name, _values.decode(store[name])) for name in names]
    return jl.assemble(known, now, keep, chunks)


def _journal_values(store: Store) -> int:
    return sum(1 for name in store if name.startswith(P))


_units = st.lists(
    st.lists(st.fixed_dictionaries({"pos": st.integers(0, 99)}), min_size=0, max_size=3),
    min_size=10,
    max_size=120,
)


@given(_units, st.data())
@settings(max_examples=60, deadline=None)
def test_any_reader_sees_every_unit_in_order(units: list[list[Any]], data: st.DataObject) -> None:
    store: Store = {"code": b"x"}  # (other values of the run are not the journal's)
    journal = jl.NEW
    seen: list[jl.Journal] = [journal]
    model: list[Any] = []
    for events in units:
        values, journal = jl.extend(journal, events, P)
        if values is None:
            assert not events
            continue
        store.update(values)
        model.extend(events)
        assert journal.events == model
        fresh = _read(store, None)
        assert fresh == journal
        assert jl.units({name: len(data) for name, data in store.items()}, P) == journal.units
        known = data.draw(st.sampled_from(seen))
        assert _read(store, known) == journal  # from a stale cache: only what it lacks
        assert _journal_values(store) <= jl.FLAT + journal.units.bit_length() + 1
        seen.append(journal)
    for known in seen:  # the final journal, from every journal known on the way
        assert _read(store, known) == journal


def test_a_run_stored_with_a_value_per_step_goes_on_in_levels() -> None:
    """Runs stored before levels existed have one value per step, possibly many more
    than FLAT: they are read as they are, and their next steps go to levels."""
    store: Store = {jl.flat_name(P, n): _values.encode_plain([{"pos": n}]) for n in range(1, 41)}
    journal = _read(store, None)
    assert (journal.units, journal.flat, journal.levels) == (40, 40, {})
    model = [{"pos": n} for n in range(1, 41)]
    for n in range(41, 60):
        values, journal = jl.extend(journal, [{"pos": n}], P)
        assert values is not None and all(name.startswith(P + "L") for name in values)
        store.update(values)
        model.append({"pos": n})
        assert _read(store, None).events == model == journal.events


async def test_a_long_run_keeps_few_values_and_replays_from_them(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    k = 300
    async with code_runner(tmp_path, LOOP) as r:
        assert await r.execute(counter, "long", k) == sum(range(1, k + 1))
        flow = await r.engine.get("long")
        assert flow is not None
        names = [n for n in flow.value_sizes if n.startswith(P)]
        assert len(names) <= jl.FLAT + k.bit_length() + 1
        history = await r.history("long")
        completed = [e["value"] for e in history if e["type"] == "completed"]
        assert completed == list(range(1, k + 1))  # every activity, in order
        # A runner that never saw the run (no cache) reads the same journal.
        fresh = type(r)(r.engine, LOOP)
        assert await fresh.history("long") == history


async def test_a_run_reads_only_the_journal_values_it_has_not_seen(
    tmp_path: Path, autojump_clock: trio.testing.MockClock, monkeypatch: Any
) -> None:
    """A worker remembers the journal it stored: a run it keeps running reads no journal
    value back (a new run has none to read), and a runner that never saw it reads each
    value once."""
    async with code_runner(tmp_path, LOOP, sticky_runs=0) as r:
        reads: list[list[str]] = []
        get_values = r.engine.get_values

        async def counting(flow_id: str, names: list[str], **kwargs: Any) -> Any:
            reads.append(list(names))
            return await get_values(flow_id, names, **kwargs)

        monkeypatch.setattr(r.engine, "get_values", counting)
        assert await r.execute(counter, "run", 40) == sum(range(1, 41))
        assert reads == []
        fresh = type(r)(r.engine, LOOP)
        await fresh.history("run")
        flow = await r.engine.get("run")
        assert flow is not None
        assert reads == [journal_names(flow.value_sizes)]
