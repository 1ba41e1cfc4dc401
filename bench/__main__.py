"""The command line: `python -m bench SCENARIO [--quick] [--json] [--repeats N] ...`.

`main(argv)` returns the exit code instead of exiting, so `flowactors bench ...` can call it.
stdout carries the table and, with --json, the flat JSON object as its very last line;
progress and notices go to stderr.
"""

from __future__ import annotations

import argparse
import gc
import json
import shlex
import sys
import time
from pathlib import Path

from rich.console import Console

import flowactors

from . import _registry
from ._report import flatten, render, save
from ._runner import run

TABLE_WIDTH = 140  # when stdout is not a terminal (CI logs, pipes)


def _positive(text: str) -> int:
    n = int(text)
    if n < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return n


def _parser(prog: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description="Run a flowactors benchmark scenario.")
    p.add_argument("scenario", help="scenario to run, or 'list' to list them")
    p.add_argument("--quick", action="store_true", help="CI-sized run of the same code")
    p.add_argument("--json", action="store_true", help="end stdout with one flat JSON object")
    p.add_argument(
        "--repeats", type=_positive, help="measured runs per figure (default 3, quick 1)"
    )
    p.add_argument("--data-dir", type=Path, help="where the temporary work directory goes")
    p.add_argument(
        "--gc",
        choices=("tuned", "default"),
        default="tuned",
        help="CPython's GC thresholds: flowactors.tune_gc() (the default) or Python's own",
    )
    p.add_argument("--save", action="store_true", help="also write the result to bench/results/")
    return p


def main(argv: list[str] | None = None, *, prog: str = "python -m bench") -> int:
    args_list = sys.argv[1:] if argv is None else list(argv)
    try:
        args = _parser(prog).parse_args(args_list)
    except SystemExit as exc:  # --help, or a usage error argparse already reported
        return exc.code if isinstance(exc.code, int) else 2

    if args.scenario == "list":
        for name in _registry.available():
            print(f"{name:12} {_registry.summary(_registry.get(name))}")
        return 0
    try:
        scenario = _registry.get(args.scenario)
    except _registry.UnknownScenario:
        names = ", ".join(_registry.available())
        print(f"{prog}: unknown scenario {args.scenario!r} (available: {names})", file=sys.stderr)
        return 2

    if args.gc == "tuned":
        old = flowactors.tune_gc()
    err = Console(stderr=True, highlight=False)
    t0 = time.perf_counter()

    def progress(message: str) -> None:
        err.print(f"[dim]{time.perf_counter() - t0:6.1f}s  {message}[/dim]")

    try:
        outcome = run(
            args.scenario,
            scenario,
            quick=args.quick,
            repeats=args.repeats,
            data_dir=args.data_dir,
            progress=progress,
        )
    finally:
        if args.gc == "tuned":
            flowactors.tune_gc(old[0], idle_gen0=None)  # (`flowactors bench` runs in the
            gc.set_threshold(*old)  # CLI's process: undo all of it)
    out = Console(highlight=False)
    if not out.is_terminal:
        out = Console(highlight=False, width=TABLE_WIDTH)
    render(outcome, out)
    flat = flatten(outcome)
    if args.save:
        path = save(outcome, flat, command=shlex.join(["python", "-m", "bench", *args_list]))
        err.print(f"saved {path}")
    if args.json:
        sys.stdout.flush()
        print(json.dumps(flat), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
