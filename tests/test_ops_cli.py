"""The operator CLI: flows, show, cancel, rewind, signal, retry, compact, stats, each on a
data directory it opens itself (--json for scripts), refused clearly while an engine holds
the directory."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import trio
from ops_helpers import request, seed

import flowactors as fa
from flowactors.__main__ import main


def _seeded(tmp_path: Path) -> tuple[str, dict[str, str]]:
    path = str(tmp_path / "d")

    async def fill() -> dict[str, str]:
        async with fa.open_engine(path, shards=2) as engine:
            return await seed(engine)

    return path, trio.run(fill)


def _json(capsys: pytest.CaptureFixture[str], *argv: str) -> Any:
    capsys.readouterr()
    assert main([*argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def _state(path: str, flow_id: str) -> str:
    async def get() -> str:
        async with fa.open_engine(path, shards=2) as engine:
            flow = await engine.get(flow_id)
            assert flow is not None
            return flow.state

    return trio.run(get)


def test_flows_filters_and_pages(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path, ids = _seeded(tmp_path)
    failed = _json(capsys, "flows", path, "--type", "order", "--state", "failed")
    assert [f["id"] for f in failed["flows"]] == [ids["failed"]]
    children = _json(capsys, "flows", path, "--parent", ids["parent"])
    assert sorted(f["id"] for f in children["flows"]) == ["c-1", "c-2"]
    page = _json(capsys, "flows", path, "--type", "mail", "--state", "queued", "--limit", "1")
    assert len(page["flows"]) == 1 and page["cursor"]
    rest = _json(
        capsys, "flows", path, "--type", "mail", "--state", "queued", "--cursor", page["cursor"]
    )
    assert page["flows"][0]["id"] not in {f["id"] for f in rest["flows"]}
    ended = _json(
        capsys,
        "flows",
        path,
        "--type",
        "order",
        "--state",
        "terminal",
        "--from",
        "2000-01-01T00:00",
    )
    assert {f["id"] for f in ended["flows"]} == {ids["failed"], ids["done"]}
    assert main(["flows", path, "--type", "order", "--state", "failed"]) == 0
    assert ids["failed"] in capsys.readouterr().out


def test_show_prints_what_the_dashboard_shows(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path, ids = _seeded(tmp_path)
    shown = _json(capsys, "show", path, ids["failed"])
    assert shown["flow"]["state"] == "failed"
    assert [e["name"] for e in shown["history"]] == ["created", "claimed", "failed"]
    parent = _json(capsys, "show", path, ids["parent"])
    assert {c["id"] for c in parent["children"]} == {"c-1", "c-2"}
    assert main(["show", path, ids["done"]]) == 0
    out = capsys.readouterr().out
    assert "receipt" in out and "history (3 events)" in out


def test_actions(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path, ids = _seeded(tmp_path)
    assert _json(capsys, "retry", path, ids["failed"])["state"] == "charge"
    assert _json(capsys, "cancel", path, ids["queued"], "--reason", "ops")["state"] == "cancelled"
    assert _json(capsys, "rewind", path, ids["queued"], "1")["state"] == "queued"
    moved = _json(
        capsys, "signal", path, ids["queued"], "go", "--value", "k=v", "--transition-to", "later"
    )
    assert moved["state"] == "later"
    assert _json(capsys, "cancel", path, ids["parent"])["state"] == "cancelled"
    assert _state(path, "c-1") == "cancelled"  # the cascade, settled before the CLI exits


def test_compact_and_stats(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path, _ids = _seeded(tmp_path)
    report = _json(capsys, "compact", path)
    assert report["bytes_after"] <= report["bytes_before"]
    stats = _json(capsys, "stats", path)
    assert stats["counts"]["order"]["failed"] == 1 and len(stats["shards"]) == 2
    assert main(["compact", path]) == 0
    assert "reclaimed" in capsys.readouterr().out


def test_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path, ids = _seeded(tmp_path)
    assert main(["retry", path, ids["done"]]) == 1
    assert "WrongState" in capsys.readouterr().err
    assert main(["show", path, "nope"]) == 1
    assert "FlowNotFound" in capsys.readouterr().err
    assert main(["stats", str(tmp_path / "missing")]) == 1
    assert "does not exist" in capsys.readouterr().err
    assert not (tmp_path / "missing").exists()


async def test_refused_while_an_engine_holds_the_directory(tmp_path: Path) -> None:
    async with fa.open_engine(tmp_path / "d", shards=2):
        done = await trio.run_process(
            [sys.executable, "-m", "flowactors", "stats", str(tmp_path / "d")],
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
    assert done.returncode == 1
    err = done.stderr.decode()
    assert "DataDirLocked" in err and "held by a running engine" in err
    assert err.count("\n") == 1


def test_help_lists_operator_commands() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "flowactors", "--help"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    for command in (
        "flows",
        "show",
        "cancel",
        "rewind",
        "signal",
        "retry",
        "compact",
        "stats",
        "dashboard",
    ):
        assert command in done.stdout


def test_flow_data_is_not_rich_markup(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = str(tmp_path / "d")

    async def fill() -> None:
        async with fa.open_engine(path, shards=1) as engine:
            await engine.create("[/bold]x", "t[red]", state="[/]", attributes={"a": "[b]"})

    trio.run(fill)
    for argv in (["show", path, "[/bold]x"], ["flows", path, "--type", "t[red]"], ["stats", path]):
        assert main(argv) == 0, argv
        out = capsys.readouterr().out
        assert "[/]" in out or "[/bold]x" in out, argv


def test_dashboard_command_serves_until_interrupted(tmp_path: Path) -> None:
    path, ids = _seeded(tmp_path)
    with subprocess.Popen(
        [sys.executable, "-m", "flowactors", "dashboard", path, "--port", "0", "--read-only"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={"COLUMNS": "300", "PATH": "/usr/bin:/bin"},
    ) as proc:
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            assert "(read-only)" in line, line
            url = line.split(" at ")[1].split()[0]
            page = request(url, "/flow?id=" + ids["failed"])
            assert page.status == 200 and "read-only" in page.text
            refused = subprocess.run(
                [sys.executable, "-m", "flowactors", "stats", path],
                capture_output=True,
                text=True,
                check=False,
                timeout=60,
            )
            assert refused.returncode == 1 and "DataDirLocked" in refused.stderr
        finally:
            proc.send_signal(signal.SIGINT)
            assert proc.wait(timeout=30) == 0
