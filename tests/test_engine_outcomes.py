"""Engine: transition, complete, fail, retry, cancel, values, reads and the batch forms."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from engine_helpers import START_MS, FakeClock, names, open_checked, written

import flowactors as fa

NO_JITTER = fa.RetryPolicy(backoff="exponential", base_ms=100, max_ms=1_000, jitter_pct=0)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


async def claimed(e: Any, fid: str, flow_type: str = "t", **create: Any) -> fa.Flow:
    """Create `fid` and claim it (the only due flow of its type)."""
    await e.create(fid, flow_type, **create)
    [f] = await e.claim_due(flow_type, "w")
    assert f.id == fid
    return f  # type: ignore[no-any-return]


# -- transition -------------------------------------------------------------------------


async def test_transition_from_running(tmp_path: Path, clock: FakeClock) -> None:
    async with open_checked(tmp_path, clock, shards=1) as e:
        f = await claimed(e, "a", payload=b"old", attributes={"k": "1", "j": "x"})
        clock.advance(7)
        g = await e.transition(
            "a",
            "running",
            "charged",
            f.fencing_token,
            lease_token=f.lease_token,
            delay_ms=50,
            priority=1,
            payload=b"new",
            values={"v": b"1"},
            attributes={"k": "2"},
        )
        assert (g.state, g.run_state, g.lease_token, g.lease_owner) == ("charged", None, None, None)
        assert (g.fencing_token, g.version, g.attempts) == (f.fencing_token, f.version + 1, 0)
        assert g.next_run_at_ms == START_MS + 7 + 50 and g.priority == 1
        assert g.lease_deadline_ms is None and g.updated_at_ms == START_MS + 7
        assert dict(g.attributes) == {"k": "2", "j": "x"} and g.payload_size == 3
        full = await e.get("a", payload=True, values=["v"])
        assert full is not None and full.payload == b"new" and dict(full.values) == {"v": b"1"}
        last = (await e.history("a"))[-1]
        assert last.name == "transitioned" and last.meta == {"from": "queued", "to": "charged"}
        assert await e.info("t") == {"charged": 1}
        # Claimable again in its new state once due.
        assert await e.claim_due("t", "w", states=["charged"]) == []
        clock.advance(50)
        [h] = await e.claim_due("t", "w", states=["charged"])
        assert (h.run_state, h.fencing_token) == ("charged", f.fencing_token + 1)


async def test_transition_without_lease(tmp_path: Path, clock: FakeClock) -> None:
    async with open_checked(tmp_path, clock, shards=1) as e:
        await e.create("a", "t", state="draft", run_at_ms=START_MS + 10**6)
        g = await e.transition("a", "draft", "ready", 0, run_at_ms=START_MS + 3)
        assert (g.state, g.version, g.fencing_token, g.next_run_at_ms) == (
            "ready",
            2,
            0,
            START_MS + 3,
        )
        assert (await e.history("a"))[-1].meta == {"from": "draft", "to": "ready"}


async def test_transition_guards(tmp_path: Path, clock: FakeClock) -> None:
    async with open_checked(tmp_path, clock, shards=1) as e:
        await e.create("idle", "t", state="draft", run_at_ms=START_MS + 10**6)
        f = await claimed(e, "a")
        before = written(e)
        snap = {i: await e.get(i) for i in ("idle", "a")}
        tok, fen = f.lease_token, f.fencing_token
        with pytest.raises(fa.WrongState):
            await e.transition("idle", "ready", "x", 0)
        with pytest.raises(fa.WrongState):
            await e.transition("idle", "running", "x", 0)
        with pytest.raises(fa.WrongState):  # the physical state is 'running'
            await e.transition("a", "queued", "x", fen, lease_token=tok)
        with pytest.raises(fa.StaleLease):  # leased: the token is required
            await e.transition("a", "running", "x", fen)
        with pytest.raises(fa.StaleLease):
            await e.transition("a", "running", "x", fen, lease_token="w:1:1")
        with pytest.raises(fa.StaleLease):
            await e.transition("a", "running", "x", fen + 1, lease_token=tok)
        with pytest.raises(fa.StaleLease):
            await e.transition("idle", "draft", "x", 1)
        with pytest.raises(fa.FlowNotFound):
            await e.transition("missing", "draft", "x", 0)
        for target in ("running", "completed", "failed", "cancelled", ""):
            with pytest.raises(fa.InvalidArgument):
                await e.transition("a", "running", target, fen, lease_token=tok)
        assert written(e) == before
        assert {i: await e.get(i) for i in ("idle", "a")} == snap
        await e.complete("a", tok, fen)
        with pytest.raises(fa.FlowTerminal):
            await e.transition("a", "completed", "x", fen)
        with pytest.raises(fa.FlowTerminal):
            await e.transition("a", "running", "x", fen, lease_token=tok)


async def test_transition_exact_replay_is_a_no_op(tmp_path: Path, clock: FakeClock) -> None:
    async with open_checked(tmp_path, clock, shards=1) as e:
        f = await claimed(e, "a")
        args = ("a", "running", "charged", f.fencing_token)
        g = await e.transition(*args, lease_token=f.lease_token, run_at_ms=START_MS + 10**6)
        before = written(e)
        clock.advance(5)
        again = await e.transition(*args, lease_token=f.lease_token, run_at_ms=START_MS + 10**6)
        assert again == g and again.version == g.version
        assert written(e) == before
        assert names(await e.history("a")) == ["created", "claimed", "transitioned"]


# -- complete / fail --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("command", "state", "field"),
    [("complete", "completed", "result"), ("fail", "failed", "error")],
)
async def test_complete_and_fail(
    tmp_path: Path, clock: FakeClock, command: str, state: str, field: str
) -> None:
    async with open_checked(tmp_path, clock, shards=1) as e:
        f = await claimed(e, "a", state="charged")
        clock.advance(3)
        data_kw = "result" if command == "complete" else "error"
        call = getattr(e, command)
        g = await call("a", f.lease_token, f.fencing_token, values={"v": b"x"}, **{data_kw: b"out"})
        assert (g.state, g.run_state, g.lease_token, g.next_run_at_ms) == (state, None, None, None)
        assert g.terminal and g.version == f.version + 1 and g.fencing_token == f.fencing_token
        assert getattr(g, field) is None  # answers carry no bytes unless asked
        got = await e.get("a")
        assert got is not None and getattr(got, field) == b"out"
        assert await e.get_values("a", ["v"]) == {"v": b"x"}
        last = (await e.history("a"))[-1]
        assert last.name == state and last.meta == {"from": "charged"}
        assert await e.info("t") == {state: 1}
        # Exact replay: a no-op, even with other bytes.
        before = written(e)
        again = await call("a", f.lease_token, f.fencing_token, **{data_kw: b"other"})
        assert again == g and written(e) == before
        got2 = await e.get("a")
        assert got2 is not None and getattr(got2, field) == b"out"
        assert names(await e.history("a")) == ["created", "claimed", state]


async def test_complete_and_fail_guards(tmp_path: Path, clock: FakeClock) -> None:
    async with open_checked(tmp_path, clock, shards=1) as e:
        await e.create("q", "t", run_at_ms=START_MS + 10**6)
        f = await claimed(e, "a")
        tok, fen = f.lease_token, f.fencing_token
        before, snap = written(e), await e.get("a")
        for call in (e.complete, e.fail):
            with pytest.raises(fa.StaleLease):
                await call("a", "w:1:1", fen)
            with pytest.raises(fa.StaleLease):
                await call("a", None, fen)
            with pytest.raises(fa.StaleLease):
                await call("a", tok, fen - 1)
            with pytest.raises(fa.WrongState):  # queued, never claimed
                await call("q", None, 0)
            with pytest.raises(fa.FlowNotFound):
                await call("missing", tok, fen)
        assert written(e) == before and await e.get("a") == snap
        await e.fail("a", tok, fen, error=b"boom")
        before = written(e)
        with pytest.raises(fa.FlowTerminal):
            await e.complete("a", tok, fen)
        with pytest.raises(fa.FlowTerminal):
            await e.retry("a", tok, fen)
        g = await claimed(e, "b", flow_type="u")
        await e.complete("b", g.lease_token, g.fencing_token)
        with pytest.raises(fa.FlowTerminal):
            await e.fail("b", g.lease_token, g.fencing_token)
        assert written(e) == before + 3  # only b: created, claimed, completed
        got = await e.get("a")
        assert got is not None and got.state == "failed" and got.error == b"boom"


async def test_old_fencing_after_reclaim_is_stale(tmp_path: Path, clock: FakeClock) -> None:
    async with open_checked(tmp_path, clock, shards=1) as e:
        f = await claimed(e, "a")
        await e.transition("a", "running", "queued", f.fencing_token, lease_token=f.lease_token)
        [g] = await e.claim_due("t", "w2")
        before = written(e)
        for call in (e.complete, e.fail, e.retry):
            with pytest.raises(fa.StaleLease):
                await call("a", f.lease_token, f.fencing_token)
        assert written(e) == before
        await e.complete("a", g.lease_token, g.fencing_token, result=b"ok")


# -- retry ------------------------------------------------------------------------------


async def test_retry_schedules_with_backoff(tmp_path: Path, clock: FakeClock) -> None:
    async with open_checked(tmp_path, clock, shards=1, retry_policy=NO_JITTER) as e:
        await e.create("a", "t", state="charging", payload=b"p")
        for attempt, delay in zip((1, 2, 3), (100, 200, 400), strict=True):
            [f] = await e.claim_due("t", "w")
            assert f.attempts == attempt - 1  # a claim does not count as an attempt
            clock.advance(11)
            g = await e.retry("a", f.lease_token, f.fencing_token, error=f"e{attempt}".encode())
            assert (g.state, g.run_state, g.lease_token) == ("charging", None, None)
            assert g.attempts == attempt and g.fencing_token == f.fencing_token
            assert g.next_run_at_ms == clock.now + delay
            last = (await e.history("a"))[-1]
            assert last.name == "retry"
            assert last.meta == {
                "decision": "scheduled",
                "attempt": attempt,
                "next_run_at_ms": clock.now + delay,
            }
            got = await e.get("a", payload=True)
            assert got is not None and got.error == f"e{attempt}".encode() and got.payload == b"p"
            clock.advance(delay - 1)
            assert await e.claim_due("t", "w") == []
            clock.advance(1)
        # Attempt 4 > max_retries 3: exhausted to 'failed'.
        [f] = await e.claim_due("t", "w")
        g = await e.retry("a", f.lease_token, f.fencing_token, error=b"last")
        assert (g.state, g.attempts, g.terminal, g.next_run_at_ms) == ("failed", 4, True, None)
        last = (await e.history("a"))[-1]
        assert last.name == "exhausted"
        assert last.meta == {"decision": "exhausted", "attempt": 4, "exhausted_to": "failed"}
        got = await e.get("a")
        assert got is not None and got.error == b"last"
        assert await e.info("t") == {"failed": 1}


async def test_retry_exhausts_to_manual_state(tmp_path: Path, clock: FakeClock) -> None:
    policy = fa.RetryPolicy(max_retries=1, backoff="none", exhausted_to="needs_review")
    async with open_checked(tmp_path, clock, shards=1, retry_policy=policy) as e:
        await e.create("a", "t")
        [f] = await e.claim_due("t", "w")
        g = await e.retry("a", f.lease_token, f.fencing_token)
        assert (g.state, g.next_run_at_ms, g.attempts) == ("queued", clock.now, 1)
        clock.advance(100)
        [f] = await e.claim_due("t", "w")
        g = await e.retry("a", f.lease_token, f.fencing_token, error=b"e")
        assert (g.state, g.attempts, g.terminal) == ("needs_review", 2, False)
        assert g.next_run_at_ms == clock.now and g.lease_token is None
        assert await e.info("t") == {"needs_review": 1}
        [h] = await e.claim_due("t", "operator", states=["needs_review"])
        assert h.run_state == "needs_review" and h.fencing_token == f.fencing_token + 1


async def test_retry_replay_is_a_no_op(tmp_path: Path, clock: FakeClock) -> None:
    async with open_checked(tmp_path, clock, shards=1, retry_policy=NO_JITTER) as e:
        f = await claimed(e, "a")
        g = await e.retry("a", f.lease_token, f.fencing_token, error=b"1")
        before = written(e)
        clock.advance(3)
        assert await e.retry("a", f.lease_token, f.fencing_token, error=b"2") == g
        assert written(e) == before
        got = await e.get("a")
        assert got is not None and got.error == b"1"
        clock.advance(10_000)
        [f] = await e.claim_due("t", "w")
        g = await e.retry("a", f.lease_token, f.fencing_token, max_retries=0)
        assert g.state == "failed"
        before = written(e)
        assert await e.retry("a", f.lease_token, f.fencing_token, max_retries=0) == g
        assert written(e) == before
        assert names(await e.history("a")) == [
            "created",
            "claimed",
            "retry",
            "claimed",
            "exhausted",
        ]


async def test_retry_per_command_overrides(tmp_path: Path, clock: FakeClock) -> None:
    async with open_checked(tmp_path, clock, shards=1, retry_policy=NO_JITTER) as e:
        f = await claimed(e, "a")
        g = await e.retry("a", f.lease_token, f.fencing_token, max_retries=0, exhausted_to="manual")
        assert (g.state, g.attempts, g.next_run_at_ms) == ("manual", 1, clock.now)
        f = await claimed(e, "b", flow_type="u")
        g = await e.retry("b", f.lease_token, f.fencing_token, exhausted_to="cancelled")
        assert (g.state, g.attempts) == ("queued", 1)  # still within max_retries 3
        f = await claimed(e, "c", flow_type="v")
        g = await e.retry("c", f.lease_token, f.fencing_token, run_at_ms=START_MS + 77)
        assert g.next_run_at_ms == START_MS + 77
        f = await claimed(e, "d", flow_type="x", payload=b"old")
        g = await e.retry("d", f.lease_token, f.fencing_token, delay_ms=5, payload=b"newer")
        assert g.next_run_at_ms == clock.now + 5 and g.payload_size == 5
        got = await e.get("d", payload=True)
        assert got is not None and got.payload == b"newer"


async def test_retry_type_policies(tmp_path: Path, clock: FakeClock) -> None:
    fast = fa.RetryPolicy(max_retries=1, backoff="fixed", base_ms=5, jitter_pct=0)
    async with open_checked(
        tmp_path, clock, shards=1, retry_policy=NO_JITTER, type_policies={"fast": fast}
    ) as e:
        f = await claimed(e, "a", flow_type="fast")
        g = await e.retry("a", f.lease_token, f.fencing_token)
        assert g.next_run_at_ms == clock.now + 5
        f = await claimed(e, "b", flow_type="slow")
        g = await e.retry("b", f.lease_token, f.fencing_token)
        assert g.next_run_at_ms == clock.now + 100
        clock.advance(5)
        [f] = await e.claim_due("fast", "w")
        g = await e.retry("a", f.lease_token, f.fencing_token)
        assert g.state == "failed" and g.attempts == 2


async def test_retry_guards(tmp_path: Path, clock: FakeClock) -> None:
    async with open_checked(tmp_path, clock, shards=1) as e:
        await e.create("q", "t", run_at_ms=START_MS + 10**6)
        f = await claimed(e, "a")
        before = written(e)
        with pytest.raises(fa.WrongState):
            await e.retry("q", None, 0)
        with pytest.raises(fa.StaleLease):
            await e.retry("a", "w:0:0", f.fencing_token)
        with pytest.raises(fa.StaleLease):
            await e.retry("a", f.lease_token, f.fencing_token + 1)
        with pytest.raises(fa.FlowNotFound):
            await e.retry("zz", None, 0)
        assert written(e) == before


# -- cancel -----------------------------------------------------------------------------


async def test_cancel_unleased_flow(tmp_path: Path, clock: FakeClock) -> None:
    async with open_checked(tmp_path, clock, shards=1) as e:
        await e.create("a", "t")
        with pytest.raises(fa.StaleLease):
            await e.cancel("a", fencing_token=1)
        g = await e.cancel("a", reason=b"not needed")
        assert (g.state, g.terminal, g.next_run_at_ms, g.version) == ("cancelled", True, None, 2)
        got = await e.get("a")
        assert got is not None and got.error == b"not needed"
        assert names(await e.history("a")) == ["created", "cancelled"]
        await e.create("b", "t")
        assert (await e.cancel("b", fencing_token=0)).state == "cancelled"
        assert await e.info("t") == {"cancelled": 2}
        assert await e.claim_due("t", "w") == []


async def test_cancel_leased_flow(tmp_path: Path, clock: FakeClock) -> None:
    async with open_checked(tmp_path, clock, shards=1) as e:
        f = await claimed(e, "a")
        before = written(e)
        with pytest.raises(fa.StaleLease):
            await e.cancel("a")
        with pytest.raises(fa.StaleLease):
            await e.cancel("a", lease_token="w:0:1")
        with pytest.raises(fa.StaleLease):
            await e.cancel("a", lease_token=f.lease_token, fencing_token=f.fencing_token + 1)
        assert written(e) == before
        g = await e.cancel("a", lease_token=f.lease_token, fencing_token=f.fencing_token)
        assert g.state == "cancelled" and g.lease_token is None
        assert (await e.history("a"))[-1].meta == {}
        with pytest.raises(fa.FlowTerminal):
            await e.complete("a", f.lease_token, f.fencing_token)
        f = await claimed(e, "b")
        g = await e.cancel("b", force=True)
        assert g.state == "cancelled"
        assert (await e.history("b"))[-1].meta == {"forced": True}
        before = written(e)
        for kwargs in ({}, {"force": True}, {"lease_token": f.lease_token}):
            with pytest.raises(fa.FlowTerminal):
                await e.cancel("b", **kwargs)
        with pytest.raises(fa.FlowNotFound):
            await e.cancel("missing")
        assert written(e) == before


# -- values and reads -------------------------------------------------------------------


async def test_put_value_and_get_values(tmp_path: Path, clock: FakeClock) -> None:
    async with open_checked(tmp_path, clock, shards=1) as e:
        await e.create("a", "t")
        f = await e.put_value("a", "v", b"one")
        assert f.version == 2 and dict(f.value_sizes) == {"v": 3}
        assert await e.get_values("a", ["v"]) == {"v": b"one"}
        before = written(e)
        assert await e.put_value("a", "v", b"one") == f  # same bytes: no-op
        with pytest.raises(fa.IdempotencyConflict):
            await e.put_value("a", "v", b"two")
        assert written(e) == before
        assert await e.get_values("a", ["v"]) == {"v": b"one"}
        g = await e.put_value("a", "v", b"two!", override=True)
        assert g.version == 3 and dict(g.value_sizes) == {"v": 4}
        assert await e.get_values("a", ["v", "w"]) == {"v": b"two!"}
        await e.put_value("a", "w", b"")
        assert await e.get_values("a", ["w", "v"]) == {"w": b"", "v": b"two!"}
        assert await e.get_values("a", []) == {}
        assert names(await e.history("a")) == ["created", "value_put", "value_put", "value_put"]
        with pytest.raises(fa.FlowNotFound):
            await e.put_value("missing", "v", b"x")
        with pytest.raises(fa.FlowNotFound):
            await e.get_values("missing", ["v"])


async def test_get_history_info(tmp_path: Path, clock: FakeClock) -> None:
    async with open_checked(tmp_path, clock, shards=1) as e:
        assert await e.get("absent") is None
        with pytest.raises(fa.FlowNotFound):
            await e.history("absent")
        assert await e.info("t") == {}
        await e.create("a", "t")
        clock.advance(1)
        [f] = await e.claim_due("t", "w1")
        clock.advance(1)
        await e.transition("a", "running", "b", f.fencing_token, lease_token=f.lease_token)
        clock.advance(1)
        [f] = await e.claim_due("t", "w2")
        clock.advance(1)
        await e.complete("a", f.lease_token, f.fencing_token, result=b"r")
        events = await e.history("a")
        assert names(events) == ["created", "claimed", "transitioned", "claimed", "completed"]
        assert [ev.version for ev in events] == [1, 2, 3, 4, 5]
        assert [ev.at_ms for ev in events] == [START_MS + i for i in range(5)]
        assert [ev.event_id for ev in events] == [f"{START_MS + i}-{i + 1}" for i in range(5)]
        assert [ev.state for ev in events] == ["queued", "running", "b", "running", "completed"]
        assert [ev.run_state for ev in events] == [None, "queued", None, "b", None]
        assert [ev.fencing_token for ev in events] == [0, 1, 1, 2, 2]
        assert [ev.lease_owner for ev in events] == [None, "w1", None, "w2", None]
        # info counts every state, running and terminal included, per type.
        await e.create("b", "t")
        await e.create("c", "t", state="x")
        await e.create("d", "u")
        await e.claim_due("t", "w", states=["queued"])
        assert await e.info("t") == {"completed": 1, "running": 1, "x": 1}
        assert await e.info("u") == {"queued": 1}
        assert await e.info("nothing") == {}


# -- batch forms ------------------------------------------------------------------------


async def _claim_all(e: Any, n: int) -> list[fa.Flow]:
    for i in range(n):
        await e.create(f"f{i}", "t")
    flows = await e.claim_due("t", "w", limit=n)
    assert len(flows) == n
    return sorted(flows, key=lambda f: int(f.id[1:]))


def _acks(flows: list[fa.Flow]) -> tuple[list[fa.Ack], list[type[Exception] | None]]:
    """Good, stale-fencing, wrong-token and missing items, interleaved."""
    acks: list[fa.Ack] = []
    want: list[type[Exception] | None] = []
    for i, f in enumerate(flows):
        if i % 3 == 0:
            acks.append(fa.Ack(f.id, f.lease_token, f.fencing_token, data=b"d" + f.id.encode()))
            want.append(None)
        elif i % 3 == 1:
            acks.append(fa.Ack(f.id, f.lease_token, f.fencing_token + 5))
            want.append(fa.StaleLease)
        else:
            acks.append(fa.Ack(f.id, "w:0:0", f.fencing_token))
            want.append(fa.StaleLease)
    acks.append(fa.Ack("missing", None, 0))
    want.append(fa.FlowNotFound)
    return acks, want


@pytest.mark.parametrize("command", ["complete_many", "fail_many", "retry_many"])
async def test_ack_batches_have_per_item_results(
    tmp_path: Path, clock: FakeClock, command: str
) -> None:
    async with open_checked(tmp_path, clock, retry_policy=NO_JITTER) as e:
        flows = await _claim_all(e, 12)
        acks, want = _acks(flows)
        results = await getattr(e, command)(acks)
        assert [r.id for r in results] == [a.id for a in acks]
        state = {"complete_many": "completed", "fail_many": "failed", "retry_many": "queued"}
        field = "result" if command == "complete_many" else "error"
        for ack, r, expected in zip(acks, results, want, strict=True):
            if expected is None:
                assert r.ok and r.flow is not None and r.flow.state == state[command]
                got = await e.get(ack.id)
                assert got is not None and getattr(got, field) == ack.data
            else:
                assert isinstance(r.error, expected) and r.flow is None
                if ack.id != "missing":
                    got = await e.get(ack.id)
                    assert got is not None and got.state == "running" and got.version == 2
        good = sum(1 for w in want if w is None)
        assert await e.info("t") == {"running": 12 - good, state[command]: good}
        # Replaying the good items is a no-op that still answers ok.
        before = written(e)
        again = await getattr(e, command)([a for a, w in zip(acks, want, strict=True) if w is None])
        assert all(r.ok for r in again) and written(e) == before


async def test_transition_many(tmp_path: Path, clock: FakeClock) -> None:
    async with open_checked(tmp_path, clock) as e:
        flows = await _claim_all(e, 12)
        acks, want = _acks(flows)
        results = await e.transition_many(acks, "running", "next", delay_ms=10)
        for ack, r, expected in zip(acks, results, want, strict=True):
            assert r.id == ack.id
            if expected is None:
                assert r.flow is not None and r.flow.state == "next"
                assert r.flow.next_run_at_ms == clock.now + 10
            else:
                assert isinstance(r.error, expected)
        good = sum(1 for w in want if w is None)
        assert await e.info("t") == {"next": good, "running": 12 - good}
        with pytest.raises(fa.InvalidArgument):
            await e.transition_many(acks, "running", "completed")
        with pytest.raises(fa.InvalidArgument):
            await e.complete_many([])


@pytest.mark.parametrize("command", ["complete_many", "fail_many"])
async def test_batch_outcomes_take_any_bytes_like_data_and_refuse_bad_input_whole(
    tmp_path: Path, clock: FakeClock, command: str
) -> None:
    async with open_checked(tmp_path, clock) as e:
        flows = await _claim_all(e, 3)
        field = "result" if command == "complete_many" else "error"
        datas: list[Any] = [bytearray(b"one"), memoryview(b"two"), b"three"]
        before = written(e)
        with pytest.raises(fa.InvalidArgument):  # one bad item: nothing is written
            await getattr(e, command)(
                [fa.Ack(f.id, f.lease_token, f.fencing_token, "text") for f in flows]
            )
        with pytest.raises(fa.InvalidArgument):
            await getattr(e, command)([fa.Ack("", "t", 1)])
        assert written(e) == before
        acks = [
            fa.Ack(f.id, f.lease_token, f.fencing_token, d)
            for f, d in zip(flows, datas, strict=True)
        ]
        results = await getattr(e, command)(acks)
        assert all(r.ok for r in results)
        for f, want in zip(flows, (b"one", b"two", b"three"), strict=True):
            got = await e.get(f.id)
            assert got is not None and getattr(got, field) == want
            assert type(getattr(got, field)) is bytes


async def test_outcome_batches_carry_values_and_step_continue_many_goes_per_item(
    tmp_path: Path,
) -> None:
    """complete_many / fail_many store each item's values with its outcome;
    step_continue_many continues each item on its own (a stale one fails alone); values
    on retry_many / transition_many are refused before anything is sent."""
    clock = FakeClock()
    async with open_checked(tmp_path, clock, shards=2) as e:
        await e.create_many("t", [fa.CreateSpec(f"f{i}") for i in range(5)])
        held = {f.id: f for f in await e.claim_due("t", "w", limit=5)}
        a, b, c, d, x = (held[f"f{i}"] for i in range(5))
        items = [
            fa.ContinueSpec(a.id, a.lease_token, a.fencing_token, "two", {"j1": b"1"}),
            fa.ContinueSpec(b.id, b.lease_token, b.fencing_token - 1),  # stale
            fa.ContinueSpec(c.id, c.lease_token, c.fencing_token, lease_ms=50),
        ]
        before = written(e)
        ra, rb, rc = await e.step_continue_many(items)
        assert ra.ok and ra.flow.run_state == "two" and ra.flow.value_sizes == {"j1": 1}
        assert ra.flow.fencing_token == a.fencing_token + 1
        assert isinstance(rb.error, fa.StaleLease)
        assert rc.ok and rc.flow.lease_deadline_ms == clock.now + 50
        assert written(e) == before + 3  # two events and one value; nothing of the stale one
        done = await e.complete_many([
            fa.Ack(a.id, ra.flow.lease_token, ra.flow.fencing_token, b"r", values={"j2": b"22"}),
            fa.Ack(d.id, d.lease_token, d.fencing_token),
        ])  # fmt: skip
        assert [r.ok for r in done] == [True, True]
        assert (await e.get_values(a.id, ["j1", "j2"])) == {"j1": b"1", "j2": b"22"}
        [failed] = await e.fail_many([fa.Ack(x.id, x.lease_token, x.fencing_token, b"no",
                                              values={"why": b"w"})])  # fmt: skip
        assert failed.flow.state == "failed" and failed.flow.value_sizes == {"why": 1}
        before = written(e)
        with pytest.raises(fa.InvalidArgument, match="retry_many takes no values"):
            await e.retry_many([fa.Ack(b.id, b.lease_token, b.fencing_token, values={"v": b""})])
        with pytest.raises(fa.InvalidArgument, match="transition_many takes no values"):
            await e.transition_many(
                [fa.Ack(b.id, b.lease_token, b.fencing_token, values={"v": b""})],
                "running", "next",
            )  # fmt: skip
        with pytest.raises(fa.InvalidArgument):
            await e.step_continue_many([fa.ContinueSpec(b.id, None, 1)])  # type: ignore[arg-type]
        with pytest.raises(fa.InvalidArgument):
            await e.complete_many(
                [fa.Ack(b.id, b.lease_token, b.fencing_token, values={"v": "text"})]
            )  # type: ignore[dict-item]
        assert written(e) == before
