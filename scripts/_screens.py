"""scripts/screens: fill a demo engine, serve its dashboard, screenshot each view."""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from ops_browser import chromium, dashboard_thread

import flowactors as fa
from flowactors.asl import AslRunner

ERRORS = [
    {"error": "PaymentDeclined", "cause": "card ending 4242 declined: insufficient funds"},
    {"error": "TimeoutError", "cause": "carrier API did not answer within 30 s"},
    {"error": "ValidationError", "cause": "address line 2 exceeds 64 characters"},
]
ASL = {
    "Comment": "Charge, then ship, with a retry on the carrier",
    "StartAt": "Validate",
    "States": {
        "Validate": {
            "Type": "Pass",
            "Result": {"ok": True},
            "ResultPath": "$.check",
            "Next": "Charge",
        },
        "Charge": {"Type": "Task", "Resource": "charge", "Next": "Ship"},
        "Ship": {
            "Type": "Task",
            "Resource": "ship",
            "Retry": [{"ErrorEquals": ["States.ALL"], "MaxAttempts": 2, "IntervalSeconds": 1}],
            "End": True,
        },
    },
}


async def fill(engine: fa.Engine) -> dict[str, str]:
    async def claim(flow_type: str, state: str, n: int, lease_ms: int = 60_000) -> list[fa.Flow]:
        return await engine.claim_due(
            flow_type, "worker-7", states=[state], limit=n, lease_ms=lease_ms
        )

    specs = [
        fa.CreateSpec(
            f"order-{i:05d}",
            payload=json.dumps(
                {"order": i, "sku": f"SKU-{i % 37:03d}", "amount": (i * 7919) % 20000 / 100}
            ).encode(),
            attributes={"tenant": ["acme", "globex", "initech"][i % 3]},
            correlation_id=f"cart-{i // 4:05d}",
        )
        for i in range(900)
    ]
    await engine.create_many("order", specs, state="placed")
    done = await claim("order", "placed", 600)
    await engine.complete_many(
        [fa.Ack(f.id, f.lease_token, f.fencing_token, b'{"shipped": true}') for f in done]
    )
    failing = await claim("order", "placed", 9)
    for i, f in enumerate(failing):
        await engine.fail(
            f.id, f.lease_token, f.fencing_token, error=json.dumps(ERRORS[i % 3]).encode()
        )
    waiting = await claim("order", "placed", 60)
    await engine.transition_many(
        [fa.Ack(f.id, f.lease_token, f.fencing_token) for f in waiting],
        "placed",
        "awaiting_payment",
    )
    await claim("order", "placed", 5, lease_ms=1)  # their workers "died": stuck flows
    await claim("order", "placed", 12)
    for f in (await engine.list_flows("order", "placed", limit=15)).items:
        await engine.cancel(f.id, reason=b"customer cancelled")
    await engine.create_many(
        "email", [fa.CreateSpec(f"mail-{i:04d}") for i in range(240)], state="queued"
    )
    mails = await claim("email", "queued", 200)
    await engine.complete_many([fa.Ack(f.id, f.lease_token, f.fencing_token) for f in mails])
    await engine.create(
        "campaign-spring", "campaign", state="fanout", attributes={"owner": "marketing"}
    )
    [parent] = await claim("campaign", "fanout", 1)
    await engine.spawn_children(
        "campaign-spring",
        parent.lease_token,
        parent.fencing_token,
        group_id="wave-1",
        children=[fa.ChildSpec(f"mail-spring-{i}", "email") for i in range(6)],
        success_state="report",
        failure_state="review",
    )
    # a failed order with a rich history: claimed, retried twice, then failed
    await engine.create(
        "order-vip-1",
        "order",
        state="charge",
        payload=b'{"order": "vip-1"}',
        attributes={"tenant": "acme", "priority": "vip"},
        values={"invoice.pdf": b"%PDF-1.7 " + b"0" * 18000, "note": b"call before delivery"},
    )
    for attempt in range(3):
        [job] = await engine.claim_due("order", f"worker-{attempt + 1}", states=["charge"], limit=1)
        if attempt < 2:
            await engine.retry(
                job.id, job.lease_token, job.fencing_token, delay_ms=0, error=b"gateway 503"
            )
        else:
            await engine.fail(
                job.id, job.lease_token, job.fencing_token, error=json.dumps(ERRORS[0]).encode()
            )

    def charge(params: Any) -> Any:
        return {"charged": True}

    def ship(params: Any) -> Any:
        return {"tracking": "1Z999AA10123456784"}

    runner = AslRunner(engine, {"charge": charge, "ship": ship})
    for i in range(3):
        await runner.execute(f"checkout-{i}", ASL, {"order": i})
    return {"failed": "order-vip-1", "asl": "checkout-0"}


async def traffic(engine: fa.Engine) -> None:
    """Steady work for the live figures."""
    n = 0
    while True:
        batch = [fa.CreateSpec(f"live-{n + i}") for i in range(150)]
        n += len(batch)
        await engine.create_many("email", batch, state="queued")
        jobs = await engine.claim_due("email", "worker-live", states=["queued"], limit=150)
        if jobs:
            await engine.complete_many([fa.Ack(f.id, f.lease_token, f.fencing_token) for f in jobs])
        await trio.sleep(0.05)


def main(out: str) -> None:
    target = Path(out)
    target.mkdir(parents=True, exist_ok=True)
    with (
        tempfile.TemporaryDirectory() as tmp,
        dashboard_thread(
            Path(tmp) / "shop-data",
            fill,
            background=traffic,
            refresh_ms=1000,
            data_dir="/srv/shop/flowactors-data",
        ) as (url, ids),
        chromium() as page,
    ):

        def shot(name: str, path: str) -> None:
            page.goto(url + path)
            page.wait_for_load_state("networkidle")
            page.screenshot(path=str(target / f"{name}.png"), full_page=True)
            print(f"saved {target / name}.png")

        page.goto(url)
        page.wait_for_timeout(4500)  # a few polls, so throughput has a curve
        page.screenshot(path=str(target / "overview.png"), full_page=True)
        print(f"saved {target / 'overview'}.png")
        shot("flows", "/flows?" + urlencode({"type": "order", "state": "failed"}))
        page.goto(url + "/flow?" + urlencode({"id": ids["failed"]}))
        page.click("button[data-value]")
        page.wait_for_timeout(300)
        page.screenshot(path=str(target / "flow.png"), full_page=True)
        print(f"saved {target / 'flow'}.png")
        shot("asl", "/flow?" + urlencode({"id": ids["asl"]}))
        shot(
            "confirm", "/confirm?" + urlencode({"do": "rewind", "id": ids["failed"], "version": 2})
        )


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "docs/screens")
