# The 18 intrinsic functions, as plain functions over JSON values (the call syntax is parsed in
# _paths). Any misuse at run time raises StatesError("States.IntrinsicFailure").
#
# Determinism: States.MathRandom (without its own seed) and States.UUID draw from a SHA-256 stream
# keyed by a seed string the interpreter supplies (execution id + event number + call ordinal),
# so replaying the same history reproduces the same values. No global randomness is touched.
from __future__ import annotations

import base64
import binascii
import hashlib
import json
import random
import uuid
from collections.abc import Callable
from typing import Any

from ._errors import StatesError
from ._paths import IntrinsicRunner, is_number, json_equal, json_type

_HASHES = {
    "MD5": "md5",
    "SHA-1": "sha1",
    "SHA-256": "sha256",
    "SHA-384": "sha384",
    "SHA-512": "sha512",
}


def _fail(name: str, why: str) -> StatesError:
    return StatesError("States.IntrinsicFailure", f"States.{name}: {why}")


def deterministic_bytes(seed: str, n: int) -> bytes:
    out = b""
    counter = 0
    while len(out) < n:
        out += hashlib.sha256(f"{seed}#{counter}".encode()).digest()
        counter += 1
    return out[:n]


def make_runner(seed: str) -> IntrinsicRunner:
    """A runner whose random draws come from `seed` (each call gets its own ordinal)."""
    ordinal = 0

    def run(name: str, args: list[Any]) -> Any:
        nonlocal ordinal
        ordinal += 1
        fn = _FUNCTIONS[name]
        return fn(args, f"{seed}/{ordinal}")

    return run


def _to_json(v: Any) -> str:
    return json.dumps(v, separators=(",", ":"), ensure_ascii=False)


def _format(args: list[Any], seed: str) -> Any:
    template, values = args[0], args[1:]
    if not isinstance(template, str):
        raise _fail("Format", "the template must be a string")
    out: list[str] = []
    used = 0
    i = 0
    while i < len(template):
        c = template[i]
        if c == "\\" and i + 1 < len(template):
            out.append(template[i + 1])
            i += 2
            continue
        if template.startswith("{}", i):
            if used >= len(values):
                raise _fail("Format", "more placeholders than arguments")
            v = values[used]
            if isinstance(v, dict | list):
                raise _fail("Format", f"cannot format a {json_type(v)}")
            out.append(v if isinstance(v, str) else _to_json(v))
            used += 1
            i += 2
            continue
        out.append(c)
        i += 1
    if used != len(values):
        raise _fail("Format", f"{len(values)} arguments for {used} placeholders")
    return "".join(out)


def _string_to_json(args: list[Any], seed: str) -> Any:
    s = _want_str("StringToJson", args[0])
    try:
        return json.loads(s)
    except ValueError as exc:
        raise _fail("StringToJson", f"not JSON: {exc}") from None


def _json_to_string(args: list[Any], seed: str) -> Any:
    return _to_json(args[0])


def _array(args: list[Any], seed: str) -> Any:
    return list(args)


def _want_list(name: str, v: Any) -> list[Any]:
    if not isinstance(v, list):
        raise _fail(name, f"expected an array, got {json_type(v)}")
    return v


def _want_int(name: str, v: Any) -> int:
    if not is_number(v) or not float(v).is_integer():
        raise _fail(name, f"expected an integer, got {json_type(v)} {v!r}")
    return int(v)


def _want_str(name: str, v: Any) -> str:
    if not isinstance(v, str):
        raise _fail(name, f"expected a string, got {json_type(v)}")
    return v


def _array_partition(args: list[Any], seed: str) -> Any:
    arr = _want_list("ArrayPartition", args[0])
    size = _want_int("ArrayPartition", args[1])
    if size <= 0:
        raise _fail("ArrayPartition", "the chunk size must be positive")
    return [arr[i : i + size] for i in range(0, len(arr), size)]


def _array_contains(args: list[Any], seed: str) -> Any:
    arr = _want_list("ArrayContains", args[0])
    return any(json_equal(x, args[1]) for x in arr)


def _array_range(args: list[Any], seed: str) -> Any:
    start, end, step = (_want_int("ArrayRange", a) for a in args)
    if step == 0:
        raise _fail("ArrayRange", "the step must not be 0")
    out = list(range(start, end + (1 if step > 0 else -1), step))
    if len(out) > 1000:
        raise _fail("ArrayRange", "more than 1000 items")
    return out


def _array_get_item(args: list[Any], seed: str) -> Any:
    arr = _want_list("ArrayGetItem", args[0])
    i = _want_int("ArrayGetItem", args[1])
    if not 0 <= i < len(arr):
        raise _fail("ArrayGetItem", f"index {i} out of range for {len(arr)} items")
    return arr[i]


def _array_length(args: list[Any], seed: str) -> Any:
    return len(_want_list("ArrayLength", args[0]))


def _array_unique(args: list[Any], seed: str) -> Any:
    out: list[Any] = []
    for x in _want_list("ArrayUnique", args[0]):
        if not any(json_equal(x, y) for y in out):
            out.append(x)
    return out


def _b64encode(args: list[Any], seed: str) -> Any:
    return base64.b64encode(_want_str("Base64Encode", args[0]).encode()).decode("ascii")


def _b64decode(args: list[Any], seed: str) -> Any:
    s = _want_str("Base64Decode", args[0])
    try:
        return base64.b64decode(s, validate=True).decode()
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise _fail("Base64Decode", f"not base64 text: {exc}") from None


def _hash(args: list[Any], seed: str) -> Any:
    data, algorithm = args
    algo = _HASHES.get(algorithm) if isinstance(algorithm, str) else None
    if algo is None:
        raise _fail("Hash", f"unknown algorithm {algorithm!r} (use one of {sorted(_HASHES)})")
    text = data if isinstance(data, str) else _to_json(data)
    return hashlib.new(algo, text.encode()).hexdigest()


def _json_merge(args: list[Any], seed: str) -> Any:
    a, b, deep = args
    if not isinstance(a, dict) or not isinstance(b, dict):
        raise _fail("JsonMerge", "both arguments must be objects")
    if deep is not False:
        raise _fail("JsonMerge", "only a shallow merge (false) is supported")
    return {**a, **b}


def _math_random(args: list[Any], seed: str) -> Any:
    start = _want_int("MathRandom", args[0])
    end = _want_int("MathRandom", args[1])
    if end <= start:
        raise _fail("MathRandom", "end must be greater than start")
    if len(args) == 3:
        rng = random.Random(_want_int("MathRandom", args[2]))
    else:
        rng = random.Random(int.from_bytes(deterministic_bytes(seed, 8), "big"))
    return rng.randrange(start, end)


def _math_add(args: list[Any], seed: str) -> Any:
    a, b = args
    if not is_number(a) or not is_number(b):
        raise _fail("MathAdd", "both arguments must be numbers")
    return a + b


def _string_split(args: list[Any], seed: str) -> Any:
    s = _want_str("StringSplit", args[0])
    delims = _want_str("StringSplit", args[1])
    if not delims:
        return [s] if s else []
    parts: list[str] = []
    buf: list[str] = []
    for c in s:
        if c in delims:
            parts.append("".join(buf))
            buf = []
        else:
            buf.append(c)
    parts.append("".join(buf))
    return [p for p in parts if p]


def _uuid(args: list[Any], seed: str) -> Any:
    return str(uuid.UUID(bytes=deterministic_bytes(seed, 16), version=4))


_FUNCTIONS: dict[str, Callable[[list[Any], str], Any]] = {
    "Format": _format,
    "StringToJson": _string_to_json,
    "JsonToString": _json_to_string,
    "Array": _array,
    "ArrayPartition": _array_partition,
    "ArrayContains": _array_contains,
    "ArrayRange": _array_range,
    "ArrayGetItem": _array_get_item,
    "ArrayLength": _array_length,
    "ArrayUnique": _array_unique,
    "Base64Encode": _b64encode,
    "Base64Decode": _b64decode,
    "Hash": _hash,
    "JsonMerge": _json_merge,
    "MathRandom": _math_random,
    "MathAdd": _math_add,
    "StringSplit": _string_split,
    "UUID": _uuid,
}
