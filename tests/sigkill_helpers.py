"""Shared by the SIGKILL tests: run a child script that reports each acknowledged write as
a line on stdout, kill it with SIGKILL after `after` lines, and return what it reported."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path


def run_until_killed(child_script: Path, data_dir: Path, prefix: str, after: int) -> list[str]:
    env = dict(os.environ, PYTHONPATH=str(child_script.parent.parent))
    child = subprocess.Popen(
        [sys.executable, str(child_script), str(data_dir), prefix],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    assert child.stdout is not None
    lines: list[str] = []
    try:
        while len(lines) < after:
            line = child.stdout.readline()
            if not line:
                break
            lines.append(line.decode())
        child.send_signal(signal.SIGKILL)
        rest, err = child.communicate(timeout=30)
        lines.extend(rest.decode().splitlines(keepends=True))
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == -signal.SIGKILL, err.decode()[-2000:]
    # A line cut by the kill was never fully reported: drop it.
    return [line for line in lines if line.endswith("\n")]
