"""The determinism scanner on a table of allowed and refused snippets, each refusal with a
hint naming the `ctx.` replacement; trusted modules; `@pure` helpers; the code hash."""

from __future__ import annotations

import datetime
import os
import random
import secrets
import socket
import textwrap
import time
import uuid
from datetime import datetime as dt
from pathlib import Path
from random import randint
from typing import Any

import pytest
import trio

import flowactors as fa
from flowactors.code import DeterminismViolation, Registry, pure, scan, workflow
from flowactors.code._scan import code_hash

# The names the snippets read, bound in this module's globals as a workflow module would.
MODULES = (datetime, os, random, secrets, socket, time, uuid, dt, randint, trio)

REFUSED = [
    ("time.time()", "time.time", "ctx.now()"),
    ("time.sleep(1)", "time.sleep", "ctx.timer"),
    ("datetime.datetime.now()", "datetime.datetime.now", "ctx.now()"),
    ("dt.utcnow()", "datetime.datetime.utcnow", "ctx.now()"),
    ("datetime.date.today()", "datetime.date.today", "ctx.now()"),
    ("random.random()", "random.random", "ctx.random()"),
    ("randint(1, 6)", "random.Random.randint", "ctx.random()"),
    ("uuid.uuid4()", "uuid.uuid4", "ctx.uuid4()"),
    ("uuid.uuid1()", "uuid.uuid1", "ctx.uuid4()"),
    ("os.environ['HOME']", "os.environ", "ctx.side_effect"),
    ("os.getenv('HOME')", "os.getenv", "ctx.side_effect"),
    ("secrets.token_hex()", "secrets.token_hex", "ctx.random()"),
    ("open('f')", "builtins.open", "ctx.activity"),
    ("print('hi')", "builtins.print", "activity"),
    ("id(ctx)", "builtins.id", "input"),
    ("socket.socket()", "socket.socket", "activity"),
    ("trio.current_time()", "trio.current_time", "ctx.now()"),
    ("trio.sleep(1)", "trio.sleep", "ctx.timer"),
]

SWALLOWING = [
    "try:\n    await ctx.timer(1)\nexcept BaseException:\n    pass",
    "try:\n    await ctx.timer(1)\nexcept:\n    pass",
    "try:\n    await ctx.timer(1)\nexcept (ValueError, GeneratorExit):\n    pass",
]


@pytest.mark.parametrize("snippet", SWALLOWING)
def test_handlers_that_can_swallow_the_suspension_are_refused(snippet: str, tmp_path: Path) -> None:
    fn = compile_snippet(snippet, tmp_path)
    with pytest.raises(DeterminismViolation, match="catch Exception"):
        workflow(registry=Registry())(fn)


ALLOWED = [
    "try:\n    await ctx.timer(1)\nexcept BaseException:\n    raise",
    "try:\n    await ctx.timer(1)\nexcept Exception:\n    pass",
    "await ctx.activity(len, [1, 2])",
    "ctx.now()",
    "sorted({'a': 1}.items())",
    "datetime.timedelta(days=1)",
    "uuid.UUID(int=1)",
    "max([1, 2])",
    "json_like = {'time': 1}['time']",
]


def compile_snippet(body: str, tmp_path: Path) -> Any:
    """A workflow function whose body is `body`, defined in a real file (the scanner reads
    the source) with this module's globals."""
    source = f"async def flow(ctx, data):\n{textwrap.indent(body, '    ')}\n    return None\n"
    path = tmp_path / "snippet.py"
    path.write_text(source)
    namespace: dict[str, Any] = {m.__name__.split(".")[-1]: m for m in MODULES}
    namespace.update(dt=dt, randint=randint, datetime=datetime)
    exec(compile(source, str(path), "exec"), namespace)
    import linecache

    linecache.checkcache(str(path))
    return namespace["flow"]


@pytest.mark.parametrize(("snippet", "qualified", "hint"), REFUSED)
def test_refused_calls_name_the_replacement(
    snippet: str, qualified: str, hint: str, tmp_path: Path
) -> None:
    fn = compile_snippet(snippet, tmp_path)
    with pytest.raises(DeterminismViolation) as caught:
        workflow(registry=Registry())(fn)
    assert isinstance(caught.value, fa.InvalidArgument)
    ((line, name, text),) = caught.value.findings
    assert name == qualified and hint in text and line == 2
    assert hint in str(caught.value)


@pytest.mark.parametrize("snippet", ALLOWED)
def test_allowed_code_passes(snippet: str, tmp_path: Path) -> None:
    fn = compile_snippet(snippet, tmp_path)
    assert scan(fn) == []
    workflow(registry=Registry())(fn)


def test_local_names_shadow_modules_and_imports_inside_are_seen(tmp_path: Path) -> None:
    assert scan(compile_snippet("time = data\ntime.time()", tmp_path)) == []
    fn = compile_snippet("import time as t\nt.monotonic()", tmp_path)
    assert [name for _l, name, _h in scan(fn)] == ["time.monotonic"]
    fn = compile_snippet("from random import choice\nchoice([1])", tmp_path)
    assert [name for _l, name, _h in scan(fn)] == ["random.choice"]


def test_trusted_modules_are_exempt(tmp_path: Path) -> None:
    fn = compile_snippet("time.time()", tmp_path)
    assert scan(fn, trusted=["time"]) == []
    workflow(registry=Registry(), trusted_modules=["time"])(fn)


def test_pure_helpers_are_scanned(tmp_path: Path) -> None:
    fn = compile_snippet("random.random()", tmp_path)
    with pytest.raises(DeterminismViolation, match="helper"):
        pure(fn)
    ok = compile_snippet("sorted([2, 1])", tmp_path)
    assert pure(ok) is ok


def test_a_workflow_must_be_async_and_well_declared(tmp_path: Path) -> None:
    def sync_flow(ctx: Any, data: Any) -> None:
        return None

    with pytest.raises(fa.InvalidArgument):
        workflow(registry=Registry())(sync_flow)  # type: ignore[arg-type]
    fn = compile_snippet("pass", tmp_path)
    with pytest.raises(fa.InvalidArgument):
        workflow(registry=Registry(), version=0)(fn)


def test_the_code_hash_ignores_formatting_and_sees_changes(tmp_path: Path) -> None:
    a = compile_snippet("x = 1  # a comment\n\ny = x + 1", tmp_path)
    ha = code_hash(a, "flow", 1)
    b = compile_snippet("x=1\ny = x+1", tmp_path)
    assert code_hash(b, "flow", 1) == ha
    assert code_hash(b, "flow", 2) != ha
    c = compile_snippet("x = 1\ny = x + 2", tmp_path)
    assert code_hash(c, "flow", 1) != ha
