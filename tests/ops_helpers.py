"""Shared helpers for the flowactors.ops tests: a seeded engine with every kind of flow
the dashboard shows (hostile text included), and a tiny HTTP client for the real server."""

from __future__ import annotations

import http.client
import json
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import trio

import flowactors as fa

EVIL = "<script>alert(1)</script>"


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode()

    def json(self) -> Any:
        return json.loads(self.body)


async def seed(engine: fa.Engine) -> dict[str, str]:
    """Flows of three types in several states - one failed with a hostile error, one
    whose id, state, payload, attribute and named value carry EVIL, a parent with two
    children - and returns their ids by role."""
    ids = {
        "queued": "o-queued",
        "evil": f"o-{EVIL}",
        "running": "o-running",
        "failed": "o-failed",
        "done": "o-done",
        "parent": "p-1",
    }
    await engine.create(ids["queued"], "order", payload=b'{"sku": 1}', attributes={"tenant": "t1"})
    await engine.create(
        ids["evil"],
        "order",
        state=EVIL,
        payload=EVIL.encode(),
        attributes={"k": EVIL},
        values={"note": EVIL.encode()},
    )
    await engine.create(
        ids["failed"],
        "order",
        state="charge",
        payload=b"boom",
        correlation_id="batch-7",
        run_at_ms=0,
    )
    await engine.create(ids["done"], "order", state="ship", values={"receipt": b"paid"})
    await engine.create(ids["running"], "order", state="pack")
    for state, fid in (("charge", ids["failed"]), ("ship", ids["done"]), ("pack", ids["running"])):
        [job] = await engine.claim_due("order", "worker-1", states=[state], limit=1)
        assert job.id == fid
        if fid == ids["failed"]:
            await engine.fail(fid, job.lease_token, job.fencing_token, error=EVIL.encode())
        elif fid == ids["done"]:
            await engine.complete(fid, job.lease_token, job.fencing_token, result=b"ok")
    await engine.create(ids["parent"], "batch", state="fan")
    [parent] = await engine.claim_due("batch", "worker-1", limit=1)
    await engine.spawn_children(
        ids["parent"],
        parent.lease_token,
        parent.fencing_token,
        group_id="g",
        children=[fa.ChildSpec("c-1", "mail"), fa.ChildSpec("c-2", "mail")],
        success_state="done",
        failure_state="broken",
    )
    return ids


def request(
    base: str,
    path: str,
    *,
    method: str = "GET",
    form: Mapping[str, str] | None = None,
    headers: Mapping[str, str] | None = None,
) -> Reply:
    """One HTTP request (blocking; no redirects followed)."""
    parts = urllib.parse.urlsplit(base)
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=30)
    body = urllib.parse.urlencode(form).encode() if form is not None else None
    hdrs = dict(headers or {})
    if body is not None:
        hdrs["content-type"] = "application/x-www-form-urlencoded"
    try:
        conn.request(method, path, body=body, headers=hdrs)
        resp = conn.getresponse()
        return Reply(resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read())
    finally:
        conn.close()


async def arequest(base: str, path: str, **kwargs: object) -> Reply:
    return await trio.to_thread.run_sync(lambda: request(base, path, **kwargs))  # type: ignore[arg-type]
