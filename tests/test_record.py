"""The in-memory record: an exact tuple (so the cyclic GC untracks it), its helpers, and its
round trip through the event codec."""

from __future__ import annotations

import gc
from pathlib import Path

import pytest
from engine_helpers import FakeClock, open_checked

import flowactors as fa
from flowactors.engine import _record as rec
from flowactors.engine._record import (
    EXT,
    FIELDS,
    ID,
    LEASE_TOKEN,
    STATE,
    VALUES,
    decode_event,
    encode_event,
    evolve,
    from_snapshot,
    is_record,
    leased,
    make_record,
    terminal,
)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def queued(**changes: object) -> rec.Record:
    base = make_record(
        id="f1",
        type="t",
        state="queued",
        version=1,
        attempts=0,
        reclaims=0,
        fencing=0,
        created_at=5,
        updated_at=5,
        next_run_at=5,
        priority=0,
        payload_ver=0,
        payload_size=0,
        result_ver=0,
        error_ver=0,
        hist_floor=1,
        create_digest=7,
        last_event="created",
    )
    return evolve(base, **changes) if changes else base


def test_index_constants_follow_fields() -> None:
    for i, name in enumerate(FIELDS):
        assert getattr(rec, name.upper()) == i
    assert tuple(rec.Fields.__annotations__) == FIELDS


def test_record_is_an_exact_tuple_and_evolve_copies() -> None:
    r = queued()
    assert type(r) is tuple and len(r) == len(FIELDS) and is_record(r)
    assert not is_record([*r]) and not is_record(None)
    new = evolve(r, state="running", lease_token="w:1:1")
    assert type(new) is tuple
    assert (new[STATE], new[LEASE_TOKEN]) == ("running", "w:1:1")
    assert r[STATE] == "queued" and r[LEASE_TOKEN] is None  # the original is untouched
    assert [i for i in range(len(FIELDS)) if new[i] != r[i]] == [STATE, LEASE_TOKEN]
    assert leased(new) and not leased(r)
    assert terminal(evolve(r, state="completed")) and not terminal(r)
    with pytest.raises(TypeError):
        evolve(r, no_such_field=1)


def test_an_evolver_replaces_its_fields_and_keeps_the_rest() -> None:
    r = queued(values={"v": [1, 2]})
    claim = rec.evolver("state", "fencing", optional=("values", "priority"))
    new = claim(r, state="running", fencing=3)
    assert new == evolve(r, state="running", fencing=3) and type(new) is tuple
    assert claim(r, state="s", fencing=1, values=None, priority=2) == evolve(
        r, state="s", fencing=1, values=None, priority=2
    )  # an optional field given as None is set to None, not kept
    with pytest.raises(TypeError):
        claim(r, state="running")  # every required field must be given
    with pytest.raises(TypeError):
        claim(r, state="running", fencing=1, version=9)  # not one of its fields
    with pytest.raises(ValueError):
        rec.evolver("state", "no_such_field")
    with pytest.raises(ValueError):
        rec.evolver("state", optional=("state",))


def test_a_created_record_equals_the_keyword_built_one() -> None:
    """decide_create builds its record as a tuple display, field by field: it must match
    make_record's keywords, with every option set (so a swapped field shows)."""
    from flowactors.engine import _machine as m
    from flowactors.engine._state import ShardState

    create = m.Create(
        "c1",
        "t",
        "ready",
        b"pay",
        "part",
        90,
        2,
        {"v": b"vv"},
        {"a": "b"},
        "parent",
        "root",
        "corr",
        False,
        500,
        1000,
    )
    record, _ = m.decide_create(ShardState(), create, 7)
    want = make_record(
        id="c1",
        type="t",
        state="ready",
        run_state=None,
        version=1,
        attempts=0,
        reclaims=0,
        fencing=0,
        created_at=7,
        updated_at=7,
        next_run_at=90,
        priority=2,
        partition="part",
        payload_ver=1,
        payload_size=3,
        result_ver=0,
        error_ver=0,
        values={"v": [m._new_values_meta({"v": b"vv"})["v"][0], 2]},  # type: ignore[index]
        attributes={"a": "b"},
        parent_id="parent",
        root_id="root",
        correlation_id="corr",
        hist_floor=1,
        active_deadline=507,
        retention_ms=1000,
        create_digest=m._create_digest(create),
        last_event="created",
    )
    assert record == want and len(record) == len(FIELDS)


def test_snapshot_round_trip_interns_strings() -> None:
    r = queued(values={"v": [1, 2]}, ext={"g": "grp", "ps": 1}, run_state="step")
    name, meta, snap, blobs = decode_event(encode_event(r, "created", {"a": 1}, {"p": b"x"}))
    assert (name, meta, blobs) == ("created", {"a": 1}, {"p": b"x"})
    back = from_snapshot(snap)
    assert back == r and type(back) is tuple
    assert back[VALUES] == {"v": [1, 2]} and back[EXT] == {"g": "grp", "ps": 1}
    dynamic = "".join(["que", "ued"])
    again = from_snapshot([*r[:STATE], dynamic, *r[STATE + 1 :]])
    assert again[STATE] is "queued"  # noqa: F632 - interned: one copy per state name
    with pytest.raises(ValueError):
        from_snapshot(list(r)[:-1])


def test_plain_records_are_untracked_by_the_gc() -> None:
    r = queued(next_run_at=10**12)  # fresh objects only: ints, str, None
    gc.collect()
    assert not gc.is_tracked(r)
    with_dict = queued(ext={"g": "grp"})
    gc.collect()
    assert gc.is_tracked(with_dict)  # a dict inside keeps it tracked, which is fine


async def test_live_queued_records_are_untracked_after_a_collection(
    tmp_path: Path, clock: FakeClock
) -> None:
    async with open_checked(tmp_path, clock) as e:
        await e.create_many("t", [fa.CreateSpec(f"f{i}") for i in range(50)])
        await e.create("claimed", "t")
        [flow] = await e.claim_due("t", "w", limit=1)
        gc.collect()
        records = [r for s in e.raw._shards for r in s.state.records.values()]
        assert len(records) == 51
        assert all(type(r) is tuple for r in records)
        assert not any(gc.is_tracked(r) for r in records)
        await e.complete(flow.id, flow.lease_token, flow.fencing_token)
        gc.collect()
        assert not any(gc.is_tracked(r) for s in e.raw._shards for r in s.state.records.values())


async def test_records_after_restart_are_untracked(tmp_path: Path, clock: FakeClock) -> None:
    async with open_checked(tmp_path, clock) as e:
        await e.create_many("t", [fa.CreateSpec(f"f{i}") for i in range(20)])
    async with open_checked(tmp_path, clock) as e:
        gc.collect()
        records = [r for s in e.raw._shards for r in s.state.records.values()]
        assert len(records) == 20
        assert not any(gc.is_tracked(r) for r in records)
        assert {r[ID] for r in records} == {f"f{i}" for i in range(20)}


def test_flow_starts_with_the_record_head() -> None:
    # Shard.to_flow slices the record's first fields straight into a Flow.
    head = fa.Flow._fields[: rec.PARTITION + 1]
    renamed = {
        "fencing_token": "fencing",
        "lease_deadline_ms": "lease_deadline",
        "created_at_ms": "created_at",
        "updated_at_ms": "updated_at",
        "next_run_at_ms": "next_run_at",
        "partition_key": "partition",
    }
    assert tuple(renamed.get(f, f) for f in head) == FIELDS[: rec.PARTITION + 1]


def test_the_create_digest_is_stable_and_sees_every_field() -> None:
    """The digest an idempotent create is checked against: memoised heads give the same
    value on every call, and a change in any field (or the payload) changes it."""
    from flowactors.engine import _machine as m

    m._DIGEST_HEADS.clear()
    fields = ("c", "t", "ready", b"p", "part", None, 1, None, None, "par", "r", "k", True, 9, 8)
    base = m.Create(*fields)
    first = m._create_digest(base)
    assert m._create_digest(base) == first  # served from the memo
    m._DIGEST_HEADS.clear()
    assert m._create_digest(base) == first  # and equal to a fresh computation
    changes = {
        "type": "t2",
        "state": "other",
        "partition": "p2",
        "parent_id": "par2",
        "root_id": "r2",
        "correlation_id": "k2",
        "priority": 2,
        "max_active_ms": 10,
        "retention_ms": None,
        "payload": b"q",
    }
    seen = {first}
    for name, value in changes.items():
        changed = m.Create(**{**{f: getattr(base, f) for f in base.__slots__}, name: value})
        digest = m._create_digest(changed)
        assert digest not in seen, name
        seen.add(digest)


def test_a_run_encodes_each_record_as_encode_event_does() -> None:
    """`encode_run` shares each meta's tail across a run: every event must still be what
    `encode_event` writes, for plain records, records whose own fields need a tail of
    their own (values, attributes, ext), records outside the fixed layout, and metas
    shared, per record, or None."""
    shared = {"worker": "w"}
    per = [{"from": "a"}, None, {"from": "a"}, {"from": 7}, shared, {"n": [1, 2]}]
    records = [
        queued(),
        queued(values={"v": [1, 2]}),
        queued(attributes={"k": "v"}),
        queued(ext={"g": "grp", "ps": 1}),
        queued(id="nul\x00inside"),
        queued(priority=2**70),
    ]
    for meta in (None, shared, {}):
        want = [encode_event(r, "claimed", meta, None) for r in records]
        assert rec.encode_run(records, "claimed", meta) == want
    want = [encode_event(r, "completed", m, None) for r, m in zip(records, per, strict=True)]
    assert rec.encode_run(records, "completed", None, per) == want


def test_the_generated_record_code_is_current() -> None:
    """`_record_gen.py` is what `python -m flowactors.engine._codegen` writes for today's schema
    and the evolvers the engine asks for (in a fresh process: only the library's specs)."""
    import subprocess
    import sys

    fresh = subprocess.run(
        [
            sys.executable,
            "-c",
            "from flowactors.engine import _codegen; print(_codegen.source(), end='')",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    checked_in = Path(rec.__file__).with_name("_record_gen.py").read_text()
    assert fresh == checked_in, "run: python -m flowactors.engine._codegen"


def test_every_engine_evolver_is_generated_code() -> None:
    from flowactors.engine import _machine, _record_gen

    for name in dir(_machine):
        fn = getattr(_machine, name)
        if callable(fn) and getattr(fn, "__name__", "") == "slow":
            raise AssertionError(f"_machine.{name} is not generated: run the generator")
    assert len(_record_gen.EVOLVERS) >= 6
