"""The benchmark harness runs end to end: `python -m bench wal --quick --json`, and rejects
an unknown scenario. Timings are not asserted, only that every figure is there and positive.
"""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

EXPECTED = [
    "raw_fdatasync_per_s",
    "raw_seq_write_mb_per_s",
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
    "machine_cores",
    "machine_free_disk_bytes",
]
FLOORS = [
    "floor_wal_group_commit_1000_writers_ok",
    "floor_wal_group_commit_1000_writers_vs_single_writer_ok",
    "floor_wal_batch_api_ok",
    "floor_wal_open_with_hints_ok",
    "floor_wal_keydir_bytes_per_key_ok",
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


def test_wal_quick_json(tmp_path: Path) -> None:
    done = _bench("wal", "--quick", "--json", "--data-dir", str(tmp_path))
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert isinstance(result, dict)
    assert result["scenario"] == "wal"
    assert result["quick"] is True
    for key in EXPECTED:
        value = result[key]
        assert isinstance(value, int | float) and not isinstance(value, bool), key
        assert value > 0, key
    for key in FLOORS:
        assert isinstance(result[key], bool), key
    assert result["machine_fs_type"] != ""
    assert list(tmp_path.iterdir()) == [], "the work directory was not removed"


def test_unknown_scenario_exits_2() -> None:
    done = _bench("nosuch")
    assert done.returncode == 2
    assert done.stdout == ""
    assert len(done.stderr.strip().splitlines()) == 1
