"""The batch paths against the per-item paths they stand in for.

`decide_claim`, `decide_create_many`, `decide_finish_run` and `decide_transition_run` build
the common case inline (positional evolvers, one `Writes` run per decision,
`ShardState.put_many`); everything else goes the per-item way (`take`, `decide_create`,
`_finish`, `decide_transition`, `put`). A policy that
acts on writes turns the batch paths off for its type (`Config.settled`), and a history cap
no flow reaches changes nothing else: so two engines driven by the same commands on the
same clock, one of them with such a policy for the type, must answer alike and hold
identical flows and histories.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import trio
from engine_helpers import FakeClock, open_checked
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import flowactors as fa
from flowactors.engine import _machine as m
from flowactors.engine import _record as rec
from flowactors.engine._record import FIELDS, evolve, make_record
from flowactors.engine._state import ShardState

TYPE = "job"
IDS = [f"f{i}" for i in range(8)]

# -- positional evolvers ------------------------------------------------------------------


def _record(**changes: Any) -> rec.Record:
    base = make_record(
        id="a",
        type=TYPE,
        state="queued",
        version=3,
        attempts=1,
        reclaims=2,
        fencing=4,
        created_at=10,
        updated_at=20,
        next_run_at=30,
        priority=1,
        payload_ver=1,
        payload_size=5,
        result_ver=0,
        error_ver=2,
        values={"v": [7, 1]},
        attributes={"k": "v"},
        hist_floor=1,
        retention_ms=None,
        create_digest=99,
        last_event="retry",
    )
    return evolve(base, **changes)


def test_the_claimed_evolver_builds_what_the_keyword_claim_builds() -> None:
    r = _record()
    kw = m._CLAIM(
        r,
        state="running",
        run_state="queued",
        version=4,
        reclaims=2,
        fencing=5,
        lease_owner="w",
        lease_token="w:50:5",
        lease_deadline=90,
        next_run_at=90,
        updated_at=50,
        last_event="claimed",
    )
    pos = m._CLAIMED(r, "running", "queued", 4, 5, "w", "w:50:5", 90, 90, 50)
    assert pos == kw and type(pos) is tuple and len(pos) == len(FIELDS)


def test_the_finished_evolver_builds_what_terminal_builds() -> None:
    r = _record(
        state="running", run_state="step", lease_owner="w", lease_token="t", lease_deadline=90
    )
    config = m.Config()
    for target, result_ver, error_ver in (("completed", 4, 2), ("failed", 0, 4)):
        kw = m._terminal(
            r, target, 50, config, last_event=target, result_ver=result_ver, error_ver=error_ver
        )
        until = 50 + config.default_retention_ms
        pos = m._FINISHED(r, target, 4, 50, until, target, result_ver, error_ver)
        assert pos == kw


def test_a_positional_evolver_refuses_optional_fields_and_checks_fixed_ones() -> None:
    import pytest

    with pytest.raises(ValueError):
        rec.evolver("state", optional=("version",), positional=True)
    with pytest.raises(ValueError):
        rec.evolver("state", fixed={"state": None})
    with pytest.raises(ValueError):
        rec.evolver("state", fixed={"no_such_field": None})
    f = rec.evolver("state", positional=True, fixed={"lease_token": None, "priority": 2})
    r = _record(lease_token="t")
    assert f(r, "x") == evolve(r, state="x", lease_token=None, priority=2)


def test_writes_expand_to_one_write_per_record() -> None:
    a, b = _record(id="a"), _record(id="b")
    run = m.Writes([a, b], "claimed", {"worker": "w"})
    assert [(w.record, w.event, w.meta, w.blobs) for w in run.expand()] == [
        (a, "claimed", {"worker": "w"}, None),
        (b, "claimed", {"worker": "w"}, None),
    ]
    run = m.Writes([a, b], "completed", None, [{"from": "x"}, None], [None, {"r": b"1"}])
    assert [(w.meta, w.blobs) for w in run.expand()] == [({"from": "x"}, None), (None, {"r": b"1"})]


# -- put_many -------------------------------------------------------------------------------

_STATES = ("queued", "ready", "running", "completed", "failed", "waiting")


@st.composite
def _records(draw: st.DrawFn, flow_id: str) -> rec.Record:
    state = draw(st.sampled_from(_STATES))
    terminal = state in rec.TERMINAL
    due = None if terminal else draw(st.one_of(st.none(), st.integers(0, 50)))
    running = state == "running"
    if running:
        due = draw(st.integers(0, 50))
    return make_record(
        id=flow_id,
        type=draw(st.sampled_from(("t1", "t2"))),
        state=state,
        version=draw(st.integers(1, 5)),
        lease_token="tok" if running else None,
        lease_deadline=due if running else None,
        updated_at=draw(st.integers(0, 50)),
        next_run_at=due,
        priority=draw(st.integers(0, 2)),
        partition=draw(st.sampled_from((None, None, "p"))),
        parent_id=draw(st.sampled_from((None, None, "parent"))),
        root_id=draw(st.sampled_from((None, None, "root"))),
        correlation_id=draw(st.sampled_from((None, None, "corr"))),
        active_deadline=None if terminal else draw(st.sampled_from((None, None, 40))),
        retention_until=draw(st.integers(0, 99)) if terminal else None,
    )


@st.composite
def _batches(draw: st.DrawFn) -> list[list[rec.Record]]:
    batches = []
    for _ in range(draw(st.integers(1, 6))):
        ids = draw(st.lists(st.sampled_from(IDS), unique=True, max_size=len(IDS)))
        batches.append([draw(_records(fid)) for fid in ids])
    return batches


def _indexes(s: ShardState) -> dict[str, Any]:
    return {
        "records": dict(s.records),
        "counts": dict(s.counts),
        "due": {k: list(v) for k, v in s.due.items()},
        "terminal": {k: list(v) for k, v in s.terminal.items()},
        "parked": {k: list(v) for k, v in s.parked.items()},
        "retention": list(s.retention),
        "deadlines": list(s.deadlines),
        "part_counts": dict(s.part_counts),
        "children": dict(s.children),
        "by_root": dict(s.by_root),
        "by_correlation": dict(s.by_correlation),
    }


@given(_batches())
@settings(max_examples=300, deadline=None)
def test_put_many_leaves_the_indexes_of_one_put_per_record(
    batches: list[list[rec.Record]],
) -> None:
    one, many = ShardState(), ShardState()
    for batch in batches:
        for r in batch:
            one.put(r)
        many.put_many(batch)
        many._check()
        assert _indexes(many) == _indexes(one)


# -- two engines: batch paths on and off --------------------------------------------------


def _outcome(result: Any) -> Any:
    """An answer, comparable across engines: a flow's fields, or the error's type and text."""
    if isinstance(result, BaseException):
        return (type(result).__name__, str(result))
    if isinstance(result, fa.ItemResult):
        return (result.id, _outcome(result.flow) if result.ok else _outcome(result.error))
    if isinstance(result, fa.Flow):
        return tuple(result)
    if isinstance(result, list):
        return [_outcome(r) for r in result]
    return result


_step = st.one_of(
    st.tuples(
        st.just("create"),
        st.lists(
            st.tuples(
                st.sampled_from(IDS),
                st.sampled_from((None, b"pay")),
                st.booleans(),  # with a named value (per-item path)
                st.integers(0, 2),  # priority
            ),
            min_size=1,
            max_size=5,
            unique_by=lambda t: t[0],
        ),
        st.booleans(),  # idempotent
        st.sampled_from((None, 300)),  # max_active_ms
    ),
    st.tuples(st.just("claim"), st.integers(1, 6), st.sampled_from((100, 1000))),
    st.tuples(st.just("advance"), st.sampled_from((0, 50, 200, 1500))),
    # a held flow fans out three children of TYPE (they carry coordination data: claims
    # and moves of theirs take the batch paths, their outcomes the per-item one)
    st.tuples(st.just("spawn"), st.integers(0, 14)),
    st.tuples(
        st.just("finish"),
        st.sampled_from(("complete", "fail", "move", "move-from-queued")),
        st.lists(
            st.tuples(
                st.integers(0, 14),  # which held lease (or an unknown id when out of range)
                st.sampled_from(("ok", "ok", "ok", "stale", "token", "none", "dup")),
                st.sampled_from((None, b"out")),
                st.booleans(),  # with a named value (outcomes only: the per-item path)
            ),
            min_size=1,
            max_size=6,
        ),
    ),
)


async def _drive(path: Path, steps: list[Any], batch_paths: bool) -> list[Any]:
    clock = FakeClock()
    answers: list[Any] = []
    async with open_checked(path, clock, shards=2) as engine:
        if not batch_paths:
            await engine.install_policy(TYPE, fa.FlowPolicy(history_max_events=1_000_000))
        # Every run starts with flows held under leases (two with max_active_ms), so
        # that even short step lists reach the outcome and transition paths.
        await engine.create_many(TYPE, [fa.CreateSpec(f"p{i}", priority=i % 3) for i in range(4)])
        await engine.create_many(
            TYPE, [fa.CreateSpec("p4"), fa.CreateSpec("p5")], max_active_ms=300
        )
        held: list[fa.Flow] = await engine.claim_due(TYPE, "w", limit=6)
        spawned: list[str] = []
        answers.append(held)
        for step in steps:
            kind = step[0]
            try:
                if kind == "create":
                    _, items, idempotent, max_active = step
                    specs = [
                        fa.CreateSpec(
                            fid, payload=p, values={"v": b"x"} if v else None, priority=prio
                        )
                        for fid, p, v, prio in items
                    ]
                    answers.append(
                        await engine.create_many(
                            TYPE, specs, idempotent=idempotent, max_active_ms=max_active
                        )
                    )
                elif kind == "claim":
                    got = await engine.claim_due(TYPE, "w", limit=step[1], lease_ms=step[2])
                    held.extend(got)
                    answers.append(got)
                elif kind == "advance":
                    clock.advance(step[1])
                elif kind == "spawn":
                    if step[1] >= len(held):
                        continue
                    parent = held[step[1]]
                    kids = [fa.ChildSpec(f"{parent.id}-c{k}", TYPE) for k in range(3)]
                    spawned.extend(kid.id for kid in kids)
                    answers.append(
                        await engine.spawn_children(
                            parent.id,
                            parent.lease_token,
                            parent.fencing_token,
                            group_id=f"g{len(spawned)}",
                            children=kids,
                            success_state="done",
                            failure_state="broken",
                        )
                    )
                else:
                    _, how, picks = step
                    acks = []
                    for i, variant, data, valued in picks:
                        vals = {"kept": b"v"} if valued and how in ("complete", "fail") else None
                        if i >= len(held):
                            acks.append(fa.Ack("nobody", "t", 1, data, values=vals))
                            continue
                        f = held[i]
                        ack = fa.Ack(f.id, f.lease_token, f.fencing_token, data, values=vals)
                        if variant == "stale":
                            ack = ack._replace(fencing_token=f.fencing_token - 1)
                        elif variant == "token":
                            ack = ack._replace(lease_token="someone-else")
                        elif variant == "none":
                            ack = ack._replace(lease_token=None)
                        elif variant == "dup":
                            acks.append(ack)
                        acks.append(ack)
                    if how == "complete":
                        answers.append(await engine.complete_many(acks))
                    elif how == "fail":
                        answers.append(await engine.fail_many(acks))
                    else:  # a transition, due later or now, from running (or a wrong state)
                        start = "running" if how == "move" else "queued"
                        delay = 100 if len(acks) % 2 else None
                        answers.append(
                            await engine.transition_many(acks, start, "next", delay_ms=delay)
                        )
            except fa.FlowError as exc:
                answers.append(exc)
        await engine.settle()
        for fid in [*IDS, *(f"p{i}" for i in range(6)), *spawned]:
            flow = await engine.get(fid)
            answers.append(flow)
            if flow is None:
                continue
            events = await engine.history(fid)
            answers.append([(e.name, e.at_ms, e.version, e.meta) for e in events])
    return [_outcome(a) for a in answers]


@given(st.lists(_step, min_size=1, max_size=12))
@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
def test_batch_paths_answer_and_write_as_the_per_item_paths(steps: list[Any]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        fast = trio.run(_drive, Path(tmp) / "fast", steps, True)
        slow = trio.run(_drive, Path(tmp) / "slow", steps, False)
    assert fast == slow


def test_the_batch_paths_are_taken() -> None:
    """The equivalence above would pass vacuously if nothing used the batch paths: the
    engine without a policy must write `Writes` runs for creates, claims and outcomes."""
    seen: list[str] = []
    original = m.Writes.__init__

    def spy(self: m.Writes, records: list[Any], event: str, *args: Any) -> None:
        seen.append(event)
        original(self, records, event, *args)

    steps = [
        ("create", [("f1", None, False, 0), ("f2", b"pay", False, 0)], False, None),
        ("claim", 2, 1000),
        ("finish", "complete", [(0, "ok", None, False), (1, "ok", b"out", False)]),
        ("create", [("f3", None, False, 0)], False, None),
        ("claim", 1, 1000),
        ("finish", "move", [(8, "ok", None, False)]),
    ]
    m.Writes.__init__ = spy  # type: ignore[method-assign]
    try:
        with tempfile.TemporaryDirectory() as tmp:
            fast = trio.run(_drive, Path(tmp) / "fast", steps, True)
            assert sorted(set(seen)) == ["claimed", "completed", "created", "transitioned"]
            seen.clear()
            slow = trio.run(_drive, Path(tmp) / "slow", steps, False)
            assert seen == []
            assert fast == slow
    finally:
        m.Writes.__init__ = original  # type: ignore[method-assign]


def test_a_policy_turns_off_the_batch_paths_of_its_own_type_only() -> None:
    """A type with a policy acting on writes (here a history cap) is decided one write at
    a time, so the policy applies to every write; other types, and a type whose policy
    holds retry settings only, keep their batch paths."""
    seen: list[tuple[str, tuple[str, ...]]] = []
    original = m.Writes.__init__

    def spy(self: m.Writes, records: list[Any], event: str, *args: Any) -> None:
        seen.append((event, tuple(sorted({r[rec.TYPE] for r in records}))))
        original(self, records, event, *args)

    async def drive(path: Path) -> list[int]:
        async with open_checked(path, FakeClock(), shards=1) as engine:
            await engine.install_policy("capped", fa.FlowPolicy(history_max_events=2))
            await engine.install_policy(TYPE, fa.FlowPolicy(max_reclaims=1000, max_retries=9))
            for ftype in (TYPE, "capped"):
                await engine.create_many(ftype, [fa.CreateSpec(f"{ftype}{i}") for i in range(3)])
                held = await engine.claim_due(ftype, "w", limit=3)
                await engine.transition_many(
                    [fa.Ack(f.id, f.lease_token, f.fencing_token) for f in held],
                    "running",
                    "queued",
                )
                held = await engine.claim_due(ftype, "w", limit=3)
                await engine.complete_many(
                    [fa.Ack(f.id, f.lease_token, f.fencing_token) for f in held]
                )
            return [len(await engine.history(f"{t}0")) for t in (TYPE, "capped")]

    m.Writes.__init__ = spy  # type: ignore[method-assign]
    try:
        with tempfile.TemporaryDirectory() as tmp:
            kept = trio.run(drive, Path(tmp))
    finally:
        m.Writes.__init__ = original  # type: ignore[method-assign]
    assert kept == [5, 2]  # created, claimed, transitioned, claimed, completed: capped at 2
    assert {types for _event, types in seen} == {(TYPE,)}
    assert sorted({event for event, _types in seen}) == [
        "claimed", "completed", "created", "transitioned"
    ]  # fmt: skip


def test_to_flows_builds_what_to_flow_builds() -> None:
    from flowactors.engine._shard import Shard

    shard = Shard.__new__(Shard)  # no log: nothing here is hydrated
    records = [
        _record(),  # with values: to_flow's own path
        _record(values=None, attributes=None),
        _record(values=None, parent_id="p", root_id="r", correlation_id="c", partition="x"),
        _record(values=None, attributes={"a": "b"}, payload_size=0, payload_ver=0),
    ]
    flows = shard.to_flows(records)
    assert flows == [shard.to_flow(r) for r in records]
    assert all(type(f) is fa.Flow for f in flows)
    assert flows[2].root_id == "r" and flows[1].root_id == "a"
