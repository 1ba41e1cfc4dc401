"""The dashboard over HTTP, on a real hypercorn server inside the test's Trio program:
every view renders, hostile text is escaped, actions need confirmation + CSRF and act as
fenced engine commands, read-only refuses them, a non-loopback bind needs a token."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import urlencode

import pytest
import trio
from ops_helpers import EVIL, arequest, seed

import flowactors as fa
from flowactors import ops


@asynccontextmanager
async def served(tmp_path: Path, **options: object) -> AsyncIterator[tuple[fa.Engine, str]]:
    async with fa.open_engine(tmp_path / "d", shards=2) as engine, trio.open_nursery() as n:
        url = await n.start(
            lambda task_status: ops.serve_dashboard(
                engine, port=0, task_status=task_status, **options
            )
        )
        yield engine, url
        n.cancel_scope.cancel()


def _csrf(html: str) -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', html)
    assert match, "no CSRF token in the form"
    return match.group(1)


async def test_every_view_renders_and_escapes_hostile_text(tmp_path: Path) -> None:
    async with served(tmp_path) as (engine, url):
        ids = await seed(engine)
        pages = {
            "/": None,
            "/flows?" + urlencode({"type": "order", "state": EVIL}): ids["evil"],
            "/flow?" + urlencode({"id": ids["evil"]}): ids["evil"],
            "/flow?" + urlencode({"id": ids["failed"]}): "failed",
            "/flow?" + urlencode({"id": ids["parent"]}): "c-1",
            "/confirm?" + urlencode({"do": "cancel", "id": ids["evil"]}): "Confirm",
        }
        for path, expected in pages.items():
            reply = await arequest(url, path)
            assert reply.status == 200, (path, reply.text[:500])
            assert "<script>alert" not in reply.text, path
            if expected:
                assert expected.replace("<", "&lt;").replace(">", "&gt;") in reply.text, path
            assert "script-src 'self'" in reply.headers["content-security-policy"]
        overview = (await arequest(url, "/")).text
        assert "o-failed" in overview  # recent failures
        assert "&lt;script&gt;" in overview  # the hostile state is a column, escaped
        api = await arequest(url, "/api/flow?" + urlencode({"id": ids["evil"]}))
        assert api.headers["content-type"].startswith("application/json")
        data = api.json()
        assert data["flow"]["state"] == EVIL and data["values"] == {"note": len(EVIL)}
        payload = (await arequest(url, "/flow?" + urlencode({"id": ids["evil"]}))).text
        assert (
            payload.count("&lt;script&gt;alert(1)&lt;/script&gt;") >= 4
        )  # id, state, attr, payload


async def test_values_are_fetched_on_click_only(tmp_path: Path) -> None:
    async with served(tmp_path) as (engine, url):
        ids = await seed(engine)
        page = (await arequest(url, "/flow?" + urlencode({"id": ids["done"]}))).text
        assert "receipt" in page and "paid" not in page  # listed with its size, not shown
        value = await arequest(
            url, "/api/value?" + urlencode({"id": ids["done"], "name": "receipt"})
        )
        assert value.status == 200 and b'"text":"paid"' in value.body
        missing = await arequest(url, "/api/value?" + urlencode({"id": ids["done"], "name": "x"}))
        assert missing.status == 404


async def test_rewind_needs_confirmation_and_csrf(tmp_path: Path) -> None:
    async with served(tmp_path) as (engine, url):
        ids = await seed(engine)
        fid = ids["failed"]
        history = await engine.history(fid)
        created = history[0].version
        confirm = await arequest(
            url, "/confirm?" + urlencode({"do": "rewind", "id": fid, "version": created})
        )
        assert confirm.status == 200
        assert (await engine.get(fid)).state == "failed"  # confirming changes nothing
        form = {"do": "rewind", "id": fid, "version": str(created), "seen_state": "failed"}
        forged = await arequest(url, "/action", method="POST", form={**form, "csrf": "nope"})
        assert forged.status == 403
        assert (await engine.get(fid)).state == "failed"
        done = await arequest(
            url, "/action", method="POST", form={**form, "csrf": _csrf(confirm.text)}
        )
        assert done.status == 303
        assert (await engine.get(fid)).state == "charge"
        flash = await arequest(url, done.headers["location"])
        assert "Rewound to v" in flash.text
        # the same form again: the fence (seen state "failed") refuses it
        again = await arequest(
            url, "/action", method="POST", form={**form, "csrf": _csrf(confirm.text)}
        )
        page = await arequest(url, again.headers["location"])
        assert "refused" in page.text and "WrongState" in page.text


async def test_retry_cancel_and_signal(tmp_path: Path) -> None:
    async with served(tmp_path) as (engine, url):
        ids = await seed(engine)
        csrf = _csrf(
            (
                await arequest(url, "/confirm?" + urlencode({"do": "retry", "id": ids["failed"]}))
            ).text
        )

        async def act(**form: str) -> None:
            reply = await arequest(url, "/action", method="POST", form={"csrf": csrf, **form})
            assert reply.status == 303, reply.text

        await act(do="retry", id=ids["failed"])
        flow = await engine.get(ids["failed"])
        assert flow.state == "charge" and flow.next_run_at_ms is not None
        queued = await engine.get(ids["queued"])
        await act(
            do="cancel", id=ids["queued"], fencing=str(queued.fencing_token), reason="operator"
        )
        assert (await engine.get(ids["queued"])).state == "cancelled"
        await act(do="signal", id=ids["running"], name="poke", values='{"why": "test"}')
        events = [e.name for e in await engine.history(ids["running"])]
        assert events[-1] == "signaled"
        assert await engine.get_values(ids["running"], ["why"]) == {"why": b"test"}
        # cancel a parent: its children follow (the engine's cascade)
        parent = await engine.get(ids["parent"])
        await act(do="cancel", id=ids["parent"], fencing=str(parent.fencing_token))
        await engine.settle()
        assert {(await engine.get(c)).state for c in ("c-1", "c-2")} == {"cancelled"}


async def test_read_only_hides_and_refuses_actions(tmp_path: Path) -> None:
    async with served(tmp_path, read_only=True) as (engine, url):
        ids = await seed(engine)
        page = (await arequest(url, "/flow?" + urlencode({"id": ids["failed"]}))).text
        assert "read-only" in page
        assert "/confirm" not in page and "rewind here" not in page
        assert (
            await arequest(url, "/confirm?" + urlencode({"do": "retry", "id": ids["failed"]}))
        ).status == 403
        post = await arequest(
            url, "/action", method="POST", form={"do": "retry", "id": ids["failed"], "csrf": "x"}
        )
        assert post.status == 403
        assert (await engine.get(ids["failed"])).state == "failed"


async def test_non_loopback_needs_a_token(tmp_path: Path) -> None:
    async with fa.open_engine(tmp_path / "d", shards=1) as engine:
        with pytest.raises(fa.InvalidArgument, match="token"):
            await ops.serve_dashboard(engine, host="0.0.0.0", port=0)
    assert ops.is_loopback("127.0.0.1") and ops.is_loopback("::1")
    assert not ops.is_loopback("0.0.0.0") and not ops.is_loopback("10.1.2.3")


async def test_token_gate(tmp_path: Path) -> None:
    async with served(tmp_path, token="s3cret") as (_engine, url):
        assert (await arequest(url, "/")).status == 401
        assert (await arequest(url, "/metrics")).status == 401
        assert (await arequest(url, "/", headers={"authorization": "Bearer wrong"})).status == 401
        ok = await arequest(url, "/", headers={"authorization": "Bearer s3cret"})
        assert ok.status == 200
        first = await arequest(url, "/flows?token=s3cret&type=order")
        assert first.status == 303 and "token" not in first.headers["location"]
        cookie = first.headers["set-cookie"].split(";")[0]
        assert "HttpOnly" in first.headers["set-cookie"]
        assert (await arequest(url, "/flows", headers={"cookie": cookie})).status == 200


async def test_bad_requests_are_pages_not_crashes(tmp_path: Path) -> None:
    async with served(tmp_path) as (engine, url):
        await seed(engine)
        assert (await arequest(url, "/flow?id=nope")).status == 404
        assert (await arequest(url, "/flow")).status == 400
        assert (await arequest(url, "/flows?type=order&limit=x")).status == 400
        assert (await arequest(url, "/confirm?do=explode&id=o-done")).status == 400
        assert (await arequest(url, "/api/flow?id=nope")).status == 404
        listing = await arequest(url, "/flows?type=order&state=terminal")
        assert listing.status == 200 and "o-done" in listing.text
        since = await arequest(url, "/flows?type=order&state=terminal&from_ms=2000-01-01")
        assert "o-done" in since.text and "o-failed" in since.text
        before = await arequest(url, "/flows?type=order&state=terminal&to_ms=2000-01-01")
        assert "o-done" not in before.text and "No flows match" in before.text
        assert (await arequest(url, "/flows?type=order&from_ms=soon")).status == 400
        lineage = await arequest(url, "/flows?parent=p-1")
        assert "c-1" in lineage.text and "c-2" in lineage.text
        corr = await arequest(url, "/flows?correlation=batch-7")
        assert "o-failed" in corr.text


async def test_asl_execution_has_a_step_view(tmp_path: Path) -> None:
    from flowactors.asl import AslRunner

    definition = {
        "StartAt": "Add",
        "States": {
            "Add": {"Type": "Task", "Resource": "add", "Next": "Done"},
            "Done": {"Type": "Succeed"},
        },
    }
    async with served(tmp_path) as (engine, url):
        runner = AslRunner(engine, {"add": lambda x: {"sum": x["a"] + x["b"]}})
        await runner.execute("exec-1", definition, {"a": 1, "b": 2})
        page = (await arequest(url, "/flow?id=exec-1")).text
        assert "ASL steps" in page
        for event in ("ExecutionStarted", "TaskScheduled", "TaskSucceeded", "ExecutionSucceeded"):
            assert event in page
        steps = (await arequest(url, "/api/flow?id=exec-1")).json()["asl_steps"]
        assert steps and steps[0]["chunk"] == "ev:000001"
        assert steps[-1]["events"][-1]["type"] == "ExecutionSucceeded"


async def test_overview_json_and_paging(tmp_path: Path) -> None:
    async with served(tmp_path) as (engine, url):
        await engine.create_many("bulk", [fa.CreateSpec(f"b-{i:03d}") for i in range(7)])
        data = (await arequest(url, "/api/overview")).json()
        assert data["counts"]["bulk"] == {"queued": 7}
        assert data["totals"]["flows"] == 7 and len(data["shards"]) == 2
        # (a write went to one shard; how it reached the disk depends on the machine)
        assert {s["sync_via"] for s in data["shards"]} <= {"", "aio", "thread"}
        assert any(s["sync_via"] for s in data["shards"])
        seen: list[str] = []
        path = "/api/flows?type=bulk&state=queued&limit=3"
        while True:
            page = (await arequest(url, path)).json()
            seen += [f["id"] for f in page["flows"]]
            if not page["cursor"]:
                break
            path = "/api/flows?" + urlencode(
                {"type": "bulk", "state": "queued", "limit": 3, "cursor": page["cursor"]}
            )
        assert sorted(seen) == [f"b-{i:03d}" for i in range(7)]
        html_page = (await arequest(url, "/flows?type=bulk&state=queued&limit=3")).text
        assert "Next page" in html_page


async def test_without_a_token_only_loopback_host_names_are_served(tmp_path: Path) -> None:
    async with served(tmp_path) as (_engine, url):
        for host in ("127.0.0.1:8642", "localhost", "[::1]:8642"):
            assert (await arequest(url, "/", headers={"host": host})).status == 200, host
        for host in ("evil.example", "evil.example:8642", "127.0.0.1.evil.example"):
            assert (await arequest(url, "/", headers={"host": host})).status == 403, host
