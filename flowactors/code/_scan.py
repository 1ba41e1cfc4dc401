# The determinism scanner and the code hash, both run once, when a workflow is decorated.
#
# Scan. The function's source is parsed with `ast`; every maximal name or attribute chain
# it reads (`time.time`, `datetime.now`, `os.environ`, `print`) is resolved through the
# function's globals, closure and builtins to a qualified name (`time.time`,
# `datetime.datetime.now`, `os.environ`, `builtins.print`), which is matched against a
# denylist of prefixes. Names bound inside the function (parameters, assignments, loop
# targets, imports) are left alone: the scanner knows their origin only when it is an
# import. A hit carries a remediation hint naming the `ctx.` replacement. Modules listed as
# trusted (globally with `trust_modules`, or per workflow) are exempt. It is a safety net,
# not a proof: calls reached through objects or helpers not marked `@pure` are not seen.
#
# Hash. sha256 over `ast.dump` of the function without line numbers and without its
# decorators, plus the workflow name and declared version: comments, blank lines and
# formatting do not change it; any change to the code does. Runs store it at start.
from __future__ import annotations

import ast
import builtins
import contextlib
import copy
import hashlib
import inspect
import textwrap
import types
from collections.abc import Callable, Iterable
from typing import Any

from ._errors import DeterminismViolation

# (qualified-name prefix, hint). A prefix ending in "." covers the whole module.
DENYLIST: tuple[tuple[str, str], ...] = (
    ("time.", "use ctx.now() for the time and ctx.timer(ms) to wait"),
    ("datetime.datetime.now", "use ctx.now()"),
    ("datetime.datetime.utcnow", "use ctx.now()"),
    ("datetime.datetime.today", "use ctx.now()"),
    ("datetime.date.today", "use ctx.now().date()"),
    ("random.", "use ctx.random() (or ctx.side_effect(fn))"),
    ("uuid.uuid1", "use ctx.uuid4()"),
    ("uuid.uuid4", "use ctx.uuid4()"),
    ("secrets.", "use ctx.random() / ctx.uuid4(), or ctx.side_effect(fn)"),
    ("os.environ", "pass configuration in the input, or read it with ctx.side_effect(fn)"),
    ("os.getenv", "pass configuration in the input, or read it with ctx.side_effect(fn)"),
    ("os.urandom", "use ctx.random() or ctx.uuid4()"),
    ("builtins.open", "do I/O in an activity: await ctx.activity(fn, ...)"),
    ("io.open", "do I/O in an activity: await ctx.activity(fn, ...)"),
    ("builtins.print", "do I/O in an activity (print runs again on every replay)"),
    ("builtins.input", "do I/O in an activity, or wait for ctx.signal(name)"),
    ("builtins.id", "id() differs between processes; use a value from the input"),
    ("socket.", "do network I/O in an activity: await ctx.activity(fn, ...)"),
    ("ssl.", "do network I/O in an activity"),
    ("http.client.", "do network I/O in an activity"),
    ("urllib.request.", "do network I/O in an activity"),
    ("requests.", "do network I/O in an activity"),
    ("httpx.", "do network I/O in an activity"),
    ("aiohttp.", "do network I/O in an activity"),
    ("trio.sleep", "use await ctx.timer(ms)"),
    ("trio.current_time", "use ctx.now()"),
    ("trio.to_thread.", "run blocking work as an activity"),
    ("asyncio.sleep", "use await ctx.timer(ms)"),
    ("threading.", "run concurrent work as activities or child workflows"),
    ("multiprocessing.", "run concurrent work as activities or child workflows"),
    ("subprocess.", "run commands in an activity"),
)

TRUSTED_MODULES: set[str] = set()


def trust_modules(*names: str) -> None:
    """Exempt these modules (and their submodules) from every scan from now on."""
    TRUSTED_MODULES.update(names)


def _function_node(fn: Callable[..., Any]) -> ast.FunctionDef | ast.AsyncFunctionDef:
    try:
        source = textwrap.dedent(inspect.getsource(fn))
    except (OSError, TypeError) as exc:
        raise DeterminismViolation(
            f"cannot read the source of {getattr(fn, '__qualname__', fn)!r}: {exc}", []
        ) from None
    tree = ast.parse(source)
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name == fn.__name__:
            return node
    raise DeterminismViolation(f"no definition of {fn.__name__} in its source", [])


def code_hash(fn: Callable[..., Any], name: str, version: int) -> str:
    plain = copy.copy(_function_node(fn))
    plain.decorator_list = []
    dumped = ast.dump(plain, include_attributes=False)
    return hashlib.sha256(f"{name}\x00{version}\x00{dumped}".encode()).hexdigest()[:32]


def _local_names(node: ast.AST) -> set[str]:
    names: set[str] = set()
    for sub in ast.walk(node):
        if isinstance(sub, ast.arg):
            names.add(sub.arg)
        elif isinstance(sub, ast.Name) and isinstance(sub.ctx, ast.Store | ast.Del):
            names.add(sub.id)
        elif isinstance(sub, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(sub.name)
    return names


def _imports(node: ast.AST) -> dict[str, str]:
    """Names bound by imports inside the function -> what they stand for."""
    out: dict[str, str] = {}
    for sub in ast.walk(node):
        if isinstance(sub, ast.Import):
            for alias in sub.names:
                if alias.asname:
                    out[alias.asname] = alias.name
                else:
                    root = alias.name.split(".")[0]
                    out[root] = root
        elif isinstance(sub, ast.ImportFrom) and sub.module and not sub.level:
            for alias in sub.names:
                out[alias.asname or alias.name] = f"{sub.module}.{alias.name}"
    return out


def _chain(node: ast.expr) -> list[str] | None:
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    parts.append(node.id)
    return parts[::-1]


def _qualify(obj: Any) -> str | None:
    if isinstance(obj, types.ModuleType):
        return obj.__name__
    module = getattr(obj, "__module__", None)
    qual = getattr(obj, "__qualname__", None)
    if isinstance(module, str) and isinstance(qual, str):
        return f"{module}.{qual}"
    return None


def _resolver(fn: Callable[..., Any], node: ast.AST) -> Callable[[list[str]], str | None]:
    scope: dict[str, Any] = dict(getattr(fn, "__globals__", {}))
    with contextlib.suppress(TypeError, ValueError):
        scope.update(inspect.getclosurevars(fn).nonlocals)
    imported = _imports(node)
    local = _local_names(node) - set(imported)

    def resolve(parts: list[str]) -> str | None:
        root, rest = parts[0], parts[1:]
        if root in imported:
            base: str | None = imported[root]
        elif root in local:
            return None
        elif root in scope:
            base = _qualify(scope[root])
        elif hasattr(builtins, root):
            base = f"builtins.{root}"
        else:
            return None
        if base is None:
            return None
        return ".".join([base, *rest])

    return resolve


def scan(fn: Callable[..., Any], trusted: Iterable[str] = ()) -> list[tuple[int, str, str]]:
    """(line, qualified name, hint) for every denylisted name `fn` reads."""
    node = _function_node(fn)
    resolve = _resolver(fn, node)
    trust = tuple(TRUSTED_MODULES) + tuple(trusted)
    inner = {id(sub.value) for sub in ast.walk(node) if isinstance(sub, ast.Attribute)}
    first_line = getattr(fn, "__code__", None)
    offset = (first_line.co_firstlineno - node.lineno) if first_line is not None else 0
    findings: list[tuple[int, str, str]] = []
    for sub in ast.walk(node):
        if id(sub) in inner or not isinstance(sub, ast.Name | ast.Attribute):
            continue
        if isinstance(sub, ast.Name) and not isinstance(sub.ctx, ast.Load):
            continue
        parts = _chain(sub)
        if parts is None:
            continue
        qualified = resolve(parts)
        if qualified is None:
            continue
        if any(qualified == t or qualified.startswith(t + ".") for t in trust):
            continue
        for prefix, hint in DENYLIST:
            if qualified == prefix.rstrip(".") or qualified.startswith(prefix):
                findings.append((sub.lineno + offset, qualified, hint))
                break
    for sub in ast.walk(node):
        if isinstance(sub, ast.ExceptHandler) and _swallows(sub, resolve):
            findings.append(
                (
                    sub.lineno + offset,
                    "except BaseException",
                    "catch Exception (ActivityError, ChildFailed, ...) instead: a handler "
                    "for BaseException or GeneratorExit that does not re-raise can swallow "
                    "the workflow's suspension",
                )
            )
    findings.sort()
    return findings


def _swallows(handler: ast.ExceptHandler, resolve: Callable[[list[str]], str | None]) -> bool:
    """A bare `except:` or `except (Base)Exception-of-everything` without a bare `raise`."""
    if handler.type is None:
        broad = True
    else:
        types_ = handler.type.elts if isinstance(handler.type, ast.Tuple) else [handler.type]
        names = []
        for t in types_:
            parts = _chain(t)
            names.append(resolve(parts) if parts else None)
        broad = any(n in ("builtins.BaseException", "builtins.GeneratorExit") for n in names)
    if not broad:
        return False
    return not any(
        isinstance(s, ast.Raise) and s.exc is None for s in ast.walk(ast.Module(handler.body, []))
    )


def check(fn: Callable[..., Any], what: str, trusted: Iterable[str] = ()) -> None:
    findings = scan(fn, trusted)
    if findings:
        lines = "; ".join(f"line {line}: {name} ({hint})" for line, name, hint in findings)
        raise DeterminismViolation(f"{what} is not deterministic: {lines}", findings)
