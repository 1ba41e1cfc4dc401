"""bench: the benchmark harness. `python -m bench SCENARIO`, or `python -m bench list`.

One runner for every scenario (`_runner`): work directory, machine facts, the disk's raw
baselines, warm-up and repeats with median / min / max (`_session`), the table and the flat
JSON (`_report`). A scenario is a module `bench/scenario_<name>.py` whose entry point is
decorated with `@register("<name>")` and takes a `Session`; see `scenario_wal.py`.
Quoted runs live in `bench/results/` (see its README).
"""

from ._registry import SCENARIOS, Scenario, register
from ._session import Floor, Metric, Session, Stats

__all__ = ["SCENARIOS", "Floor", "Metric", "Scenario", "Session", "Stats", "register"]
