"""Writes `_record_gen.py`: the record constructors, evolvers and packed event codec as
plain, readable source, generated from the schema `_record.Fields`.

Why generated: these run once or more per mutation, and straight-line code (one tuple
display per record, one struct call per event) is several times faster than a loop over
32 fields. Why checked in rather than built with `exec` at import: the on-disk event
format can then be read, grepped and reviewed beside the code. A test
(`tests/test_record.py`) regenerates it and requires the checked-in file to be current.

    python -m flowactors.engine._codegen            # rewrite flowactors/_record_gen.py

The evolvers are the ones the engine's modules ask for through `_record.evolver(...)`
at import: each call notes its spec in `_record_base.SPECS`, and the generator writes one
function per spec (a spec nobody asks for any more disappears at the next run).
"""

from __future__ import annotations

import importlib
import struct
from pathlib import Path

from . import _record_base as _record

TARGET = Path(__file__).with_name("_record_gen.py")
# The modules whose evolvers are generated (each calls `evolver` at import).
USERS = ("flowactors.engine._machine",)

_KINDS = {"str": "s", "str|None": "os", "int": "i", "int|None": "oi"}


def _kinds() -> dict[str, str]:
    out = {}
    for f in _record.FIELDS:
        ann = _record.Fields.__annotations__[f].replace(" ", "")
        out[f] = _KINDS.get(ann, "a")
    return out


def _tuple(items: list[str], indent: str = "    ") -> list[str]:
    """`return (` one item per line, each commented with its field `)`."""
    lines = [f"{indent}return ("]
    for f, item in zip(_record.FIELDS, items, strict=True):
        lines.append(f"{indent}    {item},  # {f}")
    return [*lines, f"{indent})"]


def _params(params: list[str]) -> list[str]:
    return [f"    {p}," for p in params]


def _records() -> list[str]:
    fields = _record.FIELDS
    interned = {"type", "state", "last_event"}

    def item(i: int, f: str) -> str:
        if f in interned:
            return f"_intern(v[{i}])"
        if f == "run_state":
            return f"(None if v[{i}] is None else _intern(v[{i}]))"
        return f"v[{i}]"

    return [
        "def from_list(v: list[Any]) -> Record:",
        '    """A record from its snapshot list (interning type, state, run_state,',
        '    last_event: one copy of each such string across a million records)."""',
        *_tuple([item(i, f) for i, f in enumerate(fields)]),
        "",
        "",
        "def make_record(",
        "    *,",
        *_params([f"{f}: Any = None" for f in fields]),
        ") -> Record:",
        '    """A record from keywords, one per field; unset fields are None."""',
        *_tuple(list(fields)),
        "",
        "",
        "def evolve(",
        "    r: Record,",
        "    *,",
        *_params([f"{f}: Any = KEEP" for f in fields]),
        ") -> Record:",
        '    """A copy of `r` with the given fields replaced."""',
        "    keep = KEEP",
        *_tuple([f"r[{i}] if {f} is keep else {f}" for i, f in enumerate(fields)]),
    ]


def _evolvers(specs: list[_record.EvolverSpec]) -> list[str]:
    lines: list[str] = []
    for n, spec in enumerate(specs):
        fields, optional, positional, fixed = spec
        fixed_map = dict(fixed)
        params = [f"{f}: Any" for f in fields] + [f"{f}: Any = KEEP" for f in optional]
        items = []
        for i, f in enumerate(_record.FIELDS):
            if f in fixed_map:
                items.append(repr(fixed_map[f]))
            elif f in fields:
                items.append(f)
            elif f in optional:
                items.append(f"r[{i}] if {f} is KEEP else {f}")
            else:
                items.append(f"r[{i}]")
        lines += [
            "",
            "",
            f"def evolver_{n}(",
            "    r: Record,",
            *([] if positional else ["    *,"]),
            *_params(params),
            ") -> Record:",
            f'    """evolver{_spec_text(spec)}"""',
            *_tuple(items),
        ]
    lines += ["", "", "EVOLVERS: dict[EvolverSpec, Callable[..., Record]] = {"]
    for n, spec in enumerate(specs):
        lines.append(f"    {spec!r}: evolver_{n},")
    lines.append("}")
    return lines


def _spec_text(spec: _record.EvolverSpec) -> str:
    fields, optional, positional, fixed = spec
    parts = [", ".join(repr(f) for f in fields)]
    if optional:
        parts.append(f"optional={optional!r}")
    if positional:
        parts.append("positional=True")
    if fixed:
        parts.append(f"fixed={dict(fixed)!r}")
    return "(" + ", ".join(p for p in parts if p) + ")"


def _codec() -> list[str]:
    fields = _record.FIELDS
    kinds = _kinds()
    optional = [f for f in fields if kinds[f] in ("os", "oi")]
    ints = [f for f in fields if kinds[f] in ("i", "oi")]
    texts = [f for f in fields if kinds[f] in ("s", "os")]
    others = [f for f in fields if kinds[f] == "a"]
    assert len(optional) <= 64, "the none mask holds 64 optional fields"
    bit = {f: 1 << k for k, f in enumerate(optional)}
    layout = "<BBQ" + "Q" * len(ints) + "I"
    head = struct.Struct(layout)
    fmt_ = _record.EVENT_FORMAT
    flag = _record.FLAG_TAIL
    args = ", ".join(["mask", *ints, "len(raw)"])
    lines = [
        "# -- the packed event (see the layout in _record.py) --------------------------------",
        "",
        f"# format u8, flags u8, none mask u64, {len(ints)} ints u64, text length u32",
        f"HEAD = struct.Struct({layout!r})  # {head.size} bytes",
        "_pack = HEAD.pack",
        "_unpack = HEAD.unpack_from",
        "# bit of each optional field in the none mask",
    ]
    for f in optional:
        lines.append(f"#   {bit[f]:>20}  {f}")
    lines.append(f"# the CBOR tail: [meta, blobs, {', '.join(others)}]")
    lines.append(f"NO_OTHERS = {(None,) * len(others)!r}  # None for each tail field")
    unpack = "    " + ", ".join(fields) + " = r"
    enc = [
        "",
        "",
        "def encode_packed(",
        "    r: Record, name: str, meta: dict[str, Any] | None, blobs: dict[str, bytes] | None",
        ") -> bytes:",
        '    """The packed event of `r`; raises struct.error / ValueError / TypeError',
        '    for a record the fixed layout cannot hold."""',
        unpack,
        "    mask = 0",
    ]
    nulls = []
    for f in optional:
        nulls += [f"    if {f} is None:", f"        mask |= {bit[f]}"]
        nulls.append(f"        {f} = {'0' if kinds[f] == 'oi' else repr('')}")
    text = [
        "    text = '\\0'.join((name, " + "".join(f"{f}, " for f in texts) + "))",
        f"    if text.count('\\0') != {len(texts)}:",
        "        raise ValueError('NUL inside a string field')",
        "    raw = text.encode()",
    ]
    enc += nulls + text
    cond = " and ".join(["blobs is None"] + [f"{f} is None" for f in others])
    enc += [
        f"    if {cond}:",
        "        if meta is None:",
        f"            return _pack({fmt_}, 0, {args}) + raw",
        "        tail = meta_tail(meta)",
        "    else:",
        f"        tail = cbor2.dumps([meta, blobs, {', '.join(others)}])",
        f"    return b''.join((_pack({fmt_}, {flag}, {args}), raw, tail))",
    ]
    given = [
        "",
        "",
        "def encode_given(r: Record, name: str, tail: bytes | None) -> bytes | None:",
        '    """`encode_packed` with the tail given (a run\'s shared meta, encoded once);',
        '    None when the record\'s own fields need a tail of their own."""',
        unpack,
        "    if " + " or ".join(f"{f} is not None" for f in others) + ":",
        "        return None  # (checked first: no head is built only to be dropped)",
        "    mask = 0",
        *nulls,
        *text,
        "    if tail is None:",
        f"        return _pack({fmt_}, 0, {args}) + raw",
        f"    return b''.join((_pack({fmt_}, {flag}, {args}), raw, tail))",
    ]
    dec = [
        "",
        "",
        "def decode_packed(",
        "    data: bytes,",
        ") -> tuple[str, dict[str, Any] | None, list[Any], dict[str, bytes] | None]:",
        '    """(event name, meta, snapshot list in FIELDS order, blobs)."""',
        *(f"    {f}: {'int' if kinds[f] == 'oi' else 'str'} | None" for f in optional),
        f"    _fmt, flags, mask, {''.join(f'{f}, ' for f in ints)}size = _unpack(data)",
        f"    end = {head.size} + size",
        f"    name, {''.join(f'{f}, ' for f in texts)}= (",
        f"        data[{head.size}:end].decode().split('\\0')",
        "    )",
        "    if flags & 1:",
        f"        meta, blobs, {''.join(f'{f}, ' for f in others)}= cbor2.loads(data[end:])",
        "    else:",
        f"        meta = blobs = {''.join(f'{f} = ' for f in others)}None",
    ]
    for f in optional:
        dec += [f"    if mask & {bit[f]}:", f"        {f} = None"]
    dec.append("    return name, meta, [" + ", ".join(fields) + "], blobs")
    return lines + enc + given + dec


def source() -> str:
    """The text of `_record_gen.py` for the current schema and evolver specs."""
    specs = _collect_specs()
    lines = [
        '"""GENERATED from `_record_base.Fields` by `python -m flowactors.engine._codegen`.',
        "Do not edit.",
        "",
        "The record constructors, the evolvers the engine asks for, and the packed event",
        "codec, written out as straight-line code (see `_codegen` for why, and `_record` for",
        "the record and the event layout). `tests/test_record.py` checks this file is current.",
        '"""',
        "",
        "# fmt: off",
        "from __future__ import annotations",
        "",
        "import struct",
        "from collections.abc import Callable",
        "from sys import intern as _intern",
        "from typing import Any",
        "",
        "import cbor2",
        "",
        "from ._record_base import KEEP, EvolverSpec, Record, meta_tail",
        "",
        "",
        *_records(),
        *_evolvers(specs),
        "",
        "",
        *_codec(),
        "",
    ]
    return "\n".join(lines)


def _collect_specs() -> list[_record.EvolverSpec]:
    """Every distinct `evolver(...)` spec the engine's modules asked for, in order."""
    for name in USERS:
        importlib.import_module(name)
    out: list[_record.EvolverSpec] = []
    for spec in _record.SPECS:
        if spec not in out:
            out.append(spec)
    return out


def main() -> None:
    TARGET.write_text(source())
    print(f"wrote {TARGET}")


if __name__ == "__main__":
    main()
