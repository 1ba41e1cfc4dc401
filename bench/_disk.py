"""The disk's raw limits, measured in the same run as the scenario: the baselines.

Plain `os.write` + `os.fdatasync` on an appended file, the same system calls the log
makes, with nothing of the log around them. A log figure divided by these says how much
of the disk the log actually gets.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

SMALL_BLOCK = 4096
LARGE_BLOCK = 1 << 20
MIN_ROUNDS = 3


def fdatasync_rate(directory: Path, seconds: float) -> float:
    """Appends of one 4 KiB block, each followed by fdatasync, per second."""
    rounds, elapsed = _append_and_sync(directory / "raw-fdatasync", SMALL_BLOCK, seconds)
    return rounds / elapsed


def sequential_write_rate(directory: Path, seconds: float) -> float:
    """Bytes per second of 1 MiB appends, each followed by fdatasync."""
    rounds, elapsed = _append_and_sync(directory / "raw-sequential", LARGE_BLOCK, seconds)
    return rounds * LARGE_BLOCK / elapsed


def _append_and_sync(path: Path, block_size: int, seconds: float) -> tuple[int, float]:
    block = os.urandom(block_size)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND | os.O_CLOEXEC, 0o644)
    try:
        rounds = 0
        started = time.perf_counter()
        deadline = started + seconds
        now = started
        while rounds < MIN_ROUNDS or now < deadline:
            if os.write(fd, block) != block_size:
                raise OSError(f"short write to {path}")
            os.fdatasync(fd)
            rounds += 1
            now = time.perf_counter()
        return rounds, now - started
    finally:
        os.close(fd)
        path.unlink()
