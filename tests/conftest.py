"""Hypothesis profiles: quick by default, `--long` for the long crash and fuzz runs.

Cheap suites follow the profile (`settings().max_examples`: 100, or 2,000 under --long).
The expensive ones size themselves per test with `sizing.examples(quick, long)`, so the
long run has a stated length (README "Tests"). Crash suites report their counts with the
`report` fixture: the lines are printed at the end of every run, default or long.
"""

from collections.abc import Callable

import pytest
import sizing
from hypothesis import settings

settings.register_profile("quick", deadline=None, max_examples=100)
settings.register_profile("long", deadline=None, max_examples=2000, stateful_step_count=100)

_REPORT = pytest.StashKey[list[str]]()


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--long", action="store_true", help="run the long crash and fuzz suites")


def pytest_configure(config: pytest.Config) -> None:
    long = bool(config.getoption("--long"))
    settings.load_profile("long" if long else "quick")
    sizing.LONG = long
    config.stash[_REPORT] = []


@pytest.fixture
def report(pytestconfig: pytest.Config) -> Callable[[str], None]:
    """Print a suite's summary line (seen with -s) and repeat it after the run."""
    lines = pytestconfig.stash[_REPORT]

    def add(line: str) -> None:
        print(f"\n{line}")
        lines.append(line)

    return add


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    lines = terminalreporter.config.stash.get(_REPORT, [])
    if lines:
        terminalreporter.section("crash suites")
        for line in lines:
            terminalreporter.write_line(line)
