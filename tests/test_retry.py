"""Retry maths (`backoff_delay_ms`) as a table, its jitter bounds, and the engine using it."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import pytest
from engine_helpers import FakeClock, open_checked
from hypothesis import given
from hypothesis import strategies as st

import flowactors as fa
from flowactors import RetryPolicy, backoff_delay_ms

# Delays for attempts 1..6 with jitter 0.
TABLE: list[tuple[RetryPolicy, list[int]]] = [
    (RetryPolicy(backoff="none", base_ms=100, max_ms=1_000, jitter_pct=0), [0] * 6),
    (RetryPolicy(backoff="fixed", base_ms=100, max_ms=1_000, jitter_pct=0), [100] * 6),
    (RetryPolicy(backoff="fixed", base_ms=5_000, max_ms=1_000, jitter_pct=0), [1_000] * 6),
    (
        RetryPolicy(backoff="linear", base_ms=100, max_ms=1_000, jitter_pct=0),
        [100, 200, 300, 400, 500, 600],
    ),
    (
        RetryPolicy(backoff="linear", base_ms=300, max_ms=1_000, jitter_pct=0),
        [300, 600, 900, 1_000, 1_000, 1_000],
    ),
    (
        RetryPolicy(backoff="exponential", base_ms=100, max_ms=1_000, jitter_pct=0),
        [100, 200, 400, 800, 1_000, 1_000],
    ),
    (
        RetryPolicy(backoff="exponential", base_ms=1_000, max_ms=30_000, jitter_pct=0),
        [1_000, 2_000, 4_000, 8_000, 16_000, 30_000],
    ),
]


@pytest.mark.parametrize(("policy", "delays"), TABLE, ids=lambda v: getattr(v, "backoff", ""))
def test_delay_table_without_jitter(policy: RetryPolicy, delays: list[int]) -> None:
    for flow_id in ("a", "order-17", ""):
        assert [backoff_delay_ms(policy, flow_id, a) for a in range(1, 7)] == delays


def test_exponential_handles_huge_attempts() -> None:
    policy = RetryPolicy(backoff="exponential", base_ms=1, max_ms=60_000, jitter_pct=0)
    assert backoff_delay_ms(policy, "a", 1_000) == 60_000


def _undelayed(policy: RetryPolicy, attempt: int) -> int:
    kind = policy.backoff
    if kind == "none":
        raw = 0
    elif kind == "fixed":
        raw = policy.base_ms
    elif kind == "linear":
        raw = policy.base_ms * attempt
    else:
        raw = policy.base_ms * 2 ** (attempt - 1)
    return min(raw, policy.max_ms)


@given(
    backoff=st.sampled_from(["none", "fixed", "linear", "exponential"]),
    base=st.integers(1, 20_000),
    cap=st.integers(1, 100_000),
    jitter=st.integers(0, 100),
    flow_id=st.text(max_size=20),
    attempt=st.integers(1, 40),
)
def test_jitter_is_deterministic_bounded_and_capped(
    backoff: Any, base: int, cap: int, jitter: int, flow_id: str, attempt: int
) -> None:
    policy = RetryPolicy(backoff=backoff, base_ms=base, max_ms=cap, jitter_pct=jitter)
    delay = backoff_delay_ms(policy, flow_id, attempt)
    assert delay == backoff_delay_ms(policy, flow_id, attempt)  # same id + attempt
    plain = _undelayed(policy, attempt)
    assert 0 <= delay <= cap
    assert abs(delay - plain) * 100 <= plain * jitter
    if jitter == 0:
        assert delay == plain


@pytest.mark.parametrize("backoff", ["fixed", "linear", "exponential"])
def test_jitter_spreads_over_ids(backoff: Any) -> None:
    policy = RetryPolicy(backoff=backoff, base_ms=1_000, max_ms=1_000_000, jitter_pct=20)
    for attempt in (1, 2, 3):
        plain = _undelayed(policy, attempt)
        delays = [backoff_delay_ms(policy, f"flow-{i}", attempt) for i in range(200)]
        assert len(set(delays)) > 50
        assert min(delays) < plain < max(delays)
        assert all(abs(d - plain) <= plain // 5 for d in delays)
    # The attempt number takes part too.
    assert (
        len(
            {backoff_delay_ms(policy, "x", 1) - _undelayed(policy, 1)}
            | {backoff_delay_ms(policy, "x", a) - _undelayed(policy, a) for a in range(2, 12)}
        )
        > 1
    )


# -- the engine follows the table -------------------------------------------------------


@pytest.mark.parametrize(("policy", "delays"), TABLE[:6], ids=lambda v: getattr(v, "backoff", ""))
async def test_engine_schedules_retries_by_the_table(
    tmp_path: Path, policy: RetryPolicy, delays: list[int]
) -> None:
    clock = FakeClock()
    policy = RetryPolicy(**{**_fields(policy), "max_retries": 6})
    async with open_checked(tmp_path, clock, shards=1, retry_policy=policy) as e:
        await e.create("f", "t")
        for attempt, delay in enumerate(delays, start=1):
            [f] = await e.claim_due("t", "w")
            g = await e.retry("f", f.lease_token, f.fencing_token)
            assert (g.attempts, g.next_run_at_ms, g.state) == (attempt, clock.now + delay, "queued")
            clock.advance(delay)
        [f] = await e.claim_due("t", "w")
        g = await e.retry("f", f.lease_token, f.fencing_token)
        assert (g.attempts, g.state) == (7, "failed")


async def test_engine_applies_jitter_from_id_and_attempt(tmp_path: Path) -> None:
    clock = FakeClock()
    policy = RetryPolicy(backoff="linear", base_ms=1_000, max_ms=10_000, jitter_pct=50)
    async with open_checked(tmp_path, clock, shards=1, retry_policy=policy) as e:
        for i in range(5):
            await e.create(f"f{i}", "t")
        for f in await e.claim_due("t", "w", limit=5):
            g = await e.retry(f.id, f.lease_token, f.fencing_token)
            assert g.next_run_at_ms == clock.now + backoff_delay_ms(policy, f.id, 1)


async def test_max_retries_zero_means_a_single_attempt(tmp_path: Path) -> None:
    clock = FakeClock()
    async with open_checked(
        tmp_path, clock, shards=1, retry_policy=RetryPolicy(max_retries=0)
    ) as e:
        await e.create("f", "t")
        [f] = await e.claim_due("t", "w")
        g = await e.retry("f", f.lease_token, f.fencing_token, error=b"once")
        assert (g.state, g.attempts, g.terminal) == ("failed", 1, True)
        assert await e.claim_due("t", "w") == []


def _fields(policy: RetryPolicy) -> dict[str, Any]:
    return {name: getattr(policy, name) for name in RetryPolicy.__dataclass_fields__}


BAD_POLICIES: dict[str, dict[str, Any]] = {
    "backoff typo": {"backoff": "exponentail"},
    "max_retries negative": {"max_retries": -1},
    "max_retries over 1000": {"max_retries": 1_001},
    "jitter over 100": {"jitter_pct": 101},
    "jitter negative": {"jitter_pct": -1},
    "base negative": {"base_ms": -1},
    "max over 30 days": {"max_ms": 30 * 86_400_000 + 1},
    "exhausted_to running": {"exhausted_to": "running"},
    "exhausted_to empty": {"exhausted_to": ""},
    "max_reclaims negative": {"max_reclaims": -1},
}


@pytest.mark.parametrize("case", list(BAD_POLICIES))
async def test_invalid_retry_policy_is_rejected(tmp_path: Path, case: str) -> None:
    with pytest.raises(fa.InvalidArgument):
        policy = RetryPolicy(**BAD_POLICIES[case])
        async with fa.open_engine(tmp_path, shards=1, type_policies={"t": policy}):
            pass
    with pytest.raises(fa.InvalidArgument):
        policy = RetryPolicy(**BAD_POLICIES[case])
        async with fa.open_engine(tmp_path, shards=1, retry_policy=policy):
            pass


async def test_policy_exhausted_to_running_cannot_corrupt_state(tmp_path: Path) -> None:
    try:
        policy = RetryPolicy(max_retries=0, exhausted_to="running")
        async with open_checked(tmp_path, FakeClock(), shards=1, retry_policy=policy) as e:
            await e.create("f", "t")
            [f] = await e.claim_due("t", "w")
            with contextlib.suppress(fa.InvalidArgument):
                await e.retry("f", f.lease_token, f.fencing_token)  # checks invariants
    except fa.InvalidArgument:
        pass  # rejected when opening: fine
