"""Task handlers for order.asl.json, by Task resource name. From the CLI:

flowactors asl run examples/asl/order.asl.json --input '{"id": 1, "subtotal": 9,
    "shipping": 1, "items": ["pen"]}' --handlers examples/asl/order_handlers.py:HANDLERS
"""

from __future__ import annotations

from typing import Any

from flowactors.asl import TaskError


def charge(request: dict[str, Any]) -> dict[str, Any]:
    """A card charge (sync: it runs in a worker thread)."""
    if request["amount"] > 10_000:
        raise TaskError("CardDeclined", f"{request['amount']} is over the card limit")
    return {"receipt": f"rcpt-{request['orderId']}", "gateway": "test"}


async def ship(order_id: Any) -> dict[str, Any]:
    """A shipment (async: it runs in the worker's Trio task)."""
    return {"carrier": "post", "tracking": f"TRK-{order_id}"}


HANDLERS = {"charge": charge, "ship": ship}
