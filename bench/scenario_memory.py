"""The `memory` scenario: resident memory per live flow of an opened engine.

The data dir is built as in `restart`: N live flows (1M; 50k with --quick), queued, with
100-byte payloads, created with sync="never" and closed cleanly. Each measured run is a
fresh Python process (`sys.executable -c ...`, running `probe` below) that imports
flowactors and Trio, runs `gc.collect()` and reads its RSS from /proc/self/statm, opens
the engine (sync="always", default shards: 1), checks `info()` reports all N flows, runs
`gc.collect()` and reads its RSS again with the engine still open. The difference over N
is the RSS per live flow: the wal keydirs plus the shards' flow records and indexes.

The keydir share comes from the same process: per shard, `sys.getsizeof` of the keydir's
dict plus of its packed location ints (the key bytes objects counted apart), over N.
"""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
from pathlib import Path

import trio

import flowactors

from ._engine_util import build_live, dir_bytes, expect_live
from ._registry import register
from ._session import Floor, Metric, Session

PAYLOAD_BYTES = 100
RSS_FLOOR = 1024.0  # bytes per live flow
ROOT = Path(__file__).resolve().parent.parent

PROBE = "import sys; from bench.scenario_memory import probe; probe(sys.argv[1], int(sys.argv[2]))"


@register("memory")
def memory_scenario(session: Session) -> None:
    """engine: RSS per live flow (1M live flows), measured in a fresh process; keydir share."""
    n = 50_000 if session.quick else 1_000_000
    session.section(f"an engine opened on {n:,} live flows (100-byte payloads), fresh process")
    with session.scratch("memory") as path:
        session.progress(f"building {n:,} live flows")
        build_live(path, n, PAYLOAD_BYTES)
        gc.collect()
        session.record(Metric("memory_live_flows", "live flows in the engine", "flows"), n)
        session.record(
            Metric("memory_data_dir_bytes_per_live_flow", "data dir bytes per live flow", "bytes"),
            dir_bytes(path) / n,
        )

        def once() -> dict[str, float]:
            got = _probe_in_subprocess(path, n)
            before, after = got["rss_before"], got["rss_after"]
            keydir, keys = got["keydir_bytes"], got["keydir_key_bytes"]
            return {
                "memory_rss_bytes_per_live_flow": (after - before) / n,
                "memory_keydir_bytes_per_live_flow": keydir / n,
                "memory_keydir_key_bytes_per_live_flow": keys / n,
                "memory_other_bytes_per_live_flow": (after - before - keydir - keys) / n,
                "memory_rss_before_open_mb": before / 1e6,
                "memory_rss_after_open_mb": after / 1e6,
            }

        session.measure(
            once,
            [
                Metric(
                    "memory_rss_bytes_per_live_flow",
                    "RSS growth from opening, per live flow",
                    "bytes",
                    Floor("memory_rss_bytes_per_live_flow", "<=", RSS_FLOOR),
                ),
                Metric(
                    "memory_keydir_bytes_per_live_flow",
                    "  of which wal keydirs: dicts + location ints",
                    "bytes",
                ),
                Metric(
                    "memory_keydir_key_bytes_per_live_flow",
                    "  of which wal keydirs: key bytes objects",
                    "bytes",
                ),
                Metric(
                    "memory_other_bytes_per_live_flow",
                    "  the rest: flow records, indexes, allocator slack",
                    "bytes",
                ),
                Metric("memory_rss_before_open_mb", "RSS before opening", "MB"),
                Metric("memory_rss_after_open_mb", "RSS after opening", "MB"),
            ],
            what=f"RSS of a fresh process opening {n:,} live flows",
            warmup=False,  # each run is a fresh process; the build warmed the page cache
        )


def _probe_in_subprocess(path: Path, n: int) -> dict[str, float]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    done = subprocess.run(
        [sys.executable, "-c", PROBE, str(path), str(n)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"memory probe failed ({done.returncode}):\n{done.stderr}")
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def probe(path: str, n: int) -> None:
    """In a fresh process: RSS before and after opening the engine, and keydir sizes.
    Prints one JSON object."""

    async def opened() -> dict[str, float]:
        async with flowactors.open_engine(path) as engine:
            await expect_live(engine, n)
            gc.collect()
            after = rss_bytes()
            keydir = keys = 0
            for shard in engine._shards:
                kmap = shard.log._keydir.map
                keydir += sys.getsizeof(kmap) + sum(sys.getsizeof(v) for v in kmap.values())
                keys += sum(sys.getsizeof(k) for k in kmap)
            return {"rss_after": after, "keydir_bytes": keydir, "keydir_key_bytes": keys}

    gc.collect()
    before = rss_bytes()
    out = trio.run(opened)
    out["rss_before"] = before
    print(json.dumps(out), flush=True)
