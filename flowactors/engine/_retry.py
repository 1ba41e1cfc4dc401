"""Retry maths: pure functions of (policy, flow id, attempt). No clock, no randomness."""

from __future__ import annotations

import xxhash

from ._types import RetryPolicy


def backoff_delay_ms(policy: RetryPolicy, flow_id: str, attempt: int) -> int:
    """Delay before attempt number `attempt` (1-based, the value `attempts` now holds).

    Jitter is deterministic: the same flow and attempt always get the same offset, so a
    replayed command and a recovered shard schedule identically.
    """
    base, cap = policy.base_ms, policy.max_ms
    if policy.backoff == "none":
        delay = 0
    elif policy.backoff == "fixed":
        delay = base
    elif policy.backoff == "linear":
        delay = min(base * attempt, cap)
    else:
        delay = min(base * (1 << min(attempt - 1, 62)), cap)
    spread = delay * policy.jitter_pct // 100
    if spread:
        h = xxhash.xxh64_intdigest(f"{flow_id}\x00{attempt}".encode())
        delay += h % (2 * spread + 1) - spread
    return max(0, min(delay, cap if policy.backoff != "none" else 0))
