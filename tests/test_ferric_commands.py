"""flowactors.ferric, one FLOW command at a time: the argv vectors FerricStore's SDK sends
(copied from its argv builders' output), the replies it decodes, and the error texts it
classifies, on an embedded engine in its own thread."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from ferricstore.errors import (
    FlowAlreadyExistsError,
    FlowNotFoundError,
    FlowWrongStateError,
    InvalidCommandError,
    StaleLeaseError,
    StalePolicyGenerationError,
    classify_server_error,
)
from ferricstore.flow_query_response import decode_flow_query_result

import flowactors as fa
import flowactors.ferric as ferric

NOW = 1_700_000_000_000  # a client clock far from the engine's: it must not matter


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ferric.Embedded]:
    with ferric.embedded(tmp_path / "data", shards=2) as embedded:
        yield embedded


def run(store: ferric.Embedded, *argv: Any) -> Any:
    return store.execute_command(*argv)


def fails(store: ferric.Embedded, *argv: Any) -> str:
    with pytest.raises(ferric.CommandError) as info:
        run(store, *argv)
    assert isinstance(info.value, fa.FlowError)
    message = str(info.value)
    assert message.startswith("ERR ")
    return message


def create(store: ferric.Embedded, flow_id: str, *extra: Any, type: str = "job") -> None:
    argv = ["FLOW.CREATE", flow_id, "TYPE", type, "STATE", "queued", "NOW", NOW]
    assert run(store, *argv, "PAYLOAD", b"p", "RUN_AT", NOW, "PRIORITY", 0, *extra) == "OK"


def claim(store: ferric.Embedded, *extra: Any, type: str = "job", mode: str = "RECORDS") -> Any:
    argv = ["FLOW.CLAIM_DUE", type, "WORKER", "w1", "LEASE_MS", 30000, "LIMIT", 10]
    return run(store, *argv, "PRIORITY", 0, "RETURN", mode, *extra)


# -- create ------------------------------------------------------------------------------


def test_create_then_get_returns_a_record_map(store: ferric.Embedded) -> None:
    create(store, "a", "ATTRIBUTE", "tenant", "t1", "VALUE", "doc", b"12345")
    got = run(store, "FLOW.GET", "a")
    assert got["id"] == "a" and got["type"] == "job" and got["state"] == "queued"
    assert got["payload"] == b"p" and got["attributes"] == {"tenant": "t1"}
    assert got["partition_key"] == ferric.auto_partition("a")
    assert got["value_sizes"] == {"doc": 5} and got["lease_token"] is None
    assert run(store, "FLOW.GET", "missing") is None


def test_create_twice_is_already_exists_and_idempotent_create_is_ok(
    store: ferric.Embedded,
) -> None:
    create(store, "a")
    message = fails(store, "FLOW.CREATE", "a", "TYPE", "job", "NOW", NOW)
    assert isinstance(classify_server_error(message), FlowAlreadyExistsError)
    create(store, "b", "IDEMPOTENT", "true")
    create(store, "b", "IDEMPOTENT", "true")
    conflict = fails(store, "FLOW.CREATE", "b", "TYPE", "other", "NOW", NOW, "IDEMPOTENT", "true")
    assert "idempotency conflict" in conflict


def test_create_in_a_partition_needs_it_again_on_calls_by_id(store: ferric.Embedded) -> None:
    create(store, "a", "PARTITION", "tenant-1")
    assert run(store, "FLOW.GET", "a", "PARTITION", "tenant-1")["partition_key"] == "tenant-1"
    (job,) = claim(store, mode="JOBS_COMPACT")
    assert job[1] == "tenant-1"


def test_run_at_is_read_relative_to_now_not_as_engine_time(store: ferric.Embedded) -> None:
    later = NOW + 3_600_000  # an hour after the client's NOW: not due for an hour
    run(store, "FLOW.CREATE", "late", "TYPE", "job", "NOW", NOW, "RUN_AT", later)
    run(store, "FLOW.CREATE", "now", "TYPE", "job", "NOW", NOW, "RUN_AT", NOW)
    past = NOW - 10**9  # in the client's past: due at once
    run(store, "FLOW.CREATE", "past", "TYPE", "job", "NOW", NOW, "RUN_AT", past)
    assert sorted(row[0] for row in claim(store, mode="JOBS_COMPACT")) == ["now", "past"]
    late = run(store, "FLOW.GET", "late")
    assert late["next_run_at_ms"] - late["created_at_ms"] >= 3_599_000


def test_create_many_auto_mixed_and_items_ext(store: ferric.Embedded) -> None:
    head = ["TYPE", "job", "STATE", "queued", "NOW", NOW, "RUN_AT", NOW]
    reply = run(
        store,
        "FLOW.CREATE_MANY",
        "AUTO",
        *head,
        "INDEPENDENT",
        "true",
        "ITEMS",
        "a",
        b"1",
        "b",
        b"2",
    )
    assert reply == ["OK", "OK"]
    reply = run(
        store,
        "FLOW.CREATE_MANY",
        "MIXED",
        *head,
        "RETURN",
        "OK_ON_SUCCESS",
        "ITEMS",
        "c",
        "p1",
        b"3",
        "d",
        "p2",
        b"4",
    )
    assert reply == "OK"
    reply = run(
        store,
        "FLOW.CREATE_MANY",
        "AUTO",
        *head,
        "ITEMS_EXT",
        1,
        "e",
        "-",
        b"5",
        1,
        "doc",
        b"xyz",
        0,
    )
    assert reply == ["OK"]
    assert run(store, "FLOW.GET", "d", "PARTITION", "p2")["payload"] == b"4"
    assert run(store, "FLOW.GET", "e")["value_sizes"] == {"doc": 3}
    dup = run(store, "FLOW.CREATE_MANY", "AUTO", *head, "INDEPENDENT", "true", "ITEMS", "a", b"1")
    assert dup[0][0] == "error" and "already exists" in dup[0][1]


# -- claims ------------------------------------------------------------------------------


def test_claim_compact_rows_and_records(store: ferric.Embedded) -> None:
    create(store, "a", "ATTRIBUTE", "k", "v")
    (row,) = claim(store, mode="JOBS_COMPACT_STATE_ATTRS")
    assert row[0] == "a" and row[1] == ferric.auto_partition("a")
    assert row[2].startswith(b"w1:") and row[3] == 1 and row[4] == "queued"
    assert row[5] == {"k": "v"}
    assert claim(store) == []
    create(store, "b")
    (record,) = claim(store, "PAYLOAD")
    assert record["state"] == "running" and record["run_state"] == "queued"
    assert record["payload"] == b"p" and isinstance(record["lease_token"], bytes)


def test_claim_filters_states_and_hydrates_named_values(store: ferric.Embedded) -> None:
    create(store, "a", "VALUE", "small", b"s", "VALUE", "big", b"b" * 1000)
    run(store, "FLOW.CREATE", "x", "TYPE", "job", "STATE", "other", "NOW", NOW)
    (record,) = claim(store, "STATE", "queued", "NOPAYLOAD", "VALUE", "small")
    assert record["id"] == "a" and record["payload"] is None
    assert record["values"] == {"small": b"s"}
    assert record["value_sizes"] == {"small": 1, "big": 1000}


def test_reclaim_takes_only_expired_leases(store: ferric.Embedded) -> None:
    create(store, "a")
    argv = ["FLOW.CLAIM_DUE", "job", "WORKER", "w1", "LEASE_MS", 1, "LIMIT", 1]
    (first,) = run(store, *argv, "RETURN", "JOBS_COMPACT")
    import time

    time.sleep(0.01)  # the 1 ms lease runs out (engine clock: the wall clock)
    reclaim = ["FLOW.RECLAIM", "job", "WORKER", "w2", "LEASE_MS", 30000, "LIMIT", 5, "NOW", NOW]
    (again,) = run(store, *reclaim, "RETURN", "JOBS_COMPACT")
    assert again[0] == "a" and again[3] == first[3] + 1
    assert run(store, *reclaim, "RETURN", "JOBS_COMPACT") == []


def test_block_waits_for_work_then_returns_empty(store: ferric.Embedded) -> None:
    assert claim(store, "BLOCK", 30) == []


def test_extend_lease_returns_the_record(store: ferric.Embedded) -> None:
    create(store, "a")
    (job,) = claim(store)
    token, fencing = job["lease_token"], job["fencing_token"]
    got = run(store, "FLOW.EXTEND_LEASE", "a", token, "FENCING", fencing, "LEASE_MS", 60000)
    assert got["lease_deadline_ms"] >= job["lease_deadline_ms"]
    message = fails(store, "FLOW.EXTEND_LEASE", "a", b"bogus", "FENCING", fencing)
    assert isinstance(classify_server_error(message), StaleLeaseError)


# -- outcomes ----------------------------------------------------------------------------


def claimed(store: ferric.Embedded, flow_id: str) -> tuple[bytes, int]:
    create(store, flow_id)
    (job,) = [j for j in claim(store) if j["id"] == flow_id]
    return job["lease_token"], job["fencing_token"]


def test_transition_then_the_old_lease_is_stale(store: ferric.Embedded) -> None:
    token, fencing = claimed(store, "a")
    argv = ["FLOW.TRANSITION", "a", "running", "charged", "LEASE_TOKEN", token]
    assert run(store, *argv, "FENCING", fencing, "NOW", NOW, "RUN_AT", NOW) == "OK"
    assert run(store, "FLOW.GET", "a")["state"] == "charged"
    assert run(store, *argv, "FENCING", fencing, "NOW", NOW) == "OK"  # an exact replay
    other = ["FLOW.TRANSITION", "a", "running", "shipped", "LEASE_TOKEN", token]
    message = fails(store, *other, "FENCING", fencing, "NOW", NOW)
    assert isinstance(classify_server_error(message), StaleLeaseError)


def test_complete_fail_retry_single(store: ferric.Embedded) -> None:
    token, fencing = claimed(store, "a")
    done = ["FLOW.COMPLETE", "a", token, "FENCING", fencing, "NOW", NOW, "RESULT", b"ok"]
    assert run(store, *done) == "OK"
    assert run(store, *done) == "OK"  # an exact replay
    assert run(store, "FLOW.GET", "a")["result"] == b"ok"
    token, fencing = claimed(store, "b")
    assert run(store, "FLOW.FAIL", "b", token, "FENCING", fencing, "ERROR", b"no") == "OK"
    assert run(store, "FLOW.GET", "b")["state"] == "failed"
    token, fencing = claimed(store, "c")
    retry = ["FLOW.RETRY", "c", token, "FENCING", fencing, "NOW", NOW, "ERROR", b"again"]
    assert run(store, *retry, "RUN_AT", NOW) == "OK"
    got = run(store, "FLOW.GET", "c")
    assert got["state"] == "queued" and got["attempts"] == 1
    stale = fails(store, "FLOW.COMPLETE", "c", b"w1:0:0", "FENCING", 99)
    assert isinstance(classify_server_error(stale), StaleLeaseError | FlowWrongStateError)


def test_retry_exhausts_to_the_override_state(store: ferric.Embedded) -> None:
    token, fencing = claimed(store, "a")
    argv = ["FLOW.RETRY", "a", token, "FENCING", fencing, "MAX_RETRIES", 0]
    assert run(store, *argv, "EXHAUSTED_TO", "manual") == "OK"
    assert run(store, "FLOW.GET", "a")["state"] == "manual"


def test_batch_outcomes_report_each_item(store: ferric.Embedded) -> None:
    t1, f1 = claimed(store, "a")
    claimed(store, "b")
    part_a, part_b = ferric.auto_partition("a"), ferric.auto_partition("b")
    reply = run(
        store,
        "FLOW.COMPLETE_MANY",
        "MIXED",
        "RESULT",
        b"r",
        "NOW",
        NOW,
        "INDEPENDENT",
        "true",
        "TERMINAL_LOCAL_ONLY",
        "true",
        "ITEMS",
        "a",
        part_a,
        t1,
        f1,
        "b",
        part_b,
        b"w1:0:0",
        7,
    )
    assert reply[0] == "OK"
    assert reply[1][0] == "error" and "stale flow lease" in reply[1][1]
    # without INDEPENDENT the failed item's error is raised
    message = fails(store, "FLOW.FAIL_MANY", "MIXED", "ITEMS", "b", part_b, b"w1:0:0", 7)
    assert "stale flow lease" in message


def test_retry_many_and_fail_many(store: ferric.Embedded) -> None:
    t1, f1 = claimed(store, "a")
    t2, f2 = claimed(store, "b")
    assert run(
        store, "FLOW.RETRY_MANY", "MIXED", "ERROR", b"e", "NOW", NOW, "RETURN", "OK_ON_SUCCESS",
        "ITEMS", "a", ferric.auto_partition("a"), t1, f1,
    ) == "OK"  # fmt: skip
    assert run(
        store, "FLOW.FAIL_MANY", ferric.auto_partition("b"), "ERROR", b"e", "ITEMS", "b", t2, f2
    ) == ["OK"]
    assert run(store, "FLOW.GET", "a")["attempts"] == 1
    assert run(store, "FLOW.GET", "b")["error"] == b"e"


def test_transition_many_and_cancel_many(store: ferric.Embedded) -> None:
    t1, f1 = claimed(store, "a")
    reply = run(
        store, "FLOW.TRANSITION_MANY", "MIXED", "running", "next", "NOW", NOW,
        "INDEPENDENT", "true", "ITEMS", "a", ferric.auto_partition("a"), f1, t1,
    )  # fmt: skip
    assert reply == ["OK"]
    assert run(store, "FLOW.GET", "a")["state"] == "next"
    create(store, "b")
    reply = run(
        store, "FLOW.CANCEL_MANY", "MIXED", "REASON", b"stop", "NOW", NOW, "INDEPENDENT", "true",
        "ITEMS", "a", ferric.auto_partition("a"), f1, "b", ferric.auto_partition("b"), 0,
    )  # fmt: skip
    assert reply == ["OK", "OK"]
    assert run(store, "FLOW.GET", "b")["state"] == "cancelled"


def test_cancel_single_needs_the_lease_of_a_leased_flow(store: ferric.Embedded) -> None:
    token, fencing = claimed(store, "a")
    message = fails(store, "FLOW.CANCEL", "a", "FENCING", fencing, "NOW", NOW)
    assert "stale flow lease" in message
    argv = ["FLOW.CANCEL", "a", "FENCING", fencing, "LEASE_TOKEN", token, "REASON", b"r"]
    assert run(store, *argv) == "OK"
    assert "terminal" in fails(store, *argv)


# -- reads -------------------------------------------------------------------------------


def test_history_entries_filters_and_order(store: ferric.Embedded) -> None:
    token, fencing = claimed(store, "a")
    run(store, "FLOW.COMPLETE", "a", token, "FENCING", fencing)
    events = run(store, "FLOW.HISTORY", "a", "COUNT", 100)
    assert [fields["event"] for _id, fields in events] == ["created", "claimed", "completed"]
    event_id, fields = events[0]
    assert event_id.endswith(f"-{fields['version']}")
    newest = run(store, "FLOW.HISTORY", "a", "COUNT", 1, "REV", "true")
    assert newest[0][1]["event"] == "completed"
    only = run(store, "FLOW.HISTORY", "a", "COUNT", 10, "EVENT", "claimed")
    assert [f["event"] for _i, f in only] == ["claimed"]
    assert "not found" in fails(store, "FLOW.HISTORY", "nope", "COUNT", 1)
    from_claim = run(store, "FLOW.HISTORY", "a", "FROM_EVENT", events[1][0])
    assert [f["event"] for _i, f in from_claim] == ["claimed", "completed"]
    to_claim = run(store, "FLOW.HISTORY", "a", "TO_EVENT", events[1][0])
    assert [f["event"] for _i, f in to_claim] == ["created", "claimed"]
    by_worker = run(store, "FLOW.HISTORY", "a", "WORKER", "w1")
    assert [f["event"] for _i, f in by_worker] == ["claimed"]
    assert "not found" in fails(store, "FLOW.HISTORY", "a", "FROM_EVENT", "1-99")


def test_info_counts_states(store: ferric.Embedded) -> None:
    claimed(store, "c")
    create(store, "a")
    create(store, "b")
    got = run(store, "FLOW.INFO", "job")
    assert got["type"] == "job" and got["inflight"] == 1 and got["queued"] == 2
    assert got["completed"] == 0


def test_policy_set_get_and_generation_guard(store: ferric.Embedded) -> None:
    snapshot = run(
        store, "FLOW.POLICY.SET", "job", "REPLACE", "true", "MAX_RETRIES", 5, "BACKOFF", "fixed",
        "BASE_MS", 100, "MAX_MS", 1000, "JITTER_PCT", 0, "EXHAUSTED_TO", "failed",
        "STATE", "charge", "MODE", "PARALLEL", "MAX_RETRIES", 2,
    )  # fmt: skip
    assert snapshot["type"] == "job" and snapshot["generation"] == 1
    assert snapshot["retry"]["max_retries"] == 5
    assert snapshot["states"]["charge"]["retry"] == {"max_retries": 2}
    got = run(store, "FLOW.POLICY.GET", "job", "STATE", "charge")
    assert got["generation"] == 1 and got["retry"] == {"max_retries": 2}
    stale = fails(store, "FLOW.POLICY.SET", "job", "EXPECTED_GENERATION", 0, "MAX_RETRIES", 1)
    assert isinstance(classify_server_error(stale), StalePolicyGenerationError)
    assert "not supported" in fails(store, "FLOW.POLICY.SET", "job", "STATE", "x", "MODE", "FIFO")


# -- signals, values, fanout, rewind, retention ----------------------------------------


def test_signal_transition_idempotency_and_guard(store: ferric.Embedded) -> None:
    run(store, "FLOW.CREATE", "a", "TYPE", "approval", "STATE", "waiting", "NOW", NOW)
    argv = ["FLOW.SIGNAL", "a", "SIGNAL", "approved", "IDEMPOTENCY", "k1", "IF_STATE", "waiting"]
    assert run(store, *argv, "TRANSITION_TO", "approved", "NOW", NOW) == "OK"
    assert run(store, *argv, "TRANSITION_TO", "approved", "NOW", NOW) == "OK"
    assert run(store, "FLOW.GET", "a")["state"] == "approved"
    events = [f["event"] for _i, f in run(store, "FLOW.HISTORY", "a", "COUNT", 10)]
    assert events.count("signaled") == 1
    mismatch = fails(
        store, "FLOW.SIGNAL", "a", "SIGNAL", "again", "IF_STATE", "waiting", "TRANSITION_TO", "x"
    )
    assert isinstance(classify_server_error(mismatch), FlowWrongStateError)
    assert run(store, "FLOW.SIGNAL", "a", "SIGNAL", "note", "VALUE", "memo", b"hi") == "OK"
    assert run(store, "FLOW.GET", "a", "VALUE", "memo")["values"] == {"memo": b"hi"}


def test_value_put_and_mget(store: ferric.Embedded) -> None:
    create(store, "a")
    put = run(store, "FLOW.VALUE.PUT", b"v1", "NOW", NOW, "OWNER_FLOW_ID", "a", "NAME", "doc")
    assert put["created"] and put["stored"] and put["owner_flow_id"] == "a"
    again = run(store, "FLOW.VALUE.PUT", b"v1", "OWNER_FLOW_ID", "a", "NAME", "doc")
    assert not again["created"] and not again["stored"]
    conflict = fails(store, "FLOW.VALUE.PUT", b"v2", "OWNER_FLOW_ID", "a", "NAME", "doc")
    assert "already exists with different digest" in conflict
    ref = run(store, "FLOW.GET", "a")["value_refs"]["doc"]["ref"]
    assert run(store, "FLOW.VALUE.MGET", ref, put["ref"]) == [b"v1", b"v1"]
    assert run(store, "FLOW.VALUE.MGET", ref, "MAX_BYTES", 1) == [{"omitted": True, "size": 2}]
    assert "syntax error" in fails(store, "FLOW.VALUE.PUT", b"shared", "NOW", NOW)
    assert "not found" in fails(store, "FLOW.VALUE.MGET", "some-other-ref")


def test_spawn_children_then_the_superseded_outcome_is_ok(store: ferric.Embedded) -> None:
    token, fencing = claimed(store, "parent")
    part = ferric.auto_partition("parent")
    reply = run(
        store, "FLOW.SPAWN_CHILDREN", "parent", "GROUP", "g", "WAIT", "all", "NOW", NOW,
        "PARTITION", part, "LEASE_TOKEN", token, "FENCING", fencing, "WAIT_STATE", "waiting",
        "ITEMS", "c1", "child", b"1", "c2", "child", b"2",
    )  # fmt: skip
    assert reply == "OK"
    assert run(store, "FLOW.GET", "parent")["state"] == "waiting"
    # the handler's own outcome of the same claim: answered OK, no effect
    superseded = ["FLOW.TRANSITION_MANY", part, "running", "later", "INDEPENDENT", "true"]
    assert run(store, *superseded, "ITEMS", "parent", fencing, token) == ["OK"]
    assert run(store, "FLOW.GET", "parent")["state"] == "waiting"
    for child in claim(store, type="child"):
        done = ["FLOW.COMPLETE", child["id"], child["lease_token"], "FENCING"]
        assert run(store, *done, child["fencing_token"], "RESULT", b"ok") == "OK"
    assert run(store, "FLOW.GET", "parent")["state"] == "completed"


def test_spawn_children_from_state_guard(store: ferric.Embedded) -> None:
    token, fencing = claimed(store, "parent")
    head = ["FLOW.SPAWN_CHILDREN", "parent", "GROUP", "g", "LEASE_TOKEN", token]
    tail = ["FENCING", fencing, "WAIT_STATE", "w", "ITEMS", "c1", "child", b""]
    wrong = fails(store, *head, "FROM_STATE", "elsewhere", *tail)
    assert isinstance(classify_server_error(wrong), FlowWrongStateError)
    assert run(store, *head, "FROM_STATE", "queued", *tail) == "OK"


def test_spawn_children_items_ext_with_values(store: ferric.Embedded) -> None:
    token, fencing = claimed(store, "parent")
    reply = run(
        store, "FLOW.SPAWN_CHILDREN", "parent", "GROUP", "g", "WAIT", "none", "LEASE_TOKEN", token,
        "FENCING", fencing, "SUCCESS", "spawned", "FAILURE", "failed",
        "ITEMS_EXT", 1, "c1", "-", "child", b"1", 1, "cfg", b"xyz", 0,
    )  # fmt: skip
    assert reply == "OK"
    assert run(store, "FLOW.GET", "c1")["value_sizes"] == {"cfg": 3}
    assert run(store, "FLOW.GET", "parent")["state"] == "spawned"


def test_rewind_to_an_event(store: ferric.Embedded) -> None:
    token, fencing = claimed(store, "a")
    run(store, "FLOW.FAIL", "a", token, "FENCING", fencing)
    created_event = run(store, "FLOW.HISTORY", "a", "COUNT", 1)[0][0]
    argv = ["FLOW.REWIND", "a", "TO_EVENT", created_event, "NOW", NOW]
    assert run(store, *argv, "EXPECT_STATE", "failed") == "OK"
    assert run(store, "FLOW.GET", "a")["state"] == "queued"
    assert "not found" in fails(store, "FLOW.REWIND", "a", "TO_EVENT", "1-999")


def test_retention_cleanup_reports_counts(store: ferric.Embedded) -> None:
    got = run(store, "FLOW.RETENTION_CLEANUP", "LIMIT", 100, "NOW", NOW)
    assert got["deleted"] == 0 and got["active_timeouts"] == 0 and got["more"] is False


def test_query_shapes_decode_in_the_sdk(store: ferric.Embedded) -> None:
    token, fencing = claimed(store, "a")
    run(store, "FLOW.FAIL", "a", token, "FENCING", fencing)
    create(store, "b")
    text = (
        "FROM runs WHERE partition_key = @partition_key AND type = @type AND state = @state "
        "ORDER BY updated_at_ms ASC LIMIT 100 RETURN RECORDS"
    )
    params = ["partition_key", ferric.AUTO_ANY, "state", "failed", "type", "job"]
    result = decode_flow_query_result(run(store, "FLOW.QUERY", "FQL1", text, *params))
    assert [r["id"] for r in result.records or ()] == ["a"]
    params[3] = "queued"
    result = decode_flow_query_result(run(store, "FLOW.QUERY", "FQL1", text, *params))
    assert [r["id"] for r in result.records or ()] == ["b"]
    params[1] = ferric.auto_partition("a")
    result = decode_flow_query_result(run(store, "FLOW.QUERY", "FQL1", text, *params))
    assert result.records == ()
    assert "syntax error" in fails(store, "FLOW.QUERY", "FQL1", "SELECT * FROM runs")


# -- malformed commands ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        ((), "wrong number of arguments"),
        (("FLOW.NOPE", "x"), "unknown command"),
        (("SET", "k", "v"), "unknown command"),
        (("FLOW.CREATE",), "wrong number of arguments"),
        (("FLOW.CREATE", "a"), "wrong number of arguments"),
        (("FLOW.CREATE", "a", "TYPE"), "wrong number of arguments"),
        (("FLOW.CREATE", "a", "TYPE", "t", "BOGUS", 1), "syntax error"),
        (("FLOW.CREATE", "a", "TYPE", "t", "PRIORITY", "high"), "syntax error"),
        (("FLOW.CREATE", "a", "TYPE", "t", "IDEMPOTENT", "maybe"), "syntax error"),
        (("FLOW.CREATE", "a", "TYPE", "t", "PRIORITY", 7), "invalid argument"),
        (("FLOW.CREATE", "a", "TYPE", "t", "VALUE_REF", "n", "r"), "not supported"),
        (("FLOW.CREATE", 3.5, "TYPE", "t"), "syntax error"),
        (("FLOW.CREATE", b"\xff", "TYPE", "t"), "syntax error"),
        (("FLOW.CLAIM_DUE", "t"), "wrong number of arguments"),
        (("FLOW.CLAIM_DUE", "t", "WORKER", "w", "RETURN", "NOPE"), "syntax error"),
        (("FLOW.COMPLETE", "a", b"l"), "wrong number of arguments"),
        (("FLOW.COMPLETE_MANY", "MIXED", "ITEMS", "a", "p"), "wrong number of arguments"),
        (("FLOW.COMPLETE_MANY", "MIXED", "ITEMS"), "wrong number of arguments"),
        (("FLOW.CREATE_MANY", "AUTO", "TYPE", "t", "ITEMS_EXT", 2, "a"), "wrong number"),
        (("FLOW.GET",), "wrong number of arguments"),
        (("FLOW.GET", "a", "extra"), "syntax error"),
        (("FLOW.QUERY", "SQL", "x"), "syntax error"),
        (("FLOW.REWIND", "a"), "wrong number of arguments"),
    ],
)
def test_malformed_argv_is_refused_and_the_engine_goes_on(
    store: ferric.Embedded, argv: tuple[Any, ...], expected: str
) -> None:
    assert expected in fails(store, *argv)
    create(store, "still-works")
    assert run(store, "FLOW.GET", "still-works")["state"] == "queued"


def test_error_texts_map_onto_the_sdk_exceptions(store: ferric.Embedded) -> None:
    client = store.flow_client()
    with pytest.raises(FlowNotFoundError):
        client.history("missing")
    client.create("a", type="job")
    with pytest.raises(FlowAlreadyExistsError):
        client.create("a", type="job")
    client.claim_due("job", worker="w")
    with pytest.raises(InvalidCommandError):
        client.executor.execute_command("FLOW.CREATE", "b", "TYPE", "job", "BOGUS", 1)
    with pytest.raises(StaleLeaseError):
        client.complete("a", lease_token=b"nope", fencing_token=0)


def test_commands_after_close_fail_cleanly(tmp_path: Path) -> None:
    store = ferric.embedded(tmp_path / "data", shards=1)
    store.close()
    store.close()
    with pytest.raises(fa.EngineClosed):
        store.execute_command("FLOW.GET", "a")


def test_every_handled_command_is_listed() -> None:
    assert set(ferric.COMMANDS) == {
        "FLOW.CREATE", "FLOW.CREATE_MANY", "FLOW.CLAIM_DUE", "FLOW.RECLAIM",
        "FLOW.EXTEND_LEASE", "FLOW.TRANSITION", "FLOW.TRANSITION_MANY", "FLOW.COMPLETE",
        "FLOW.FAIL", "FLOW.RETRY", "FLOW.COMPLETE_MANY", "FLOW.FAIL_MANY", "FLOW.RETRY_MANY",
        "FLOW.CANCEL", "FLOW.CANCEL_MANY", "FLOW.GET", "FLOW.HISTORY", "FLOW.INFO",
        "FLOW.POLICY.SET", "FLOW.POLICY.GET", "FLOW.SIGNAL", "FLOW.VALUE.PUT",
        "FLOW.VALUE.MGET", "FLOW.SPAWN_CHILDREN", "FLOW.REWIND", "FLOW.RETENTION_CLEANUP",
        "FLOW.QUERY",
    }  # fmt: skip


def test_claims_drain_the_named_partitions(store: ferric.Embedded) -> None:
    create(store, "a", "PARTITION", "t1")
    create(store, "b", "PARTITION", "t2")
    create(store, "c", "PARTITION", "t3")
    create(store, "plain")
    (row,) = claim(store, "PARTITION", "t2", mode="JOBS_COMPACT")
    assert row[:2] == ["b", "t2"]
    rows = claim(store, "PARTITIONS", 2, "t3", "t1", mode="JOBS_COMPACT")
    assert sorted(r[0] for r in rows) == ["a", "c"]
    auto = ferric.auto_partition("plain")
    assert "not supported" in fails(
        store, "FLOW.CLAIM_DUE", "job", "WORKER", "w", "PARTITION", auto
    )
    assert [r[0] for r in claim(store, "PARTITION", "AUTO", mode="JOBS_COMPACT")] == ["plain"]


def test_calls_by_id_with_another_partition_find_nothing(store: ferric.Embedded) -> None:
    create(store, "a", "PARTITION", "t1")
    assert run(store, "FLOW.GET", "a", "PARTITION", "t2") is None
    assert run(store, "FLOW.GET", "a", "PARTITION", "t1")["id"] == "a"
    assert run(store, "FLOW.GET", "a")["partition_key"] == "t1"  # by id alone: flowactors finds it
    message = fails(store, "FLOW.SIGNAL", "a", "SIGNAL", "s", "PARTITION", "t2")
    assert isinstance(classify_server_error(message), FlowNotFoundError)


def test_close_while_threads_are_calling(tmp_path: Path) -> None:
    import threading

    store = ferric.embedded(tmp_path / "data", shards=2)
    outcomes: list[str] = []

    def caller(k: int) -> None:
        n = 0
        while True:
            try:
                store.execute_command("FLOW.CREATE", f"c{k}-{n}", "TYPE", "job")
            except fa.FlowError as exc:
                assert "closed" in str(exc) or isinstance(exc, fa.EngineClosed), exc
                outcomes.append("closed")
                return
            n += 1

    threads = [threading.Thread(target=caller, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    store.execute_command("FLOW.GET", "c0-0")
    store.close()
    for t in threads:
        t.join(30)
        assert not t.is_alive()
    assert outcomes == ["closed"] * 4


def test_a_second_embedded_engine_on_the_same_directory_is_refused(
    store: ferric.Embedded, tmp_path: Path
) -> None:
    with pytest.raises(fa.StorageError):
        ferric.embedded(tmp_path / "data", shards=2)
    create(store, "still-served")
