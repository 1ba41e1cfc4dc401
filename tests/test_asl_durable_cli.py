"""`flowactors asl validate|run` and the durable ASL example: outputs and exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from flowactors.__main__ import main

ROOT = Path(__file__).resolve().parent.parent
ORDER = str(ROOT / "examples" / "asl" / "order.asl.json")
HANDLERS = str(ROOT / "examples" / "asl" / "order_handlers.py") + ":HANDLERS"
GOOD = {"id": 3, "subtotal": 10, "shipping": 2, "items": ["a"]}


def test_validate_accepts_the_example(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["asl", "validate", ORDER]) == 0
    assert "valid (8 top-level states)" in capsys.readouterr().out


def test_validate_prints_every_problem_with_its_path(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"StartAt": "X", "States": {"A": {"Type": "Pass"}}}))
    assert main(["asl", "validate", str(bad)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert any(line.startswith("$.States.A: ") for line in out)
    assert any(line.startswith("$.StartAt: ") for line in out)


def test_run_prints_the_output_and_keeps_the_execution(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = str(tmp_path / "data")
    args = [
        "asl",
        "run",
        ORDER,
        "--input",
        json.dumps(GOOD),
        "--handlers",
        HANDLERS,
        "--data-dir",
        data,
        "--name",
        "o3",
    ]
    assert main(args) == 0
    output = json.loads(capsys.readouterr().out)
    assert output["payment"]["receipt"] == "rcpt-3"
    assert output["shipment"] == {"carrier": "post", "tracking": "TRK-3"}
    assert main(args) == 0  # the same start again: the stored execution's output
    assert json.loads(capsys.readouterr().out) == output


def test_a_failed_execution_exits_1_with_its_error(capsys: pytest.CaptureFixture[str]) -> None:
    order = dict(GOOD, subtotal=0, shipping=0)
    assert main(["asl", "run", ORDER, "--input", json.dumps(order), "--handlers", HANDLERS]) == 1
    err = capsys.readouterr().err
    assert err.strip() == "flowactors asl: execution FAILED: OrderRejected: order 3 has total 0"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", ORDER, "--input", "{oops", "--handlers", HANDLERS], "--input is not JSON"),
        (["run", ORDER, "--input", "{}"], "no handler for Task resource(s) charge, ship"),
        (["run", ORDER, "--handlers", "no_such_module:X"], "cannot import 'no_such_module'"),
        (["run", ORDER, "--handlers", "json:dumps"], "is not a mapping"),
        (["run", ORDER, "--handlers", "nocolon"], "wants module:attr"),
        (["run", "missing.json"], "cannot read missing.json"),
        (["validate", "missing.json"], "cannot read missing.json"),
        (["run"], "the following arguments are required"),
        (["frobnicate"], "invalid choice"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["asl", *args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err


def test_the_example_runs_durably(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "asl" / "run_order.py"), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("order-1: SUCCEEDED {'orderId': 1, 'total': 45")
    assert lines[1] == "order-2: FAILED CardDeclined: 20000 is over the card limit"
    assert lines[2] == "order-1 history: 20 events, ExecutionStarted .. ExecutionSucceeded"
