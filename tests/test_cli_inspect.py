"""CLI `flowactors inspect`: counts per type and state, one flow's history; a missing,
locked or damaged data directory and bad arguments give one line on stderr and exit != 0."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import trio

import flowactors as fa


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "flowactors", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"},
    )


async def _fill(path: Path) -> None:
    async with fa.open_engine(path) as engine:
        wf = fa.Workflow(engine, type="order", initial_state="created")
        for i in range(3):
            await wf.create(f"o{i}", payload=b"{}")
        await wf.create("p1", attributes={"tenant": "t1"}, partition_key="t1")
        [job] = await wf.claim_due("created", limit=1)
        await wf.complete(job, b"done")
        await fa.Workflow(engine, type="email").create("e1")


def _rows(out: str) -> dict[str, list[str]]:
    """Table rows (and header rows) by their first cell."""
    rows = {}
    for line in out.replace("┃", "│").splitlines():
        if line.count("│") >= 2:
            cells = [c.strip() for c in line.strip().strip("│").split("│")]
            rows[cells[0]] = cells[1:]
    return rows


def test_counts_per_type_and_state(tmp_path: Path) -> None:
    trio.run(_fill, tmp_path / "d")
    done = _cli("inspect", str(tmp_path / "d"))
    assert done.returncode == 0, done.stderr
    rows = _rows(done.stdout)
    assert rows["type"] == ["completed", "created", "queued", "total"]
    assert rows["order"] == ["1", "3", "0", "4"]
    assert rows["email"] == ["0", "0", "1", "1"]


def test_one_flow_and_its_history(tmp_path: Path) -> None:
    trio.run(_fill, tmp_path / "d")
    done = _cli("inspect", str(tmp_path / "d"), "--flow", "p1", "--partition-key", "t1")
    assert done.returncode == 0, done.stderr
    assert "history of p1 (1 events)" in done.stdout
    rows = _rows(done.stdout)
    assert rows["state"] == ["created"] and rows["partition_key"] == ["t1"]
    assert rows["created"][2] == "created"  # the history's only event


def _one_line_error(done: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert done.returncode != 0
    assert done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    for needle in needles:
        assert needle in lines[0]


def test_missing_flow_and_missing_directory(tmp_path: Path) -> None:
    trio.run(_fill, tmp_path / "d")
    _one_line_error(_cli("inspect", str(tmp_path / "d"), "--flow", "nope"), "FlowNotFound")
    _one_line_error(_cli("inspect", str(tmp_path / "nothing")), "does not exist")
    (tmp_path / "empty").mkdir()
    _one_line_error(_cli("inspect", str(tmp_path / "empty")), "not a flowactors data directory")
    assert list((tmp_path / "empty").iterdir()) == []  # inspect never creates one


def test_locked_directory(tmp_path: Path) -> None:
    async def hold() -> subprocess.CompletedProcess[str]:
        async with fa.open_engine(tmp_path / "d"):
            return await trio.to_thread.run_sync(_cli, "inspect", str(tmp_path / "d"))

    _one_line_error(trio.run(hold), "DataDirLocked")


def test_damaged_directory(tmp_path: Path) -> None:
    trio.run(_fill, tmp_path / "d")
    (tmp_path / "d" / "ENGINE").write_bytes(b"{not json")
    _one_line_error(_cli("inspect", str(tmp_path / "d")), "damaged")
    trio.run(_fill, tmp_path / "e")
    for segment in (tmp_path / "e").glob("shard-*/*.data"):
        segment.write_bytes(segment.read_bytes()[:40] + b"\xff" * 64)
    for hint in (tmp_path / "e").glob("shard-*/*.hint"):
        hint.unlink()
    done = _cli("inspect", str(tmp_path / "e"))
    if done.returncode != 0:  # a damaged tail may also be truncated away as a torn write
        _one_line_error(done, "flowactors:")


def test_bad_arguments_are_one_line() -> None:
    _one_line_error(_cli("inspect"), "DATA_DIR")
    _one_line_error(_cli("inspect", "x", "--nope"), "--nope")
    _one_line_error(_cli("frobnicate"), "invalid choice")
