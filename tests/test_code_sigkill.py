"""A real SIGKILL of a process running code workflows: kill it at random moments, start it
again on the same data directory, and finally let it finish. Every run ends with the
right result, no journal holds two outcomes for one position, every activity ran, and
every result a killed process reported is kept."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import trio

import flowactors as fa
from flowactors.code import CodeRunner, Registry

CHILD = Path(__file__).with_name("code_crash_child.py")
RUNS = 30


def run_child(data_dir: Path, kill_after: int | None) -> list[str]:
    env = dict(os.environ, PYTHONPATH=str(CHILD.parent.parent))
    child = subprocess.Popen(
        [sys.executable, str(CHILD), str(data_dir), str(RUNS)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    assert child.stdout is not None
    lines: list[str] = []
    try:
        while kill_after is None or len(lines) < kill_after:
            line = child.stdout.readline()
            if not line:
                break
            lines.append(line.decode())
        if kill_after is not None:
            child.send_signal(signal.SIGKILL)
        rest, err = child.communicate(timeout=120)
        lines.extend(rest.decode().splitlines(keepends=True))
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    expected = -signal.SIGKILL if kill_after is not None else 0
    if child.returncode != expected and not (kill_after is not None and child.returncode == 0):
        raise AssertionError(err.decode()[-3000:])
    return [line for line in lines if line.endswith("\n")]


async def verify(data_dir: Path) -> None:
    async with fa.open_engine(data_dir, shards=2) as engine:
        runner = CodeRunner(engine, Registry())
        for i in range(RUNS):
            info = await runner.describe(f"w{i}")
            assert info.status == "completed" and info.result == i + 3, info
            journal = await runner.history(f"w{i}")
            done = Counter(e["pos"] for e in journal if e["type"] == "completed")
            assert sorted(done) == [0, 1, 2] and set(done.values()) == {1}, journal


def test_sigkill_of_a_workflow_process_loses_nothing(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    kills = 20 if request.config.getoption("--long") else 4
    rng = random.Random(17)
    data = tmp_path / "data"
    reported: dict[str, str] = {}
    ran: Counter[str] = Counter()
    for _ in range(kills):
        for line in run_child(data, rng.randint(5, 80)):
            kind, *rest = line.split()
            if kind == "done":
                assert reported.setdefault(rest[0], rest[1]) == rest[1]
            elif kind == "ran":
                ran[rest[0]] += 1
    for line in run_child(data, None):
        kind, *rest = line.split()
        if kind == "done":
            assert reported.setdefault(rest[0], rest[1]) == rest[1]
        elif kind == "ran":
            ran[rest[0]] += 1
    assert sorted(reported) == sorted(f"w{i}" for i in range(RUNS))
    assert all(reported[f"w{i}"] == str(i + 3) for i in range(RUNS))
    # At least once each (more when a kill or an expired lease interrupted a step); the
    # journal holds each result once whatever the count (checked by `verify`).
    assert len(ran) == 3 * RUNS
    trio.run(verify, data)
