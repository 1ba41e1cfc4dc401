"""The asl-validator fixtures: every valid-* definition is accepted, every invalid-* rejected."""

from __future__ import annotations

from pathlib import Path

import pytest

from flowactors import asl

# A copy of ../shared/conformance/asl-validator (Apache-2.0, LICENSE beside it), kept in
# the repository so that every run, CI's clean clone included, checks all of them.
FIXTURES = Path(__file__).resolve().parent / "conformance" / "asl-validator"
FILES = sorted(FIXTURES.glob("*.json"))

# Definitions we knowingly judge differently from asl-validator, with the reason.
# Only AWS-only features may appear here. It is empty: every fixture passes.
SKIPS: dict[str, str] = {}


def test_fixtures_are_present() -> None:
    assert len(FILES) == 112, f"conformance data missing under {FIXTURES}"


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
