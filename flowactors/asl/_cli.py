# `flowactors asl validate|run`: the ASL commands of the CLI (parsing lives in __main__).
#
# Exit codes: 0 ok (valid / the execution succeeded); 1 the definition is invalid or the
# execution did not succeed (FAILED, TIMED_OUT, ABORTED) or the engine failed; 2 bad
# arguments (unreadable file, input that is not JSON, a --handlers spec that does not load,
# a Task resource without a handler), reported on one line of stderr.
from __future__ import annotations

import json
import sys
import tempfile
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import trio

from ..engine._engine import open_engine
from ..engine._errors import FlowError, InvalidArgument
from ._durable import AslRunner, Handler, load_handlers, resources
from ._errors import AslValidationError
from ._validate import load_definition


class _BadArguments(Exception):
    pass


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise _BadArguments(f"cannot read {path}: {exc}") from None


def _one_line(text: str) -> str:
    return " ".join(text.split())


def validate(path: str) -> int:
    try:
        machine = load_definition(_read(path))
    except _BadArguments as exc:
        print(f"flowactors asl: {exc}", file=sys.stderr)
        return 2
    except AslValidationError as exc:
        for problem in exc.problems:
            print(problem)
        print(f"{path}: invalid ({len(exc.problems)} problem(s))", file=sys.stderr)
        return 1
    notes = "".join(
        f"\n  note: {what} at {where} cannot run here" for where, what in machine.unsupported
    )
    print(f"{path}: valid ({len(machine.states)} top-level states){notes}")
    return 0


def run(
    path: str, input_text: str, data_dir: str | None, handlers_spec: str | None, name: str | None
) -> int:
    try:
        text = _read(path)
        try:
            machine = load_definition(text)
        except AslValidationError as exc:
            raise _BadArguments(
                f"{path} is not a valid state machine "
                f"({len(exc.problems)} problem(s); first: {exc.problems[0]})"
            ) from None
        try:
            data = json.loads(input_text)
        except ValueError as exc:
            raise _BadArguments(f"--input is not JSON: {exc}") from None
        try:
            handlers = load_handlers(handlers_spec) if handlers_spec else {}
        except InvalidArgument as exc:
            raise _BadArguments(str(exc)) from None
        missing = sorted(resources(machine) - set(handlers))
        if missing:
            where = f" in {handlers_spec}" if handlers_spec else " (give --handlers module:attr)"
            raise _BadArguments(f"no handler for Task resource(s) {', '.join(missing)}{where}")
    except _BadArguments as exc:
        print(f"flowactors asl: {_one_line(str(exc))}", file=sys.stderr)
        return 2
    with ExitStack() as stack:
        directory = data_dir or stack.enter_context(tempfile.TemporaryDirectory())
        try:
            info = trio.run(_execute, directory, name or "execution", text, data, handlers)
        except FlowError as exc:
            print(f"flowactors asl: {type(exc).__name__}: {_one_line(str(exc))}", file=sys.stderr)
            return 1
    if info.status.value == "SUCCEEDED":
        print(json.dumps(info.output, ensure_ascii=False))
        return 0
    cause = f": {_one_line(info.cause)}" if info.cause else ""
    print(f"flowactors asl: execution {info.status.value}: {info.error}{cause}", file=sys.stderr)
    return 1


async def _execute(
    directory: str, name: str, text: str, data: Any, handlers: dict[str, Handler]
) -> Any:
    async with open_engine(directory) as engine:
        return await AslRunner(engine, handlers).execute(name, text, data)
