"""Child process for the SIGKILL test: runs an engine workload on a data directory and
prints one line per *acknowledged* operation (flushed), so the parent knows exactly what
the engine promised before it was killed.

Lines: `created <id>`, `completed <id>`.
"""

from __future__ import annotations

import sys

import trio

import flowactors as fa


async def main(data_dir: str, prefix: str) -> None:
    out = sys.stdout
    async with fa.open_engine(data_dir, shards=2) as engine:
        n = 0
        while True:
            batch = [fa.CreateSpec(f"{prefix}-{n + i}", payload=b"p" * 64) for i in range(20)]
            n += len(batch)
            results = await engine.create_many("job", batch)
            out.write("".join(f"created {r.id}\n" for r in results if r.ok))
            out.flush()
            jobs = await engine.claim_due("job", f"w-{prefix}", limit=15, lease_ms=60_000)
            done = await engine.complete_many(
                [fa.Ack(j.id, j.lease_token, j.fencing_token, b"ok") for j in jobs]
            )
            out.write("".join(f"completed {r.id}\n" for r in done if r.ok))
            out.flush()


if __name__ == "__main__":
    trio.run(main, sys.argv[1], sys.argv[2])
