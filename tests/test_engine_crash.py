"""Power loss and I/O errors under the engine, on the simulated disk.

Every session opens the engine on one `SimulatedFileSystem`, runs one command and closes it
cleanly (a clean close is no crash). Crash sessions arm `crash_after(n)` once the engine is
open, so the power fails inside the command (often inside its group commit) or inside the
close; the next open must then show, per flow, either the state before the command or the
state after it (computed by running the same command on a copy of the disk: the engine is
deterministic on a fake clock). Acknowledged commands must always survive.
"""

from __future__ import annotations

import copy
import errno
import random
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import trio
from engine_helpers import FakeClock
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    precondition,
    rule,
    run_state_machine_as_test,
)
from sizing import examples

import flowactors as fa
import wal
from wal.testing import SimulatedFileSystem

PATH = "/data/engine"
SHARDS = 2
TYPE = "job"
IDS = tuple(f"f{i}" for i in range(6))
VALUE = "v"
LEASE_MS = 10_000

Snapshot = dict[str, Any]
Cmd = tuple[Any, ...]


class Counters:
    crash_points = 0
    faults = 0
    acked_verified = 0
    lost = 0
    rolled_back = 0  # interrupted commands that left nothing
    rolled_forward = 0  # interrupted commands that survived whole
    stale_rejected = 0


COUNT = Counters()


def shard_of(flow_id: str) -> int:
    return fa.slot_of(flow_id) % SHARDS


def norm(flow: fa.Flow | None) -> fa.Flow | None:
    if flow is None:
        return None
    return flow._replace(
        attributes=dict(flow.attributes),
        values=dict(flow.values),
        value_sizes=dict(flow.value_sizes),
    )


async def snapshot(engine: fa.Engine, ids: tuple[str, ...] = IDS) -> Snapshot:
    return {i: norm(await engine.get(i, payload=True, values=[VALUE])) for i in ids}


def new_fs(seed: int = 0) -> SimulatedFileSystem:
    """A disk whose /data already exists durably (missing parents are tested on their own)."""
    fs = SimulatedFileSystem(seed)
    fs.makedirs("/data")
    fs.sync_dir("/")
    return fs


def clone(fs: SimulatedFileSystem) -> SimulatedFileSystem:
    """A copy of a quiet disk (no open engine): same files, same pending directory ops."""
    twin = SimulatedFileSystem()
    twin._root = copy.deepcopy(fs._root)
    return twin


def open_engine(fs: SimulatedFileSystem, clock: FakeClock) -> Any:
    # io_threads=False: commits run inline, so the shards' disk calls reach the simulated
    # disk in one order (Trio's scheduling is deterministic under hypothesis; thread timing
    # is not), and a crash point names the same call in every replay of an example.
    return fa.open_engine(PATH, shards=SHARDS, sync="always", fs=fs, clock=clock, io_threads=False)


async def perform(engine: fa.Engine, cmd: Cmd, model: Snapshot) -> Any:
    """Run one command; tokens come from the acknowledged model."""
    kind = cmd[0]
    if kind == "create":
        _, fid, payload, value = cmd
        return await engine.create(
            fid, TYPE, payload=payload, values=None if value is None else {VALUE: value}
        )
    if kind == "create_many":
        _, ids, payload = cmd
        specs = [fa.CreateSpec(i, payload=payload) for i in ids]
        return await engine.create_many(TYPE, specs)
    if kind == "claim":
        return await engine.claim_due(TYPE, "w", limit=cmd[1], lease_ms=LEASE_MS)
    if kind == "put_value":
        return await engine.put_value(cmd[1], VALUE, cmd[2], override=True)
    fid = cmd[1]
    f = model.get(fid)
    token = f.lease_token if f is not None else None
    fence = f.fencing_token if f is not None else 0
    if kind == "transition":
        src = "running" if f is not None and f.state == "running" else (f.state if f else "queued")
        return await engine.transition(fid, src, "stage2", fence, lease_token=token)
    if kind == "transition_claiming":  # a child created claimed, waking its parent
        # (the parent: the first claimed flow there is, else one that refuses)
        p = next((x for x in model.values() if x is not None and x.lease_token), f)
        kid = fa.ChildSpec(cmd[2], TYPE, lease_ms=LEASE_MS, wake_parent=True)
        return await engine.transition_claiming(
            fid if p is None else p.id, "running", "stage2",
            0 if p is None else p.fencing_token, lease_token=None if p is None else p.lease_token,
            run_at_ms=10**12, children=[kid],
        )  # fmt: skip
    if kind == "complete":
        return await engine.complete(fid, token, fence, result=cmd[2])
    if kind == "retry":
        return await engine.retry(fid, token, fence, error=b"boom", delay_ms=0)
    if kind == "fail":
        return await engine.fail(fid, token, fence, error=b"bad")
    if kind == "cancel":
        return await engine.cancel(fid, fencing_token=fence, lease_token=token)
    if kind == "signal":
        if cmd[2]:  # transitioning, with an idempotency key: a replay writes nothing
            return await engine.signal(
                fid,
                "go",
                if_state=["queued", "running", "stage2"],
                transition_to="signaled",
                idempotency_key="k",
            )
        return await engine.signal(fid, "note", values={VALUE: b"signal"})
    raise AssertionError(kind)


def quiet_run(fn: Callable[[], Awaitable[None]]) -> BaseException | None:
    """trio.run that returns (not raises) what a power loss made the engine raise."""
    try:
        trio.run(fn)
    except AssertionError:
        raise
    except Exception as exc:  # includes ExceptionGroup
        return exc
    return None


def run_plain(fs: SimulatedFileSystem, clock: FakeClock, cmd: Cmd, model: Snapshot) -> Snapshot:
    """Run a command on an undisturbed disk; the flows afterwards."""
    out: Snapshot = {}

    async def main() -> None:
        async with open_engine(fs, clock) as engine:
            try:
                await perform(engine, cmd, model)
            except fa.FlowError as exc:
                assert not isinstance(exc, fa.StorageError), exc
            out.update(await snapshot(engine))

    trio.run(main)
    return out


class EngineMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.fs = SimulatedFileSystem()
        self.clock = FakeClock()
        self.model: Snapshot = dict.fromkeys(IDS)
        self.max_fence: dict[str, int] = {}
        self.stale: set[tuple[str, str, int]] = set()
        self.unverified_acks = 0

    # -- model bookkeeping ----------------------------------------------------------------

    def set_model(self, new: Snapshot) -> None:
        for fid, flow in new.items():
            if flow is None:
                continue
            assert flow.fencing_token >= self.max_fence.get(fid, 0), "fencing token went back"
            self.max_fence[fid] = flow.fencing_token
            old = self.model.get(fid)
            if old is not None and old.lease_token and flow.fencing_token > old.fencing_token:
                self.stale.add((fid, old.lease_token, old.fencing_token))
        self.model = new

    def verify(
        self,
        observed: Snapshot,
        alts: list[Snapshot] | None = None,
        groups: tuple[tuple[str, ...], ...] = (),
    ) -> None:
        alts = alts or [self.model]
        for fid in IDS:
            choices = [a[fid] for a in alts]
            if observed[fid] not in choices:
                COUNT.lost += 1
            assert observed[fid] in choices, (fid, observed[fid], choices)
        for group in groups:  # atomic per shard: all before, or all after
            assert any(all(observed[i] == a[i] for i in group) for a in alts), group
        if len(alts) == 2 and alts[0] != alts[1]:
            if observed == alts[0]:
                COUNT.rolled_back += 1
            elif observed == alts[1]:
                COUNT.rolled_forward += 1
        COUNT.acked_verified += self.unverified_acks
        self.unverified_acks = 0
        self.set_model(observed)

    # -- sessions -----------------------------------------------------------------------

    def session(self, cmd: Cmd | None) -> Any:
        """Open, verify, run `cmd` (acknowledged), close cleanly."""
        out: dict[str, Any] = {}

        async def main() -> None:
            async with open_engine(self.fs, self.clock) as engine:
                engine._check()
                out["opened"] = await snapshot(engine)
                if cmd is not None:
                    try:
                        out["ret"] = await perform(engine, cmd, self.model)
                    except fa.FlowError as exc:
                        assert not isinstance(exc, fa.StorageError), exc
                        out["err"] = exc
                    out["after"] = await snapshot(engine)
                engine._check()

        trio.run(main)
        self.verify(out["opened"])
        if cmd is not None:
            self.set_model(out["after"])
            self.unverified_acks += 1
        return out

    def recover(
        self, alts: list[Snapshot], groups: tuple[tuple[str, ...], ...], crash_in_open: int
    ) -> None:
        """Reopen after a power loss (maybe losing power again inside recovery)."""
        if crash_in_open:
            self.fs.crash_after(crash_in_open, torn=True, rng=random.Random(crash_in_open))

            async def reopen() -> None:
                async with open_engine(self.fs, self.clock) as engine:
                    engine._check()

            quiet_run(reopen)
            if self.fs.halted:
                self.fs.restart()
            else:
                self.fs.crash(torn=True, rng=random.Random(crash_in_open))
            COUNT.crash_points += 1
        out: dict[str, Snapshot] = {}

        async def main() -> None:
            async with open_engine(self.fs, self.clock) as engine:
                engine._check()
                out["opened"] = await snapshot(engine)

        trio.run(main)
        self.verify(out["opened"], alts, groups)

    def crashing(self, cmd: Cmd, n: int, torn: bool, seed: int, crash_in_open: int) -> None:
        pre = dict(self.model)
        post = run_plain(clone(self.fs), self.clock, cmd, pre)
        out: dict[str, Any] = {}
        rng = random.Random(seed)

        async def main() -> None:
            async with open_engine(self.fs, self.clock) as engine:
                out["opened"] = await snapshot(engine)
                self.fs.crash_after(n, torn=torn, rng=rng)
                try:
                    await perform(engine, cmd, pre)
                except fa.FlowError as exc:
                    if isinstance(exc, fa.StorageError):
                        assert isinstance(exc, fa.ShardBroken), exc
                        return
                out["after"] = await snapshot(engine)

        quiet_run(main)
        self.verify(out["opened"])
        if self.fs.halted:
            self.fs.restart()
        else:
            self.fs.crash(torn=torn, rng=rng)
        COUNT.crash_points += 1
        if "after" in out:  # acknowledged before the power failed
            assert out["after"] == post
            self.unverified_acks += 1
            alts = [post]
        else:
            alts = [pre, post]
        groups: tuple[tuple[str, ...], ...] = ()
        if cmd[0] == "create_many":
            groups = tuple(tuple(i for i in cmd[1] if shard_of(i) == s) for s in range(SHARDS))
        self.recover(alts, groups, crash_in_open)

    # -- rules --------------------------------------------------------------------------

    @initialize(seed=st.integers(0, 2**32 - 1))
    def start(self, seed: int) -> None:
        self.fs = new_fs(seed)
        self.session(None)

    commands = st.one_of(
        st.tuples(
            st.just("create"),
            st.sampled_from(IDS),
            st.none() | st.binary(max_size=30),
            st.none() | st.binary(max_size=10),
        ),
        st.tuples(
            st.just("create_many"),
            st.lists(st.sampled_from(IDS), min_size=1, max_size=4, unique=True).map(tuple),
            st.binary(max_size=10),
        ),
        st.tuples(st.just("claim"), st.integers(1, 5)),
        st.tuples(st.just("transition"), st.sampled_from(IDS)),
        st.tuples(st.just("transition_claiming"), st.sampled_from(IDS), st.sampled_from(IDS)),
        st.tuples(st.just("complete"), st.sampled_from(IDS), st.binary(max_size=20)),
        st.tuples(st.just("retry"), st.sampled_from(IDS)),
        st.tuples(st.just("fail"), st.sampled_from(IDS)),
        st.tuples(st.just("cancel"), st.sampled_from(IDS)),
        st.tuples(st.just("put_value"), st.sampled_from(IDS), st.binary(max_size=20)),
        st.tuples(st.just("signal"), st.sampled_from(IDS), st.booleans()),
    )

    @rule(cmd=commands)
    def command(self, cmd: Cmd) -> None:
        self.session(cmd)

    @rule(ms=st.sampled_from([0, 500, 2_000, LEASE_MS + 1]))
    def advance_clock(self, ms: int) -> None:
        self.clock.advance(ms)

    @rule(
        cmd=commands,
        n=st.integers(1, 12),
        torn=st.booleans(),
        seed=st.integers(0, 2**32 - 1),
        crash_in_open=st.sampled_from([0, 0, 0, 1, 3, 6]),
    )
    def crash_inside_command(
        self, cmd: Cmd, n: int, torn: bool, seed: int, crash_in_open: int
    ) -> None:
        self.crashing(cmd, n, torn, seed, crash_in_open)

    @precondition(
        lambda self: any(f is not None and f.state == "running" for f in self.model.values())
    )
    @rule(torn=st.booleans(), seed=st.integers(0, 2**32 - 1))
    def crash_then_reclaim(self, torn: bool, seed: int) -> None:
        self.fs.crash(torn=torn, rng=random.Random(seed))  # power loss between commands
        COUNT.crash_points += 1
        self.recover([self.model], (), 0)
        self.clock.advance(LEASE_MS + 1)
        self.session(("claim", 5))
        self.check_stale()

    @precondition(lambda self: bool(self.stale))
    @rule()
    def check_stale(self) -> None:
        """A worker whose lease was reclaimed can change nothing."""
        for fid, token, fence in sorted(self.stale):
            current = self.model[fid]
            assert current is not None and current.fencing_token > fence
            out: dict[str, Any] = {}

            async def main(
                fid: str = fid, token: str = token, fence: int = fence, out: Any = out
            ) -> None:
                async with open_engine(self.fs, self.clock) as engine:
                    out["opened"] = await snapshot(engine)
                    errors = []
                    for call in (
                        engine.complete(fid, token, fence, result=b"stale"),
                        engine.transition(fid, "running", "stage2", fence, lease_token=token),
                        engine.retry(fid, token, fence),
                    ):
                        try:
                            await call
                        except fa.FlowError as exc:
                            errors.append(exc)
                    out["errors"] = errors
                    out["after"] = await snapshot(engine)

            trio.run(main)
            self.verify(out["opened"])
            want = fa.FlowTerminal if current.terminal else fa.StaleLease
            assert len(out["errors"]) == 3
            assert all(type(e) is want for e in out["errors"]), out["errors"]
            assert out["after"] == self.model
            COUNT.stale_rejected += 3
        self.stale.clear()

    @precondition(lambda self: any(f is None for f in self.model.values()))
    @rule(
        fault=st.sampled_from(
            [
                ("append", errno.ENOSPC),
                ("append", errno.EIO),
                ("sync", errno.EIO),
                ("sync", errno.ENOSPC),
            ]
        ),
        data=st.data(),
        torn=st.booleans(),
        seed=st.integers(0, 2**32 - 1),
    )
    def io_fault(self, fault: tuple[Any, int], data: st.DataObject, torn: bool, seed: int) -> None:
        fid = data.draw(st.sampled_from([i for i in IDS if self.model[i] is None]))
        cmd: Cmd = ("create", fid, b"payload", b"val")
        pre = dict(self.model)
        post = run_plain(clone(self.fs), self.clock, cmd, pre)
        out: dict[str, Any] = {}

        async def main() -> None:
            async with open_engine(self.fs, self.clock) as engine:
                out["opened"] = await snapshot(engine)
                self.fs.fail_next(*fault)
                with pytest.raises(fa.ShardBroken) as info:
                    await perform(engine, cmd, pre)
                assert isinstance(info.value, fa.FlowError)
                assert isinstance(info.value, wal.LogBroken)
                with pytest.raises(fa.ShardBroken):
                    await engine.get(fid)
                with pytest.raises(fa.ShardBroken):
                    await engine.put_value(fid, VALUE, b"x")

        trio.run(main)
        COUNT.faults += 1
        self.verify(out["opened"])
        self.fs.crash(torn=torn, rng=random.Random(seed))
        COUNT.crash_points += 1
        self.recover([pre] if fault[0] == "append" else [pre, post], (), 0)


# About 10 ms of CPU a step (measured 2026-12-03): quick 100 x 50 steps (~50 s), long
# 300 x 100 (~5 min).
EXAMPLES, STEPS = examples(100, 300), examples(50, 100)


def test_engine_machine(report: Callable[[str], None]) -> None:
    before = COUNT.crash_points
    run_state_machine_as_test(
        EngineMachine,
        settings=settings(max_examples=EXAMPLES, stateful_step_count=STEPS, deadline=None),
    )
    report(
        f"engine machine: {EXAMPLES} runs of up to {STEPS} steps, "
        f"{COUNT.crash_points - before} crash points, "
        f"{COUNT.faults} faults, {COUNT.acked_verified} acknowledged writes verified, "
        f"interrupted commands rolled back {COUNT.rolled_back} / forward "
        f"{COUNT.rolled_forward}, {COUNT.stale_rejected} stale-lease calls rejected"
    )


# -- every crash point of a fixed workload ------------------------------------------------


def workload(clock: FakeClock) -> list[Callable[[fa.Engine, dict[str, Any]], Awaitable[Any]]]:
    async def claim(engine: fa.Engine, held: dict[str, Any]) -> None:
        for f in await engine.claim_due(TYPE, "w", limit=5, lease_ms=LEASE_MS):
            held[f.id] = f

    async def advance_and_claim(engine: fa.Engine, held: dict[str, Any]) -> None:
        clock.advance(LEASE_MS + 5_000)
        await claim(engine, held)

    def tok(held: dict[str, Any], fid: str) -> tuple[str, int]:
        return held[fid].lease_token, held[fid].fencing_token

    return [
        lambda e, h: e.create("a", TYPE, payload=b"pa", values={VALUE: b"va"}),
        lambda e, h: e.create("b", TYPE, payload=b"pb"),
        lambda e, h: e.create_many(TYPE, [fa.CreateSpec(i, payload=i.encode()) for i in "cde"]),
        claim,
        lambda e, h: e.complete("a", *tok(h, "a"), result=b"ra"),
        lambda e, h: e.retry("b", *tok(h, "b"), error=b"eb", delay_ms=0),
        lambda e, h: e.transition(
            "c", "running", "stage2", h["c"].fencing_token, lease_token=h["c"].lease_token
        ),
        lambda e, h: e.fail("d", *tok(h, "d"), error=b"ed"),
        lambda e, h: e.put_value("e", VALUE, b"ve"),
        advance_and_claim,
        lambda e, h: e.cancel(
            "e", fencing_token=h["e"].fencing_token, lease_token=h["e"].lease_token
        ),
        lambda e, h: e.create("f", TYPE, payload=b"pf"),
    ]


WIDS = tuple("abcdef")


def run_workload(fs: SimulatedFileSystem, snaps: list[Snapshot] | None) -> tuple[int, Any]:
    """Run the workload; return how many commands were acknowledged (and the error)."""
    clock = FakeClock()
    steps = workload(clock)
    acked = 0

    async def main() -> None:
        nonlocal acked
        held: dict[str, Any] = {}
        async with open_engine(fs, clock) as engine:
            if snaps is not None:
                snaps.append(await snapshot(engine, WIDS))
            for step in steps:
                result = await step(engine, held)
                if isinstance(result, list) and not all(r.ok for r in result):
                    raise RuntimeError(f"not acknowledged: {result}")
                acked += 1
                if snaps is not None:
                    snaps.append(await snapshot(engine, WIDS))

    error = quiet_run(main)
    return acked, error


def reopen_snapshot(fs: SimulatedFileSystem) -> Snapshot:
    out: Snapshot = {}

    async def main() -> None:
        async with open_engine(fs, FakeClock()) as engine:
            engine._check()
            out.update(await snapshot(engine, WIDS))
            engine._check()

    trio.run(main)
    return out


def test_every_crash_point_of_a_workload(report: Callable[[str], None]) -> None:
    dry = new_fs()
    snaps: list[Snapshot] = []
    acked, error = run_workload(dry, snaps)
    assert error is None and acked == len(snaps) - 1
    total = dry.statistics().ops - new_fs().statistics().ops
    points = 0
    for k in range(1, total + 1):
        for torn in (False, True):
            fs = new_fs(k)
            fs.crash_after(k, torn=torn, rng=random.Random(k))
            acked, error = run_workload(fs, None)
            assert fs.halted, (k, error)
            fs.restart()
            points += 1
            got = reopen_snapshot(fs)
            allowed = snaps[acked : acked + 2]
            for fid in WIDS:
                if got[fid] not in [s[fid] for s in allowed]:
                    COUNT.lost += 1
                assert got[fid] in [s[fid] for s in allowed], (k, torn, acked, fid)
            COUNT.acked_verified += acked
    COUNT.crash_points += points
    report(f"workload: {total} disk calls, {points} crash points")


# -- I/O errors -----------------------------------------------------------------------------


def same_shard_ids(n: int) -> list[str]:
    out = [i for i in (f"x{j}" for j in range(100)) if shard_of(i) == 0]
    return out[:n]


@pytest.mark.parametrize(
    "op,code",
    [("append", errno.ENOSPC), ("append", errno.EIO), ("sync", errno.EIO), ("sync", errno.ENOSPC)],
)
def test_io_error_breaks_the_shard(op: Any, code: int) -> None:
    fs = new_fs(7)
    clock = FakeClock()
    first, second, victim = same_shard_ids(3)
    other = next(i for i in (f"y{j}" for j in range(100)) if shard_of(i) == 1)
    acked: Snapshot = {}

    async def main() -> None:
        async with open_engine(fs, clock) as engine:
            for fid in (first, second, other):
                await engine.create(fid, TYPE, payload=fid.encode(), values={VALUE: b"v"})
            (job,) = [f for f in await engine.claim_due(TYPE, "w", limit=3) if f.id == first]
            await engine.complete(first, job.lease_token, job.fencing_token, result=b"done")
            acked.update(await snapshot(engine, (first, second, other, victim)))
            fs.fail_next(op, code)
            with pytest.raises(fa.ShardBroken) as info:
                await engine.create(victim, TYPE, payload=b"lost?")
            assert isinstance(info.value, fa.FlowError)
            assert isinstance(info.value, wal.LogBroken)
            with pytest.raises(fa.ShardBroken):  # reads too
                await engine.get(first)
            with pytest.raises(fa.ShardBroken):
                await engine.put_value(second, VALUE, b"later")
            assert engine.statistics()["shards"][0]["broken"]

    trio.run(main)
    COUNT.faults += 1
    fs.crash(torn=True, rng=random.Random(code))
    COUNT.crash_points += 1
    got: Snapshot = {}

    async def reopen() -> None:
        async with open_engine(fs, clock) as engine:
            engine._check()
            got.update(await snapshot(engine, (first, second, other, victim)))

    trio.run(reopen)
    for fid in (first, second, other):
        assert got[fid] == acked[fid]
        COUNT.acked_verified += 1
    if op == "append":
        assert got[victim] is None
    elif got[victim] is not None:
        assert got[victim].payload == b"lost?"


def test_new_engine_dir_with_missing_parents_survives_power_loss() -> None:
    fs = SimulatedFileSystem()  # "/data" does not exist yet
    clock = FakeClock()

    async def create() -> None:
        async with open_engine(fs, clock) as engine:
            await engine.create("a", TYPE, payload=b"acknowledged")

    trio.run(create)  # acknowledged and cleanly closed
    fs.crash(torn=False)
    got: Snapshot = {}

    async def reopen() -> None:
        async with open_engine(fs, clock) as engine:
            got.update(await snapshot(engine, ("a",)))

    trio.run(reopen)
    assert got["a"] is not None, "an acknowledged flow vanished in a power loss"


def test_summary(report: Callable[[str], None]) -> None:
    report(
        f"engine crash suite: {COUNT.crash_points} crash points, {COUNT.faults} faults "
        f"injected, {COUNT.acked_verified} acknowledged writes verified, lost {COUNT.lost}"
    )
    assert COUNT.lost == 0
