"""Engine: installed flow policies (generations, merge, compare-and-swap, the resolution
order of retry settings, crash budget, retention, max_active_ms, the history cap) and
their survival across a restart."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from engine_helpers import START_MS, FakeClock, names, open_checked, written

import flowactors as fa
from flowactors.engine._record import history_key, history_prefix

P = fa.PolicySettings
DAY = 24 * 3600 * 1000
FIXED_100 = fa.RetryPolicy(max_retries=4, backoff="fixed", base_ms=100, max_ms=10_000, jitter_pct=0)
ENGINE_DEFAULT = fa.RetryPolicy(max_retries=1, backoff="none", jitter_pct=0)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


async def claim_one(e: Any, fid: str, flow_type: str, state: str, **options: Any) -> fa.Flow:
    """Claim the one due flow of (type, state) and check it is `fid`."""
    [f] = await e.claim_due(flow_type, "w", states=[state], **options)
    assert (f.id, f.run_state) == (fid, state)
    return f  # type: ignore[no-any-return]


def log_keys(e: Any, fid: str, prefix: bytes) -> set[bytes]:
    shard = e.raw._shards[e.shard_for(fid)]
    return set(shard.log.keys(prefix))


# -- install, get, generations ----------------------------------------------------------


async def test_get_unknown_is_empty_and_installs_count_generations(
    tmp_path: Path, clock: FakeClock
) -> None:
    async with open_checked(tmp_path, clock) as e:
        empty = await e.get_policy("t")
        assert empty == fa.FlowPolicy() and empty.generation == 0 and empty.fields() == {}
        before = written(e)
        first = await e.install_policy("t", fa.FlowPolicy(max_retries=2))
        assert first.generation == 1 and first.max_retries == 2
        assert written(e) == before + e.shard_count  # durable on every shard
        second = await e.install_policy("t", fa.FlowPolicy(base_ms=50))
        assert second.generation == 2
        assert await e.get_policy("t") == second
        assert (await e.get_policy("other")).generation == 0  # per type


async def test_install_merges_field_by_field_and_replace_replaces(
    tmp_path: Path, clock: FakeClock
) -> None:
    async with open_checked(tmp_path, clock) as e:
        await e.install_policy(
            "t",
            fa.FlowPolicy(
                max_retries=5,
                base_ms=100,
                states={"a": P(backoff="fixed", jitter_pct=0), "b": P(max_reclaims=3)},
            ),
        )
        merged = await e.install_policy(
            "t",
            fa.FlowPolicy(
                base_ms=200, retention_ms=9_000, states={"a": P(max_ms=900), "c": P(max_retries=1)}
            ),
        )
        assert merged.generation == 2
        assert merged.fields() == {"max_retries": 5, "base_ms": 200, "retention_ms": 9_000}
        assert {k: v.fields() for k, v in merged.states.items()} == {
            "a": {"backoff": "fixed", "jitter_pct": 0, "max_ms": 900},  # layer merged too
            "b": {"max_reclaims": 3},  # untouched layer kept
            "c": {"max_retries": 1},
        }
        assert await e.get_policy("t") == merged
        replaced = await e.install_policy("t", fa.FlowPolicy(max_reclaims=2), replace=True)
        assert replaced.generation == 3
        assert replaced.fields() == {"max_reclaims": 2} and dict(replaced.states) == {}
        assert await e.get_policy("t") == replaced


async def test_compare_and_swap_on_generation(tmp_path: Path, clock: FakeClock) -> None:
    async with open_checked(tmp_path, clock) as e:
        before = written(e)
        with pytest.raises(fa.IdempotencyConflict):  # nothing installed: generation 0
            await e.install_policy("t", fa.FlowPolicy(max_retries=1), expected_generation=1)
        assert (await e.get_policy("t")).generation == 0 and written(e) == before
        one = await e.install_policy("t", fa.FlowPolicy(max_retries=1), expected_generation=0)
        assert one.generation == 1
        before = written(e)
        for stale in (0, 2):
            with pytest.raises(fa.IdempotencyConflict):
                await e.install_policy("t", fa.FlowPolicy(max_retries=9), expected_generation=stale)
            with pytest.raises(fa.IdempotencyConflict):
                await e.install_policy(
                    "t", fa.FlowPolicy(), expected_generation=stale, replace=True
                )
        assert await e.get_policy("t") == one and written(e) == before
        two = await e.install_policy("t", fa.FlowPolicy(max_retries=7), expected_generation=1)
        assert (two.generation, two.max_retries) == (2, 7)


# -- resolution order -------------------------------------------------------------------


async def test_retry_resolution_order(tmp_path: Path, clock: FakeClock) -> None:
    """engine default < engine type policy < installed type < installed state < command."""
    options = {"retry_policy": ENGINE_DEFAULT, "type_policies": {"t": FIXED_100}}
    async with open_checked(tmp_path, clock, **options) as e:
        # Engine level: "u" has the default (no backoff, 1 retry), "t" its own policy.
        await e.create("u1", "u")
        f = await claim_one(e, "u1", "u", "queued")
        g = await e.retry("u1", f.lease_token, f.fencing_token)
        assert (g.state, g.attempts, g.next_run_at_ms) == ("queued", 1, START_MS)
        f = await claim_one(e, "u1", "u", "queued")
        g = await e.retry("u1", f.lease_token, f.fencing_token)
        assert (g.state, g.attempts) == ("failed", 2)
        await e.create("t1", "t")
        f = await claim_one(e, "t1", "t", "queued")
        g = await e.retry("t1", f.lease_token, f.fencing_token)
        assert g.next_run_at_ms == START_MS + 100
        # Installed type layer: merged over the engine's type policy (still fixed, 4 tries).
        await e.install_policy("t", fa.FlowPolicy(base_ms=300))
        clock.advance(100)
        now = clock.now
        f = await claim_one(e, "t1", "t", "queued")
        g = await e.retry("t1", f.lease_token, f.fencing_token)
        assert (g.attempts, g.next_run_at_ms) == (2, now + 300)
        # Installed state layer, picked by the run_state of the flow being retried.
        await e.install_policy(
            "t",
            fa.FlowPolicy(
                states={"charge": P(backoff="linear", max_retries=2, exhausted_to="manual")}
            ),
        )
        await e.create("c1", "t", state="charge")
        f = await claim_one(e, "c1", "t", "charge")
        g = await e.retry("c1", f.lease_token, f.fencing_token)
        assert (g.state, g.next_run_at_ms) == ("charge", now + 300)  # linear: 300 * 1
        clock.advance(300)
        f = await claim_one(e, "c1", "t", "charge")
        g = await e.retry("c1", f.lease_token, f.fencing_token)
        assert g.next_run_at_ms == clock.now + 600  # linear: 300 * 2
        clock.advance(600)
        f = await claim_one(e, "c1", "t", "charge")
        g = await e.retry("c1", f.lease_token, f.fencing_token)
        assert (g.state, g.attempts, g.next_run_at_ms) == ("manual", 3, clock.now)
        assert (await e.history("c1"))[-1].meta["decision"] == "exhausted"
        # A flow of the same type in another state keeps the type layer (fixed, 4 tries).
        clock.advance(300)
        f = await claim_one(e, "t1", "t", "queued")
        g = await e.retry("t1", f.lease_token, f.fencing_token)
        assert (g.state, g.attempts, g.next_run_at_ms) == ("queued", 3, clock.now + 300)
        # The command overrides everything.
        await e.create("c2", "t", state="charge")
        f = await claim_one(e, "c2", "t", "charge")
        g = await e.retry("c2", f.lease_token, f.fencing_token, max_retries=0)
        assert (g.state, g.attempts) == ("manual", 1)
        await e.create("c3", "t", state="charge")
        f = await claim_one(e, "c3", "t", "charge")
        g = await e.retry(
            "c3", f.lease_token, f.fencing_token, max_retries=0, exhausted_to="review"
        )
        assert g.state == "review" and g.next_run_at_ms == clock.now
        await e.create("c4", "t", state="charge")
        f = await claim_one(e, "c4", "t", "charge")
        g = await e.retry("c4", f.lease_token, f.fencing_token, max_retries=5)
        assert (g.state, g.next_run_at_ms) == ("charge", clock.now + 300)  # still linear


async def test_exponential_from_installed_layers(tmp_path: Path, clock: FakeClock) -> None:
    async with open_checked(tmp_path, clock) as e:
        await e.install_policy(
            "t",
            fa.FlowPolicy(backoff="exponential", base_ms=100, max_ms=350, jitter_pct=0),
        )
        await e.create("a", "t")
        for expected in (100, 200, 350):  # capped at max_ms
            f = await claim_one(e, "a", "t", "queued")
            g = await e.retry("a", f.lease_token, f.fencing_token)
            assert g.next_run_at_ms == clock.now + expected
            clock.advance(expected)
        f = await claim_one(e, "a", "t", "queued")
        g = await e.retry("a", f.lease_token, f.fencing_token)  # default max_retries 3
        assert (g.state, g.attempts) == ("failed", 4)


async def test_max_reclaims_from_state_layer(tmp_path: Path, clock: FakeClock) -> None:
    async with open_checked(tmp_path, clock) as e:
        await e.install_policy(
            "t", fa.FlowPolicy(states={"work": P(max_reclaims=1, exhausted_to="dead")})
        )
        await e.create("w1", "t", state="work")
        await e.create("q1", "t")
        await claim_one(e, "w1", "t", "work", lease_ms=100)
        await claim_one(e, "q1", "t", "queued", lease_ms=100)
        clock.advance(100)
        got = await e.reclaim("t", "w2", limit=10, lease_ms=100)
        assert sorted((f.id, f.reclaims) for f in got) == [("q1", 1), ("w1", 1)]
        clock.advance(100)
        got = await e.reclaim("t", "w3", limit=10, lease_ms=100)
        assert [(f.id, f.reclaims) for f in got] == [("q1", 2)]  # default budget is 10
        dead = await e.get("w1")
        assert dead is not None and (dead.state, dead.reclaims) == ("dead", 1)
        assert dead.next_run_at_ms == clock.now and dead.lease_token is None
        assert (await e.history("w1"))[-1].meta["reason"] == "max_reclaims"


# -- retention, max_active_ms, history cap ---------------------------------------------


async def test_retention_per_terminal_state(tmp_path: Path, clock: FakeClock) -> None:
    async with open_checked(tmp_path, clock) as e:
        await e.install_policy(
            "t", fa.FlowPolicy(retention_ms=10_000, states={"failed": P(retention_ms=1_000)})
        )
        for fid in ("ok", "bad", "gone", "own"):
            await e.create(fid, "t", retention_ms=500 if fid == "own" else None)
        await e.create("other", "u")
        flows = await e.claim_due("t", "w", limit=10)
        assert len(flows) == 4
        [o] = await e.claim_due("u", "w")
        tokens = {f.id: (f.lease_token, f.fencing_token) for f in flows}
        await e.complete("ok", *tokens["ok"])
        await e.fail("bad", *tokens["bad"])
        await e.cancel("gone", lease_token=tokens["gone"][0])
        await e.complete("own", *tokens["own"])  # create(retention_ms=) beats the policy
        await e.complete("other", o.lease_token, o.fencing_token)

        async def alive() -> set[str]:
            return {f for f in ("ok", "bad", "gone", "own", "other") if await e.get(f)}

        clock.advance(499)
        assert (await e.retention_cleanup())["deleted"] == 0
        clock.advance(1)
        await e.retention_cleanup()
        assert await e.get("a") is None
        assert await alive() == {"ok", "bad", "gone", "other"}
        clock.advance(500)  # +1_000: the failed layer
        await e.retention_cleanup()
        assert await e.get("a") is None
        assert await alive() == {"ok", "gone", "other"}
        clock.advance(8_999)
        assert (await e.retention_cleanup())["deleted"] == 0
        clock.advance(1)  # +10_000: the type layer, for completed and cancelled alike
        assert (await e.retention_cleanup())["deleted"] == 2
        assert await alive() == {"other"}
        clock.advance(7 * DAY - 10_001)  # an uncovered type keeps the 7-day default
        assert (await e.retention_cleanup())["deleted"] == 0
        clock.advance(1)
        await e.retention_cleanup()
        assert await e.get("a") is None
        assert await alive() == set()


async def test_max_active_ms_from_type_policy(tmp_path: Path, clock: FakeClock) -> None:
    async with open_checked(tmp_path, clock) as e:
        await e.create("old", "t")  # before the install: no deadline
        await e.install_policy("t", fa.FlowPolicy(max_active_ms=5_000))
        await e.create("a", "t")
        await e.create("mine", "t", max_active_ms=60_000)  # the create option wins
        await e.create("u", "u")  # another type: no deadline
        clock.advance(4_999)
        assert await e.retention_cleanup() == {"active_timeouts": 0, "deleted": 0, "more": 0}
        clock.advance(1)
        got = await e.claim_due("t", "w", limit=10)
        assert sorted(f.id for f in got) == ["mine", "old"]  # "a" failed instead
        a = await e.get("a")
        assert a is not None and a.state == "failed" and a.error == b"max_active_ms exceeded"
        last = (await e.history("a"))[-1]
        assert (last.name, last.meta) == ("failed", {"reason": "max_active_ms"})
        for fid in ("old", "mine", "u"):
            g = await e.get(fid)
            assert g is not None and not g.terminal


async def test_max_active_ms_fails_a_claimed_flow_on_complete(
    tmp_path: Path, clock: FakeClock
) -> None:
    async with open_checked(tmp_path, clock) as e:
        await e.install_policy("t", fa.FlowPolicy(max_active_ms=1_000))
        await e.create("a", "t")
        f = await claim_one(e, "a", "t", "queued", lease_ms=10_000)
        clock.advance(1_000)
        with pytest.raises(fa.FlowTerminal):
            await e.complete("a", f.lease_token, f.fencing_token, result=b"late")
        a = await e.get("a")
        assert a is not None and (a.state, a.result) == ("failed", None)
        assert a.fencing_token == f.fencing_token + 1
        assert (await e.history("a"))[-1].meta == {"reason": "max_active_ms"}


async def test_history_cap_trims_and_keeps_pinned_events(tmp_path: Path, clock: FakeClock) -> None:
    async with open_checked(tmp_path, clock) as e:
        await e.install_policy("t", fa.FlowPolicy(history_max_events=3))
        await e.create("a", "t", payload=b"P")  # v1 holds the payload
        for step in ("s1", "s2"):
            f = await claim_one(e, "a", "t", "queued" if step == "s1" else "s1")
            await e.transition("a", "running", step, f.fencing_token, lease_token=f.lease_token)
            clock.advance(10)
        f = await claim_one(e, "a", "t", "s2")
        await e.complete("a", f.lease_token, f.fencing_token, result=b"R")  # v7
        events = await e.history("a")
        assert [ev.version for ev in events] == [5, 6, 7]
        assert names(events) == ["transitioned", "claimed", "completed"]
        got = await e.get("a", payload=True)
        assert got is not None and (got.payload, got.result) == (b"P", b"R")
        # Trimmed events are tombstoned; the payload's event stays on disk.
        assert log_keys(e, "a", history_prefix("a")) == {history_key("a", v) for v in (1, 5, 6, 7)}


async def test_history_cap_drops_an_event_once_it_is_no_longer_pinned(
    tmp_path: Path, clock: FakeClock
) -> None:
    async with open_checked(tmp_path, clock) as e:
        await e.install_policy("t", fa.FlowPolicy(history_max_events=2))
        await e.create("a", "t", payload=b"old")
        f = await claim_one(e, "a", "t", "queued")
        await e.transition("a", "running", "s", f.fencing_token, lease_token=f.lease_token)
        f = await claim_one(e, "a", "t", "s")
        assert history_key("a", 1) in log_keys(e, "a", history_prefix("a"))
        await e.transition(
            "a", "running", "s2", f.fencing_token, lease_token=f.lease_token, payload=b"new"
        )
        assert log_keys(e, "a", history_prefix("a")) == {history_key("a", v) for v in (4, 5)}
        got = await e.get("a", payload=True)
        assert got is not None and got.payload == b"new"


async def test_a_trimmed_history_keeps_dropping_unpinned_events_after_the_cap_is_lifted(
    tmp_path: Path, clock: FakeClock
) -> None:
    """A policy of retry settings only leaves the batch paths to its type; a flow whose
    history was trimmed still goes the per-item way, so an event it stops pinning is
    deleted (else it would be left behind, found by neither the window nor the pins)."""
    async with open_checked(tmp_path, clock) as e:
        await e.install_policy("t", fa.FlowPolicy(history_max_events=2))
        await e.create("a", "t", payload=b"old")
        f = await claim_one(e, "a", "t", "queued")
        await e.transition("a", "running", "s", f.fencing_token, lease_token=f.lease_token)
        await e.install_policy("t", fa.FlowPolicy(max_reclaims=1000), replace=True)
        f = await claim_one(e, "a", "t", "s")
        assert history_key("a", 1) in log_keys(e, "a", history_prefix("a"))  # pinned
        await e.transition(
            "a", "running", "s2", f.fencing_token, lease_token=f.lease_token, payload=b"new"
        )
        assert log_keys(e, "a", history_prefix("a")) == {history_key("a", v) for v in (2, 3, 4, 5)}
        f = await claim_one(e, "a", "t", "s2")
        await e.complete("a", f.lease_token, f.fencing_token)
        clock.advance(8 * 24 * 3600 * 1000)  # past the default retention
        await e.retention_cleanup()
        assert await e.get("a") is None
        assert log_keys(e, "a", history_prefix("a")) == set()


async def test_history_cap_applies_to_flows_created_before_it(
    tmp_path: Path, clock: FakeClock
) -> None:
    async with open_checked(tmp_path, clock) as e:
        await e.create("a", "t")
        for _ in range(3):
            await e.put_value("a", "v", bytes([len(await e.history("a"))]), override=True)
        assert len(await e.history("a")) == 4
        await e.install_policy("t", fa.FlowPolicy(history_max_events=2))
        await e.put_value("a", "v", b"x", override=True)
        assert [ev.version for ev in await e.history("a")] == [4, 5]
        assert await e.get_values("a", ["v"]) == {"v": b"x"}


# -- restart ----------------------------------------------------------------------------


async def test_policies_survive_restart(tmp_path: Path, clock: FakeClock) -> None:
    policy = fa.FlowPolicy(
        backoff="fixed", base_ms=250, jitter_pct=0, states={"s": P(max_retries=0)}
    )
    async with open_checked(tmp_path, clock) as e:
        await e.install_policy("t", fa.FlowPolicy(max_retries=9))
        installed = await e.install_policy("t", policy)
        await e.install_policy("u", fa.FlowPolicy(retention_ms=1_000))
        await e.create("a", "t")
        await e.create("b", "t", state="s")
    async with open_checked(tmp_path, clock) as e:
        assert await e.get_policy("t") == installed and installed.generation == 2
        assert (await e.get_policy("u")).generation == 1
        f = await claim_one(e, "a", "t", "queued")
        g = await e.retry("a", f.lease_token, f.fencing_token)
        assert (g.state, g.next_run_at_ms) == ("queued", clock.now + 250)
        f = await claim_one(e, "b", "t", "s")
        g = await e.retry("b", f.lease_token, f.fencing_token)
        assert g.state == "failed"  # the state layer's max_retries=0
        # Compare-and-swap continues from the recovered generation.
        with pytest.raises(fa.IdempotencyConflict):
            await e.install_policy("t", fa.FlowPolicy(), expected_generation=0)
        assert (await e.install_policy("t", fa.FlowPolicy(), expected_generation=2)).generation == 3


# -- validation -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "build",
    [
        lambda: fa.FlowPolicy(backoff="quadratic"),  # type: ignore[arg-type]
        lambda: fa.FlowPolicy(max_retries=-1),
        lambda: fa.FlowPolicy(max_retries=1001),
        lambda: fa.FlowPolicy(base_ms=-5),
        lambda: fa.FlowPolicy(jitter_pct=101),
        lambda: fa.FlowPolicy(max_reclaims=True),
        lambda: fa.FlowPolicy(exhausted_to="running"),
        lambda: fa.FlowPolicy(exhausted_to=""),
        lambda: fa.FlowPolicy(max_active_ms=0),
        lambda: fa.FlowPolicy(retention_ms=-1),
        lambda: fa.FlowPolicy(history_max_events=0),
        lambda: fa.FlowPolicy(states={"running": P(max_retries=1)}),
        lambda: fa.FlowPolicy(states={"": P()}),
        lambda: fa.FlowPolicy(states={"s": P(exhausted_to="running")}),
        lambda: fa.FlowPolicy(states={"s": P(backoff="bad")}),  # type: ignore[arg-type]
        lambda: fa.FlowPolicy(states={"s": fa.FlowPolicy()}),
        lambda: fa.FlowPolicy(states={"s": {"max_retries": 1}}),  # type: ignore[dict-item]
    ],
)
def test_invalid_policies_are_rejected(build: Any) -> None:
    with pytest.raises(fa.InvalidArgument):
        build()


async def test_install_rejects_bad_arguments(tmp_path: Path, clock: FakeClock) -> None:
    async with open_checked(tmp_path, clock) as e:
        before = written(e)
        for bad_type in ("", "__internal", "x" * 300, 5):
            with pytest.raises(fa.InvalidArgument):
                await e.install_policy(bad_type, fa.FlowPolicy(max_retries=1))
        with pytest.raises(fa.InvalidArgument):
            await e.install_policy("t", fa.PolicySettings(max_retries=1))
        with pytest.raises(fa.InvalidArgument):
            await e.install_policy("t", fa.FlowPolicy(), expected_generation=-1)
        with pytest.raises(fa.InvalidArgument):
            await e.get_policy("__internal")
        assert written(e) == before and (await e.get_policy("t")).generation == 0


def test_type_only_settings_are_rejected_in_a_state_layer() -> None:
    # Config.setting reads both with state=None, so a state layer's value never applies.
    with pytest.raises(fa.InvalidArgument):
        fa.FlowPolicy(states={"s": P(max_active_ms=1_000)})
    with pytest.raises(fa.InvalidArgument):
        fa.FlowPolicy(states={"s": P(history_max_events=5)})


async def test_installed_policy_is_not_changed_by_the_callers_dict(
    tmp_path: Path, clock: FakeClock
) -> None:
    async with open_checked(tmp_path, clock) as e:
        layers = {"s": P(max_retries=5)}
        installed = await e.install_policy("t", fa.FlowPolicy(states=layers))
        layers["s"] = P(max_retries=0)  # no install, no new generation
        got = await e.get_policy("t")
        assert got.generation == installed.generation == 1
        assert got.states["s"].max_retries == 5


async def test_max_active_ms_policy_covers_create_many_and_spawned_children(
    tmp_path: Path, clock: FakeClock
) -> None:
    async with open_checked(tmp_path, clock) as e:
        await e.install_policy("kid", fa.FlowPolicy(max_active_ms=1_000))
        await e.create_many("kid", [fa.CreateSpec("m1"), fa.CreateSpec("m2", partition_key="z")])
        await e.create("p", "parent")
        [f] = await e.claim_due("parent", "w")
        await e.spawn_children(
            "p",
            f.lease_token,
            f.fencing_token,
            group_id="g",
            children=[fa.ChildSpec("c1", "kid"), fa.ChildSpec("c2", "kid", partition_key="y")],
            success_state="completed",
            failure_state="failed",
            on_child_failed="ignore",
        )
        clock.advance(1_000)
        report = await e.retention_cleanup()
        assert report["active_timeouts"] == 4
        await e.settle()
        for fid, pk in (("m1", None), ("m2", "z"), ("c1", None), ("c2", "y")):
            g = await e.get(fid, partition_key=pk)
            assert g is not None and g.state == "failed", fid
        parent = await e.get("p")
        assert parent is not None and parent.state == "completed"  # failures ignored
