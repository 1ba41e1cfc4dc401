"""Engine: lease expiry, reclaim, stale workers and the crash budget (max_reclaims)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing
from engine_helpers import Checked, FakeClock, names, open_checked, written

import flowactors as fa


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


async def test_expired_lease_is_reclaimed_by_claim_due(tmp_path: Path, clock: FakeClock) -> None:
    async with open_checked(tmp_path, clock, shards=1) as e:
        await e.create("a", "t", state="charging")
        [f] = await e.claim_due("t", "w1", lease_ms=1_000)
        clock.advance(999)
        assert await e.claim_due("t", "w2") == []
        clock.advance(1)  # deadline == now: expired
        [g] = await e.claim_due("t", "w2", lease_ms=500)
        assert g.id == "a" and g.state == "running" and g.run_state == "charging"
        assert (g.fencing_token, g.reclaims, g.attempts) == (f.fencing_token + 1, 1, 0)
        assert g.lease_owner == "w2" and g.lease_token != f.lease_token
        assert g.lease_token == f"w2:{clock.now}:{g.fencing_token}"
        assert g.lease_deadline_ms == g.next_run_at_ms == clock.now + 500
        last = (await e.history("a"))[-1]
        assert last.name == "reclaimed"
        assert last.meta == {"worker": "w2", "previous_owner": "w1"}
        assert await e.info("t") == {"running": 1}


async def test_claim_without_reclaim_leaves_expired_leases(
    tmp_path: Path, clock: FakeClock
) -> None:
    async with open_checked(tmp_path, clock, shards=1) as e:
        await e.create("a", "t")
        await e.claim_due("t", "w1", lease_ms=10)
        clock.advance(10)
        assert await e.claim_due("t", "w2", reclaim=False, limit=5) == []
        assert [f.reclaims for f in await e.claim_due("t", "w2", limit=5)] == [1]


async def test_reclaim_takes_only_expired_leases(tmp_path: Path, clock: FakeClock) -> None:
    async with open_checked(tmp_path, clock, shards=1) as e:
        await e.create("short", "t", priority=2)
        await e.create("long", "t", priority=1)
        await e.claim_due("t", "w1", lease_ms=100)  # short
        await e.claim_due("t", "w1", lease_ms=10_000)  # long
        await e.create("queued", "t")
        clock.advance(100)
        before = written(e)
        got = await e.reclaim("t", "w2", limit=10)
        assert [f.id for f in got] == ["short"]
        assert (got[0].reclaims, got[0].fencing_token, got[0].lease_owner) == (1, 2, "w2")
        assert written(e) == before + 1
        assert await e.reclaim("t", "w2", limit=10) == []
        assert await e.info("t") == {"queued": 1, "running": 2}


async def test_reclaim_mixes_with_normal_work(tmp_path: Path, clock: FakeClock) -> None:
    async with open_checked(tmp_path, clock, shards=1) as e:
        for i in range(4):
            await e.create(f"old{i}", "t")
        assert len(await e.claim_due("t", "w1", limit=4, lease_ms=10)) == 4
        for i in range(4):
            await e.create(f"new{i}", "t")
        clock.advance(10)
        # limit 4, ratio 25%: one reclaim first, then normal work.
        got = await e.claim_due("t", "w2", limit=4)
        assert [f.reclaims for f in got] == [1, 0, 0, 0]
        assert [f.id for f in got[1:]] == ["new0", "new1", "new2"]
        # ratio 0: normal work first, then reclaims top up the limit.
        got = await e.claim_due("t", "w2", limit=10, reclaim_ratio=0)
        assert [f.reclaims for f in got] == [0, 1, 1, 1]
        assert got[0].id == "new3"
        assert await e.info("t") == {"running": 8}


async def test_stale_worker_is_fenced_out(tmp_path: Path, clock: FakeClock) -> None:
    async with open_checked(tmp_path, clock, shards=1) as e:
        await e.create("a", "t")
        [old] = await e.claim_due("t", "w1", lease_ms=1_000)
        clock.advance(1_000)
        [new] = await e.reclaim("t", "w2")
        before, snap = written(e), await e.get("a")
        tok, fen = old.lease_token, old.fencing_token
        attempts: list[Any] = [
            e.complete("a", tok, fen, result=b"late"),
            e.fail("a", tok, fen, error=b"late"),
            e.retry("a", tok, fen, error=b"late"),
            e.transition("a", "running", "next", fen, lease_token=tok),
            e.extend_lease("a", tok, fen),
            e.step_continue("a", tok, fen),
            e.cancel("a", lease_token=tok),
            e.cancel("a", lease_token=tok, fencing_token=fen),
            e.complete_many([fa.Ack("a", tok, fen)]),
        ]
        for call in attempts[:-1]:
            with pytest.raises(fa.StaleLease):
                await call
        [item] = await attempts[-1]
        assert isinstance(item.error, fa.StaleLease)
        assert written(e) == before and await e.get("a") == snap
        done = await e.complete("a", new.lease_token, new.fencing_token, result=b"ok")
        assert done.state == "completed"


async def test_original_worker_may_finish_before_a_reclaim(
    tmp_path: Path, clock: FakeClock
) -> None:
    """Leases are not enforced on mutation: until someone reclaims, the expired holder's
    tokens are still current (FerricStore behaviour, README "Weaknesses")."""
    async with open_checked(tmp_path, clock, shards=1) as e:
        await e.create("a", "t")
        await e.create("b", "t")
        [f, g] = await e.claim_due("t", "w1", lease_ms=100, limit=2)
        clock.advance(5_000)
        done = await e.complete(f.id, f.lease_token, f.fencing_token, result=b"late but fine")
        assert done.state == "completed" and done.reclaims == 0
        h = await e.extend_lease(g.id, g.lease_token, g.fencing_token, lease_ms=100)
        assert h.lease_deadline_ms == clock.now + 100
        assert await e.claim_due("t", "w2") == []  # extended again: not expired


async def _expire_and_claim(e: Any, clock: FakeClock, worker: str) -> list[fa.Flow]:
    clock.advance(1_000)
    return await e.claim_due("t", worker, lease_ms=1_000)  # type: ignore[no-any-return]


async def test_crash_budget_exhausts_to_failed(tmp_path: Path, clock: FakeClock) -> None:
    policy = fa.RetryPolicy(max_reclaims=2)
    async with open_checked(tmp_path, clock, shards=1, retry_policy=policy) as e:
        await e.create("a", "t")
        [f] = await e.claim_due("t", "w0", lease_ms=1_000)
        for n in (1, 2):
            [f] = await _expire_and_claim(e, clock, f"w{n}")
            assert f.reclaims == n
        assert await _expire_and_claim(e, clock, "w3") == []
        got = await e.get("a")
        assert got is not None
        assert (got.state, got.terminal, got.lease_token, got.reclaims) == ("failed", True, None, 2)
        assert got.error is not None and b"max_reclaims" in got.error
        last = (await e.history("a"))[-1]
        assert last.name == "exhausted" and last.meta["reason"] == "max_reclaims"
        assert last.meta["previous_owner"] == "w2"
        assert names(await e.history("a")) == [
            "created",
            "claimed",
            "reclaimed",
            "reclaimed",
            "exhausted",
        ]
        assert await e.info("t") == {"failed": 1}
        # The last holder's complete cannot revive it.
        with pytest.raises(fa.FlowTerminal):
            await e.complete("a", f.lease_token, f.fencing_token)


async def test_crash_budget_to_manual_state_and_per_type(tmp_path: Path, clock: FakeClock) -> None:
    manual = fa.RetryPolicy(max_reclaims=0, exhausted_to="stuck")
    async with open_checked(tmp_path, clock, shards=1, type_policies={"t": manual}) as e:
        await e.create("a", "t")
        await e.create("b", "u")
        await e.claim_due("t", "w", lease_ms=1_000)
        await e.claim_due("u", "w", lease_ms=1_000)
        assert await _expire_and_claim(e, clock, "w2") == []
        got = await e.get("a")
        assert got is not None and (got.state, got.next_run_at_ms) == ("stuck", clock.now)
        [g] = await e.claim_due("t", "operator", states=["stuck"])
        assert g.run_state == "stuck"
        [h] = await e.claim_due("u", "w2")  # default policy: reclaims allowed
        assert h.reclaims == 1


@pytest.mark.parametrize("command", ["fail", "retry"])
async def test_stale_worker_after_crash_budget_hears_an_error(
    tmp_path: Path, clock: FakeClock, command: str
) -> None:
    policy = fa.RetryPolicy(max_reclaims=0)
    async with open_checked(tmp_path, clock, shards=1, retry_policy=policy) as e:
        await e.create("a", "t")
        [f] = await e.claim_due("t", "w1", lease_ms=1_000)
        assert await _expire_and_claim(e, clock, "w2") == []
        with pytest.raises((fa.StaleLease, fa.FlowTerminal)):
            await getattr(e, command)("a", f.lease_token, f.fencing_token, error=b"mine")


async def test_lease_expiry_on_trio_mock_clock(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    policy = fa.RetryPolicy(backoff="fixed", base_ms=3_000, jitter_pct=0)
    async with fa.open_engine(
        tmp_path, shards=2, clock=fa.trio_clock_ms, retry_policy=policy, io_threads=False
    ) as raw:
        e: Any = Checked(raw)  # checks invariants after every call
        start = fa.trio_clock_ms()
        await e.create("a", "t", delay_ms=2_000)
        assert await e.claim_due("t", "w") == []
        await trio.sleep(2)
        [f] = await e.claim_due("t", "w1", lease_ms=5_000)
        assert f.lease_deadline_ms == start + 7_000
        await trio.sleep(4)
        assert await e.claim_due("t", "w2") == []
        await trio.sleep(1)
        [g] = await e.claim_due("t", "w2")
        assert (g.reclaims, g.fencing_token) == (1, 2)
        with pytest.raises(fa.StaleLease):
            await e.complete("a", f.lease_token, f.fencing_token)
        r = await e.retry("a", g.lease_token, g.fencing_token)
        assert r.next_run_at_ms == fa.trio_clock_ms() + 3_000
        await trio.sleep(2)
        assert await e.claim_due("t", "w3") == []
        await trio.sleep(1)
        [h] = await e.claim_due("t", "w3")
        assert h.attempts == 1


async def test_step_continue_keeps_the_claim_under_a_new_lease(
    tmp_path: Path, clock: FakeClock
) -> None:
    """Store a step and go on: still running, at the new step, fencing + 1, a new token
    and deadline; the values land with it; the old tokens are stale from then on."""
    async with open_checked(tmp_path, clock, shards=1) as e:
        await e.create("a", "t", state="fetch", payload=b"in")
        [f] = await e.claim_due("t", "w1", lease_ms=1_000)
        clock.advance(300)
        g = await e.step_continue(
            "a", f.lease_token, f.fencing_token, from_state="fetch", to_state="parse",
            lease_ms=2_000, values={"page": b"<html>"}, attributes={"step": "2"},
        )  # fmt: skip
        assert (g.state, g.run_state, g.fencing_token) == ("running", "parse", f.fencing_token + 1)
        assert g.lease_owner == "w1" and g.lease_token == f"w1:{clock.now}:{g.fencing_token}"
        assert g.lease_deadline_ms == g.next_run_at_ms == clock.now + 2_000
        assert g.value_sizes == {"page": 6} and g.attributes == {"step": "2"}
        assert (g.attempts, g.reclaims) == (f.attempts, f.reclaims)
        last = (await e.history("a"))[-1]
        assert last.name == "step_continued"
        assert last.meta == {"from": "fetch", "to": "parse", "worker": "w1"}
        before = written(e)
        with pytest.raises(fa.StaleLease):
            await e.step_continue("a", f.lease_token, f.fencing_token)
        with pytest.raises(fa.WrongState):  # from_state guards the step
            await e.step_continue("a", g.lease_token, g.fencing_token, from_state="fetch")
        assert written(e) == before
        h = await e.step_continue("a", g.lease_token, g.fencing_token, worker="w2", lease_ms=9)
        assert (h.run_state, h.lease_owner) == ("parse", "w2")  # the step kept
        clock.advance(9)  # a continued lease expires like a claimed one
        [r] = await e.reclaim("t", "w3")
        assert (r.run_state, r.fencing_token) == ("parse", h.fencing_token + 1)
        done = await e.complete("a", r.lease_token, r.fencing_token)
        assert done.state == "completed"
        assert (await e.get_values("a", ["page"])) == {"page": b"<html>"}
    async with open_checked(tmp_path, clock, shards=1) as e:  # recovered from the log
        assert [ev.name for ev in await e.history("a")] == [
            "created", "claimed", "step_continued", "step_continued", "reclaimed", "completed",
        ]  # fmt: skip


async def test_step_continue_refuses_bad_input_and_unleased_flows(
    tmp_path: Path, clock: FakeClock
) -> None:
    async with open_checked(tmp_path, clock, shards=1) as e:
        await e.create("a", "t")
        before = written(e)
        with pytest.raises(fa.WrongState):  # not claimed: nothing to continue
            await e.step_continue("a", "w:1:1", 0)
        [f] = await e.claim_due("t", "w1")
        tok, fen = f.lease_token, f.fencing_token
        for bad in (
            {"to_state": "running"}, {"to_state": "completed"}, {"lease_ms": 0},
            {"worker": ""}, {"values": {"x": "not bytes"}},
        ):  # fmt: skip
            with pytest.raises(fa.InvalidArgument):
                await e.step_continue("a", tok, fen, **bad)
        with pytest.raises(fa.InvalidArgument):
            await e.step_continue("a", None, fen)
        with pytest.raises(fa.FlowNotFound):
            await e.step_continue("nope", tok, fen)
        assert written(e) == before + 1  # only the claim


async def test_step_continue_past_max_active_ms_fails_the_flow(
    tmp_path: Path, clock: FakeClock
) -> None:
    async with open_checked(tmp_path, clock, shards=1) as e:
        await e.create("a", "t", max_active_ms=1_000)
        [f] = await e.claim_due("t", "w1", lease_ms=5_000)
        clock.advance(1_000)
        with pytest.raises(fa.FlowTerminal):
            await e.step_continue("a", f.lease_token, f.fencing_token)
        assert (await e.get("a")).state == "failed"
