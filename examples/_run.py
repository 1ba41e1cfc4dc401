"""Shared by the examples: run `main(data_dir)` under Trio on a fresh temporary directory
(or the directory given as the first argument)."""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Awaitable, Callable

import trio


def run(main: Callable[[str], Awaitable[None]]) -> None:
    if len(sys.argv) > 1:
        trio.run(main, sys.argv[1])
        return
    with tempfile.TemporaryDirectory(prefix="flowactors-example-") as data_dir:
        trio.run(main, data_dir)
