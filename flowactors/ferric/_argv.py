# Theory of operation: FerricStore's SDK speaks in argv vectors, `("FLOW.X", positional...,
# OPTION value..., ITEMS ...)`, whose values are str, bytes or int (booleans as the words
# true/false). `Argv` walks one vector: positionals first, then options by a table of
# widths (how many values follow each option name), up to an item marker. Repeated options
# are kept in order. Anything the table does not know, a missing value, or a value of the
# wrong kind is refused with a `CommandError` whose text carries the substrings the SDK's
# error classifier looks for ("syntax error", "wrong number of arguments"), so the SDK raises
# its own InvalidCommandError; nothing reaches the engine.
#
# Partition keys: FerricStore puts flows created without a partition key in one of 256
# "auto" partitions, `__flow_auto__:<crc32(id) % 256>`, and its SDK insists that claimed jobs
# carry one (batch acks are grouped by it). flowactors keeps such flows with no partition
# key, so replies name the auto partition and commands naming one are routed without a key.

from __future__ import annotations

import zlib
from collections.abc import Iterator, Sequence
from typing import Any

import flowactors as fa

AUTO_PREFIX = "__flow_auto__:"
AUTO_ANY = "__flow_auto__"
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}
ITEM_MARKERS = frozenset({"ITEMS", "ITEMS_EXT", "ITEMS_EXT_V2"})


class CommandError(fa.FlowError):
    """A command refused by the executor; its text starts with `ERR ` like a server's, so
    the SDK classifies it by substring (not found, wrong state, stale flow lease, ...)."""

    def __init__(self, message: str) -> None:
        super().__init__(message if message.startswith("ERR ") else f"ERR {message}")


def syntax(message: str) -> CommandError:
    return CommandError(f"ERR syntax error: {message}")


def auto_partition(flow_id: str) -> str:
    """FerricStore's auto partition of a flow created without a partition key."""
    return f"{AUTO_PREFIX}{zlib.crc32(flow_id.encode()) % 256}"


def text(value: Any, what: str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, (bytes, bytearray)):
        try:
            return bytes(value).decode()
        except UnicodeDecodeError as exc:
            raise syntax(f"{what} must be UTF-8 text") from exc
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise syntax(f"{what} must be text, not {type(value).__name__}")


def blob(value: Any, what: str) -> bytes:
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value).encode()
    raise syntax(f"{what} must be bytes, not {type(value).__name__}")


def integer(value: Any, what: str) -> int:
    if isinstance(value, bool):
        raise syntax(f"{what} must be an integer")
    if isinstance(value, int):
        return value
    try:
        return int(text(value, what))
    except ValueError as exc:
        raise syntax(f"{what} must be an integer, not {value!r}") from exc


def boolean(value: Any, what: str) -> bool:
    if isinstance(value, bool):
        return value
    word = text(value, what).lower()
    if word in _TRUE:
        return True
    if word in _FALSE:
        return False
    raise syntax(f"{what} must be true or false, not {word!r}")


def partition(value: Any) -> str | None:
    """The engine's partition key for a wire partition (None: auto-partitioned)."""
    if value is None:
        return None
    key = text(value, "PARTITION")
    if key.startswith(AUTO_PREFIX) or key in (AUTO_ANY, "GLOBAL", "AUTO"):
        return None
    return key


def lease(value: Any) -> str | None:
    if value is None:
        return None
    token = text(value, "lease token")
    return None if token in ("", "-") else token


# Option name -> number of values after it. Commands that read (claims, GET) take `VALUE
# name` and a bare `PAYLOAD`; commands that write take `VALUE name bytes` and `PAYLOAD b`.
_ONE_VALUE = (
    "TYPE",
    "STATE",
    "NOW",
    "PARTITION",
    "PAYLOAD",
    "PAYLOAD_REF",
    "RUN_AT",
    "PRIORITY",
    "PARENT_FLOW_ID",
    "ROOT_FLOW_ID",
    "CORRELATION_ID",
    "RETENTION_TTL",
    "RETENTION_TTL_MS",
    "MAX_ACTIVE_MS",
    "HISTORY_MAX_EVENTS",
    "HISTORY_HOT_MAX_EVENTS",
    "IDEMPOTENT",
    "INDEPENDENT",
    "RETURN",
    "WORKER",
    "LEASE_MS",
    "LIMIT",
    "BLOCK",
    "MAXBYTES",
    "VALUE_MAX_BYTES",
    "RECLAIM_EXPIRED",
    "RECLAIM_RATIO",
    "FENCING",
    "LEASE_TOKEN",
    "RESULT",
    "ERROR",
    "TTL",
    "MAX_RETRIES",
    "EXHAUSTED_TO",
    "REASON",
    "REASON_REF",
    "TO_EVENT",
    "EXPECT_STATE",
    "SIGNAL",
    "IF_STATE",
    "TRANSITION_TO",
    "IDEMPOTENCY",
    "IDEMPOTENCY_KEY",
    "DROP_VALUE",
    "OVERRIDE_VALUE",
    "ATTRIBUTE_DELETE",
    "OWNER_FLOW_ID",
    "NAME",
    "OVERRIDE",
    "TTL_MS",
    "MAX_BYTES",
    "COUNT",
    "FROM_EVENT",
    "FROM_MS",
    "TO_MS",
    "FROM_VERSION",
    "TO_VERSION",
    "REV",
    "EVENT",
    "INCLUDE_COLD",
    "CONSISTENT_PROJECTION",
    "VALUES",
    "PAYLOAD_MAX_BYTES",
    "GROUP",
    "WAIT",
    "WAIT_STATE",
    "SUCCESS",
    "FAILURE",
    "FROM_STATE",
    "ON_CHILD_FAILED",
    "ON_PARENT_CLOSED",
    "TERMINAL_LOCAL_ONLY",
    "BACKOFF",
    "BASE_MS",
    "MAX_MS",
    "JITTER_PCT",
    "EXPECTED_GENERATION",
    "REPLACE",
    "MODE",
    "INDEXED_ATTRIBUTES",
    "INDEXED_STATE_META",
    "OLDER_THAN",
    "TERMINAL_ONLY",
)
WIDTHS: dict[str, int] = {
    **dict.fromkeys(("NOPAYLOAD", "FULL"), 0),
    **dict.fromkeys(_ONE_VALUE, 1),
    **dict.fromkeys(("ATTRIBUTE", "ATTRIBUTE_MERGE", "STATE_META", "VALUE", "VALUE_REF"), 2),
}
READ_WIDTHS = {**WIDTHS, "VALUE": 1, "PAYLOAD": 0}


class Options:
    """Options of one command, in order; `one` takes the last of a repeated option."""

    def __init__(self, command: str) -> None:
        self.command = command
        self.seen: list[tuple[str, tuple[Any, ...]]] = []

    def add(self, name: str, values: tuple[Any, ...]) -> None:
        self.seen.append((name, values))

    def has(self, name: str) -> bool:
        return any(n == name for n, _ in self.seen)

    def all(self, name: str) -> list[tuple[Any, ...]]:
        return [v for n, v in self.seen if n == name]

    def one(self, name: str) -> Any:
        found = self.all(name)
        if not found:
            return None
        values = found[-1]
        return values[0] if len(values) == 1 else values

    def text(self, name: str) -> str | None:
        value = self.one(name)
        return None if value is None else text(value, name)

    def number(self, name: str) -> int | None:
        value = self.one(name)
        return None if value is None else integer(value, name)

    def flag(self, name: str) -> bool | None:
        value = self.one(name)
        return None if value is None else boolean(value, name)

    def blob(self, name: str) -> bytes | None:
        value = self.one(name)
        return None if value is None else blob(value, name)

    def names(self) -> set[str]:
        return {n for n, _ in self.seen}

    def refuse(self, *names: str) -> None:
        """Refuse options this executor parses but flowactors cannot honour."""
        for name in names:
            if self.has(name):
                raise syntax(f"{name} of {self.command} is not supported by flowactors")

    def pairs(self, name: str, what: str) -> dict[str, bytes]:
        return {text(k, what): blob(v, what) for k, v in self.all(name)}


class Argv:
    """A cursor over one command's arguments (the command name already taken off)."""

    def __init__(self, command: str, args: Sequence[Any]) -> None:
        self.command = command
        self.args = list(args)
        self.pos = 0

    def __len__(self) -> int:
        return len(self.args) - self.pos

    def take(self, what: str) -> Any:
        if self.pos >= len(self.args):
            raise CommandError(
                f"ERR wrong number of arguments for '{self.command}' command (missing {what})"
            )
        value = self.args[self.pos]
        self.pos += 1
        return value

    def text(self, what: str) -> str:
        return text(self.take(what), what)

    def number(self, what: str) -> int:
        return integer(self.take(what), what)

    def blob(self, what: str) -> bytes:
        return blob(self.take(what), what)

    def peek_word(self) -> str | None:
        if self.pos >= len(self.args):
            return None
        value = self.args[self.pos]
        if isinstance(value, (str, bytes)):
            try:
                return (value.decode() if isinstance(value, bytes) else value).upper()
            except UnicodeDecodeError:
                return None
        return None

    def options(
        self,
        widths: dict[str, int] = WIDTHS,
        *,
        allowed: set[str] | None = None,
        stop: frozenset[str] = ITEM_MARKERS,
        into: Options | None = None,
    ) -> Options:
        """Options up to the end or to a word in `stop` (left for the caller)."""
        opts = into if into is not None else Options(self.command)
        while self.pos < len(self.args):
            word = self.peek_word()
            if word is None:
                raise syntax(f"unexpected argument {self.args[self.pos]!r} in {self.command}")
            if word in stop:
                break
            if word == "PARTITIONS" and (allowed is None or word in allowed):
                self.pos += 1
                count = self.number("PARTITIONS count")
                opts.add(word, tuple(self.take("partition") for _ in range(count)))
                continue
            width = widths.get(word)
            if width is None or (allowed is not None and word not in allowed):
                raise syntax(f"unknown option {word} for {self.command}")
            self.pos += 1
            opts.add(word, tuple(self.take(f"{word} value") for _ in range(width)))
        return opts

    def rest(self) -> Iterator[Any]:
        while self.pos < len(self.args):
            yield self.take("item")

    def done(self) -> None:
        if self.pos < len(self.args):
            raise syntax(f"unexpected argument {self.args[self.pos]!r} in {self.command}")
