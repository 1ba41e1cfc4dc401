"""The Flow state machine: `decide(state, command, now, config) -> (result, mutations)`.

Pure: it reads the shard state, never changes it, does no I/O, reads no clock and draws no
random numbers. The shard actor applies the returned mutations to its state and writes
them to its log (one frame per command); recovery rebuilds the state through the same
`ShardState.put`. Guards follow reference/ferricstore-flow.md §1-§3, with its gaps closed:

- time is the engine's (`now`), never the client's;
- reclaims count toward a crash budget (`RetryPolicy.max_reclaims`);
- exact replays of transition / complete / fail / retry are no-ops: they return the
  current flow and write nothing (no second history event);
- idempotent create compares a digest of the whole create request.

Guard order for commands on a claimed flow: exact replay -> terminal -> fencing -> lease
token -> state, so a worker that lost its flow to a reclaim hears `StaleLease`, not a
confusing `WrongState`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from itertools import islice
from typing import Any

import xxhash

from . import _lifecycle as lifecycle
from ._errors import (
    FlowError,
    FlowExists,
    FlowNotFound,
    FlowTerminal,
    IdempotencyConflict,
    InvalidArgument,
    StaleLease,
    WrongState,
)
from ._lifecycle import holds_lease
from ._record import (
    ACTIVE_DEADLINE,
    ATTEMPTS,
    ATTRIBUTES,
    CANCELLED,
    COMPLETED,
    CREATE_DIGEST,
    ERROR_VER,
    EXT,
    FAILED,
    FENCING,
    HIST_FLOOR,
    ID,
    KEEP,
    LAST_EVENT,
    LEASE_OWNER,
    LEASE_TOKEN,
    PARTITION,
    PRIORITY,
    RECLAIMS,
    RESULT_VER,
    RETENTION_MS,
    RUN_STATE,
    RUNNING,
    STATE,
    TERMINAL,
    TYPE,
    VALUES,
    VERSION,
    Record,
    evolve,
    evolver,
    leased,
    terminal,
)
from ._retry import backoff_delay_ms
from ._state import ShardState
from ._types import RETRY_FIELDS, FlowPolicy, RetryPolicy

# The policy fields that act on writes (a creation's deadline, a close's retention, the
# history cap), as opposed to the retry fields read only where a retry is decided.
WRITE_POLICY_FIELDS = frozenset(("max_active_ms", "retention_ms", "history_max_events"))

# -- limits (documented in README "Limits") ---------------------------------------------

MAX_ID_BYTES = 1024
MAX_NAME_BYTES = 256
MAX_BLOB_BYTES = 16 * 1024 * 1024
MAX_CLAIM_LIMIT = 10_000
MAX_BATCH_ITEMS = 100_000
MAX_DELAY_MS = 30 * 24 * 3600 * 1000
MAX_ACTIVE_MS = 366 * 24 * 3600 * 1000
MAX_TIME_MS = (1 << 53) - 1
MAX_RETRIES = 1000
MAX_ATTRIBUTES = 64
DEFAULT_RETENTION_MS = 7 * 24 * 3600 * 1000
# The data one command carries over all its items (payloads, results, errors, named values
# and attributes, names included, see `create_bytes`) is at most MAX_COMMAND_BYTES. The rest
# of what a command writes is bounded by the limits above (ids, names and states: ~7 KiB per
# flow at most, times MAX_BATCH_ITEMS), so every command's frame stays under the wal's 1 GiB
# (wal MAX_BODY_BYTES) with headroom, and one named value or message under its 256 MiB.
MAX_COMMAND_BYTES = 256 * 1024 * 1024
# What a named value costs beyond its bytes and (twice) its name: its key holds the flow's
# id, and the record's entry for it a digest and a size.
VALUE_OVERHEAD = MAX_ID_BYTES + 64
ATTRIBUTE_OVERHEAD = 16


@dataclass(frozen=True, slots=True)
class Config:
    """Engine-wide settings the machine needs (pure data).

    `installed` holds the flow policies installed through the engine; the engine replaces
    entries (and clears the cache) only between commands, so every decision sees one
    consistent policy table. `settled` names the types whose policy acts on writes
    (max_active_ms, retention_ms or history_max_events in any layer): their writes are
    settled one at a time (`_coord._apply_policy`), so no batch path takes them. A policy
    of retry settings only is read where a retry or reclaim is decided, and leaves the
    batch paths to its type."""

    retry_policy: RetryPolicy = field(default_factory=RetryPolicy)
    type_policies: Mapping[str, RetryPolicy] = field(default_factory=dict)
    default_retention_ms: int = DEFAULT_RETENTION_MS
    installed: dict[str, FlowPolicy] = field(default_factory=dict)
    settled: set[str] = field(default_factory=set)
    _cache: dict[tuple[str, str, str | None], Any] = field(default_factory=dict)

    def install(self, flow_type: str, policy: FlowPolicy) -> None:
        self.installed[flow_type] = policy
        if any(
            layer.fields().keys() & WRITE_POLICY_FIELDS
            for layer in (policy, *policy.states.values())
        ):
            self.settled.add(flow_type)
        else:
            self.settled.discard(flow_type)
        self._cache.clear()

    def _layered(self, flow_type: str, state: str | None) -> dict[str, Any]:
        """Installed type layer, then the state layer, merged field by field."""
        policy = self.installed.get(flow_type)
        if policy is None:
            return {}
        merged = policy.fields()
        layer = policy.states.get(state) if state is not None else None
        if layer is not None:
            merged.update(layer.fields())
        return merged

    def policy_for(self, flow_type: str, state: str | None = None) -> RetryPolicy:
        """The retry policy of a flow of `flow_type` worked in `state`."""
        key = ("retry", flow_type, state)
        cached: RetryPolicy | None = self._cache.get(key)
        if cached is None:
            base = self.type_policies.get(flow_type, self.retry_policy)
            layered = self._layered(flow_type, state)
            retry = {f: v for f, v in layered.items() if f in RETRY_FIELDS}
            cached = replace(base, **retry) if retry else base
            self._cache[key] = cached
        return cached

    def setting(self, name: str, flow_type: str, state: str | None = None) -> Any:
        """max_active_ms / retention_ms / history_max_events from the installed layers
        (None when no layer sets it)."""
        key = (name, flow_type, state)
        if key in self._cache:
            return self._cache[key]
        value = self._layered(flow_type, state).get(name)
        self._cache[key] = value
        return value


# -- mutations --------------------------------------------------------------------------


@dataclass(slots=True)
class Write:
    """A new version of a record, with its history event and the bytes it sets.

    `open`: a child-outcome event of a parent, which a later outcome of the same group in
    the same frame may extend in place (same version, see `ShardState.open_outcomes`)."""

    record: Record
    event: str
    meta: dict[str, Any] | None = None
    blobs: dict[str, bytes] | None = None
    values: dict[str, bytes] | None = None
    open: bool = False


@dataclass(slots=True)
class Writes:
    """Many plain writes decided together (a claim's, a batch create's, a batch outcome's),
    applied column-wise by the shard (`ShardState.put_many`, one encode per record) with
    no object per write: `records[i]` is a new version whose history event is `event`,
    with `meta` shared by all (or `metas[i]` each) and `blobs[i]` (or no blobs at all).

    Only records that coordination has nothing to settle on travel this way: no policy acts
    on writes of their type (`Config.settled`), their history is whole, and a record that
    becomes terminal holds no `ext` (a fanout child reports its outcome, a parent cascades;
    a claim or a move settles nothing). The deciders check both. `expand()` gives the
    equivalent `Write`s, one per record."""

    records: list[Record]
    event: str
    meta: dict[str, Any] | None = None
    metas: list[dict[str, Any] | None] | None = None
    blobs: list[dict[str, bytes] | None] | None = None

    def expand(self) -> list[Write]:
        n = len(self.records)
        metas = self.metas if self.metas is not None else [self.meta] * n
        blobs = self.blobs if self.blobs is not None else [None] * n
        return [
            Write(r, self.event, meta, blob)
            for r, meta, blob in zip(self.records, metas, blobs, strict=True)
        ]


Mutation = Write | Writes

# -- commands ---------------------------------------------------------------------------


@dataclass(slots=True)
class Create:
    id: str
    type: str
    state: str = "queued"
    payload: bytes | None = None
    partition: str | None = None
    run_at: int | None = None
    priority: int = 0
    values: Mapping[str, bytes] | None = None
    attributes: Mapping[str, str] | None = None
    parent_id: str | None = None
    root_id: str | None = None
    correlation_id: str | None = None
    idempotent: bool = False
    max_active_ms: int | None = None
    retention_ms: int | None = None


@dataclass(slots=True)
class CreateMany:
    items: list[Create]


@dataclass(slots=True)
class Claim:
    type: str
    worker: str
    states: tuple[str, ...] | None = None
    limit: int = 1
    lease_ms: int = 30_000
    reclaim: bool = True
    reclaim_ratio: int = 25
    priority: int | None = None
    only_expired: bool = False
    partition: str | None = None  # only flows of this partition key


@dataclass(slots=True)
class ExtendLease:
    id: str
    lease_token: str
    fencing: int
    lease_ms: int = 30_000


@dataclass(slots=True)
class StepContinue:
    """Store a step's outcome and go on to the next step under a fresh lease: the flow
    stays running, leased to `worker` (default: its lease owner), in logical state
    `to_state` (default: unchanged)."""

    id: str
    lease_token: str
    fencing: int
    from_state: str | None = None
    to_state: str | None = None
    lease_ms: int = 30_000
    worker: str | None = None
    payload: bytes | None = None
    values: Mapping[str, bytes] | None = None
    attributes: Mapping[str, str] | None = None


@dataclass(slots=True)
class Transition:
    id: str
    from_state: str
    to_state: str
    fencing: int
    lease_token: str | None = None
    run_at: int | None = None
    priority: int | None = None
    payload: bytes | None = None
    values: Mapping[str, bytes] | None = None
    attributes: Mapping[str, str] | None = None


@dataclass(slots=True)
class Complete:
    id: str
    lease_token: str | None
    fencing: int
    result: bytes | None = None
    values: Mapping[str, bytes] | None = None


@dataclass(slots=True)
class Fail:
    id: str
    lease_token: str | None
    fencing: int
    error: bytes | None = None
    values: Mapping[str, bytes] | None = None


@dataclass(slots=True)
class Retry:
    id: str
    lease_token: str | None
    fencing: int
    error: bytes | None = None
    run_at: int | None = None
    payload: bytes | None = None
    max_retries: int | None = None
    exhausted_to: str | None = None


@dataclass(slots=True)
class FinishMany:
    """`complete_many` / `fail_many` on one shard: `items` of (id, lease_token, fencing,
    data), each deciding alone, in order, as `Complete` / `Fail` would (`target` says
    which). See `decide_finish_run`."""

    target: str
    items: list[Any]  # (id, lease_token, fencing, data, partition, values): an Ack or tuple


@dataclass(slots=True)
class TransitionMany:
    """`transition_many` on one shard: `items` of (id, lease_token, fencing, ...) each
    moving from `from_state` to `to_state` (due at `run_at`, else now) alone, in order, as
    `Transition` would. See `decide_transition_run`."""

    from_state: str
    to_state: str
    run_at: int | None
    items: list[Any]  # Acks, or tuples with the same first fields


@dataclass(slots=True)
class Cancel:
    id: str
    fencing: int | None = None
    lease_token: str | None = None
    reason: bytes | None = None
    force: bool = False


@dataclass(slots=True)
class PutValue:
    id: str
    name: str
    data: bytes
    override: bool = False


@dataclass(slots=True)
class Read:
    """get / history / values: resolved against the state, hydrated by the shard."""

    id: str


Command = (
    Create
    | CreateMany
    | Claim
    | ExtendLease
    | StepContinue
    | Transition
    | Complete
    | Fail
    | FinishMany
    | TransitionMany
    | Retry
    | Cancel
    | PutValue
    | Read
)

Result = Any
Decision = tuple[Result, list[Mutation]]

# -- validation -------------------------------------------------------------------------


def _utf8(value: object, what: str) -> bytes:
    if not isinstance(value, str) or not value:
        raise InvalidArgument(f"{what} must be a non-empty string")
    try:
        return value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidArgument(f"{what} must be valid Unicode (no lone surrogates)") from None


def check_id(value: object, what: str = "id") -> str:
    return _check_text(value, what, MAX_ID_BYTES)


def check_name(value: object, what: str) -> str:
    return _check_text(value, what, MAX_NAME_BYTES)


def _check_text(value: object, what: str, limit: int) -> str:
    """A non-empty string of at most `limit` UTF-8 bytes, without NUL. ASCII within the
    limit in characters (= bytes) is accepted with no encode (isascii is a flag check);
    anything else is checked on its UTF-8 bytes."""
    if type(value) is str and 0 < len(value) <= limit and value.isascii() and "\x00" not in value:
        return value
    raw = _utf8(value, what)
    if len(raw) > limit or b"\x00" in raw:
        raise InvalidArgument(f"{what} must be 1..{limit} bytes without NUL")
    assert isinstance(value, str)
    return value


def check_type(value: object) -> str:
    name = check_name(value, "type")
    if name.startswith("__"):
        raise InvalidArgument("types starting with '__' are reserved")
    return name


def check_state(value: object, what: str = "state") -> str:
    name = check_name(value, what)
    if name == RUNNING:
        raise InvalidArgument(f"{what} 'running' is reserved for claimed flows")
    return name


def check_active_state(value: object, what: str = "state") -> str:
    name = check_state(value, what)
    if name in TERMINAL:
        raise InvalidArgument(
            f"{what} {name!r} is terminal: use complete, fail or cancel to end a flow"
        )
    return name


def check_blob(value: object, what: str) -> bytes | None:
    if type(value) is bytes and len(value) <= MAX_BLOB_BYTES:
        return value  # the common case, with no copy
    if value is None:
        return None
    if not isinstance(value, bytes | bytearray | memoryview):
        raise InvalidArgument(f"{what} must be bytes, got {type(value).__name__}")
    data = bytes(value)
    if len(data) > MAX_BLOB_BYTES:
        raise InvalidArgument(f"{what} is {len(data)} bytes; the limit is {MAX_BLOB_BYTES}")
    return data


def check_int(value: object, what: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidArgument(f"{what} must be an integer in {low}..{high}, got {value!r}")
    return value


def check_bool(value: object, what: str) -> bool:
    """True or False exactly: 1, "yes" or None are refused, not read as truthy."""
    if value is True or value is False:
        return value
    raise InvalidArgument(f"{what} must be True or False, got {_shown(value)}")


def _shown(value: object) -> str:
    """A wrong value in an error message: its type, and its repr cut short."""
    return f"{type(value).__name__} {value!r:.60}"


def check_list(value: object, what: str) -> Sequence[Any]:
    """A list or tuple (any sequence but text or bytes): a string is not read letter by
    letter, a mapping or set not by its keys."""
    if type(value) is list or type(value) is tuple:
        return value
    if isinstance(value, Sequence) and not isinstance(value, str | bytes | bytearray):
        return value
    hint = " (a string is not a list: write [name])" if isinstance(value, str) else ""
    raise InvalidArgument(f"{what} must be a list, got {_shown(value)}{hint}")


def check_names(value: object, what: str) -> tuple[str, ...]:
    """A list (or tuple) of names, each checked as `check_name`."""
    return tuple([check_name(v, what) for v in check_list(value, f"{what}s")])


def check_items(
    value: object, kind: type, what: str, *, each: bool = True, high: int = MAX_BATCH_ITEMS
) -> Sequence[Any]:
    """The items of a batch call: a list of 1..`high` `kind` instances (`each=False`: the
    caller checks each item with `check_item` in its own loop)."""
    items = check_list(value, what)
    if not 0 < len(items) <= high:
        raise InvalidArgument(f"{what} takes 1..{high} items, got {len(items)}")
    if each:
        for item in items:
            if type(item) is not kind and not isinstance(item, kind):
                check_item(item, kind, what)
    return items


def check_item(item: object, kind: type, what: str) -> None:
    if not isinstance(item, kind):
        raise InvalidArgument(f"{what} items must be {kind.__name__}, got {_shown(item)}")


def check_mapping(value: object, what: str) -> Mapping[Any, Any]:
    """A mapping (a dict, usually): a list of pairs or a string is refused."""
    if type(value) is dict or isinstance(value, Mapping):
        return value
    raise InvalidArgument(f"{what} must be a mapping (a dict), got {_shown(value)}")


def check_values(values: Mapping[str, bytes] | None) -> dict[str, bytes] | None:
    if values is None:
        return None
    if not check_mapping(values, "values"):
        return None
    out: dict[str, bytes] = {}
    for name, data in values.items():
        if type(data) is bytes and len(data) <= MAX_BLOB_BYTES:
            out[check_name(name, "value name")] = data  # (no message built when valid)
            continue
        blob = check_blob(data, f"value {name!r}")
        if blob is None:
            raise InvalidArgument(f"value {name!r} must be bytes")
        out[check_name(name, "value name")] = blob
    return out


def check_attributes(attrs: Mapping[str, str] | None) -> dict[str, str] | None:
    if attrs is None:
        return None
    if not check_mapping(attrs, "attributes"):
        return None
    if len(attrs) > MAX_ATTRIBUTES:
        raise InvalidArgument(f"at most {MAX_ATTRIBUTES} attributes")
    out: dict[str, str] = {}
    for k, v in attrs.items():
        out[check_name(k, "attribute key")] = check_name(v, f"attribute {k!r}")
    return out


def _text_bytes(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))


def values_bytes(values: Mapping[str, bytes]) -> int:
    """What checked named values count toward MAX_COMMAND_BYTES."""
    size = VALUE_OVERHEAD * len(values)
    for name, data in values.items():
        size += len(data) + 2 * _text_bytes(name)
    return size


def attributes_bytes(attrs: Mapping[str, str]) -> int:
    """What checked attributes count toward MAX_COMMAND_BYTES."""
    size = ATTRIBUTE_OVERHEAD * len(attrs)
    for key, value in attrs.items():
        size += _text_bytes(key) + _text_bytes(value)
    return size


def create_bytes(c: Create) -> int:
    """What a checked create counts toward MAX_COMMAND_BYTES: payload, values, attributes."""
    size = 0 if c.payload is None else len(c.payload)
    if c.values:
        size += values_bytes(c.values)
    if c.attributes:
        size += attributes_bytes(c.attributes)
    return size


def check_command_bytes(size: int, what: str) -> None:
    """Refuse a command that carries more than MAX_COMMAND_BYTES of data: it could not be
    written as one frame of the log."""
    if size > MAX_COMMAND_BYTES:
        raise InvalidArgument(
            f"{what} carries {size} bytes of data (payloads, results, errors, named values "
            f"and attributes, with their names); one call carries at most "
            f"{MAX_COMMAND_BYTES}: split it"
        )


def check_carried(
    what: str,
    values: Mapping[str, bytes] | None,
    *blobs: bytes | None,
    attributes: Mapping[str, str] | None = None,
) -> None:
    """`check_command_bytes` of one flow's checked values, blobs and attributes. Only the
    values can add up past the limit (blobs and attributes have their own), so a command
    without them is not counted."""
    if values:
        size = values_bytes(values)
        for blob in blobs:
            if blob is not None:
                size += len(blob)
        if attributes:
            size += attributes_bytes(attributes)
        check_command_bytes(size, what)


def validate_create(c: Create) -> None:
    """Check a create request completely before anything is decided or written."""
    validate_create_shared(c)
    validate_create_item(c)


def validate_create_shared(c: Create) -> None:
    """The parts `create_many` shares between its items: checked once per call."""
    check_type(c.type)
    check_active_state(c.state)
    check_bool(c.idempotent, "idempotent")
    if c.max_active_ms is not None:
        check_int(c.max_active_ms, "max_active_ms", 1, MAX_ACTIVE_MS)
    if c.retention_ms is not None:
        check_int(c.retention_ms, "retention_ms", 0, MAX_ACTIVE_MS)


def validate_create_item(c: Create) -> None:
    """The parts each item of a create request carries itself."""
    check_id(c.id)
    if c.payload is not None:
        c.payload = check_blob(c.payload, "payload")
    if c.partition is not None:
        check_name(c.partition, "partition_key")
    if c.run_at is not None:
        check_int(c.run_at, "run_at_ms", 0, MAX_TIME_MS)
    check_int(c.priority, "priority", 0, 2)
    if c.values is not None:
        c.values = check_values(c.values)
    if c.attributes is not None:
        c.attributes = check_attributes(c.attributes)
    if c.parent_id is not None:
        check_id(c.parent_id, "parent_id")
    if c.root_id is not None:
        check_id(c.root_id, "root_id")
    if c.correlation_id is not None:
        check_id(c.correlation_id, "correlation_id")


# -- helpers ----------------------------------------------------------------------------


_DIGEST_HEADS: dict[tuple[Any, ...], bytes] = {}


def _create_digest(c: Create) -> int:
    """Digest of what an idempotent create must repeat exactly (one format, one hash).

    The formatted head is memoised by its fields: a batch repeats one type, state and
    options, and formatting nine fields cost ~1 us per created flow. (Validation has
    rejected bools, so 1 and True never share a key.)"""
    key = (
        c.type,
        c.state,
        c.partition,
        c.parent_id,
        c.root_id,
        c.correlation_id,
        c.priority,
        c.max_active_ms,
        c.retention_ms,
    )
    head = _DIGEST_HEADS.get(key)
    if head is None:
        if len(_DIGEST_HEADS) >= 4096:
            _DIGEST_HEADS.clear()
        head = _DIGEST_HEADS[key] = (
            f"{c.type}\0{c.state}\0{c.partition}\0{c.parent_id}\0{c.root_id}\0"
            f"{c.correlation_id}\0{c.priority}\0{c.max_active_ms}\0{c.retention_ms}\0"
        ).encode()
    return xxhash.xxh64_intdigest(head + c.payload if c.payload is not None else head)


def _values_meta(record: Record, values: dict[str, bytes] | None) -> dict[str, list[int]] | None:
    current: dict[str, list[int]] | None = record[VALUES]
    if not values:
        return current
    merged = dict(current or {})
    for name, data in values.items():
        merged[name] = [xxhash.xxh64_intdigest(data), len(data)]
    return merged


def _new_values_meta(values: Mapping[str, bytes] | None) -> dict[str, list[int]] | None:
    """The `values` field of a new record that gets `values`."""
    if not values:
        return None
    return {name: [xxhash.xxh64_intdigest(data), len(data)] for name, data in values.items()}


def check_tokens(fencing: object, lease_token: object, *, optional: bool = False) -> None:
    """Type-check the tokens a fenced command presents (before any guard compares them)."""
    if not (optional and fencing is None):
        check_int(fencing, "fencing_token", 0, MAX_TIME_MS)
    if lease_token is not None and not isinstance(lease_token, str):
        raise InvalidArgument("lease_token must be a string or None")


def _require(state: ShardState, flow_id: str) -> Record:
    record = state.get(flow_id)
    if record is None:
        raise FlowNotFound(f"flow {flow_id!r} not found")
    return record


def _check_lease(r: Record, fencing: int, lease_token: str | None, *, command: str) -> None:
    """The lifecycle's guards for `command` (see `_lifecycle`: written once, there)."""
    lifecycle.check(lifecycle.RULES[command], r, fencing, lease_token)


# What every move of a flow sets (claim, close, transition): state, version, lease, due.
_MOVE_FIELDS = (
    "state",
    "run_state",
    "version",
    "lease_owner",
    "lease_token",
    "lease_deadline",
    "next_run_at",
    "updated_at",
    "last_event",
)
_CLOSE = evolver(
    *_MOVE_FIELDS,
    "retention_until",
    optional=("values", "result_ver", "error_ver", "fencing"),
)


def _terminal(
    r: Record,
    state: str,
    now: int,
    config: Config,
    *,
    last_event: str,
    values: Any = KEEP,
    result_ver: Any = KEEP,
    error_ver: Any = KEEP,
    fencing: Any = KEEP,
    **extra: Any,
) -> Record:
    """`r` closed in terminal `state`: lease and due time dropped, retention set; any
    `extra` field (a rewind's, a group's ext) is applied through the generic `evolve`."""
    retention = r[RETENTION_MS]
    if retention is None:
        # (no policy acting on writes: no layer sets it, skip the cached lookup's key build)
        retention = (
            config.setting("retention_ms", r[TYPE], state) if r[TYPE] in config.settled else None
        )
        if retention is None:
            retention = config.default_retention_ms
    new = _CLOSE(
        r,
        state=state,
        run_state=None,
        version=r[VERSION] + 1,
        lease_owner=None,
        lease_token=None,
        lease_deadline=None,
        next_run_at=None,
        updated_at=now,
        retention_until=min(now + retention, MAX_TIME_MS),
        last_event=last_event,
        values=values,
        result_ver=result_ver,
        error_ver=error_ver,
        fencing=fencing,
    )
    return evolve(new, **extra) if extra else new


# -- decisions --------------------------------------------------------------------------


def decide_create(
    state: ShardState, c: Create, now: int, config: Config | None = None
) -> tuple[Record, list[Write]]:
    record = _created(state, c, now)
    if record is None:
        return state.records[c.id], []
    blobs = {"p": c.payload} if c.payload is not None else None
    return record, [Write(record, "created", None, blobs, dict(c.values) if c.values else None)]


def _created(state: ShardState, c: Create, now: int) -> Record | None:
    """The new record `c` creates; None when `c` repeats the create of an existing flow
    idempotently (nothing to write); FlowExists / IdempotencyConflict otherwise."""
    digest = _create_digest(c)
    existing = state.get(c.id)
    if existing is not None:
        if not c.idempotent:
            raise FlowExists(f"flow {c.id!r} already exists")
        if existing[CREATE_DIGEST] != digest or existing[PARTITION] != c.partition:
            raise IdempotencyConflict(f"flow {c.id!r} exists with a different create request")
        return None
    version = 1
    payload = c.payload
    # A tuple display in FIELDS order, not `make_record(**...)`: matching 27 keywords
    # cost ~1.7 us per created flow, this ~0.1 us (tests compare the two).
    record: Record = (
        c.id,  # id
        c.type,  # type
        c.state,  # state
        None,  # run_state
        version,  # version
        0,  # attempts
        0,  # reclaims
        0,  # fencing
        None,  # lease_owner
        None,  # lease_token
        None,  # lease_deadline
        now,  # created_at
        now,  # updated_at
        c.run_at if c.run_at is not None else now,  # next_run_at
        c.priority,  # priority
        c.partition,  # partition
        version if payload is not None else 0,  # payload_ver
        len(payload) if payload is not None else 0,  # payload_size
        0,  # result_ver
        0,  # error_ver
        _new_values_meta(c.values),  # values
        c.attributes,  # attributes
        c.parent_id,  # parent_id
        c.root_id if c.root_id not in (None, c.id) else None,  # root_id
        c.correlation_id,  # correlation_id
        1,  # hist_floor
        now + c.max_active_ms if c.max_active_ms is not None else None,  # active_deadline
        None,  # retention_until
        c.retention_ms,  # retention_ms
        digest,  # create_digest
        "created",  # last_event
        None,  # ext
    )
    return record


def decide_create_run(
    state: ShardState, items: Sequence[Create], now: int
) -> tuple[list[Record | FlowError], Writes | None]:
    """Single creates that arrived together (`Shard` coalesces them), decided as each would
    be alone, in order: `results[i]` is the new record, the existing one (an idempotent
    repeat, nothing written) or the item's FlowError (only that item fails). The new records
    travel as one `Writes` run. The caller guarantees distinct ids, no named values, no
    parent and no policy of its type acting on writes, so no item can see another's effect
    and nothing needs coordination (tests compare this with `decide_create`)."""
    results: list[Record | FlowError] = []
    run: list[Record] = []
    blobs: list[dict[str, bytes] | None] = []
    any_blob = False
    for item in items:
        try:
            record = _created(state, item, now)
        except FlowError as exc:
            results.append(exc)
            continue
        if record is None:  # an idempotent repeat
            results.append(state.records[item.id])
            continue
        results.append(record)
        run.append(record)
        if item.payload is None:
            blobs.append(None)
        else:
            blobs.append({"p": item.payload})
            any_blob = True
    if not run:
        return results, None
    return results, Writes(run, "created", None, None, blobs if any_blob else None)


def decide_create_many(
    state: ShardState, cm: CreateMany, now: int, config: Config | None = None
) -> Decision:
    """All or nothing: any failing item fails the whole (per-shard) batch. New flows
    without named values travel as one `Writes` run (payloads as its blobs); an
    idempotent repeat writes nothing, as in `decide_create`."""
    seen: set[str] = set()
    results: list[Record] = []
    mutations: list[Mutation] = []
    run: list[Record] = []
    blobs: list[dict[str, bytes] | None] = []
    any_blob = False
    settled = config.settled if config is not None else ()
    for item in cm.items:
        if item.id in seen:
            raise InvalidArgument(f"duplicate id {item.id!r} in one create_many batch")
        seen.add(item.id)
        record = _created(state, item, now)
        if record is None:  # an idempotent repeat
            results.append(state.records[item.id])
            continue
        results.append(record)
        payload = item.payload
        if not item.values and item.type not in settled:
            run.append(record)
            if payload is None:
                blobs.append(None)
            else:
                blobs.append({"p": payload})
                any_blob = True
        else:
            blob = {"p": payload} if payload is not None else None
            values = dict(item.values) if item.values else None
            mutations.append(Write(record, "created", None, blob, values))
    if run:
        mutations.append(Writes(run, "created", None, None, blobs if any_blob else None))
    return results, mutations


def claimed_at_creation(r: Record, worker: str, lease_ms: int, now: int) -> Record:
    """A new record `r` as `worker`'s first claim of it at `now` would leave it (the
    same fields as `decide_claim`'s), still at version 1: created and claimed by one
    event (`Engine.transition_claiming`)."""
    fencing = r[FENCING] + 1
    deadline = now + lease_ms
    claimed = _CLAIMED(
        r, RUNNING, r[STATE], r[VERSION], fencing, worker, f"{worker}:{now}:{fencing}",
        deadline, deadline, now,
    )  # fmt: skip
    return evolve(claimed, last_event="created")


def _expired_active(r: Record, now: int) -> bool:
    return r[ACTIVE_DEADLINE] is not None and now >= r[ACTIVE_DEADLINE] and not terminal(r)


def _timeout(r: Record, now: int, config: Config) -> Write:
    # fencing + 1: whoever held the lease must not be able to "replay" an outcome now.
    rec = _terminal(
        r,
        FAILED,
        now,
        config,
        error_ver=r[VERSION] + 1,
        fencing=r[FENCING] + 1,
        last_event="failed",
    )
    error = b"max_active_ms exceeded"
    return Write(rec, "failed", {"reason": "max_active_ms"}, {"e": error})


_CLAIM = evolver(*_MOVE_FIELDS, "reclaims", "fencing")
# A first claim (not a reclaim), positionally: the batch path of `decide_claim`.
_CLAIMED = evolver(
    "state",
    "run_state",
    "version",
    "fencing",
    "lease_owner",
    "lease_token",
    "lease_deadline",
    "next_run_at",
    "updated_at",
    positional=True,
    fixed={"last_event": "claimed"},
)


def decide_claim(state: ShardState, c: Claim, now: int, config: Config) -> Decision:
    """Claim up to `limit` due flows of one type, reclaiming expired leases as asked.

    First claims of flows whose active deadline (if any) is not yet due, of a type with no
    policy acting on writes and a whole history, are built inline and written as one
    `Writes` run (shared meta); reclaims and timeouts go through `take`, one `Write` each.
    Both build the same record (tests compare them)."""
    claimed: list[Record] = []
    mutations: list[Mutation] = []
    taken: set[str] = set()
    lease_deadline = now + c.lease_ms
    claimed_meta = {"worker": c.worker}  # shared by this call's claims, never changed
    run: list[Record] = []

    def take(r: Record, reclaim: bool) -> None:
        taken.add(r[ID])
        if _expired_active(r, now):
            mutations.append(_timeout(r, now, config))
            return
        if reclaim:
            policy = config.policy_for(r[TYPE], r[RUN_STATE])
            if r[RECLAIMS] + 1 > policy.max_reclaims:
                mutations.append(_exhaust_reclaims(r, now, config, policy))
                return
        fencing = r[FENCING] + 1
        new = _CLAIM(
            r,
            state=RUNNING,
            run_state=r[RUN_STATE] if reclaim else r[STATE],
            version=r[VERSION] + 1,
            reclaims=r[RECLAIMS] + 1 if reclaim else r[RECLAIMS],
            fencing=fencing,
            lease_owner=c.worker,
            lease_token=f"{c.worker}:{now}:{fencing}",
            lease_deadline=lease_deadline,
            next_run_at=lease_deadline,
            updated_at=now,
            last_event="reclaimed" if reclaim else "claimed",
        )
        if reclaim:
            meta = {"worker": c.worker, "previous_owner": r[LEASE_OWNER]}
            mutations.append(Write(new, "reclaimed", meta))
        else:
            mutations.append(Write(new, "claimed", claimed_meta))
        claimed.append(new)

    def reclaim_up_to(n: int) -> None:
        if n <= 0 or not c.reclaim:
            return
        for _p, _due, fid in list(state.iter_due(c.type, RUNNING, now, c.priority, c.partition)):
            if len(claimed) >= c.limit or n <= 0:
                return
            r = state.records[fid]
            if fid in taken or (c.states is not None and r[RUN_STATE] not in c.states):
                continue
            take(r, reclaim=True)
            n -= 1

    if c.only_expired:
        reclaim_up_to(c.limit)
        return claimed, mutations

    if c.limit > 1:
        reclaim_up_to(-(-c.limit * c.reclaim_ratio // 100))
    states = c.states if c.states is not None else tuple(state.due_states(c.type))
    candidates: list[tuple[int, int, str]] = []
    want = c.limit - len(claimed)
    if want > 0:
        records = state.records
        part = c.partition
        for s in states:
            if s == RUNNING or s in TERMINAL:
                continue
            candidates.extend(islice(state.iter_due(c.type, s, now, c.priority, part), want))
        if len(states) > 1:
            candidates.sort()
        limit, worker = c.limit, c.worker
        batchable = c.type not in config.settled
        for _p, _due, fid in candidates:
            if len(claimed) >= limit:
                break
            if fid in taken:
                continue
            r = records[fid]
            if (
                batchable
                and (r[ACTIVE_DEADLINE] is None or now < r[ACTIVE_DEADLINE])
                and r[HIST_FLOOR] == 1
            ):
                fencing = r[FENCING] + 1
                new = _CLAIMED(
                    r,
                    RUNNING,
                    r[STATE],
                    r[VERSION] + 1,
                    fencing,
                    worker,
                    f"{worker}:{now}:{fencing}",
                    lease_deadline,
                    lease_deadline,
                    now,
                )
                run.append(new)
                claimed.append(new)
            else:
                take(r, reclaim=False)
    reclaim_up_to(c.limit - len(claimed))
    if run:
        mutations.append(Writes(run, "claimed", claimed_meta))
    return claimed, mutations


def _exhaust_reclaims(r: Record, now: int, config: Config, policy: RetryPolicy) -> Write:
    error = f"lease expired {r[RECLAIMS] + 1} times (max_reclaims {policy.max_reclaims})"
    meta = {"reason": "max_reclaims", "previous_owner": r[LEASE_OWNER]}
    # fencing + 1: the expired holder is locked out, as by any reclaim.
    fenced = evolve(r, fencing=r[FENCING] + 1)
    return _exhaust(fenced, policy.exhausted_to, now, config, error.encode(), "exhausted", meta)


def _exhaust(
    r: Record,
    target: str,
    now: int,
    config: Config,
    error: bytes | None,
    event: str,
    meta: dict[str, Any],
) -> Write:
    version = r[VERSION] + 1
    blobs = {"e": error} if error is not None else None
    error_ver = version if error is not None else r[ERROR_VER]
    if target in TERMINAL:
        rec = _terminal(r, target, now, config, error_ver=error_ver, last_event=event)
    else:
        rec = evolve(
            r,
            state=target,
            run_state=None,
            version=version,
            lease_owner=None,
            lease_token=None,
            lease_deadline=None,
            next_run_at=now,
            updated_at=now,
            error_ver=error_ver,
            last_event=event,
        )
    return Write(rec, event, meta, blobs)


def decide_extend(
    state: ShardState, c: ExtendLease, now: int, config: Config | None = None
) -> Decision:
    check_tokens(c.fencing, c.lease_token)
    r = _require(state, c.id)
    _check_lease(r, c.fencing, c.lease_token, command="extend_lease")
    deadline = now + c.lease_ms
    new = evolve(
        r,
        version=r[VERSION] + 1,
        lease_deadline=deadline,
        next_run_at=deadline,
        updated_at=now,
        last_event="lease_extended",
    )
    return new, [Write(new, "lease_extended", {"lease_deadline_ms": deadline})]


def _carried(
    r: Record, version: int, payload: bytes | None, attributes: Mapping[str, str] | None
) -> tuple[Any, Any, Any, dict[str, bytes] | None]:
    """What a move that carries a new payload and attributes changes: (payload_ver,
    payload_size, attributes, blobs), KEEP where it carries nothing."""
    payload_ver = payload_size = merged = KEEP
    blobs = None
    if payload is not None:
        payload_ver, payload_size = version, len(payload)
        blobs = {"p": payload}
    if attributes:
        merged = {**(r[ATTRIBUTES] or {}), **attributes}
    return payload_ver, payload_size, merged, blobs


_STEP_CONTINUED = evolver(
    *_MOVE_FIELDS,
    "fencing",
    "values",
    optional=("payload_ver", "payload_size", "attributes"),
)


def decide_step_continue(state: ShardState, c: StepContinue, now: int, config: Config) -> Decision:
    """The fused "store this step, do the next one now" of a lease holder: what a
    transition to `to_state` followed by a claim by the same worker would do, in one
    event (fencing + 1 and a new lease token, so the old token is stale from here on)."""
    check_tokens(c.fencing, c.lease_token)
    r = _require(state, c.id)
    _check_lease(r, c.fencing, c.lease_token, command="step_continue")
    if c.from_state is not None and r[RUN_STATE] != c.from_state:
        raise WrongState(f"flow {r[ID]!r} is at step {r[RUN_STATE]!r}, not {c.from_state!r}")
    if _expired_active(r, now):
        error = FlowTerminal(f"flow {r[ID]!r} exceeded max_active_ms and has failed")
        return error, [_timeout(r, now, config)]
    version = r[VERSION] + 1
    fencing = r[FENCING] + 1
    worker = c.worker if c.worker is not None else r[LEASE_OWNER]
    deadline = now + c.lease_ms
    payload_ver, payload_size, attributes, blobs = _carried(r, version, c.payload, c.attributes)
    to_state = c.to_state if c.to_state is not None else r[RUN_STATE]
    values = dict(c.values) if c.values else None
    new = _STEP_CONTINUED(
        r,
        state=RUNNING,
        run_state=to_state,
        version=version,
        fencing=fencing,
        lease_owner=worker,
        lease_token=f"{worker}:{now}:{fencing}",
        lease_deadline=deadline,
        next_run_at=deadline,
        updated_at=now,
        values=_values_meta(r, values),
        last_event="step_continued",
        payload_ver=payload_ver,
        payload_size=payload_size,
        attributes=attributes,
    )
    meta = {"from": r[RUN_STATE], "to": to_state, "worker": worker}
    return new, [Write(new, "step_continued", meta, blobs, values)]


_TRANSITION = evolver(
    *_MOVE_FIELDS,
    "priority",
    "values",
    optional=("payload_ver", "payload_size", "attributes"),
)


def decide_transition(
    state: ShardState, c: Transition, now: int, config: Config | None = None
) -> Decision:
    check_tokens(c.fencing, c.lease_token)
    r = _require(state, c.id)
    if (
        r[STATE] == c.to_state
        and r[FENCING] == c.fencing
        and not leased(r)
        and r[LAST_EVENT] == "transitioned"
    ):
        return r, []  # exact replay
    _check_lease(r, c.fencing, c.lease_token, command="transition")
    if r[STATE] != c.from_state:
        raise WrongState(f"flow {r[ID]!r} is {r[STATE]!r}, not {c.from_state!r}")
    version = r[VERSION] + 1
    payload_ver, payload_size, attributes, blobs = _carried(r, version, c.payload, c.attributes)
    new = _TRANSITION(
        r,
        state=c.to_state,
        run_state=None,
        version=version,
        lease_owner=None,
        lease_token=None,
        lease_deadline=None,
        next_run_at=c.run_at if c.run_at is not None else now,
        priority=c.priority if c.priority is not None else r[PRIORITY],
        updated_at=now,
        values=_values_meta(r, dict(c.values) if c.values else None),
        last_event="transitioned",
        payload_ver=payload_ver,
        payload_size=payload_size,
        attributes=attributes,
    )
    meta = {"from": r[RUN_STATE] if r[STATE] == RUNNING else r[STATE], "to": c.to_state}
    values = dict(c.values) if c.values else None
    return new, [Write(new, "transitioned", meta, blobs, values)]


def _finish(
    state: ShardState,
    flow_id: str,
    fencing: int,
    lease_token: str | None,
    target: str,
    data_key: str,
    data: bytes | None,
    values: Mapping[str, bytes] | None,
    now: int,
    config: Config,
) -> Decision:
    check_tokens(fencing, lease_token)
    r = _require(state, flow_id)
    if r[STATE] == target and r[FENCING] == fencing:
        return r, []  # exact replay
    _check_lease(r, fencing, lease_token, command="complete" if target == COMPLETED else "fail")
    if _expired_active(r, now):
        timeout = _timeout(r, now, config)
        error = FlowTerminal(f"flow {r[ID]!r} exceeded max_active_ms and has failed")
        return error, [timeout]  # the failure is written; the caller hears the error
    version = r[VERSION] + 1
    vals = dict(values) if values else None
    new = _terminal(
        r,
        target,
        now,
        config,
        last_event=target,
        values=_values_meta(r, vals),
        result_ver=version if data is not None and data_key == "r" else KEEP,
        error_ver=version if data is not None and data_key == "e" else KEEP,
    )
    blobs = {data_key: data} if data is not None else None
    return new, [Write(new, target, {"from": r[RUN_STATE]}, blobs, vals)]


def decide_complete(state: ShardState, c: Complete, now: int, config: Config) -> Decision:
    return _finish(
        state, c.id, c.fencing, c.lease_token, COMPLETED, "r", c.result, c.values, now, config
    )


def decide_fail(state: ShardState, c: Fail, now: int, config: Config) -> Decision:
    return _finish(
        state, c.id, c.fencing, c.lease_token, FAILED, "e", c.error, c.values, now, config
    )


# What a flow's lease holder lets go of when it closes or moves the flow on.
_UNLEASED = {"run_state": None, "lease_owner": None, "lease_token": None, "lease_deadline": None}

# A flow closed by its lease holder (complete / fail), positionally: a batch builds one per
# item, and its lease and due fields always go to None.
_FINISHED = evolver(
    "state",
    "version",
    "updated_at",
    "retention_until",
    "last_event",
    "result_ver",
    "error_ver",
    positional=True,
    fixed={**_UNLEASED, "next_run_at": None},
)


def decide_finish_run(
    state: ShardState, c: FinishMany, now: int, config: Config
) -> tuple[list[Any], Writes | None, list[int]]:
    """The batch path of `complete_many` / `fail_many`: `(results, run, slow)`.

    Every item that is a first outcome of a flow running under the lease it presents, with
    nothing else to it (no values, no max_active_ms, no coordination data, no policy acting
    on writes of its type, a whole history: the common case) is decided here, all of them
    together: `results[i]` is `(id, new record, None)` and the records travel in one
    `Writes` run. The indices of the others are `slow` (their `results[i]` None): the shard
    decides those one by one as `Complete` / `Fail` after applying the run, so each sees the
    state the earlier items left, exactly as the per-item path would. An id that appears
    twice goes the slow way at every occurrence, so its items keep their order. A slow item
    cannot touch a run's record: what coordination changes besides the item's own flow (a
    parent, its fanout children) holds `ext`, which keeps a flow out of the run.

    Tests compare this path with the per-item one (`test_batch_paths.py`)."""
    items = c.items
    settled = config.settled
    target = c.target
    data_is_result = target == COMPLETED
    dup = _duplicates(items)
    get = state.records.get
    default_retention = config.default_retention_ms
    results: list[Any] = []
    records: list[Record] = []
    metas: list[dict[str, Any] | None] = []
    blobs: list[dict[str, bytes] | None] = []
    any_blob = False
    slow: list[int] = []
    froms: dict[Any, dict[str, Any]] = {}  # run_state -> its shared {"from": run_state}
    for i, item in enumerate(items):
        fid, token, fencing, data = item[0], item[1], item[2], item[3]
        r = get(fid) if type(fid) is str and fid not in dup else None
        if (
            r is None
            or type(token) is not str
            or type(fencing) is not int
            or not holds_lease(r, fencing, token)  # leased: running, hence not terminal
            or r[ACTIVE_DEADLINE] is not None
            or r[EXT] is not None
            or r[HIST_FLOOR] != 1
            or (settled and r[TYPE] in settled)
            or (data is not None and type(data) is not bytes)
            or (len(item) > 5 and item[5])  # values: the per-item path stores them
        ):
            results.append(None)
            slow.append(i)
            continue
        version = r[VERSION] + 1
        retention = r[RETENTION_MS]
        if retention is None:
            retention = default_retention
        if data is None:
            result_ver, error_ver = r[RESULT_VER], r[ERROR_VER]
            blobs.append(None)
        else:
            any_blob = True
            if data_is_result:
                result_ver, error_ver = version, r[ERROR_VER]
                blobs.append({"r": data})
            else:
                result_ver, error_ver = r[RESULT_VER], version
                blobs.append({"e": data})
        new = _FINISHED(
            r,
            target,
            version,
            now,
            min(now + retention, MAX_TIME_MS),
            target,
            result_ver,
            error_ver,
        )
        run_state = r[RUN_STATE]
        meta = froms.get(run_state)
        if meta is None:
            meta = froms[run_state] = {"from": run_state}
        metas.append(meta)
        records.append(new)
        results.append((fid, new, None))
    run = Writes(records, target, None, metas, blobs if any_blob else None) if records else None
    return results, run, slow


def _duplicates(items: list[Any]) -> set[Any]:
    """Ids that appear more than once among batch items (non-text ids are left out: the
    per-item path words their error)."""
    seen: set[Any] = set()
    dup: set[Any] = set()
    for item in items:
        fid = item[0]
        if type(fid) is not str:
            continue
        if fid in seen:
            dup.add(fid)
        seen.add(fid)
    return dup


# A leased flow moved on by its lease holder, positionally (`decide_transition_run`).
_MOVED = evolver(
    "state",
    "version",
    "next_run_at",
    "updated_at",
    positional=True,
    fixed={**_UNLEASED, "last_event": "transitioned"},
)


def decide_transition_run(
    state: ShardState, c: TransitionMany, now: int, config: Config
) -> tuple[list[Any], Writes | None, list[int]]:
    """The batch path of `transition_many`, as `decide_finish_run` is of outcomes: every
    item that moves a flow running under the lease it presents out of `running` (under no
    policy acting on writes of its type, a whole history) is decided here, together; the
    indices of the others are returned for the per-item path (`Transition`). Tests compare
    both paths."""
    items = c.items
    n = len(items)
    if c.from_state != RUNNING:
        return [None] * n, None, list(range(n))
    settled = config.settled
    dup = _duplicates(items)
    get = state.records.get
    to_state = c.to_state
    due = c.run_at if c.run_at is not None else now
    results: list[Any] = []
    records: list[Record] = []
    metas: list[dict[str, Any] | None] = []
    slow: list[int] = []
    froms: dict[Any, dict[str, Any]] = {}  # run_state -> its shared meta
    for i, item in enumerate(items):
        fid, token, fencing = item[0], item[1], item[2]
        r = get(fid) if type(fid) is str and fid not in dup else None
        if (
            r is None
            or type(token) is not str
            or type(fencing) is not int
            or not holds_lease(r, fencing, token)  # a leased record is running
            or r[HIST_FLOOR] != 1
            or (settled and r[TYPE] in settled)
        ):
            results.append(None)
            slow.append(i)
            continue
        new = _MOVED(r, to_state, r[VERSION] + 1, due, now)
        run_state = r[RUN_STATE]
        meta = froms.get(run_state)
        if meta is None:
            meta = froms[run_state] = {"from": run_state, "to": to_state}
        metas.append(meta)
        records.append(new)
        results.append((fid, new, None))
    run = Writes(records, "transitioned", None, metas) if records else None
    return results, run, slow


def decide_retry(state: ShardState, c: Retry, now: int, config: Config) -> Decision:
    check_tokens(c.fencing, c.lease_token)
    r = _require(state, c.id)
    if r[FENCING] == c.fencing and not leased(r) and r[LAST_EVENT] in ("retry", "exhausted"):
        return r, []  # exact replay
    _check_lease(r, c.fencing, c.lease_token, command="retry")
    policy = config.policy_for(r[TYPE], r[RUN_STATE])
    max_retries = c.max_retries if c.max_retries is not None else policy.max_retries
    exhausted_to = c.exhausted_to if c.exhausted_to is not None else policy.exhausted_to
    attempts = r[ATTEMPTS] + 1
    version = r[VERSION] + 1
    blobs: dict[str, bytes] = {}
    changes: dict[str, Any] = {"attempts": attempts}
    if c.error is not None:
        blobs["e"] = c.error
        changes["error_ver"] = version
    if c.payload is not None:
        blobs["p"] = c.payload
        changes.update(payload_ver=version, payload_size=len(c.payload))
    if attempts <= max_retries:
        due = c.run_at if c.run_at is not None else now + backoff_delay_ms(policy, r[ID], attempts)
        new = evolve(
            r,
            state=r[RUN_STATE] or "queued",
            run_state=None,
            version=version,
            lease_owner=None,
            lease_token=None,
            lease_deadline=None,
            next_run_at=due,
            updated_at=now,
            last_event="retry",
            **changes,
        )
        meta = {"decision": "scheduled", "attempt": attempts, "next_run_at_ms": due}
        return new, [Write(new, "retry", meta, blobs or None)]
    meta = {"decision": "exhausted", "attempt": attempts, "exhausted_to": exhausted_to}
    write = _exhaust(evolve(r, **changes), exhausted_to, now, config, c.error, "exhausted", meta)
    if blobs:
        write.blobs = blobs  # the error and, when given, the new payload
    return write.record, [write]


def decide_cancel(state: ShardState, c: Cancel, now: int, config: Config) -> Decision:
    check_tokens(c.fencing, c.lease_token, optional=True)
    r = _require(state, c.id)
    if terminal(r):
        raise FlowTerminal(f"flow {r[ID]!r} is {r[STATE]}; rewind it to change it")
    if not c.force:
        if c.fencing is not None and c.fencing != r[FENCING]:
            raise StaleLease(
                f"flow {r[ID]!r}: fencing token {c.fencing} is stale (current {r[FENCING]})"
            )
        if leased(r) and c.lease_token != r[LEASE_TOKEN]:
            raise StaleLease(f"flow {r[ID]!r} is running; cancelling it needs its lease token")
        if not leased(r) and c.lease_token is not None:
            raise StaleLease(f"flow {r[ID]!r} holds no lease; its lease token is stale")
    version = r[VERSION] + 1
    changes: dict[str, Any] = {}
    blobs = None
    if c.reason is not None:
        changes["error_ver"] = version
        blobs = {"e": c.reason}
    new = _terminal(r, CANCELLED, now, config, last_event="cancelled", **changes)
    return new, [Write(new, "cancelled", {"forced": c.force} if c.force else None, blobs)]


def decide_put_value(
    state: ShardState, c: PutValue, now: int, config: Config | None = None
) -> Decision:
    r = _require(state, c.id)
    digest = xxhash.xxh64_intdigest(c.data)
    current = (r[VALUES] or {}).get(c.name)
    if current is not None and current[0] == digest:
        return r, []
    if current is not None and not c.override:
        raise IdempotencyConflict(
            f"flow {r[ID]!r}: value {c.name!r} exists with a different digest (use override)"
        )
    values = {c.name: c.data}
    new = evolve(
        r,
        version=r[VERSION] + 1,
        updated_at=now,
        values=_values_meta(r, values),
        last_event="value_put",
    )
    return new, [Write(new, "value_put", {"name": c.name}, None, values)]


def _decide_read(state: ShardState, c: Read, now: int, config: Config | None = None) -> Decision:
    return state.get(c.id), []


# Exact command type -> its decision (one dict lookup instead of an isinstance chain; every
# decider takes `config`, used or not).
DECIDERS: dict[type, Any] = {
    Claim: decide_claim,
    Complete: decide_complete,
    Create: decide_create,
    CreateMany: decide_create_many,
    Retry: decide_retry,
    Fail: decide_fail,
    Transition: decide_transition,
    ExtendLease: decide_extend,
    StepContinue: decide_step_continue,
    Cancel: decide_cancel,
    PutValue: decide_put_value,
    Read: _decide_read,
}


def decide(state: ShardState, command: Command, now: int, config: Config) -> Decision:
    """Dispatch one command. Raises a `FlowError` (and decides nothing) on bad input."""
    decider = DECIDERS.get(type(command))
    if decider is None:
        raise InvalidArgument(f"unknown command {type(command).__name__}")
    decision: Decision = decider(state, command, now, config)
    return decision
