"""Hypothesis profiles: quick by default, `--long` for the long crash and fuzz runs.

Tests scale their example counts from `settings().max_examples` (read at import,
after the profile is loaded), so `--long` lengthens every Hypothesis suite at once.
"""

import pytest
from hypothesis import settings

settings.register_profile("quick", deadline=None, max_examples=100)
settings.register_profile("long", deadline=None, max_examples=2000, stateful_step_count=100)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--long", action="store_true", help="run the Hypothesis suites 20x longer")


def pytest_configure(config: pytest.Config) -> None:
    settings.load_profile("long" if config.getoption("--long") else "quick")
