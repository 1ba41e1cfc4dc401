# Theory of operation: what every FLOW command handler shares. Options are read with the
# helpers below; flowactors errors become `CommandError`s whose text carries the substring
# FerricStore's SDK classifies them by (`translate`); batch replies are built by `ok_items`.
#
# Time: FerricStore's SDK sends its own clock as `NOW` and absolute times (`RUN_AT`) in that
# clock. flowactors uses only the engine's clock, so `NOW` is never used as a time: a
# `RUN_AT` is read as the delay `RUN_AT - NOW` (due now when not in the future), and the
# engine adds that delay to its own clock. Clock skew between client and engine therefore
# cannot move due times, leases or retention.
#
# Superseded outcomes: a handler that spawns children and then returns an outcome for the
# same claim (FerricStore's SDK documents that pattern) would be refused, because spawning
# released the parent's lease. The spawns are noted here, per engine, so that outcome can be
# answered OK without effect (`superseded`).

from __future__ import annotations

import weakref
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import flowactors as fa

from . import _replies as r
from ._argv import Argv, CommandError, Options, integer, partition, text

Handler = Callable[[fa.Engine, Argv], Awaitable[Any]]
TERMINAL = ("completed", "failed", "cancelled")
OK = "OK"

# Claims whose parent spawned children: (flow id, lease token) -> fencing token. See
# `superseded`. Bounded; kept per engine, in memory only.
_SPAWNED: weakref.WeakKeyDictionary[fa.Engine, OrderedDict[tuple[str, str], int]] = (
    weakref.WeakKeyDictionary()
)
_SPAWNED_MAX = 10_000


def note_spawn(engine: fa.Engine, flow_id: str, token: str | None, fencing: int) -> None:
    if token is None:
        return
    seen = _SPAWNED.setdefault(engine, OrderedDict())
    seen[(flow_id, token)] = fencing
    while len(seen) > _SPAWNED_MAX:
        seen.popitem(last=False)


def superseded(engine: fa.Engine, flow_id: str, token: str | None, fencing: int) -> bool:
    """True when this claim's holder already spawned children from it.

    FerricStore's SDK documents `spawn_children(...)` followed by `return transition(...)`
    in one handler, but spawning parks the parent (in WAIT_STATE, lease released), so the
    handler's own outcome would be refused as a stale lease and the SDK's worker would stop.
    The spawn decided the parent's next state; the outcome of that same claim (same lease
    token and fencing token) is therefore answered OK and has no effect."""
    seen = _SPAWNED.get(engine)
    return token is not None and seen is not None and seen.get((flow_id, token)) == fencing


def translate(exc: BaseException) -> BaseException:
    """The error the SDK should see for `exc` (substrings per its classifier)."""
    if isinstance(exc, CommandError):
        return exc
    table: list[tuple[type[BaseException], str]] = [
        (fa.FlowNotFound, "ERR flow not found"),
        (fa.FlowExists, "ERR flow already exists"),
        (fa.IdempotencyConflict, "ERR flow idempotency conflict"),
        (fa.WrongState, "ERR flow wrong state"),
        (fa.StaleLease, "ERR stale flow lease"),
        (fa.FlowTerminal, "ERR flow is terminal; use FLOW.REWIND"),
        (fa.InvalidArgument, "ERR invalid argument"),
        (fa.Overloaded, "ERR busy: flowactors shard queue full retry_after_ms=10"),
        (fa.EngineClosed, "ERR flowactors engine is closed"),
        (fa.StorageError, "ERR flowactors storage error"),
    ]
    if isinstance(exc, fa.InvalidArgument) and " is in partition " in str(exc):
        # a by-id command naming another partition: on FerricStore that key is absent
        error = CommandError(f"ERR flow not found in that partition: {exc}")
        error.__cause__ = exc
        return error
    for kind, prefix in table:
        if isinstance(exc, kind):
            error = CommandError(f"{prefix}: {exc}")
            error.__cause__ = exc
            return error
    if isinstance(exc, Exception):
        error = CommandError(f"ERR internal error: {type(exc).__name__}: {exc}")
        error.__cause__ = exc
        return error
    return exc


def delay_of(opts: Options, name: str = "RUN_AT") -> int | None:
    """`RUN_AT` as a delay from the command's own `NOW` (None: due now)."""
    run_at = opts.number(name)
    if run_at is None:
        return None
    now = opts.number("NOW")
    delay = run_at - (fa.wall_clock_ms() if now is None else now)
    return delay if delay > 0 else None


def engine_due(engine: fa.Engine, opts: Options) -> int | None:
    delay = delay_of(opts)
    return None if delay is None else engine.now_ms() + delay


def values_of(opts: Options) -> dict[str, bytes] | None:
    values = opts.pairs("VALUE", "VALUE")
    return values or None


def attributes_of(opts: Options, *names: str) -> dict[str, str] | None:
    out: dict[str, str] = {}
    for name in names:
        for key, value in opts.all(name):
            out[text(key, name)] = text(value, name)
    return out or None


def unsupported_values(opts: Options) -> None:
    opts.refuse("VALUE_REF", "DROP_VALUE", "OVERRIDE_VALUE", "PAYLOAD_REF", "ATTRIBUTE_DELETE")


def ok_items(results: Sequence[fa.ItemResult], opts: Options) -> Any:
    """The reply of a batch command: per-item "OK"/error, or one "OK" (RETURN OK_ON_SUCCESS).
    Without `INDEPENDENT true`, the first failed item's error is raised instead."""
    independent = opts.flag("INDEPENDENT")
    if not independent:
        for item in results:
            if item.error is not None:
                raise item.error
    if (opts.text("RETURN") or "").upper() == "OK_ON_SUCCESS" and all(i.ok for i in results):
        return OK
    return [OK if i.ok else r.error_item(translate(i.error or Exception())) for i in results]


def batch_partition(word: str) -> tuple[bool, str | None]:
    """(mixed, partition) of a batch command's first argument."""
    if word.upper() == "MIXED":
        return True, None
    return False, partition(word)


def max_active(opts: Options) -> int | None:
    value = opts.one("MAX_ACTIVE_MS")
    if value is None or text(value, "MAX_ACTIVE_MS").upper() == "INFINITY":
        return None
    return integer(value, "MAX_ACTIVE_MS")


def fencing_of(opts: Options, command: str) -> int:
    fencing = opts.number("FENCING")
    if fencing is None:
        raise CommandError(f"ERR wrong number of arguments for '{command}': FENCING is required")
    return fencing
