"""Every example of seeds 000 and 001 runs as `python examples/NAME.py` on a temporary data
directory and prints its result."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = {
    "billing": "bill-1 completed in partition t1:inv-1",
    "email_queue": "sent 20 emails; completed 20, lost leases 0",
    "order_state_machine": "order-1 completed",
    "retry_after_failure": "charged after attempts [0, 1, 2, 3]; 3 durable retries",
    "value_refs": "hydrated {'customer': 31}; the invoice stayed stored",
    "approval_signal": "approval-1 approved",
    "campaign_fanout": "campaign-1 completed",
    "cron_report": "nightly-report: 7 fired, 7 completed",
}


def shipped(folder: Path) -> set[str]:
    return {p.stem for p in folder.glob("*.py") if not p.stem.startswith("_")}


def test_every_example_is_listed() -> None:
    assert shipped(ROOT / "examples") == set(EXAMPLES)


def run_example(script: Path, tmp_path: Path, expected: str) -> None:
    """Run `python script DATA_DIR` and require it to succeed and print `expected`."""
    done = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "data")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert expected in done.stdout


@pytest.mark.parametrize("name", list(EXAMPLES))
def test_example_runs(name: str, tmp_path: Path) -> None:
    run_example(ROOT / "examples" / f"{name}.py", tmp_path, EXAMPLES[name])


CODE_EXAMPLES = {
    "order_flow": "order-3: {'shipped': 'trk-order-3', 'review': 'timeout'}",
    "saga": "ledger: ['book flight', 'book hotel', 'cancel hotel-t1', 'cancel flight-t1']",
    "monthly_billing": "chain of 12 runs: cust-7 .. cust-7~12",
    "seed001_patterns": "fanout: ['d1: updated', 'd2: updated', 'd3: updated']",
}


def test_every_code_example_is_listed() -> None:
    assert shipped(ROOT / "examples" / "code") == set(CODE_EXAMPLES)


@pytest.mark.parametrize("name", list(CODE_EXAMPLES))
def test_code_example_runs(name: str, tmp_path: Path) -> None:
    run_example(ROOT / "examples" / "code" / f"{name}.py", tmp_path, CODE_EXAMPLES[name])


STEPS_EXAMPLES = {
    "order_pipeline": "order-1: paid pay-order-1 for 15, e-mail {'sent_to': 'ann@example.com'}",
    "nested": "A -> B -> C: A -> B -> C",
    "resilient_order": "failed children: ['order-7/card']",
    "expense_approval": "eve: 700 EUR not paid (expired)",
}


def test_every_steps_example_is_listed() -> None:
    assert shipped(ROOT / "examples" / "steps") == set(STEPS_EXAMPLES)


@pytest.mark.parametrize("name", list(STEPS_EXAMPLES))
def test_steps_example_runs(name: str, tmp_path: Path) -> None:
    run_example(ROOT / "examples" / "steps" / f"{name}.py", tmp_path, STEPS_EXAMPLES[name])
