"""flowactors.ops: seeing and operating an engine (and the demo, the terminal inspector).

    async with flowactors.open_engine("data") as engine, trio.open_nursery() as nursery:
        url = await nursery.start(flowactors.ops.serve_dashboard, engine)   # + /metrics

- `serve_dashboard` / `dashboard_app`: the web dashboard (overview, flow list, one flow,
  confirmed actions) and Prometheus `/metrics`, served inside the engine's Trio program;
- `EngineCollector` / `registry_for`: the metrics, for a Prometheus registry of your own;
- `cancel`, `rewind`, `signal`, `retry`: operator actions as fenced engine commands;
- `overview`, `list_flows`, `flow_detail`: what the dashboard and the CLI show, as data.

The `flowactors` CLI (flows, show, cancel, rewind, signal, retry, compact, stats,
dashboard) is `flowactors.ops._cli`; see docs/operations.md.
"""

from ._app import dashboard_app
from ._commands import cancel, retry, rewind, signal
from ._metrics import EngineCollector, registry_for
from ._read import FlowDetail, FlowList, ListFilter, Overview, flow_detail, list_flows, overview
from ._serve import DEFAULT_PORT, is_loopback, serve_dashboard

__all__ = [
    "DEFAULT_PORT",
    "EngineCollector",
    "FlowDetail",
    "FlowList",
    "ListFilter",
    "Overview",
    "cancel",
    "dashboard_app",
    "flow_detail",
    "is_loopback",
    "list_flows",
    "overview",
    "registry_for",
    "retry",
    "rewind",
    "serve_dashboard",
    "signal",
]
