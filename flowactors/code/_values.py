# Values that cross the journal: inputs, activity arguments and results, signal payloads.
#
# They are stored as CBOR. `check` walks a value before anything is committed and refuses
# what CBOR cannot hold faithfully, naming the path to it (`input['items'][2]: a set`).
# Tuples are accepted and come back as lists. `encode` is canonical CBOR (sorted map keys),
# so two equal inputs give equal bytes: an idempotent start compares bytes. `digest` is the
# short hash that identifies an effect's arguments in the journal. Journal chunks and
# results are only decoded: `encode_plain` skips the canonical ordering.
from __future__ import annotations

import hashlib
from typing import Any

import cbor2

from ._errors import UnstorableValue

_SCALARS = (type(None), bool, int, float, str, bytes)
MAX_DEPTH = 64


def check(value: Any, where: str) -> None:
    """Raise UnstorableValue (with the path) unless `value` is plain CBOR data: None, bool,
    int, float, str, bytes, lists/tuples and dicts with str or int keys."""
    _walk(value, where, 0)


def _walk(value: Any, path: str, depth: int) -> None:
    if isinstance(value, _SCALARS):
        return
    if depth > MAX_DEPTH:
        raise UnstorableValue(f"{path}: nested deeper than {MAX_DEPTH} levels", path)
    if isinstance(value, list | tuple):
        for i, item in enumerate(value):
            _walk(item, f"{path}[{i}]", depth + 1)
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(key, bool) or not isinstance(key, str | int):
                raise UnstorableValue(
                    f"{path}: key {key!r} is a {type(key).__name__}; keys must be str or int",
                    path,
                )
            _walk(item, f"{path}[{key!r}]", depth + 1)
        return
    raise UnstorableValue(
        f"{path} is a {type(value).__name__}, which cannot be stored "
        "(use None, bool, int, float, str, bytes, lists and dicts)",
        path,
    )


def encode(value: Any) -> bytes:
    """Canonical CBOR: equal values, equal bytes (what is compared or hashed)."""
    return cbor2.dumps(value, canonical=True)


def encode_plain(value: Any) -> bytes:
    """CBOR in the encoder's own order, for what is only ever decoded (journal chunks,
    results): several times cheaper than canonical for maps."""
    return cbor2.dumps(value)


def decode(data: bytes | None) -> Any:
    return None if not data else cbor2.loads(data)


def _order_matters(value: Any) -> bool:
    """Whether canonical CBOR of `value` may differ from the plain encoding: only a map
    of two or more keys (sorted) or a float (shortest exact width) can make it differ;
    ints, strings, bytes, None, bools and lists encode the same either way."""
    kind = type(value)
    if kind is list or kind is tuple:
        return any(_order_matters(v) for v in value)
    if kind is dict:
        return len(value) > 1 or any(_order_matters(v) for v in value.values())
    return kind is float or not (
        value is None or kind is int or kind is str or kind is bool or kind is bytes
    )


def digest(value: Any) -> str:
    """16 hex digits of sha256 over the canonical CBOR of `value` (encoded plainly when
    that gives the same bytes, see `_order_matters`)."""
    data = cbor2.dumps(value, canonical=_order_matters(value))
    return hashlib.sha256(data).hexdigest()[:16]


# -- durations (milliseconds, like every time in flowactors) -----------------------------


def seconds(n: float) -> int:
    return int(n * 1000)


def minutes(n: float) -> int:
    return int(n * 60_000)


def hours(n: float) -> int:
    return int(n * 3_600_000)


def days(n: float) -> int:
    return int(n * 86_400_000)
