"""`flowactors demo`: order workflows that survive a real SIGKILL of their worker process.

Each order goes created -> charged -> shipped -> completed; every step is a claim under a
lease and a fenced transition, durably committed before it is acknowledged. The engine and
its workers run in a child process that reports every acknowledged completion through a
pipe. Partway through, the parent kills it with SIGKILL, starts it again (timing the
recovery), lets it finish, and then checks the books itself: every order completed, none
lost, none acknowledged twice (a reclaimed order can only be completed by its new holder:
the killed worker's fencing token is stale).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import trio
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from ._engine import Engine, open_engine
from ._errors import StaleLease
from ._types import Ack, CreateSpec

STEPS = {"created": "charged", "charged": "shipped"}  # last step: shipped -> completed
TYPE = "order"
LEASE_MS = 2_000


# -- the worker process -------------------------------------------------------------------


async def _worker(engine: Engine, name: str, out: trio.MemorySendChannel[str]) -> None:
    while True:
        jobs = await engine.claim_due(TYPE, name, limit=100, lease_ms=LEASE_MS)
        if not jobs:
            await trio.sleep(0.01)
            continue
        by_state: dict[str, list[Ack]] = {}
        for job in jobs:
            by_state.setdefault(job.logical_state, []).append(
                Ack(job.id, job.lease_token, job.fencing_token, b"delivered")
            )
        for state, acks in by_state.items():
            if state in STEPS:
                await engine.transition_many(acks, "running", STEPS[state])
            else:
                for result in await engine.complete_many(acks):
                    if result.ok:
                        await out.send(result.id)
                    elif not isinstance(result.error, StaleLease):
                        assert result.error is not None
                        raise result.error


async def worker_main(data_dir: str, prefix: str, orders: int, workers: int) -> None:
    """Child process: open (timed), create this run's orders if missing, work until done.

    Prints `opened <seconds>`, then one `ack <id>` per acknowledged completion.
    """
    started = time.perf_counter()
    async with open_engine(data_dir) as engine:
        print(f"opened {time.perf_counter() - started:.4f}", flush=True)
        ids = [f"{prefix}-{i:06d}" for i in range(orders)]
        if await engine.get(ids[-1]) is None:
            specs = [CreateSpec(i, payload=b'{"amount": 42}') for i in ids]
            for i in range(0, len(specs), 1000):
                await engine.create_many(
                    TYPE, specs[i : i + 1000], state="created", idempotent=True
                )
        send, receive = trio.open_memory_channel[str](10_000)
        async with trio.open_nursery() as nursery:
            for w in range(workers):
                nursery.start_soon(_worker, engine, f"{prefix}-worker-{os.getpid()}-{w}", send)
            while True:
                batch = [await receive.receive()]
                while True:
                    try:
                        batch.append(receive.receive_nowait())
                    except trio.WouldBlock:
                        break
                sys.stdout.write("".join(f"ack {i}\n" for i in batch))
                sys.stdout.flush()
                counts = await engine.info(TYPE)
                if counts.get("completed", 0) >= await _total(engine) and not counts.get("running"):
                    nursery.cancel_scope.cancel()


async def _total(engine: Engine) -> int:
    return sum((await engine.info(TYPE)).values())


# -- the parent: progress, the kill, the checks --------------------------------------------


def _spawn(data_dir: str, prefix: str, orders: int, workers: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "flowactors._demo", data_dir, prefix, str(orders), str(workers)],
        stdout=subprocess.PIPE,
    )


def run_demo(data_dir: str, orders: int, workers: int, console: Console) -> None:
    console.print(f"[bold]flowactors demo[/]: {orders} orders, data in {os.path.abspath(data_dir)}")
    prefix = f"order-{time.strftime('%Y%m%d-%H%M%S')}"
    acks: list[str] = []
    recovery: list[float] = []
    kill_at = max(1, orders * 2 // 5)
    started = time.perf_counter()
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    ) as progress:
        bar = progress.add_task("worker process 1", total=orders)
        for attempt in (1, 2):
            child = _spawn(data_dir, prefix, orders, workers)
            assert child.stdout is not None
            killed = False
            for raw in child.stdout:
                kind, _, value = raw.decode().strip().partition(" ")
                if kind == "opened":
                    recovery.append(float(value))
                elif kind == "ack":
                    acks.append(value)
                    progress.update(bar, completed=len(set(acks)))
                if attempt == 1 and len(acks) >= kill_at:
                    child.send_signal(signal.SIGKILL)
                    killed = True
                    break
            child.wait()
            if killed:
                progress.update(bar, description="[red]SIGKILL[/]ed; worker process 2")
            elif child.returncode != 0:
                raise SystemExit(f"flowactors demo: worker process failed ({child.returncode})")
        elapsed = time.perf_counter() - started
        # Acks the killed process wrote but never got to send are durable all the same:
        # the parent's own reading of the engine is the final word.
        completed, missing = trio.run(_check, data_dir, prefix, orders)
        progress.update(bar, completed=completed, description="checked by the parent")
    twice = len(acks) - len(set(acks))
    table = Table(title="demo result")
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_row("orders", f"{orders}")
    table.add_row("orders completed", f"{completed}")
    table.add_row("lost (acknowledged, then missing)", f"{missing}")
    table.add_row("acknowledged twice", f"{twice}")
    table.add_row("worker process killed (SIGKILL)", f"after {kill_at} acknowledged orders")
    table.add_row(
        "recovery time (open after the kill)",
        f"{recovery[-1] * 1000:.0f} ms" if len(recovery) > 1 else "-",
    )
    table.add_row(
        "throughput",
        f"{orders / elapsed:,.0f} orders/s, {4 * orders / elapsed:,.0f}"
        " durable steps/s (incl. the restart and the lease wait)",
    )
    console.print(table)
    if completed != orders or missing or twice:
        raise SystemExit("flowactors demo: the books do not balance")


async def _check(data_dir: str, prefix: str, orders: int) -> tuple[int, int]:
    """Count this run's completed orders; a missing or unfinished one counts as lost."""
    completed = missing = 0
    async with open_engine(data_dir) as engine:
        for i in range(orders):
            flow = await engine.get(f"{prefix}-{i:06d}")
            if flow is not None and flow.state == "completed" and flow.result == b"delivered":
                completed += 1
            else:
                missing += 1
    return completed, missing


if __name__ == "__main__":
    trio.run(worker_main, sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
