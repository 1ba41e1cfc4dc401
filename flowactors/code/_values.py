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


def check(value: Any, where: str) -> bool:
    """Raise UnstorableValue (with the path) unless `value` is plain CBOR data: None, bool,
    int, float, str, bytes, lists/tuples and dicts with str or int keys. Returns whether
    its canonical CBOR may differ from the plain encoding (see `digest`), found on the
    same walk."""
    try:
        return _plain(value, 0)
    except _Unusual:
        return _walk(value, where, 0)


class _Unusual(Exception):
    """`_plain` met something it does not judge: `_walk` judges it, and names the path."""


def _plain(value: Any, depth: int) -> bool:
    """`_walk` for values made of exactly the plain types, with no path strings built (every
    activity's arguments and result pass here); anything else raises _Unusual."""
    kind = type(value)
    if kind is str or kind is int or value is None or kind is bool or kind is bytes:
        return False
    if kind is float:
        return True
    if depth > MAX_DEPTH:
        raise _Unusual
    ordered = False
    if kind is list or kind is tuple:
        for item in value:
            t = type(item)
            if t is str or t is int or item is None or t is bool or t is bytes:
                continue
            if _plain(item, depth + 1):
                ordered = True
        return ordered
    if kind is dict:
        for key, item in value.items():
            t = type(key)
            if t is not str and t is not int:
                raise _Unusual
            t = type(item)
            if t is str or t is int or item is None or t is bool or t is bytes:
                continue
            if _plain(item, depth + 1):
                ordered = True
        return ordered or len(value) > 1
    raise _Unusual


def _walk(value: Any, path: str, depth: int) -> bool:
    """`check` of one value: whether it holds a float, a map of two or more keys, or a
    subclass of a plain type (the cases where canonical and plain CBOR may differ)."""
    kind = type(value)
    if value is None or kind is int or kind is str or kind is bool or kind is bytes:
        return False
    if isinstance(value, _SCALARS):
        return True  # a float (shortest exact width), or a subclass: canonical to be sure
    if depth > MAX_DEPTH:
        raise UnstorableValue(f"{path}: nested deeper than {MAX_DEPTH} levels", path)
    ordered = False
    if isinstance(value, list | tuple):
        for i, item in enumerate(value):
            ordered = _walk(item, f"{path}[{i}]", depth + 1) or ordered
        return ordered or (kind is not list and kind is not tuple)
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(key, bool) or not isinstance(key, str | int):
                raise UnstorableValue(
                    f"{path}: key {key!r} is a {type(key).__name__}; keys must be str or int",
                    path,
                )
            ordered = _walk(item, f"{path}[{key!r}]", depth + 1) or ordered
        return ordered or len(value) > 1 or kind is not dict
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


def digest(value: Any, canonical: bool | None = None) -> str:
    """16 hex digits of sha256 over the canonical CBOR of `value`. It is encoded plainly
    when that gives the same bytes: `canonical` is what `check` returned for it (its walk
    is not repeated); None walks it here."""
    if canonical is None:
        canonical = check(value, "value")
    data = cbor2.dumps(value, canonical=canonical)
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
