"""Command-line entry point (`flowactors` / `python -m flowactors`)."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["demo"]:
        print("flowactors demo: the engine is not built yet")
        return 0
    print("usage: flowactors demo", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
