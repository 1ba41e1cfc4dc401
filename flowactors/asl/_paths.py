# Paths, payload templates and intrinsic-call syntax: parsed once, here, and shared by the
# validator (which keeps the parsed objects in the typed definition) and the interpreter (which
# only evaluates them). Nothing else in the package parses these strings.
#
# JSONPath as ASL uses it (the Jayway dialect AWS runs): a root (`$` the input, `$$` the context
# object, `$name` a variable) and segments: `.name`, `['name']`, `[n]` (negative counts from the
# end), `[*]`/`.*`, unions `[0,1]`/`['a','b']`, slices `[a:b:c]`, recursive descent `..`,
# filters `[?(@.x > 1 && @.y)]` and the one script form AWS accepts, `[(@.length-n)]`.
# A path is *definite* when it can name at most one node (no wildcard, union, slice, filter or
# descent); evaluating a definite path gives that node or MISSING, an indefinite one a list.
# A *reference path* is a definite path rooted at `$` (ResultPath), or at `$$` / `$var` where
# the field allows it.
#
# Payload templates: a key ending in `.$` takes the value of a path or an intrinsic call; other
# values are literal, and objects and arrays are recursed. Intrinsic calls `States.F(args)` take
# single-quoted strings, numbers, booleans, null, paths and nested calls.
from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal, TypeAlias

from ._errors import AslSyntaxError, StatesError

# ---------------------------------------------------------------------------------------------
# Path syntax tree


class _Missing:
    """The value of a definite path that names nothing (distinct from JSON null)."""

    _instance: _Missing | None = None

    def __new__(cls) -> _Missing:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Final = _Missing()


@dataclass(frozen=True)
class Field:
    name: str


@dataclass(frozen=True)
class Index:
    index: int


@dataclass(frozen=True)
class Wildcard:
    pass


@dataclass(frozen=True)
class Union:
    items: tuple[Field | Index, ...]


@dataclass(frozen=True)
class Slice:
    start: int | None
    stop: int | None
    step: int | None


@dataclass(frozen=True)
class FromEnd:
    """`[(@.length-n)]`: the n-th element from the end."""

    offset: int


@dataclass(frozen=True)
class Filter:
    expr: FilterExpr


Selector: TypeAlias = Field | Index | Wildcard | Union | Slice | FromEnd | Filter


@dataclass(frozen=True)
class Segment:
    selector: Selector
    recursive: bool = False


Root: TypeAlias = Literal["input", "context", "variable", "current"]


@dataclass(frozen=True)
class Path:
    text: str
    root: Root
    segments: tuple[Segment, ...]
    variable: str = ""

    @property
    def definite(self) -> bool:
        return all(not s.recursive and isinstance(s.selector, Field | Index) for s in self.segments)


# Filter expressions ---------------------------------------------------------------------------


@dataclass(frozen=True)
class FLiteral:
    value: Any


@dataclass(frozen=True)
class FPath:
    path: Path  # root "current" for `@`, "input" for `$`


@dataclass(frozen=True)
class FCompare:
    op: str
    left: FLiteral | FPath
    right: FLiteral | FPath


@dataclass(frozen=True)
class FExists:
    operand: FPath


@dataclass(frozen=True)
class FBool:
    op: Literal["&&", "||"]
    left: FilterExpr
    right: FilterExpr


@dataclass(frozen=True)
class FNot:
    operand: FilterExpr


FilterExpr: TypeAlias = FCompare | FExists | FBool | FNot | FLiteral

# ---------------------------------------------------------------------------------------------
# Path parser

_VAR_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_NAME_STOP = set(".[]()',\"") | {" ", "\t", "\n", "\r"}
_INT_RE = re.compile(r"-?\d+")
_SCRIPT_RE = re.compile(r"\(\s*@\.length\s*-\s*(\d+)\s*\)")


def parse_path(text: str) -> Path:
    """Parse a JSONPath (`$...`, `$$...`, `$var...`); raise AslSyntaxError if malformed."""
    if not isinstance(text, str):
        raise AslSyntaxError(f"a path must be a string, not {type(text).__name__}")
    if text.startswith("$$"):
        root: Root = "context"
        pos = 2
        var = ""
    elif text.startswith("$"):
        m = _VAR_RE.match(text, 1)
        if m:
            root, pos, var = "variable", m.end(), m.group()
        else:
            root, pos, var = "input", 1, ""
    else:
        raise AslSyntaxError(f"path {text!r} must start with '$'")
    segments, pos = _parse_segments(text, pos)
    if pos != len(text):
        raise AslSyntaxError(f"path {text!r}: unexpected {text[pos:]!r} at offset {pos}")
    return Path(text, root, tuple(segments), var)


def _parse_segments(
    text: str, pos: int, *, stop_at_space: bool = False
) -> tuple[list[Segment], int]:
    segments: list[Segment] = []
    n = len(text)
    while pos < n:
        c = text[pos]
        if c == ".":
            recursive = text.startswith("..", pos)
            pos += 2 if recursive else 1
            if pos < n and text[pos] == "*":
                segments.append(Segment(Wildcard(), recursive))
                pos += 1
            elif recursive and pos < n and text[pos] == "[":
                sel, pos = _parse_bracket(text, pos)
                segments.append(Segment(sel, True))
            else:
                start = pos
                while pos < n and text[pos] not in _NAME_STOP:
                    pos += 1
                if pos == start:
                    raise AslSyntaxError(f"path {text!r}: empty name at offset {start}")
                segments.append(Segment(Field(text[start:pos]), recursive))
        elif c == "[":
            sel, pos = _parse_bracket(text, pos)
            segments.append(Segment(sel))
        else:
            if stop_at_space:
                break
            raise AslSyntaxError(f"path {text!r}: unexpected {c!r} at offset {pos}")
    return segments, pos


def _parse_bracket(text: str, pos: int) -> tuple[Selector, int]:
    # text[pos] == "["
    close = _matching(text, pos, "[", "]")
    inner = text[pos + 1 : close].strip()
    end = close + 1
    if not inner:
        raise AslSyntaxError(f"path {text!r}: empty brackets at offset {pos}")
    if inner == "*":
        return Wildcard(), end
    if inner.startswith("?(") and inner.endswith(")"):
        return Filter(_parse_filter(inner[2:-1], text)), end
    m = _SCRIPT_RE.fullmatch(inner)
    if m:
        return FromEnd(int(m.group(1))), end
    if inner.startswith("("):
        raise AslSyntaxError(f"path {text!r}: unsupported script expression {inner!r}")
    if inner[0] in "'\"":
        names = [_unquote(part.strip(), text) for part in _split_top(inner)]
        if len(names) == 1:
            return Field(names[0]), end
        return Union(tuple(Field(x) for x in names)), end
    if ":" in inner:
        parts = [p.strip() for p in inner.split(":")]
        if len(parts) > 3 or not all(p == "" or _INT_RE.fullmatch(p) for p in parts):
            raise AslSyntaxError(f"path {text!r}: bad slice [{inner}]")
        vals = [int(p) if p else None for p in parts] + [None] * (3 - len(parts))
        if vals[2] == 0:
            raise AslSyntaxError(f"path {text!r}: slice step must not be 0")
        return Slice(vals[0], vals[1], vals[2]), end
    parts = [p.strip() for p in inner.split(",")]
    if not all(_INT_RE.fullmatch(p) for p in parts):
        raise AslSyntaxError(f"path {text!r}: bad subscript [{inner}]")
    if len(parts) == 1:
        return Index(int(parts[0])), end
    return Union(tuple(Index(int(p)) for p in parts)), end


def _matching(text: str, pos: int, open_: str, close: str) -> int:
    """Index of the bracket closing the one at `pos` (quotes and nesting respected)."""
    depth = 0
    quote = ""
    i = pos
    while i < len(text):
        c = text[i]
        if quote:
            if c == "\\":
                i += 1
            elif c == quote:
                quote = ""
        elif c in "'\"":
            quote = c
        elif c in "([":
            depth += 1
        elif c in ")]":
            depth -= 1
            if depth == 0:
                if c != close:
                    break
                return i
        i += 1
    raise AslSyntaxError(f"path {text!r}: unclosed {open_!r} at offset {pos}")


def _split_top(inner: str) -> list[str]:
    parts, buf, quote, i = [], [], "", 0
    while i < len(inner):
        c = inner[i]
        if quote:
            if c == "\\" and i + 1 < len(inner):
                buf.append(c + inner[i + 1])
                i += 2
                continue
            if c == quote:
                quote = ""
        elif c in "'\"":
            quote = c
        elif c == ",":
            parts.append("".join(buf))
            buf = []
            i += 1
            continue
        buf.append(c)
        i += 1
    parts.append("".join(buf))
    return parts


def _unquote(s: str, text: str) -> str:
    if len(s) < 2 or s[0] not in "'\"" or s[-1] != s[0]:
        raise AslSyntaxError(f"path {text!r}: bad quoted name {s!r}")
    return re.sub(r"\\(.)", r"\1", s[1:-1])


# Filter parser: a small precedence climber over `||`, `&&`, `!`, comparisons and operands.

_FTOKEN = re.compile(
    r"\s*(?:(?P<op>==|!=|<=|>=|<|>|&&|\|\||!|\(|\))"
    r"|(?P<str>'(?:\\.|[^'\\])*'|\"(?:\\.|[^\"\\])*\")"
    r"|(?P<num>-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)"
    r"|(?P<path>[@$](?:\.\.?[^\s.\[\]()=!<>&|]+|\.\*|\[[^\]]*\])*)"
    r"|(?P<word>[A-Za-z_][A-Za-z0-9_\-]*))"
)


def _parse_filter(src: str, text: str) -> FilterExpr:
    tokens: list[tuple[str, str]] = []
    pos = 0
    src = src.rstrip()
    while pos < len(src):
        m = _FTOKEN.match(src, pos)
        if not m or m.end() == pos:
            raise AslSyntaxError(f"path {text!r}: bad filter expression near {src[pos:]!r}")
        kind = m.lastgroup or ""
        tokens.append((kind, m.group(kind)))
        pos = m.end()
    if not tokens:
        raise AslSyntaxError(f"path {text!r}: empty filter")
    i = 0

    def peek() -> tuple[str, str]:
        return tokens[i] if i < len(tokens) else ("end", "")

    def take() -> tuple[str, str]:
        nonlocal i
        tok = peek()
        i += 1
        return tok

    def operand() -> FLiteral | FPath:
        kind, val = take()
        if kind == "str":
            return FLiteral(re.sub(r"\\(.)", r"\1", val[1:-1]))
        if kind == "num":
            return FLiteral(json.loads(val))
        if kind == "word":
            return FLiteral({"true": True, "false": False, "null": None}.get(val, val))
        if kind == "path":
            if val.startswith("@"):
                segs, _ = _parse_segments(val, 1)
                return FPath(Path(val, "current", tuple(segs)))
            return FPath(parse_path(val))
        raise AslSyntaxError(f"path {text!r}: expected an operand in filter, got {val!r}")

    def primary() -> FilterExpr:
        val = peek()[1]
        if val == "!":
            take()
            return FNot(primary())
        if val == "(":
            take()
            e = disjunction()
            if take()[1] != ")":
                raise AslSyntaxError(f"path {text!r}: unbalanced parentheses in filter")
            return e
        left = operand()
        val = peek()[1]
        if val in ("==", "!=", "<", "<=", ">", ">="):
            take()
            return FCompare(val, left, operand())
        return FExists(left) if isinstance(left, FPath) else left

    def conjunction() -> FilterExpr:
        e = primary()
        while peek()[1] == "&&":
            take()
            e = FBool("&&", e, primary())
        return e

    def disjunction() -> FilterExpr:
        e = conjunction()
        while peek()[1] == "||":
            take()
            e = FBool("||", e, conjunction())
        return e

    expr = disjunction()
    if i != len(tokens):
        raise AslSyntaxError(f"path {text!r}: unexpected {tokens[i][1]!r} in filter")
    return expr


def parse_reference_path(text: str, *, allow_context: bool = False) -> Path:
    """A definite path. `$$` and `$var` roots only where `allow_context` (Choice, *Path)."""
    path = parse_path(text)
    if not path.definite:
        raise AslSyntaxError(f"{text!r} is not a reference path (no wildcards, filters, slices)")
    if path.root != "input" and not allow_context:
        raise AslSyntaxError(f"{text!r}: a reference path here must start with '$' or '$.'")
    return path


# ---------------------------------------------------------------------------------------------
# Evaluation


@dataclass(frozen=True)
class Scope:
    """What the roots of a path mean while evaluating: `$`, `$$` and `$name`."""

    input: Any
    context: Any = None
    variables: Mapping[str, Any] = field(default_factory=dict)


def evaluate(path: Path, scope: Scope) -> Any:
    """A definite path gives its node or MISSING; an indefinite one the list of matches."""
    if path.root == "input":
        root = scope.input
    elif path.root == "context":
        root = scope.context
    elif path.root == "variable":
        if path.variable not in scope.variables:
            return MISSING if path.definite else []
        root = scope.variables[path.variable]
    else:
        root = scope.input
    if path.definite:
        node = root
        for seg in path.segments:
            node = _step_definite(node, seg.selector)
            if node is MISSING:
                return MISSING
        return node
    nodes = [root]
    for seg in path.segments:
        if seg.recursive:
            nodes = [d for n in nodes for d in _descendants(n)]
        nodes = [m for n in nodes for m in _select(n, seg.selector, scope)]
    return nodes


def _step_definite(node: Any, sel: Selector) -> Any:
    if isinstance(sel, Field):
        if isinstance(node, dict) and sel.name in node:
            return node[sel.name]
        return MISSING
    assert isinstance(sel, Index)
    if isinstance(node, list) and -len(node) <= sel.index < len(node):
        return node[sel.index]
    return MISSING


def _descendants(node: Any) -> list[Any]:
    out = [node]
    if isinstance(node, dict):
        for v in node.values():
            out.extend(_descendants(v))
    elif isinstance(node, list):
        for v in node:
            out.extend(_descendants(v))
    return out


def _select(node: Any, sel: Selector, scope: Scope) -> list[Any]:
    if isinstance(sel, Field | Index):
        v = _step_definite(node, sel)
        return [] if v is MISSING else [v]
    if isinstance(sel, Wildcard):
        if isinstance(node, dict):
            return list(node.values())
        return list(node) if isinstance(node, list) else []
    if isinstance(sel, Union):
        return [m for item in sel.items for m in _select(node, item, scope)]
    if isinstance(sel, Slice):
        return node[sel.start : sel.stop : sel.step] if isinstance(node, list) else []
    if isinstance(sel, FromEnd):
        return _select(node, Index(-sel.offset), scope) if sel.offset > 0 else []
    children = list(node.values()) if isinstance(node, dict) else node
    if not isinstance(children, list):
        return []
    return [c for c in children if _truthy_filter(sel.expr, c, scope)]


def _truthy_filter(expr: FilterExpr, current: Any, scope: Scope) -> bool:
    if isinstance(expr, FBool):
        a = _truthy_filter(expr.left, current, scope)
        if expr.op == "&&":
            return a and _truthy_filter(expr.right, current, scope)
        return a or _truthy_filter(expr.right, current, scope)
    if isinstance(expr, FNot):
        return not _truthy_filter(expr.operand, current, scope)
    if isinstance(expr, FExists):
        return _operand(expr.operand, current, scope) is not MISSING
    if isinstance(expr, FLiteral):
        return bool(expr.value)
    a = _operand(expr.left, current, scope)
    b = _operand(expr.right, current, scope)
    if a is MISSING or b is MISSING:
        return expr.op == "!=" and (a is MISSING) != (b is MISSING)
    if expr.op == "==":
        return json_equal(a, b)
    if expr.op == "!=":
        return not json_equal(a, b)
    comparable = (is_number(a) and is_number(b)) or (isinstance(a, str) and isinstance(b, str))
    if not comparable:
        return False
    if expr.op == "<":
        return bool(a < b)
    if expr.op == "<=":
        return bool(a <= b)
    if expr.op == ">":
        return bool(a > b)
    return bool(a >= b)


def _operand(op: FLiteral | FPath, current: Any, scope: Scope) -> Any:
    if isinstance(op, FLiteral):
        return op.value
    if op.path.root == "current":
        return evaluate(op.path, Scope(current, scope.context, scope.variables))
    return evaluate(op.path, scope)


def is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def json_equal(a: Any, b: Any) -> bool:
    """JSON equality: 1 == 1.0, but true != 1."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if is_number(a) and is_number(b):
        return bool(a == b)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(json_equal(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(json_equal(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and bool(a == b)


def select_or_fail(path: Path | None, scope: Scope, *, error: str, what: str) -> Any:
    """InputPath/OutputPath/ItemsPath style selection: missing → `error` (States.Runtime)."""
    if path is None:
        return scope.input
    value = evaluate(path, scope)
    if value is MISSING:
        raise StatesError(error, f"{what} {path.text!r} matched nothing in the input")
    return value


def assign_result(data: Any, path: Path, value: Any) -> Any:
    """ResultPath: a copy of `data` with `value` placed at `path` (intermediate objects made)."""
    if not path.segments:
        return value

    def fail(why: str) -> StatesError:
        return StatesError("States.ResultPathMatchFailure", f"ResultPath {path.text!r}: {why}")

    def put(node: Any, segs: tuple[Segment, ...]) -> Any:
        sel = segs[0].selector
        last = len(segs) == 1
        if isinstance(sel, Field):
            if not isinstance(node, dict):
                raise fail(f"cannot set field {sel.name!r} on a {json_type(node)}")
            out = dict(node)
            if last:
                out[sel.name] = value
            else:
                out[sel.name] = put(node.get(sel.name, {}), segs[1:])
            return out
        assert isinstance(sel, Index)
        if not isinstance(node, list) or not -len(node) <= sel.index < len(node):
            raise fail(f"index {sel.index} is not in the {json_type(node)}")
        lst = list(node)
        lst[sel.index] = value if last else put(lst[sel.index], segs[1:])
        return lst

    return put(data, path.segments)


def json_type(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "boolean"
    if is_number(v):
        return "number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, list):
        return "array"
    if isinstance(v, dict):
        return "object"
    return type(v).__name__


# ---------------------------------------------------------------------------------------------
# Intrinsic calls


@dataclass(frozen=True)
class Literal_:
    """A literal argument. `raw` keeps the escapes (States.Format needs `\\{`), `value` not."""

    value: Any
    raw: str = ""


@dataclass(frozen=True)
class Call:
    name: str  # without the "States." prefix
    args: tuple[Literal_ | Path | Call, ...]
    text: str = ""


# Per function: (argument kinds, minimum count, variadic tail kind or None). A kind constrains
# what a *literal* argument may be; paths and nested calls are checked when evaluated.
_SIGNATURES: Final[dict[str, tuple[tuple[str, ...], int, str | None]]] = {
    "Format": (("str",), 1, "scalar"),
    "StringToJson": (("str",), 1, None),
    "JsonToString": (("any",), 1, None),
    "Array": ((), 0, "any"),
    "ArrayPartition": (("array", "int"), 2, None),
    "ArrayContains": (("array", "any"), 2, None),
    "ArrayRange": (("int", "int", "int"), 3, None),
    "ArrayGetItem": (("array", "int"), 2, None),
    "ArrayLength": (("array",), 1, None),
    "ArrayUnique": (("array",), 1, None),
    "Base64Encode": (("str",), 1, None),
    "Base64Decode": (("str",), 1, None),
    "Hash": (("any", "str"), 2, None),
    "JsonMerge": (("object", "object", "bool"), 3, None),
    "MathRandom": (("int", "int", "int"), 2, None),
    "MathAdd": (("number", "number"), 2, None),
    "StringSplit": (("str", "str"), 2, None),
    "UUID": ((), 0, None),
}

INTRINSIC_NAMES: Final = frozenset(_SIGNATURES)
_NUM_RE = re.compile(r"-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?")
_CALL_RE = re.compile(r"States\.([A-Za-z0-9]+)\(")


def looks_like_call(text: str) -> bool:
    return text.startswith("States.")


def parse_intrinsic(text: str) -> Call:
    """Parse `States.Name(arg, ...)` (nested calls included); raise AslSyntaxError."""
    call, pos = _parse_call(text, 0)
    if text[pos:].strip():
        raise AslSyntaxError(f"intrinsic {text!r}: unexpected {text[pos:]!r} after the call")
    return call


def _parse_call(text: str, pos: int, depth: int = 1) -> tuple[Call, int]:
    m = _CALL_RE.match(text, pos)
    if not m:
        raise AslSyntaxError(f"intrinsic {text!r}: expected States.<Function>( at offset {pos}")
    name = m.group(1)
    if name not in _SIGNATURES:
        raise AslSyntaxError(f"intrinsic {text!r}: unknown function States.{name}")
    if depth > 10:
        raise AslSyntaxError(f"intrinsic {text!r}: calls nest deeper than 10 levels")
    pos = m.end()
    args: list[Literal_ | Path | Call] = []
    n = len(text)

    def skip(p: int) -> int:
        while p < n and text[p].isspace():
            p += 1
        return p

    pos = skip(pos)
    if pos < n and text[pos] == ")":
        pos += 1
    else:
        while True:
            pos = skip(pos)
            if pos >= n:
                raise AslSyntaxError(f"intrinsic {text!r}: unclosed call")
            c = text[pos]
            if c == "'":
                j = pos + 1
                while j < n and text[j] != "'":
                    j += 2 if text[j] == "\\" else 1
                if j >= n:
                    raise AslSyntaxError(f"intrinsic {text!r}: unterminated string")
                raw = text[pos + 1 : j]
                args.append(Literal_(re.sub(r"\\(.)", r"\1", raw), raw))
                pos = j + 1
            elif c == "$":
                j = _path_extent(text, pos)
                args.append(parse_path(text[pos:j].rstrip()))
                pos = j
            elif text.startswith("States.", pos):
                sub, pos = _parse_call(text, pos, depth + 1)
                args.append(sub)
            else:
                word = re.compile(r"true|false|null").match(text, pos)
                num = _NUM_RE.match(text, pos)
                if word:
                    literal = {"true": True, "false": False, "null": None}[word.group()]
                    args.append(Literal_(literal))
                    pos = word.end()
                elif num:
                    args.append(Literal_(json.loads(num.group())))
                    pos = num.end()
                else:
                    raise AslSyntaxError(f"intrinsic {text!r}: bad argument at offset {pos}")
            pos = skip(pos)
            if pos < n and text[pos] == ",":
                pos += 1
                continue
            if pos < n and text[pos] == ")":
                pos += 1
                break
            raise AslSyntaxError(f"intrinsic {text!r}: expected ',' or ')' at offset {pos}")
    call = Call(name, tuple(args), text[m.start() : pos])
    _check_signature(call, text)
    return call, pos


def _path_extent(text: str, pos: int) -> int:
    depth, quote, i = 0, "", pos
    while i < len(text):
        c = text[i]
        if quote:
            if c == "\\":
                i += 1
            elif c == quote:
                quote = ""
        elif c in "'\"" and depth > 0:
            quote = c
        elif c in "[(":
            depth += 1
        elif c in "])":
            if depth == 0:
                return i
            depth -= 1
        elif c == "," and depth == 0:
            return i
        i += 1
    return i


def _check_signature(call: Call, text: str) -> None:
    kinds, minimum, tail = _SIGNATURES[call.name]
    count = len(call.args)
    if count < minimum or (tail is None and count > len(kinds)):
        want = (
            f"at least {minimum}"
            if tail
            else (str(minimum) if minimum == len(kinds) else f"{minimum} to {len(kinds)}")
        )
        raise AslSyntaxError(
            f"intrinsic {text!r}: States.{call.name} takes {want} argument(s), got {count}"
        )
    for i, arg in enumerate(call.args):
        kind = kinds[i] if i < len(kinds) else (tail or "any")
        if isinstance(arg, Literal_) and not _literal_fits(arg.value, kind):
            raise AslSyntaxError(
                f"intrinsic {text!r}: argument {i + 1} of States.{call.name} must be {kind}, "
                f"not {json_type(arg.value)} {arg.value!r}"
            )


def _literal_fits(value: Any, kind: str) -> bool:
    if kind == "any":
        return True
    if kind == "scalar":
        return not isinstance(value, dict | list)
    if kind == "str":
        return isinstance(value, str)
    if kind == "number":
        return is_number(value)
    if kind == "int":
        return is_number(value) and float(value).is_integer()
    if kind == "bool":
        return isinstance(value, bool)
    return False  # array / object: no literal syntax exists for them


# ---------------------------------------------------------------------------------------------
# Payload templates


@dataclass(frozen=True)
class TLiteral:
    value: Any


@dataclass(frozen=True)
class TPath:
    path: Path


@dataclass(frozen=True)
class TCall:
    call: Call


@dataclass(frozen=True)
class TObject:
    entries: tuple[tuple[str, Template], ...]


@dataclass(frozen=True)
class TArray:
    items: tuple[Template, ...]


Template: TypeAlias = TLiteral | TPath | TCall | TObject | TArray

Report: TypeAlias = Callable[[str, str], None]


def parse_dynamic(text: Any) -> TPath | TCall:
    """The value of a `.$` key: a path or an intrinsic call."""
    if not isinstance(text, str):
        raise AslSyntaxError(f"the value of a '.$' field must be a string, not {json_type(text)}")
    if looks_like_call(text):
        return TCall(parse_intrinsic(text))
    if text.startswith("$"):
        return TPath(parse_path(text))
    raise AslSyntaxError(f"{text!r} is neither a path nor an intrinsic function call")


def parse_template(value: Any, report: Report, where: str = "") -> Template:
    """Parse a payload template; every problem goes to `report(sub_path, message)`."""
    if isinstance(value, dict):
        entries: list[tuple[str, Template]] = []
        seen: dict[str, str] = {}
        for key, item in value.items():
            sub = f"{where}{_key_path(key)}"
            if key.endswith(".$"):
                name = key[:-2]
                try:
                    tmpl: Template = parse_dynamic(item)
                except AslSyntaxError as exc:
                    report(sub, str(exc))
                    continue
            else:
                name = key
                tmpl = parse_template(item, report, sub)
            if name in seen:
                report(sub, f"field {name!r} is given twice (as {seen[name]!r} and {key!r})")
                continue
            seen[name] = key
            entries.append((name, tmpl))
        return TObject(tuple(entries))
    if isinstance(value, list):
        return TArray(
            tuple(parse_template(v, report, f"{where}[{i}]") for i, v in enumerate(value))
        )
    return TLiteral(value)


def _key_path(key: str) -> str:
    if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
        return f".{key}"
    return "[" + json.dumps(key) + "]"


IntrinsicRunner: TypeAlias = Callable[[str, list[Any]], Any]


def render(tmpl: Template, scope: Scope, run: IntrinsicRunner) -> Any:
    """Evaluate a template. Path failures raise States.ParameterPathFailure."""
    if isinstance(tmpl, TLiteral):
        return tmpl.value
    if isinstance(tmpl, TObject):
        return {k: render(v, scope, run) for k, v in tmpl.entries}
    if isinstance(tmpl, TArray):
        return [render(v, scope, run) for v in tmpl.items]
    if isinstance(tmpl, TPath):
        v = evaluate(tmpl.path, scope)
        if v is MISSING:
            raise StatesError(
                "States.ParameterPathFailure", f"path {tmpl.path.text!r} matched nothing"
            )
        return v
    return eval_call(tmpl.call, scope, run)


def eval_call(call: Call, scope: Scope, run: IntrinsicRunner) -> Any:
    args: list[Any] = []
    for a in call.args:
        if isinstance(a, Literal_):
            # States.Format needs the escapes of its template; every other function the value.
            args.append(
                a.raw
                if call.name == "Format" and not args and isinstance(a.value, str)
                else a.value
            )
        elif isinstance(a, Call):
            args.append(eval_call(a, scope, run))
        else:
            v = evaluate(a, scope)
            if v is MISSING:
                raise StatesError(
                    "States.IntrinsicFailure",
                    f"States.{call.name}: path {a.text!r} matched nothing",
                )
            args.append(v)
    if call.name == "Format" and call.args and not isinstance(call.args[0], Literal_):
        args[0] = str(args[0]).replace("\\", "\\\\") if isinstance(args[0], str) else args[0]
    return run(call.name, args)
