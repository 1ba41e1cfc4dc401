"""Single commands sent at once by many tasks, against the same commands one at a time.

A shard decides every request waiting on its channel as one batch, in one frame, and
decides single creates and single completes / fails that commute with what they pass
over as one run (`Shard._plan`). Two engines on one clock: the first gets each round's
commands from concurrent tasks (one command each), the second gets the very requests the
first one's shards received, in the order each shard received them, one at a time. Every
answer, every record and every history must be the same. One of the two types has an
installed policy, which makes its commands barriers that the other type's runs form
around.
"""

from __future__ import annotations

import contextlib
import tempfile
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing
from engine_helpers import FakeClock
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import flowactors as fa
from flowactors.engine import _machine as m
from flowactors.engine import _shard

TYPES = ("a", "b")
# Type b has a policy: its writes are settled one at a time (the cap trims its history,
# the deadline times its flows out), and a command of type b is decided alone.
POLICY = fa.FlowPolicy(history_max_events=3, max_active_ms=200)
IDS = [f"f{i}" for i in range(10)]

_op = st.one_of(
    st.tuples(
        st.just("create"),
        st.sampled_from(IDS),
        st.sampled_from(TYPES),
        st.sampled_from((None, b"pay")),
        st.booleans(),  # idempotent
        st.booleans(),  # with a named value (never joins a run)
        st.integers(0, 2),  # priority
    ),
    st.tuples(st.just("claim"), st.sampled_from(TYPES), st.integers(1, 2)),
    st.tuples(
        st.just("finish"),
        st.sampled_from(("complete", "fail", "move", "cancel", "get")),
        st.integers(0, 12),  # which held flow (an unknown id when out of range)
        st.sampled_from(("ok", "ok", "ok", "stale", "token")),
        st.sampled_from((None, b"out")),
    ),
)
_round = st.tuples(st.lists(_op, min_size=1, max_size=10), st.sampled_from((0, 0, 60, 250)))


async def _one(engine: Any, op: tuple[Any, ...], held: list[fa.Flow]) -> None:
    kind = op[0]
    try:
        if kind == "create":
            _, fid, ftype, payload, idempotent, valued, priority = op
            await engine.create(
                fid,
                ftype,
                payload=payload,
                idempotent=idempotent,
                values={"v": b"x"} if valued else None,
                priority=priority,
            )
        elif kind == "claim":
            held.extend(await engine.claim_due(op[1], "w", limit=op[2], lease_ms=100))
        else:
            _, how, i, variant, data = op
            if i >= len(held):
                fid, token, fencing = "nobody", "t", 1
            else:
                fid, token, fencing = held[i].id, held[i].lease_token, held[i].fencing_token
            if variant == "stale":
                fencing -= 1
            elif variant == "token":
                token = "someone-else"
            if how == "complete":
                await engine.complete(fid, token, fencing, result=data)
            elif how == "fail":
                await engine.fail(fid, token, fencing, error=data)
            elif how == "move":
                await engine.transition(fid, "running", "next", fencing, lease_token=token)
            elif how == "cancel":
                await engine.cancel(fid)
            else:
                await engine.get(fid, payload=True)
    except fa.FlowError:
        pass  # the request's own answer is compared below


def _answer(req: _shard.Request) -> Any:
    if req.error is not None:
        return (type(req.error).__name__, str(req.error))
    return _plain(req.result)


def _plain(result: Any) -> Any:
    if isinstance(result, fa.ItemResult):
        return (result.id, _plain(result.flow), repr(result.error))
    if isinstance(result, fa.Flow):
        return tuple(result)
    if isinstance(result, list):
        return [_plain(r) for r in result]
    return result


async def _state(engine: fa.Engine) -> list[Any]:
    engine._check()
    out: list[Any] = []
    for fid in [*IDS]:
        flow = await engine.get(fid, payload=True, values=["v"])
        out.append(_plain(flow))
        if flow is not None:
            events = await engine.history(fid)
            out.append([(e.name, e.at_ms, e.version, e.meta) for e in events])
    return out


async def _compare(base: Path, rounds: list[tuple[list[Any], int]]) -> list[int]:
    """Drive both engines round by round; the sizes of the runs the shards decided."""
    clock = FakeClock()
    runs: list[int] = []
    async with (
        fa.open_engine(base / "together", clock=clock, shards=2) as together,
        fa.open_engine(base / "one-by-one", clock=clock, shards=2) as serial,
    ):
        for engine in (together, serial):  # type b's commands are barriers to the others
            await engine.install_policy("b", POLICY)
        sent: list[tuple[int, _shard.Request]] = []
        call = together._call

        async def spy(shard: _shard.Shard, req: _shard.Request) -> Any:
            if req.command is not None or req.items is not None:
                sent.append((shard.index, req))  # the order this shard receives them in
            return await call(shard, req)

        together._call = spy  # type: ignore[method-assign]
        decide_run = _shard.Shard._execute_run

        def counted(self: _shard.Shard, run: Any, now: int, frames: Any) -> None:
            runs.append(len(run.members))
            decide_run(self, run, now, frames)

        held: list[fa.Flow] = []
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(_shard.Shard, "_execute_run", counted)
            for ops, advance in rounds:
                sent.clear()
                async with trio.open_nursery() as nursery:
                    for op in ops:
                        nursery.start_soon(_one, together, op, held)
                together._check()
                for index, req in sent:
                    again = _shard.Request(req.command, items=req.items, hydrate=req.hydrate)
                    with contextlib.suppress(fa.FlowError):
                        await serial._call(serial._shards[index], again)
                    assert _answer(again) == _answer(req), req.command
                clock.advance(advance)
        assert await _state(together) == await _state(serial)
    return runs


@given(st.lists(_round, min_size=1, max_size=6))
@settings(
    max_examples=80,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
def test_single_commands_sent_together_answer_as_one_by_one(
    rounds: list[tuple[list[Any], int]],
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        trio.run(_compare, Path(tmp), rounds)


async def _queued(engine: fa.Engine, commands: list[Any], together: bool) -> list[Any]:
    """Send `commands` to the engine's one shard: all queued before its actor runs again
    (one batch, in this order), or each awaited before the next is sent."""
    shard = engine._shards[0]
    requests = [_shard.Request(command) for command in commands]
    for request in requests:
        shard.send.send_nowait(request)
        if not together:
            await request.wait()
    for request in requests:
        await request.wait()
    return [_answer(request) for request in requests]


@pytest.mark.parametrize(
    "batch",
    [
        # creates run together; a claim of type a between them has due work of its own
        # and limit 2: a create of type a must not pass it (it would be claimed too)
        "create b, claim a, create a, create c",
        # a complete of f0 between two creates: the idempotent repeat of f0's create must
        # not pass it (it answers with the flow as the complete left it)
        "create b, complete f0, create f0, create c",
        # completes run together around claims of other types
        "complete f0, claim b, complete f1, create c, fail f2",
        # claims asking alike run as one claim, each taking its share in turn
        "claim a, claim a, create b, claim a",
        # a claim does not pass a create of its type
        "claim a, create a, claim a, create c",
        # with expired leases of the type, claims are decided one by one (a claim of
        # limit 2 reclaims one flow first, then takes due work; each of two claims of
        # limit 1 reclaims one)
        "expired: claim a, claim a, create c, create d",
    ],
)
async def test_runs_form_and_pass_only_what_they_commute_with(
    tmp_path: Path, batch: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    runs: list[int] = []
    decide_run = _shard.Shard._execute_run

    def counted(self: _shard.Shard, run: Any, now: int, frames: Any) -> None:
        runs.append(len(run.members))
        decide_run(self, run, now, frames)

    monkeypatch.setattr(_shard.Shard, "_execute_run", counted)
    answers = []
    for together in (True, False):
        clock = FakeClock()
        async with fa.open_engine(tmp_path / str(together), clock=clock, shards=1) as engine:
            for i in range(4):
                await engine.create(f"f{i}", "a")
            await engine.create("g0", "b")
            expired = batch.startswith("expired: ")
            lease = 100 if expired else 30_000
            held = {f.id: f for f in await engine.claim_due("a", "w", limit=3, lease_ms=lease)}
            if expired:
                clock.advance(200)
            commands: list[Any] = []
            for n, step in enumerate(batch.removeprefix("expired: ").split(", ")):
                verb, what = step.split()
                if verb == "create":
                    fid = what if what.startswith("f") else f"new{n}"
                    ftype = "a" if what.startswith("f") else what
                    # (a repeat of f0's create asks what it asked; new flows go first)
                    prio = 0 if what.startswith("f") else 2
                    commands.append(m.Create(fid, ftype, priority=prio, idempotent=True))
                elif verb in ("claim", "claim2"):
                    commands.append(m.Claim(what, "w", limit=2 if verb == "claim2" else 1))
                else:
                    f = held[what]
                    make = m.Complete if verb == "complete" else m.Fail
                    commands.append(make(f.id, f.lease_token, f.fencing_token))
            answers.append(await _queued(engine, commands, together))
            answers.append(await _state(engine))
    assert answers[0] == answers[2]
    assert answers[1] == answers[3]
    assert max(runs) >= 2  # something ran together (in the batch, not one by one)


async def test_a_cancelled_caller_is_not_answered_and_the_request_still_counts(
    tmp_path: Path,
) -> None:
    """A caller cancelled while it waits gets Cancelled; its request, already on the
    shard's channel, is decided and written all the same (as before replies were parked
    tasks), and the next caller is answered normally."""
    clock = FakeClock()
    async with fa.open_engine(tmp_path, clock=clock, shards=1) as engine:
        with trio.CancelScope() as scope:
            scope.cancel()  # already cancelled: nothing is sent
            await engine.create("never", "t")
        assert await engine.get("never") is None
        async with trio.open_nursery() as nursery:

            async def create_then_cancelled() -> None:
                await engine.create("sent", "t")

            nursery.start_soon(create_then_cancelled)
            await trio.testing.wait_all_tasks_blocked()
            nursery.cancel_scope.cancel()
        await trio.testing.wait_all_tasks_blocked()
        assert (await engine.get("sent")) is not None
        assert (await engine.create("after", "t")).id == "after"
