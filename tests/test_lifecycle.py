"""The lifecycle table (engine/_lifecycle.py): its rules against every situation, the
batch paths' admission test, and the generated docs/lifecycle.md being current."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

import flowactors as fa
from flowactors.engine import _lifecycle as lc


def test_the_generated_table_is_current() -> None:
    assert lc.DOC.read_text() == lc.table(), "run: python -m flowactors.engine._lifecycle"


@pytest.mark.parametrize("rule", list(lc.RULES.values()), ids=list(lc.RULES))
def test_each_rule_in_each_situation(rule: lc.Rule) -> None:
    want = {
        "running, the lease presented": "acts",
        "running, another lease token": "StaleLease",
        "running, a stale fencing token": "StaleLease",
        "queued, never claimed, no lease token": (
            "WrongState" if rule.lease == "required" else "acts"
        ),
        "queued, never claimed, a lease token": (
            "WrongState" if rule.lease == "required" else "StaleLease"
        ),
        "queued after a lost lease, its lease token": "StaleLease",
        "queued after a lost lease, no lease token": (
            "WrongState" if rule.lease == "required" else "acts"
        ),
        "completed": "FlowTerminal",
    }
    got = {name: lc.outcome(rule, fields, f, t) for name, fields, f, t in lc.SITUATIONS}
    assert got == want


@given(
    st.sampled_from(["queued", "running", "waiting", "completed", "failed", "cancelled"]),
    st.sampled_from([None, "L", "M"]),
    st.integers(0, 3),
    st.integers(0, 3),
    st.sampled_from([None, "L", "M"]),
)
def test_holding_the_lease_passes_every_rule_and_nothing_else_takes_the_batch_path(
    state: str, lease: str | None, current: int, fencing: int, token: str | None
) -> None:
    if lease is not None and state in ("completed", "failed", "cancelled"):
        lease = None  # a terminal flow holds no lease (the state's invariant)
    record = lc.situation_record({"state": state, "lease": lease, "fencing": current})
    admitted = lc.holds_lease(record, fencing, token)
    for rule in lc.RULES.values():
        try:
            lc.check(rule, record, fencing, token)
            passed = True
        except (fa.StaleLease, fa.WrongState, fa.FlowTerminal):
            passed = False
        if admitted:
            assert passed, rule.command
        if rule.lease == "required":
            assert passed == admitted, rule.command  # a lease rule acts only under it
