"""Signals (passive and transitioning, idempotency keys) and rewind."""

from __future__ import annotations

from pathlib import Path

import pytest
from engine_helpers import FakeClock, names, open_checked, written

import flowactors as fa


async def test_passive_signal_records_an_event_and_values_and_keeps_the_lease(
    tmp_path: Path,
) -> None:
    async with open_checked(tmp_path, FakeClock(), shards=2) as e:
        await e.create("a", "t")
        [f] = await e.claim_due("t", "w")
        s = await e.signal("a", "approved", values={"who": b"alice"})
        assert (s.state, s.lease_token, s.fencing_token) == ("running", f.lease_token, 1)
        assert (await e.get_values("a", ["who"])) == {"who": b"alice"}
        [event] = [h for h in await e.history("a") if h.name == "signaled"]
        assert event.meta == {"signal": "approved"}
        done = await e.complete("a", f.lease_token, f.fencing_token)  # the lease still works
        assert done.state == "completed"


async def test_transitioning_signal_moves_the_flow_and_locks_out_the_holder(
    tmp_path: Path,
) -> None:
    clock = FakeClock()
    async with open_checked(tmp_path, clock, shards=2) as e:
        await e.create("a", "t")
        [f] = await e.claim_due("t", "w")
        moved = await e.signal(
            "a",
            "approve",
            if_state=["running", "waiting"],
            transition_to="approved",
            delay_ms=500,
        )
        assert (moved.state, moved.lease_token, moved.next_run_at_ms) == (
            "approved",
            None,
            clock.now + 500,
        )
        assert moved.fencing_token == f.fencing_token  # unchanged, the lease token is gone
        with pytest.raises(fa.StaleLease):
            await e.complete("a", f.lease_token, f.fencing_token)
        clock.advance(500)
        [g] = await e.claim_due("t", "w2")
        assert g.run_state == "approved"


async def test_signal_guards(tmp_path: Path) -> None:
    async with open_checked(tmp_path, FakeClock(), shards=1) as e:
        await e.create("a", "t")
        before = written(e)
        with pytest.raises(fa.InvalidArgument):
            await e.signal("a", "go", transition_to="next")  # if_state is required
        with pytest.raises(fa.InvalidArgument):
            await e.signal("a", "go", if_state="queued", transition_to="running")
        with pytest.raises(fa.InvalidArgument):
            await e.signal("a", "go", if_state="queued", transition_to="completed")
        with pytest.raises(fa.InvalidArgument):
            await e.signal("a", "go", delay_ms=5)  # a due time needs a transition
        with pytest.raises(fa.WrongState):
            await e.signal("a", "go", if_state=["waiting"], transition_to="next")
        with pytest.raises(fa.FlowNotFound):
            await e.signal("missing", "go")
        assert written(e) == before
        await e.cancel("a")
        with pytest.raises(fa.FlowTerminal):
            await e.signal("a", "go")


async def test_signal_idempotency_key_replays_without_a_second_event(tmp_path: Path) -> None:
    async with open_checked(tmp_path, FakeClock(), shards=1) as e:
        await e.create("a", "t")
        first = await e.signal(
            "a",
            "pay",
            if_state="queued",
            transition_to="paid",
            idempotency_key="k1",
            values={"amount": b"10"},
        )
        before = written(e)
        again = await e.signal(
            "a",
            "pay",
            if_state="queued",
            transition_to="paid",
            idempotency_key="k1",
            values={"amount": b"10"},
        )
        assert again.version == first.version and written(e) == before
        assert names(await e.history("a")).count("signaled") == 1
        with pytest.raises(fa.IdempotencyConflict):
            await e.signal(
                "a",
                "pay",
                if_state="queued",
                transition_to="paid",
                idempotency_key="k1",
                values={"amount": b"99"},
            )
        other = await e.signal("a", "note", idempotency_key="k2")
        assert other.version == first.version + 1


async def test_signal_keys_survive_restart(tmp_path: Path) -> None:
    clock = FakeClock()
    async with open_checked(tmp_path, clock, shards=2) as e:
        await e.create("a", "t")
        await e.signal("a", "ping", idempotency_key="k")
    async with open_checked(tmp_path, clock, shards=2) as e:
        before = written(e)
        await e.signal("a", "ping", idempotency_key="k")
        assert written(e) == before
        with pytest.raises(fa.IdempotencyConflict):
            await e.signal("a", "pong", idempotency_key="k")


async def test_rewind_restores_an_earlier_snapshot_and_appends_history(tmp_path: Path) -> None:
    clock = FakeClock()
    async with open_checked(tmp_path, clock, shards=2) as e:
        await e.create("a", "t", payload=b"v1")
        [f] = await e.claim_due("t", "w")
        await e.transition(
            "a", "running", "stage2", f.fencing_token, lease_token=f.lease_token, payload=b"v2"
        )
        [g] = await e.claim_due("t", "w")
        done = await e.complete("a", g.lease_token, g.fencing_token, result=b"out")
        history = await e.history("a")
        created = history[0]
        clock.advance(10)
        back = await e.rewind("a", created.version, expect_state="completed")
        assert (back.state, back.next_run_at_ms, back.lease_token) == ("queued", clock.now, None)
        assert back.fencing_token == done.fencing_token + 1
        got = await e.get("a", payload=True)
        assert (got.payload, got.result) == (b"v1", None)
        assert names(await e.history("a"))[: len(history)] == names(history)  # appended
        assert names(await e.history("a"))[-1] == "rewound"
        with pytest.raises(fa.StaleLease):  # nothing issued before the rewind still works
            await e.complete("a", g.lease_token, g.fencing_token)
        [h] = await e.claim_due("t", "w")
        assert h.run_state == "queued"


async def test_rewind_to_a_running_event_restores_its_logical_state(tmp_path: Path) -> None:
    async with open_checked(tmp_path, FakeClock(), shards=1) as e:
        await e.create("a", "t")
        [f] = await e.claim_due("t", "w")
        await e.transition("a", "running", "review", f.fencing_token, lease_token=f.lease_token)
        [claimed] = [h for h in await e.history("a") if h.name == "claimed"]
        back = await e.rewind("a", claimed.version)
        assert (back.state, back.lease_token) == ("queued", None)


async def test_rewind_guards(tmp_path: Path) -> None:
    async with open_checked(tmp_path, FakeClock(), shards=1) as e:
        await e.create("a", "t")
        [f] = await e.claim_due("t", "w")
        before = written(e)
        with pytest.raises(fa.WrongState):  # refused while leased
            await e.rewind("a", 1)
        await e.transition("a", "running", "next", f.fencing_token, lease_token=f.lease_token)
        with pytest.raises(fa.WrongState):
            await e.rewind("a", 1, expect_state="elsewhere")
        with pytest.raises(fa.InvalidArgument):
            await e.rewind("a", 99)
        with pytest.raises(fa.InvalidArgument):
            await e.rewind("a", 0)
        with pytest.raises(fa.FlowNotFound):
            await e.rewind("missing", 1)
        assert written(e) == before + 1  # only the transition wrote


async def test_rewound_flow_survives_restart(tmp_path: Path) -> None:
    clock = FakeClock()
    async with open_checked(tmp_path, clock, shards=2) as e:
        await e.create("a", "t", payload=b"p")
        [f] = await e.claim_due("t", "w")
        await e.fail("a", f.lease_token, f.fencing_token, error=b"bad")
        back = await e.rewind("a", 1)
    async with open_checked(tmp_path, clock, shards=2) as e:
        got = await e.get("a", payload=True)
        assert (got.state, got.version, got.payload, got.error) == (
            "queued",
            back.version,
            b"p",
            None,
        )
