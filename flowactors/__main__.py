"""Command-line entry point: `flowactors` / `python -m flowactors`."""

from __future__ import annotations

import argparse
import sys
from typing import NoReturn

from rich.console import Console

from .engine._errors import FlowError


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr (exit 2)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="flowactors", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    demo = sub.add_parser("demo", help="run order workflows through an embedded engine")
    demo.add_argument("--data-dir", default="flowactors-data", help="engine data directory")
    demo.add_argument("--orders", type=int, default=5000, help="orders to create this run")
    demo.add_argument("--workers", type=int, default=4, help="concurrent worker tasks")
    inspect = sub.add_parser("inspect", help="flows per type and state, or one flow's history")
    inspect.add_argument("data_dir", metavar="DATA_DIR", help="an engine data directory")
    inspect.add_argument("--flow", metavar="ID", help="show this flow and its history")
    inspect.add_argument(
        "--partition-key", metavar="KEY", help="the flow's partition key, if it has one"
    )
    asl = sub.add_parser("asl", help="Amazon States Language: validate or run a definition")
    asl_sub = asl.add_subparsers(dest="asl_command", required=True, parser_class=_Parser)
    check = asl_sub.add_parser("validate", help="check a definition; print every problem")
    check.add_argument("definition", metavar="DEFINITION", help="an ASL JSON file")
    run = asl_sub.add_parser("run", help="run a definition durably to its end; print its output")
    run.add_argument("definition", metavar="DEFINITION", help="an ASL JSON file")
    run.add_argument("--input", default="{}", metavar="JSON", help="the execution input")
    run.add_argument("--data-dir", metavar="DIR", help="engine data directory (default: temp)")
    run.add_argument(
        "--handlers", metavar="MODULE:ATTR", help="a mapping of Task resource names to callables"
    )
    run.add_argument("--name", metavar="NAME", help="the execution name (default: execution)")
    sub.add_parser(
        "bench", help="the benchmark harness (see: flowactors bench --help)", add_help=False
    )
    from .ops import _cli as ops_cli

    ops_cli.add_parsers(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args_list = sys.argv[1:] if argv is None else argv
    if args_list[:1] == ["bench"]:
        from bench.__main__ import main as bench_main

        return bench_main(args_list[1:], prog="flowactors bench")
    parser = _parser()
    try:
        args = parser.parse_args(args_list)
    except SystemExit as exc:
        return int(exc.code or 0)
    if args.command == "asl":
        from .asl import _cli

        if args.asl_command == "validate":
            return _cli.validate(args.definition)
        return _cli.run(args.definition, args.input, args.data_dir, args.handlers, args.name)
    console = Console()
    try:
        if args.command == "demo":
            from .ops._demo import run_demo

            if args.orders < 0 or args.workers < 1:
                console.print("flowactors: --orders must be >= 0 and --workers >= 1")
                return 2
            if args.orders == 0:
                console.print("flowactors: --orders must be at least 1")
                return 2
            run_demo(args.data_dir, args.orders, args.workers, console)
        elif args.command == "inspect":
            from .ops._inspect import run_inspect

            run_inspect(args.data_dir, args.flow, args.partition_key, console)
        else:
            from .ops import _cli as ops_cli

            return ops_cli.run(args, console)
    except (FlowError, OSError) as exc:
        message = " ".join(str(exc).split())  # one line, whatever the error holds
        print(f"flowactors: {type(exc).__name__}: {message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
