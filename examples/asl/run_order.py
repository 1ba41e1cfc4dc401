"""Run order.asl.json durably: two orders through an embedded engine, one shipped and one
declined, then the stored history of the first.

    python examples/asl/run_order.py [DATA_DIR]
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import trio
from order_handlers import HANDLERS

import flowactors
from flowactors.asl import AslRunner

DEFINITION = (Path(__file__).parent / "order.asl.json").read_text()
ORDERS = {
    "order-1": {"id": 1, "subtotal": 40, "shipping": 5, "items": ["book", "pen"]},
    "order-2": {"id": 2, "subtotal": 20_000, "shipping": 0, "items": ["piano"]},
}


async def main(data_dir: str) -> None:
    async with flowactors.open_engine(data_dir) as engine:
        runner = AslRunner(engine, HANDLERS)
        for name, order in ORDERS.items():
            await runner.start(name, DEFINITION, order)
        async with trio.open_nursery() as nursery:
            await nursery.start(runner.run)
            done = [await runner.wait(name) for name in ORDERS]
            nursery.cancel_scope.cancel()
        for info in done:
            outcome = info.output if info.error is None else f"{info.error}: {info.cause}"
            print(f"{info.name}: {info.status.value} {outcome}")
        steps = [e["type"] for e in await runner.history("order-1")]
        print(f"order-1 history: {len(steps)} events, {steps[0]} .. {steps[-1]}")


if __name__ == "__main__":
    if len(sys.argv) > 1:
        trio.run(main, sys.argv[1])
    else:
        with tempfile.TemporaryDirectory(prefix="flowactors-asl-") as tmp:
            trio.run(main, tmp)
