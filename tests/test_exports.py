"""The public surface is what `__all__` says, and every public error derives from FlowError."""

from __future__ import annotations

import pytest

import flowactors as fa
import wal


def test_every_name_in_all_exists_and_nothing_private_leaks() -> None:
    for name in fa.__all__:
        assert hasattr(fa, name), name
        assert not name.startswith("_")
    assert sorted(fa.__all__) == sorted(set(fa.__all__))


def test_every_public_error_derives_from_flow_error() -> None:
    errors = [
        getattr(fa, name)
        for name in fa.__all__
        if isinstance(getattr(fa, name), type) and issubclass(getattr(fa, name), Exception)
    ]
    assert len(errors) >= 14
    for error in errors:
        assert issubclass(error, fa.FlowError), error


def test_storage_errors_are_also_wal_errors() -> None:
    assert issubclass(fa.ShardBroken, wal.LogBroken)
    assert issubclass(fa.CorruptLog, wal.CorruptLog)
    assert issubclass(fa.DataDirLocked, wal.LogLocked)


def test_the_engine_api_surface_is_pinned() -> None:
    public = {n for n in dir(fa.Engine) if not n.startswith("_")}
    assert public >= {
        "create", "create_many", "claim_due", "reclaim", "extend_lease", "step_continue",
        "transition",
        "complete", "fail", "retry", "cancel", "complete_many", "fail_many", "retry_many",
        "transition_many", "put_value", "get_values", "get", "history", "info", "counts",
        "spawn_children", "children", "signal", "rewind", "install_policy", "get_policy",
        "list_flows", "by_parent", "by_root", "by_correlation", "stuck", "terminals",
        "retention_cleanup", "compact", "settle", "statistics", "aclose",
    }  # fmt: skip


def test_the_code_workflow_surface_is_pinned() -> None:
    from flowactors import code

    assert fa.workflow is code.workflow
    for name in code.__all__:
        assert hasattr(code, name), name
        assert not name.startswith("_")
    assert {
        "workflow", "pure", "CodeRunner", "Context", "Timeout", "ActivityRef", "ChildHandle",
        "NonDeterminismError", "SuspendLeakError", "DeterminismViolation", "ActivityError",
        "ChildFailed", "ChildCancelled", "ChildIdCollision", "WorkflowFailed", "RunCancelled",
        "UnknownWorkflow", "UnstorableValue", "VersionMismatch", "NonRetryable", "RunInfo",
        "activity_info", "seconds", "minutes", "hours", "days",
    } <= set(code.__all__)  # fmt: skip
    errors = [
        getattr(code, n)
        for n in code.__all__
        if isinstance(getattr(code, n), type) and issubclass(getattr(code, n), Exception)
    ]
    assert len(errors) >= 13
    for error in errors:
        assert issubclass(error, fa.FlowError), error
    public = {n for n in dir(code.CodeRunner) if not n.startswith("_")}
    assert public >= {
        "start", "signal", "cancel", "result", "describe", "history", "list", "parked",
        "version_mismatches", "resume", "worker", "run", "running", "execute", "stop",
    }  # fmt: skip


def test_the_cron_surface_is_pinned() -> None:
    from flowactors import cron

    assert fa.cron is cron
    for name in cron.__all__:
        assert hasattr(cron, name), name
        assert not name.startswith("_")
    assert {
        "Schedules", "ScheduleInfo", "FlowTarget", "CodeTarget", "Target", "InvalidSchedule",
        "ScheduleExists", "ScheduleNotFound",
    } <= set(cron.__all__)  # fmt: skip
    public = {n for n in dir(cron.Schedules) if not n.startswith("_")}
    assert public >= {
        "create", "get", "list", "update", "delete", "enable", "disable", "trigger",
        "run_due", "run", "running",
    }  # fmt: skip
    assert issubclass(cron.InvalidSchedule, fa.InvalidArgument)
    assert issubclass(cron.ScheduleExists, fa.FlowExists)
    assert issubclass(cron.ScheduleNotFound, fa.FlowNotFound)


def test_tune_gc_raises_the_young_threshold_and_gives_back_the_old_ones() -> None:
    import gc

    before = gc.get_threshold()
    try:
        old = fa.tune_gc()
        assert old == before
        assert gc.get_threshold() == (200_000, before[1], before[2])
        assert fa.tune_gc(1_000) == (200_000, before[1], before[2])
        for bad in (0, -1, True, 2.5, "many"):
            with pytest.raises(fa.InvalidArgument):
                fa.tune_gc(bad)  # type: ignore[arg-type]
        assert gc.get_threshold()[0] == 1_000  # a refused call changes nothing
        for bad in (0, True, 2.5):
            with pytest.raises(fa.InvalidArgument):
                fa.tune_gc(idle_gen0=bad)  # type: ignore[arg-type]
    finally:
        fa.tune_gc(before[0], idle_gen0=None)  # (engines opened later install nothing)
        gc.set_threshold(*before)
