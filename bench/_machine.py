"""Facts about the machine a run measured: cores, Python, platform, the data dir's filesystem.

Read once per run and stored beside the figures, so a number is never quoted without the
hardware and filesystem that produced it.
"""

from __future__ import annotations

import gc
import os
import platform
import re
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

from flowactors.engine import _tuning
from flowactors.engine._tuning import TUNED_GEN0


@dataclass(frozen=True, slots=True)
class Machine:
    hostname: str
    cores: int  # logical CPUs the process may run on
    cpu_model: str
    memory_bytes: int
    python: str
    platform: str
    fs_type: str  # of the data directory, from /proc/mounts
    fs_mount: str
    fs_device: str
    free_disk_bytes: int
    gc: str = "default"  # CPython's GC thresholds in the run ("tuned ..." by flowactors.tune_gc)

    def flat(self) -> dict[str, str | int]:
        return {f"machine_{k}": v for k, v in asdict(self).items()}

    def short_name(self) -> str:
        """A file-name-safe machine name for saved results."""
        name = re.sub(r"[^a-z0-9-]+", "-", self.hostname.lower()).strip("-")
        return name or "unknown"


def describe(data_dir: Path) -> Machine:
    fs_type, mount, device = filesystem_of(data_dir)
    return Machine(
        hostname=platform.node() or "unknown",
        cores=_cores(),
        cpu_model=_cpu_model(),
        memory_bytes=_memory_bytes(),
        python=f"{platform.python_implementation()} {platform.python_version()}",
        platform=platform.platform(),
        fs_type=fs_type,
        fs_mount=mount,
        fs_device=device,
        free_disk_bytes=shutil.disk_usage(data_dir).free,
        gc=_gc(),
    )


def _gc() -> str:
    gen0, gen1, gen2 = gc.get_threshold()
    how = "tuned (flowactors.tune_gc)" if gen0 >= TUNED_GEN0 else "default"
    idle = _tuning._idle_gen0
    also = f", young collected when idle at {idle}" if idle is not None else ""
    return f"{how}: thresholds {gen0}/{gen1}/{gen2}{also}"


def filesystem_of(path: Path, mounts: str = "/proc/mounts") -> tuple[str, str, str]:
    """(type, mount point, device) of the mount holding `path`; "unknown" off Linux."""
    target = os.path.realpath(path)
    best: tuple[str, str, str] = ("unknown", "unknown", "unknown")
    best_len = -1
    try:
        with open(mounts, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except OSError:
        return best
    for line in lines:
        fields = line.split()
        if len(fields) < 3:
            continue
        device, mount, fs_type = (_unescape(x) for x in fields[:3])
        inside = target == mount or target.startswith(mount.rstrip("/") + "/")
        # `>=`: of two mounts on one point, the later one in the file is on top.
        if inside and len(mount) >= best_len:
            best, best_len = (fs_type, mount, device), len(mount)
    return best


def _unescape(field: str) -> str:
    """/proc/mounts writes space, tab, newline and backslash as octal escapes."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def _memory_bytes() -> int:
    try:
        with open("/proc/meminfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0
