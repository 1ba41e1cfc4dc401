"""The benchmark harness runs end to end: every registered scenario with
`python -m bench NAME --quick --json` in a subprocess, and an unknown scenario is rejected.
Timings are not asserted, only that every figure is there and positive and every floor is a
boolean.
"""

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from bench import _registry

ROOT = Path(__file__).resolve().parent.parent

# Headline keys per scenario (a scenario not listed here gets the generic checks only).
EXPECTED = {
    "steps": [
        "steps_pipelines_per_s",
        "code_pipelines_per_s",
        "steps_vs_code",
    ],
    "codeflow": [
        "codeflow_workflows_per_s",
        "codeflow_activities_per_s",
        "codeflow_replay_10_us",
        "codeflow_replay_100_us",
        "codeflow_replay_1000_us",
        "codeflow_replay_1000_cold_us",
    ],
    "wal": [
        "wal_single_writer_records_per_s",
        "wal_group_commit_10_writers_records_per_s",
        "wal_group_commit_100_writers_records_per_s",
        "wal_group_commit_1000_writers_records_per_s",
        "wal_group_commit_1000_writers_mb_per_s",
        "wal_batch_api_records_per_s",
        "wal_batch_api_mb_per_s",
        "wal_open_keys",
        "wal_open_with_hints_s",
        "wal_open_without_hints_s",
        "wal_keydir_bytes_per_key",
        "wal_group_commit_1000_writers_vs_single_writer",
        "wal_group_commit_1000_writers_records_per_fsync_equivalent",
        "wal_batch_api_bandwidth_vs_raw_seq_write",
        "wal_group_commit_bandwidth_mb_per_s",
        "wal_group_commit_bandwidth_vs_raw_seq_write",
    ],
    "create": [
        "create_flows_per_s",
        "create_many_call_p99_ms",
        "create_4_callers_flows_per_s",
        "create_flows_per_fsync_equivalent",
    ],
    "lifecycle": [
        "lifecycle_flows_per_s",
        "lifecycle_create_phase_flows_per_s",
        "lifecycle_claim_complete_phase_flows_per_s",
        "lifecycle_single_command_ops_per_s",
        "lifecycle_single_command_p50_ms",
        "lifecycle_single_command_p99_ms",
        "lifecycle_single_command_claim_p99_ms",
        "lifecycle_flows_per_fsync_equivalent",
    ],
    "fanout": [
        "fanout_same_shard_children_per_s",
        "fanout_cross_shard_children_per_s",
        "fanout_same_shard_children_per_fsync_equivalent",
        "fanout_cross_shard_children_per_fsync_equivalent",
    ],
    "asl": [
        "asl_executions",
        "asl_executions_per_s",
        "asl_executions_per_fdatasync",
        "asl_executions_per_fsync_equivalent",
    ],
    "restart": [
        "restart_live_flows",
        "restart_50k_live_flows_seconds",
        "restart_50k_live_flows_clean_seconds",
        "restart_50k_live_flows_without_hints_seconds",
        "restart_checkpoint_speedup",
        "restart_seconds_per_million_live_flows",
    ],
    "ferric": [
        "ferric_sdk_jobs_per_s",
        "ferric_native_jobs_per_s",
        "ferric_engine_jobs_per_s",
        "ferric_vs_native",
        "ferric_sdk_cpu_us_per_job",
    ],
    "memory": [
        "memory_live_flows",
        "memory_rss_bytes_per_live_flow",
        "memory_keydir_bytes_per_live_flow",
        "memory_rss_after_open_mb",
    ],
    "latency": [
        "latency_capacity_flows_per_s",
        *(
            f"latency_at_{level}pct_capacity_{kind}_p{q}_ms"
            for level in (10, 50, 90)
            for kind in ("create", "claim", "complete")
            for q in (50, 90, 99)
        ),
        "latency_at_90pct_capacity_achieved_flows_per_s",
    ],
}
FLOORS = {
    "wal": [
        "floor_wal_group_commit_1000_writers_ok",
        "floor_wal_group_commit_1000_writers_vs_single_writer_ok",
        "floor_wal_batch_api_ok",
        "floor_wal_open_with_hints_ok",
        "floor_wal_keydir_bytes_per_key_ok",
        "floor_wal_group_commit_bandwidth_ok",
    ],
    "create": ["floor_create_ok"],
    "lifecycle": ["floor_lifecycle_ok"],
    "fanout": ["floor_fanout_same_shard_ok", "floor_fanout_cross_shard_ok"],
    "restart": ["floor_restart_50k_live_flows_ok"],
    "memory": ["floor_memory_rss_bytes_per_live_flow_ok"],
    "ferric": ["floor_ferric_ratio_ok"],
}
# Counts that may honestly be zero in a quick run.
MAY_BE_ZERO = {"wal_batch_api_rotations"}
BASELINES = [
    "raw_fdatasync_per_s",
    "raw_seq_write_mb_per_s",
    "raw_python_kops_per_s",
    "raw_python_after_kops_per_s",
    "machine_cores",
]


def _bench(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bench", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize("name", _registry.available())
def test_quick_json(name: str, tmp_path: Path) -> None:
    done = _bench(name, "--quick", "--json", "--data-dir", str(tmp_path))
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert isinstance(result, dict)
    assert result["scenario"] == name
    assert result["quick"] is True
    for key in [*BASELINES, *EXPECTED.get(name, [])]:
        assert key in result, key
    numbers = 0
    for key, value in result.items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            continue
        numbers += 1
        assert math.isfinite(value), key
        if key.removesuffix("_min").removesuffix("_max") in MAY_BE_ZERO:
            assert value >= 0, key
        else:
            assert value > 0, key
    assert numbers > len(BASELINES) + 2, "the scenario reported no figures of its own"
    for key in FLOORS.get(name, []):
        assert isinstance(result[key], bool), key
    for key, value in result.items():
        if key.startswith("floor_"):
            assert isinstance(value, bool), key
    assert result["machine_fs_type"] != ""
    assert list(tmp_path.iterdir()) == [], "the work directory was not removed"


def test_unknown_scenario_exits_2() -> None:
    done = _bench("nosuch")
    assert done.returncode == 2
    assert done.stdout == ""
    assert len(done.stderr.strip().splitlines()) == 1
