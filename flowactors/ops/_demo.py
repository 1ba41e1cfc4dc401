"""`flowactors demo`: order workflows that survive a real SIGKILL of their worker process.

Each order goes created -> charged -> shipped -> completed, declared as an SDK workflow and
run by SDK workers (`order_workflow`): every step is a claim under a lease and a fenced
acknowledgement, durably committed before it counts. The engine and its workers run in a
child process that reports every acknowledged completion through a
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

from ..engine._engine import Engine, open_engine
from ..engine._types import CreateSpec, Flow
from ..sdk._client import Client
from ..sdk._outcomes import Outcome, transition
from ..sdk._worker import Worker
from ..sdk._workflow import Context, Workflow

TYPE = "order"
LEASE_MS = 2_000


# -- the worker process -------------------------------------------------------------------


def order_workflow(engine: Engine) -> Workflow:
    """The demo's workflow, declared with the SDK: three states, each a handler that
    returns its outcome; the SDK worker claims, runs and acknowledges in batches."""
    order = Client(engine).workflow(type=TYPE, initial_state="created")

    @order.state("created", lease_ms=LEASE_MS, claim_payload=False)
    async def created(job: Context) -> Outcome:
        return transition("charged")  # charge the card

    @order.state("charged", lease_ms=LEASE_MS, claim_payload=False)
    async def charged(job: Context) -> Outcome:
        return transition("shipped")  # hand the parcel over

    @order.state("shipped", lease_ms=LEASE_MS, claim_payload=False)
    async def shipped(job: Context) -> bytes:
        return b"delivered"  # on_ok: complete, with this result

    return order


async def worker_main(data_dir: str, prefix: str, orders: int, workers: int) -> None:
    """Child process: open (timed), create this run's orders if missing, work until done.

    Prints `opened <seconds>`, then one `ack <id>` per completion, written only once the
    worker's acknowledgement is durable (the Worker's `on_ack`).
    """
    started = time.perf_counter()
    async with open_engine(data_dir) as engine:
        print(f"opened {time.perf_counter() - started:.4f}", flush=True)
        order = order_workflow(engine)
        ids = [f"{prefix}-{i:06d}" for i in range(orders)]
        if await engine.get(ids[-1]) is None:
            specs = [CreateSpec(i, payload=b'{"amount": 42}') for i in ids]
            for i in range(0, len(specs), 1000):
                await order.create_many(specs[i : i + 1000], idempotent=True)
        acked: list[str] = []

        def on_ack(flow: Flow) -> None:
            if flow.state == "completed":
                acked.append(flow.id)

        pool = [
            Worker(
                order,
                name=f"{prefix}-worker-{os.getpid()}-{w}",
                concurrency=500,
                batch_size=250,
                idle_ms=5,
                max_idle_ms=100,
                on_ack=on_ack,
            )
            for w in range(workers)
        ]
        async with trio.open_nursery() as nursery:
            for worker in pool:
                await nursery.start(worker.run)
            while True:
                await trio.sleep(0.02)
                if acked:
                    sys.stdout.write("".join(f"ack {i}\n" for i in acked))
                    sys.stdout.flush()
                    acked.clear()
                counts = await order.info()
                if counts.get("completed", 0) >= sum(counts.values()):
                    for worker in pool:
                        worker.stop()
                    break
        lost = sum(w.statistics().lost_leases for w in pool)
        print(f"lost_leases {lost}", flush=True)


# -- the parent: progress, the kill, the checks --------------------------------------------


def _spawn(data_dir: str, prefix: str, orders: int, workers: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "flowactors.ops._demo", data_dir, prefix, str(orders), str(workers)],
        stdout=subprocess.PIPE,
    )


def run_demo(data_dir: str, orders: int, workers: int, console: Console) -> None:
    console.print(
        f"[bold]flowactors demo[/]: {orders} orders through {workers} SDK workers, "
        f"data in {os.path.abspath(data_dir)}"
    )
    prefix = f"order-{time.strftime('%Y%m%d-%H%M%S')}"
    acks: list[str] = []
    recovery: list[float] = []
    stale = 0  # acknowledgements the SDK workers refused to send: their lease was gone
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
                elif kind == "lost_leases":
                    stale += int(value)
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
    table.add_row("flows completed", f"{completed}")
    table.add_row("lost (acknowledged, then missing)", f"{missing}")
    table.add_row("acknowledged twice", f"{twice}")
    table.add_row("stale acks withheld (lease lost)", f"{stale}")
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
