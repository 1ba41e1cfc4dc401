"""The asl-validator fixtures: every valid-* definition is accepted, every invalid-* rejected."""

from __future__ import annotations

from pathlib import Path

import pytest

from flowactors import asl

FIXTURES = Path(__file__).resolve().parents[1].parent / "shared" / "conformance" / "asl-validator"
FILES = sorted(FIXTURES.glob("*.json")) if FIXTURES.is_dir() else []

# Definitions we knowingly judge differently from asl-validator, with the reason.
# Only AWS-only features may appear here. It is empty: every fixture passes.
SKIPS: dict[str, str] = {}


def test_fixtures_are_present() -> None:
    if not FIXTURES.is_dir():
        pytest.skip(f"conformance data not found at {FIXTURES}")
    assert len(FILES) == 112


@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_fixture(path: Path) -> None:
    if path.name in SKIPS:
        pytest.skip(SKIPS[path.name])
    text = path.read_bytes()
    if path.name.startswith("valid-"):
        machine = asl.load_definition(text)
        assert machine.start_at in machine.states
    else:
        assert path.name.startswith("invalid-")
        with pytest.raises(asl.AslValidationError) as info:
            asl.load_definition(text)
        problems = info.value.problems
        assert problems
        assert all(p.path.startswith("$") and p.message for p in problems)
        assert str(problems[0]) in str(info.value)
