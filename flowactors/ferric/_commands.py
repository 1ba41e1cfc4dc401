# Theory of operation: the executor's single entry point. `dispatch` looks the command name
# up in `COMMANDS` and runs its handler (`_lifecycle`, `_coordination`, `_query`) inside the
# engine's Trio thread. Every flowactors error becomes a `CommandError` whose text carries
# the substring FerricStore's SDK classifies it by, and any other exception an "internal
# error" reply, so no argv vector can take the engine down. Commands not in the table are
# answered "unknown command".

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flowactors as fa

from ._argv import Argv, CommandError, text
from ._common import Handler, translate
from ._coordination import (
    policy_get,
    policy_set,
    retention_cleanup,
    rewind,
    signal,
    spawn_children,
    value_mget,
    value_put,
)
from ._lifecycle import (
    cancel,
    cancel_many,
    claim_due,
    create,
    create_many,
    extend_lease,
    finish,
    finish_many,
    get,
    history,
    info,
    transition,
    transition_many,
)
from ._query import query


async def dispatch(engine: fa.Engine, argv: Sequence[Any]) -> Any:
    """Run one argv vector on `engine`; raises CommandError (a flowactors.FlowError)."""
    try:
        if not argv:
            raise CommandError("ERR wrong number of arguments: empty command")
        name = text(argv[0], "command").upper()
        handler = COMMANDS.get(name)
        if handler is None:
            raise CommandError(f"ERR unknown command '{name}': not supported by flowactors.ferric")
        return await handler(engine, Argv(name, argv[1:]))
    except Exception as exc:
        raise translate(exc) from exc


COMMANDS: dict[str, Handler] = {
    "FLOW.CREATE": create,
    "FLOW.CREATE_MANY": create_many,
    "FLOW.CLAIM_DUE": claim_due,
    "FLOW.RECLAIM": claim_due,
    "FLOW.EXTEND_LEASE": extend_lease,
    "FLOW.TRANSITION": transition,
    "FLOW.TRANSITION_MANY": transition_many,
    "FLOW.COMPLETE": finish,
    "FLOW.FAIL": finish,
    "FLOW.RETRY": finish,
    "FLOW.COMPLETE_MANY": finish_many,
    "FLOW.FAIL_MANY": finish_many,
    "FLOW.RETRY_MANY": finish_many,
    "FLOW.CANCEL": cancel,
    "FLOW.CANCEL_MANY": cancel_many,
    "FLOW.GET": get,
    "FLOW.HISTORY": history,
    "FLOW.INFO": info,
    "FLOW.POLICY.SET": policy_set,
    "FLOW.POLICY.GET": policy_get,
    "FLOW.SIGNAL": signal,
    "FLOW.VALUE.PUT": value_put,
    "FLOW.VALUE.MGET": value_mget,
    "FLOW.SPAWN_CHILDREN": spawn_children,
    "FLOW.REWIND": rewind,
    "FLOW.RETENTION_CLEANUP": retention_cleanup,
    "FLOW.QUERY": query,
}

__all__ = ["COMMANDS", "dispatch", "translate"]
