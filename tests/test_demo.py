"""The README's main job: the demo survives a real SIGKILL with the books balanced."""

import subprocess
import sys
from pathlib import Path


def test_demo_survives_sigkill_with_nothing_lost(tmp_path: Path) -> None:
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "flowactors",
            "demo",
            "--orders",
            "400",
            "--workers",
            "2",
            "--data-dir",
            str(tmp_path / "data"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    rows = {
        line.split("│")[1].strip(): line.split("│")[2].strip()
        for line in run.stdout.splitlines()
        if line.count("│") == 3
    }
    assert rows["flows completed"] == "400"
    assert rows["lost (acknowledged, then missing)"] == "0"
    assert rows["acknowledged twice"] == "0"
    assert rows["worker process killed (SIGKILL)"].startswith("after ")
    assert rows["recovery time (open after the kill)"].endswith(" ms")
    assert rows["throughput"].split()[0].replace(",", "").isdigit()
    assert rows["stale acks withheld (lease lost)"].isdigit()
