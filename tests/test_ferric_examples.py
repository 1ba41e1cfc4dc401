"""Every FerricFlow snippet of seed 001, run by FerricStore's own SDK against flowactors:
`python examples/ferric/NAME.py DATA_DIR` ends by itself and prints its result."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = {
    "email_queue": "email-1 completed, result 'sent', handler ran 1 time(s)",
    "order_state_machine": "order-1 completed with result 'ok' after ['charged', 'receipt",
    "approval_signal": "approval-1 approved; history ['created', 'signaled']",
    "retry_after_failure": "order-1 shipped after 3 charge attempts; 2 retries",
    "campaign_fanout": "campaign-1 waited in 'done', then completed; children [('device:d1",
    "value_refs": "the worker saw values ['customer']; the invoice stayed stored (200009 bytes)",
    "inspect_history": "failed [('order-2', 'failed')]",
}


def test_every_ferric_example_is_listed() -> None:
    shipped = {p.stem for p in (ROOT / "examples" / "ferric").glob("*.py")}
    assert shipped - {"_harness"} == set(EXAMPLES)


@pytest.mark.parametrize("name", list(EXAMPLES))
def test_ferric_example_runs(name: str, tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "ferric" / f"{name}.py"), str(tmp_path / "d")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert EXAMPLES[name] in done.stdout, done.stdout + done.stderr


def test_inspection_example_lists_history_and_children(tmp_path: Path) -> None:
    script = ROOT / "examples" / "ferric" / "inspect_history.py"
    out = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "d")],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    assert "order-1 completed; history ['created', 'claimed', 'children_spawned'" in out
    assert "children [('order-1:line:1', 'completed'), ('order-1:line:2', 'completed')]" in out
