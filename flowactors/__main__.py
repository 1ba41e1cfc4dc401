"""Command-line entry point: `flowactors` / `python -m flowactors`."""

from __future__ import annotations

import argparse
import sys

from rich.console import Console

from ._errors import FlowError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="flowactors", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="run order workflows through an embedded engine")
    demo.add_argument("--data-dir", default="flowactors-data", help="engine data directory")
    demo.add_argument("--orders", type=int, default=5000, help="orders to create this run")
    demo.add_argument("--workers", type=int, default=4, help="concurrent worker tasks")
    sub.add_parser(
        "bench", help="the benchmark harness (see: flowactors bench --help)", add_help=False
    )
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
    console = Console()
    try:
        if args.command == "demo":
            from ._demo import run_demo

            if args.orders < 0 or args.workers < 1:
                console.print("flowactors: --orders must be >= 0 and --workers >= 1")
                return 2
            if args.orders == 0:
                console.print("flowactors: --orders must be at least 1")
                return 2
            run_demo(args.data_dir, args.orders, args.workers, console)
    except FlowError as exc:
        print(f"flowactors: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
