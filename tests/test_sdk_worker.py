"""SDK worker: batch claims under a concurrency limit, batched acknowledgements, automatic
lease extension, lost leases, exception policies, sync handlers in threads, graceful
shutdown, idle back-off - all in Trio's virtual time."""

from __future__ import annotations

import threading
from functools import partial
from pathlib import Path

import pytest
import trio
import trio.testing
from sdk_helpers import running, states_of, ticking, trio_engine, until

import flowactors as fa
from flowactors import Client, ExceptionPolicy, complete, retry, transition


async def test_queue_worker_completes_everything_in_batches(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    async with trio_engine(tmp_path) as engine:
        emails = Client(engine).queue(type="email")
        await emails.enqueue_many([fa.CreateSpec(f"e{i}", payload=b"u") for i in range(200)])
        in_handler = peak = 0

        async def send(job: fa.Context) -> bytes:
            nonlocal in_handler, peak
            in_handler += 1
            peak = max(peak, in_handler)
            await trio.sleep(0.05)
            in_handler -= 1
            return b"sent:" + (job.payload or b"")

        worker = emails.worker(concurrency=20, batch_size=20)
        async with running(worker, send):
            await until(lambda: _done(emails, 200))
        stats = worker.statistics()
        assert (stats.claimed, stats.completed, stats.in_flight, stats.lost_leases) == (
            200,
            200,
            0,
            0,
        )
        assert peak == 20
        assert stats.claim_calls < 200 // 5  # batched, not one claim per flow
        got = await emails.get("e7")
        assert got is not None and got.result == b"sent:u"


async def _done(wf: fa.Workflow, n: int) -> bool:
    return (await wf.info()).get("completed", 0) == n


async def test_state_machine_with_sync_and_async_handlers(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    async with trio_engine(tmp_path) as engine:
        order = Client(engine).workflow(type="order", initial_state="created")
        threads: set[bool] = set()

        @order.state("created")
        def created(job: fa.Context) -> fa.Transition:
            threads.add(threading.current_thread() is threading.main_thread())
            return transition("charged")

        @order.state("charged")
        async def charged(job: fa.Context) -> fa.Complete:
            return complete(result=f"ok:{job.id}")

        for i in range(30):
            await order.start(f"o{i}", payload=b"{}", idempotent=True)
        worker = order.worker(states=["created", "charged"], concurrency=8)
        async with running(worker):
            await until(lambda: _done(order, 30))
        stats = worker.statistics()
        assert (stats.transitioned, stats.completed) == (30, 30)
        assert threads == {False}  # the sync handler ran in worker threads
        names = [e.name for e in await order.history("o3")]
        assert names == ["created", "claimed", "transitioned", "claimed", "completed"]


async def test_a_long_handler_keeps_its_lease(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    async with trio_engine(tmp_path) as engine:
        wf = Client(engine).workflow(type="slow", initial_state="work")

        @wf.state("work", lease_ms=20_000)
        async def work(job: fa.Context) -> bytes:
            await trio.sleep(200)  # ten leases long
            return b"done"

        await wf.create("s")
        # The worker's own idle claims reclaim expired leases: had the lease lapsed, the
        # flow would show a reclaim and the first claim's acknowledgement would be lost.
        worker = wf.worker(max_idle_ms=1_000)
        async with running(worker):
            await until(lambda: _done(wf, 1))
        stats = worker.statistics()
        assert stats.lease_extensions >= 15 and stats.lost_leases == 0
        flow = await wf.get("s")
        assert flow is not None and (flow.reclaims, flow.result) == (0, b"done")


async def _running(wf: fa.Workflow) -> bool:
    return (await wf.info()).get("running", 0) > 0


async def test_a_lost_lease_is_counted_and_never_acknowledged(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    async with trio_engine(tmp_path) as engine:
        wf = Client(engine).workflow(type="t", initial_state="work")
        release = trio.Event()
        cancelled = []

        @wf.state("work", lease_ms=1_000)
        async def work(job: fa.Context) -> bytes:
            try:
                await release.wait()
            except trio.Cancelled:
                cancelled.append(job.id)
                raise
            return b"too late"

        await wf.create("a")
        worker = wf.worker()
        async with running(worker):
            await until(lambda: _running(wf))
            await wf.cancel("a", force=True, reason="operator")  # the lease is gone
            await trio.sleep(1)
            assert cancelled == ["a"]  # the extension failed: the handler was cancelled
        stats = worker.statistics()
        assert (stats.lost_leases, stats.completed, stats.in_flight) == (1, 0, 0)
        flow = await wf.get("a")
        assert flow is not None and flow.state == "cancelled" and flow.result is None


async def test_after_a_lost_lease_the_runner_takes_the_next_flow_uncancelled(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    # One runner (concurrency 1) runs both flows: the cancellation meant for the first,
    # even swallowed by its handler, must not reach the second.
    async with trio_engine(tmp_path) as engine:
        wf = Client(engine).workflow(type="t", initial_state="work")
        cancelled = []

        @wf.state("work", lease_ms=1_000)
        async def work(job: fa.Context) -> bytes:
            if job.id == "a":
                try:
                    await trio.sleep_forever()
                except trio.Cancelled:
                    cancelled.append(job.id)  # swallowed: the worker drops the result
                return b"too late"
            await trio.sleep(5)  # several lease extensions in the runner's next scope
            return b"b done"

        await wf.create("a")
        worker = wf.worker(concurrency=1)
        async with running(worker):
            await until(lambda: _running(wf))
            await wf.cancel("a", force=True, reason="operator")
            await until(lambda: _count(wf, "cancelled", 1))
            await trio.sleep(1)
            assert cancelled == ["a"]
            await wf.create("b")
            await until(lambda: _count(wf, "completed", 1))
        stats = worker.statistics()
        assert (stats.lost_leases, stats.completed, stats.in_flight) == (1, 1, 0)
        assert cancelled == ["a"]
        b = await wf.get("b")
        assert b is not None and (b.result, b.reclaims) == (b"b done", 0)


async def test_a_lease_lost_after_its_handler_returned_leaves_the_runner_scope_alone(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    # A runner's cancel scope outlives the job: once the handler returned, the scope may
    # run the runner's next job, so a late lost extension must not cancel it.
    from flowactors.sdk._worker import _Job

    async with trio_engine(tmp_path) as engine:
        wf = Client(engine).workflow(type="t", initial_state="work")
        await wf.create_many([fa.CreateSpec("running"), fa.CreateSpec("returned")])
        worker = wf.worker()
        jobs = {}
        for flow in await wf.claim_due(limit=2):
            jobs[flow.id] = _Job(fa.Context(wf, flow, 30_000), 0.0, trio.CancelScope())
            await wf.cancel(flow.id, force=True)  # the lease is gone
        worker._held.add(jobs["running"])  # its handler still runs; "returned"'s does not
        for job in jobs.values():
            await worker._extend(job)
        assert [(jobs[i].lost, jobs[i].scope.cancel_called) for i in ("running", "returned")] == [
            (True, True),
            (True, False),
        ]


async def test_handlers_that_wait_run_side_by_side(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    # Handlers that return at once run one after another in one runner; one that waits
    # must not hold up the rest of its batch.
    async with trio_engine(tmp_path) as engine:
        wf = Client(engine).workflow(type="t", initial_state="work")
        waiting = 0
        peak = 0

        @wf.state("work")
        async def work(job: fa.Context) -> bytes:
            nonlocal waiting, peak
            if int(job.id) % 2:
                return b"at once"
            waiting += 1
            peak = max(peak, waiting)
            await trio.sleep(10)
            waiting -= 1
            return b"waited"

        await wf.create_many([fa.CreateSpec(f"{i}") for i in range(40)])
        worker = wf.worker(concurrency=40, batch_size=40)
        started = trio.current_time()
        async with running(worker):
            await until(lambda: _count(wf, "completed", 40))
            took = trio.current_time() - started
        assert peak == 20 and 10 <= took < 15  # all twenty waited together
        assert worker.statistics().claimed == 40


async def test_a_thread_handler_that_lost_its_lease_is_not_acknowledged(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    async with trio_engine(tmp_path) as engine:
        wf = Client(engine).workflow(type="t", initial_state="work")

        @wf.state("work")
        def work(job: fa.Context) -> bytes:
            # Meanwhile an operator cancels the flow: this result must not be acknowledged.
            trio.from_thread.run(partial(wf.cancel, job.id, force=True))
            return b"result of a lost claim"

        await wf.create("a")
        worker = wf.worker()
        assert await worker.run_once() == 1
        stats = worker.statistics()
        assert (stats.lost_leases, stats.completed) == (1, 0)
        flow = await wf.get("a")
        assert flow is not None and flow.state == "cancelled" and flow.result is None


@pytest.mark.parametrize(
    ("policy", "state", "attempts"),
    [(ExceptionPolicy.RETRY, "work", 1), (ExceptionPolicy.FAIL, "failed", 0)],
)
async def test_exception_policies_retry_and_fail(
    tmp_path: Path,
    autojump_clock: trio.testing.MockClock,
    policy: ExceptionPolicy,
    state: str,
    attempts: int,
) -> None:
    async with trio_engine(tmp_path) as engine:
        wf = Client(engine).workflow(
            type="t",
            initial_state="work",
            retry_policy=fa.RetryPolicy(backoff="fixed", base_ms=60_000, jitter_pct=0),
        )

        @wf.state("work", exception_policy=policy)
        def work(job: fa.Context) -> bytes:
            raise RuntimeError("boom")

        await wf.create("a")
        assert await wf.run_once() == 1
        flow = await wf.get("a")
        assert flow is not None
        assert (flow.state, flow.attempts, flow.error) == (state, attempts, b"boom")


async def test_raise_policy_stops_the_worker_and_leaves_the_lease(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    async with trio_engine(tmp_path) as engine:
        wf = Client(engine).workflow(type="t", initial_state="work")

        @wf.state("work", exception_policy=ExceptionPolicy.RAISE)
        async def work(job: fa.Context) -> bytes:
            raise KeyError("bug")

        await wf.create("a")
        with pytest.raises(KeyError, match="bug"):
            await wf.worker().run()
        assert await wf.info() == {"running": 1}


async def test_handler_retry_outcome_uses_the_workflow_policy(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    async with trio_engine(tmp_path) as engine:
        wf = Client(engine).workflow(
            type="charge",
            initial_state="charge",
            retry_policy=fa.RetryPolicy(max_retries=2, backoff="fixed", base_ms=100, jitter_pct=0),
        )
        calls = []

        @wf.state("charge")
        async def charge(job: fa.Context) -> fa.Outcome:
            calls.append(fa.trio_clock_ms())
            return retry(error=b"rate limited")

        await wf.create("a")
        worker = wf.worker(idle_ms=1, max_idle_ms=5)
        async with running(worker):
            await until(lambda: _terminal(wf, "a"))
        assert len(calls) == 3 and calls[1] - calls[0] >= 100
        flow = await wf.get("a")
        assert flow is not None and (flow.state, flow.attempts) == ("failed", 3)


async def _terminal(wf: fa.Workflow, flow_id: str) -> bool:
    flow = await wf.get(flow_id)
    return flow is not None and flow.terminal


async def test_graceful_shutdown_releases_unfinished_work(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    async with trio_engine(tmp_path) as engine:
        wf = Client(engine).workflow(type="t", initial_state="work")

        @wf.state("work")
        async def work(job: fa.Context) -> bytes:
            await trio.sleep(3_600 if job.id == "slow" else 0.5)
            return b"ok"

        await wf.create("slow")
        await wf.create("quick")
        worker = wf.worker(shutdown_grace_ms=2_000)
        async with ticking(), trio.open_nursery() as nursery:
            await nursery.start(worker.run)
            await until(lambda: _count(wf, "running", 2))
            started = trio.current_time()
            worker.stop()
        # Returned after the grace period, not after the slow handler's hour.
        assert 2.0 <= trio.current_time() - started < 60
        stats = worker.statistics()
        assert (stats.completed, stats.released, stats.in_flight) == (1, 1, 0)
        slow = await wf.get("slow")
        assert slow is not None and (slow.state, slow.attempts, slow.lease_token) == (
            "work",
            0,
            None,
        )
        [again] = await wf.claim_due()  # due at once for the next worker
        assert again.id == "slow"


async def _count(wf: fa.Workflow, state: str, n: int) -> bool:
    return (await wf.info()).get(state, 0) == n


async def test_idle_polling_backs_off(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    async with trio_engine(tmp_path) as engine:
        q = Client(engine).queue(type="q")
        worker = q.worker(idle_ms=10, max_idle_ms=1_000)
        async with trio.open_nursery() as nursery:  # empty claims write nothing: exact time
            await nursery.start(worker.run, _noop)
            await trio.sleep(60)
            worker.stop()
        stats = worker.statistics()
        # 10, 20, ... 640 ms (7 polls, 1.27 s), then one poll a second: about 66 claims.
        assert 60 <= stats.claim_calls <= 68 and stats.empty_claims == stats.claim_calls


async def _noop(job: fa.Context) -> None:
    return None


async def test_a_create_through_the_workflow_wakes_an_idle_worker(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    async with trio_engine(tmp_path) as engine:
        q = Client(engine).queue(type="q")
        worker = q.worker(idle_ms=3_600_000, max_idle_ms=3_600_000)  # polls once an hour
        async with running(worker, _noop):
            await trio.sleep(1)
            created = trio.current_time()
            await q.enqueue("x")
            await until(lambda: _done(q, 1))
            assert trio.current_time() - created < 60  # woken, not at the next poll
        assert states_of(await q.info()) == {"completed": 1}


async def test_claim_values_hydrate_only_what_is_asked(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    async with trio_engine(tmp_path) as engine:
        orders = Client(engine).queue(type="order")
        await orders.enqueue(
            "o1",
            payload=b"routing",
            values={"invoice": b"%PDF" * 1000, "customer": b'{"name": "Ada"}'},
        )
        seen = {}

        # Async on purpose: a thread handler under the autojump clock failed this once in
        # a loaded CI run (seen == {}), not reproduced in isolation; threads have their own
        # tests, this one is about hydration.
        async def handle(job: fa.Context) -> bytes:
            seen.update(job.values)
            return b"ok"

        assert await orders.run_once(handler=handle, claim_values=["customer"]) == 1
        assert seen == {"customer": b'{"name": "Ada"}'}


async def test_a_handler_continues_through_steps_in_one_claim(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """`ctx.step_continue` stores a step durably and keeps the claim: the handler goes on
    with the new tokens (the old ones are stale), the payload it was given still at hand,
    and the worker acknowledges the final outcome under the last tokens."""
    async with trio_engine(tmp_path) as engine:
        scrape = Client(engine).workflow(type="scrape", initial_state="fetch")
        seen: list[tuple[str, int, bytes | None]] = []

        @scrape.state("fetch")
        async def fetch(job: fa.Context) -> fa.Complete:
            first = job.fencing_token
            await job.step_continue("parse", values={"page": b"<p>"})
            seen.append((job.state, job.fencing_token - first, job.payload))
            assert job.values["page"] == b"<p>"
            await job.step_continue(values={"parsed": b"p"})
            seen.append((job.state, job.fencing_token - first, job.payload))
            return complete(result="done")

        await scrape.start("s1", payload=b"url")
        worker = scrape.worker(states=["fetch"], concurrency=2)
        async with running(worker):
            await until(lambda: _done(scrape, 1))
        assert seen == [("parse", 1, b"url"), ("parse", 2, b"url")]
        assert worker.statistics().completed == 1
        names = [e.name for e in await scrape.history("s1")]
        assert names == ["created", "claimed", "step_continued", "step_continued", "completed"]
        flow = await engine.get("s1", values=("page", "parsed"))
        assert flow.values == {"page": b"<p>", "parsed": b"p"}


async def test_a_bad_step_continue_fails_only_its_own_handler(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """The worker sends its handlers' step_continues together; one with bad input is
    refused alone (its handler fails), the others go on."""
    async with trio_engine(tmp_path) as engine:
        jobs = Client(engine).workflow(type="jobs", initial_state="work")
        errors: list[str] = []

        @jobs.state("work")
        async def work(job: fa.Context) -> fa.Complete:
            target = "running" if job.id == "bad" else "next"  # 'running' is reserved
            try:
                await job.step_continue(target, values={"v": b"1"})
            except fa.InvalidArgument as exc:
                errors.append(f"{job.id}: {type(exc).__name__}")
                return fa.fail("bad step")
            return complete(result=job.state)

        for fid in ("a", "bad", "b", "c"):
            await jobs.start(fid)
        worker = jobs.worker(states=["work"], concurrency=8)
        async with running(worker):
            await until(lambda: _info_is(jobs, {"completed": 3, "failed": 1}))
        assert errors == ["bad: InvalidArgument"]
        for fid in ("a", "b", "c"):
            flow = await engine.get(fid)
            assert flow.result == b"next" and flow.value_sizes == {"v": 1}


async def _info_is(wf: fa.Workflow, want: dict[str, int]) -> bool:
    return await wf.info() == want


async def test_children_created_claimed_run_on_the_worker_with_no_claim(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """`transition(run_children=True)`: the children the worker can run (its workflow,
    due now, a state it serves, a slot: the parent's own, then free ones) are created
    claimed by it and run at once, hydrated as that state's claim would be; the rest are
    created as usual. The worker never runs more than `concurrency` handlers."""
    async with trio_engine(tmp_path) as engine:
        jobs = Client(engine).workflow(type="job", initial_state="split")
        seen: dict[str, tuple[bytes | None, bool, dict[str, bytes], int]] = {}
        busy = peak = 0

        @jobs.state("split")
        async def split(job: fa.Context) -> None:
            now = engine.now_ms()
            kids = [
                fa.ChildSpec(f"k{i}", "job", state="leaf", payload=b"p" * size,
                             values={"v": b"%d" % i, "w": b"-"})
                for i, size in enumerate((5, 3, 2))
            ]  # fmt: skip
            kids.append(fa.ChildSpec("later", "job", state="leaf", run_at_ms=now + 10))
            kids.append(fa.ChildSpec("elsewhere", "other", state="leaf"))
            await job.transition("joined", run_at_ms=now + 60_000, children=kids,
                                 run_children=True)  # fmt: skip

        @jobs.state("leaf", lease_ms=5_000, payload_max_bytes=4, claim_values=["v"])
        async def leaf(job: fa.Context) -> fa.Complete:
            nonlocal busy, peak
            busy += 1
            peak = max(peak, busy)
            lease_left = (job.flow.lease_deadline_ms or 0) - engine.now_ms()
            seen[job.id] = (job.payload, job.flow.payload_omitted, dict(job.values), lease_left)
            await trio.sleep(0.05)
            busy -= 1
            return complete(result="ok")

        await jobs.start("s")
        worker = jobs.worker(concurrency=2)
        with trio.fail_after(60):  # (virtual time: a slot counted twice never drains)
            async with running(worker):
                await until(lambda: _done(jobs, 4))
        stats = worker.statistics()
        assert (stats.adopted, stats.claimed, stats.in_flight) == (2, 5, 0)
        assert peak == 2
        # The first two: created claimed (the parent's slot, then the one free slot).
        for kid in ("k0", "k1"):
            events = await jobs.history(kid)
            assert [e.name for e in events] == ["created", "completed"]
            assert dict(events[0].meta) == {"worker": worker.name}
        assert [e.name for e in await jobs.history("k2")] == ["created", "claimed", "completed"]
        assert seen["k0"] == (None, True, {"v": b"0"}, 5_000)
        assert seen["k1"] == (b"ppp", False, {"v": b"1"}, 5_000)
        assert seen["k2"][:3] == (b"pp", False, {"v": b"2"})
        assert "claimed" in [e.name for e in await jobs.history("later")]
        other = await engine.get("elsewhere")
        assert other is not None and other.state == "leaf"


async def test_a_refused_transition_gives_back_the_slots_it_took(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    async with trio_engine(tmp_path) as engine:
        jobs = Client(engine).workflow(type="job", initial_state="split")
        await engine.create("taken", "job", state="leaf", run_at_ms=10**12)
        refused: list[fa.FlowError] = []

        @jobs.state("split")
        async def split(job: fa.Context) -> fa.Complete:
            kids = [fa.ChildSpec(k, "job", state="leaf") for k in ("k0", "k1", "taken")]
            try:
                await job.transition("joined", children=kids, run_children=True)
            except fa.FlowExists as exc:
                refused.append(exc)
            for bad in ([*kids[:2], ("k2", "job")], [*kids[:2], fa.ChildSpec("k0", "job")]):
                try:  # (not a ChildSpec; an id twice)
                    await job.transition("joined", children=bad, run_children=True)
                except fa.InvalidArgument as exc:
                    refused.append(exc)
            return complete(result="alone")

        @jobs.state("leaf")
        async def leaf(job: fa.Context) -> fa.Complete:
            return complete()

        await jobs.start("s")
        worker = jobs.worker(concurrency=3)
        with trio.fail_after(60):
            async with running(worker):
                await until(lambda: _done(jobs, 1))
        stats = worker.statistics()
        assert [type(exc) for exc in refused] == [fa.FlowExists, *[fa.InvalidArgument] * 2]
        assert (stats.adopted, stats.completed, stats.in_flight) == (0, 1, 0)
        assert await engine.get("k0") is None and await engine.get("k1") is None
