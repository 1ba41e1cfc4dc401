"""How long each expensive suite runs: quick by default, long under `scripts/test --long`.

conftest sets `LONG` before any test module is imported, so settings evaluated at import
see it. Each expensive suite names its own two sizes (`examples(quick, long)`), picked from
its measured cost per example so that the whole `--long` run stays near 15 minutes of CPU
on the 2-core VM (README "Tests"); cheap suites just follow the Hypothesis profile.
"""

from __future__ import annotations

LONG = False


def examples(quick: int, long: int) -> int:
    """`quick` in the default run, `long` under --long."""
    return long if LONG else quick
