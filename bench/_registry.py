"""The scenario registry: name -> callable, filled by `bench/scenario_<name>.py` modules.

A scenario module decorates its entry point with `@register("<name>")`. Modules are found by
file name and imported only when asked for, so one scenario that fails to import does not
take the others down. The first line of the entry point's docstring is its summary.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from typing import TypeAlias

from ._session import Session

Scenario: TypeAlias = Callable[[Session], None]

SCENARIOS: dict[str, Scenario] = {}

_PREFIX = "scenario_"


class UnknownScenario(LookupError):
    pass


def register(name: str) -> Callable[[Scenario], Scenario]:
    def decorate(fn: Scenario) -> Scenario:
        if SCENARIOS.get(name, fn) is not fn:
            raise ValueError(f"scenario {name!r} registered twice")
        SCENARIOS[name] = fn
        return fn

    return decorate


def available() -> list[str]:
    """Names of the scenario modules shipped in this package, sorted."""
    return sorted(
        info.name.removeprefix(_PREFIX)
        for info in pkgutil.iter_modules(_package_path())
        if info.name.startswith(_PREFIX)
    )


def get(name: str) -> Scenario:
    if name not in SCENARIOS:
        if name not in available():
            raise UnknownScenario(name)
        importlib.import_module(f"{__package__}.{_PREFIX}{name}")
        if name not in SCENARIOS:
            raise UnknownScenario(f"{name} (its module registers no scenario of that name)")
    return SCENARIOS[name]


def summary(fn: Scenario) -> str:
    doc = (fn.__doc__ or "").strip()
    return doc.splitlines()[0] if doc else ""


def _package_path() -> list[str]:
    package = importlib.import_module(__package__ or "bench")
    return list(package.__path__)
