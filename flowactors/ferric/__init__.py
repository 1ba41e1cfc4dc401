"""flowactors.ferric: FerricStore's own Python SDK (`ferricstore`), unmodified, on an
embedded flowactors engine.

    from ferricstore import FlowClient, QueueClient
    import flowactors.ferric

    store = flowactors.ferric.embedded("data")
    client = QueueClient(FlowClient(store.executor))   # instead of QueueClient.from_url(...)

The SDK builds FLOW.* argv vectors and hands them to an executor; this package parses them,
runs them on a flowactors engine in a Trio thread of its own, and answers in the shapes the
SDK decodes. See docs/ferric.md for what is supported and what differs.
"""

from ._argv import AUTO_ANY, CommandError, auto_partition
from ._bridge import EngineThread
from ._commands import COMMANDS, dispatch
from ._executor import AsyncExecutor, Embedded, Executor, embedded

__all__ = [
    "AUTO_ANY",
    "COMMANDS",
    "AsyncExecutor",
    "CommandError",
    "Embedded",
    "EngineThread",
    "Executor",
    "auto_partition",
    "dispatch",
    "embedded",
]
