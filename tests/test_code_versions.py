"""Drift and versions on the engine: a run whose replay drifts is parked visibly (not lost)
and resumes once fixed; the code hash is stored at start, a run whose version is not
registered waits (parked, listed) until it is; `patched` migrates in place."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import trio
import trio.testing
from code_helpers import code_runner

import flowactors as fa
from flowactors.code import Context, Registry, workflow

MODE = {"branch": "a"}


async def step(name: str) -> str:
    return name


def define(reg: Registry) -> Any:
    @workflow(name="flow", check=False, registry=reg)
    async def flow(ctx: Context, _: None) -> Any:
        first = await ctx.activity(step, MODE["branch"])  # depends on a global: drift
        got = await ctx.signal("go")
        return [first, got]

    return flow


async def test_drift_parks_the_run_visibly_and_resume_moves_it_on(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    reg = Registry()
    define(reg)
    MODE["branch"] = "a"
    # sticky_runs=0: every wake replays from the top, as on another worker or after a
    # restart (a worker that keeps the suspended coroutine would not re-run the code).
    async with code_runner(tmp_path, reg, sticky_runs=0) as r, r.running():
        await r.start("flow", "d1", None)
        await trio.sleep(1)
        MODE["branch"] = "b"
        await r.signal("d1", "go", 1)
        await trio.sleep(1)
        info = await r.describe("d1")
        assert info.status == "parked" and info.parked is not None
        assert info.parked["reason"] == "nondeterminism"
        assert "activity 'step'" in info.parked["expected"]
        assert info.parked["position"] == 0
        assert [p.run_id for p in await r.parked()] == ["d1"]
        assert len(await r.history("d1")) == 3  # nothing of the drifted replay was stored
        MODE["branch"] = "a"
        await r.resume("d1")
        assert await r.result("d1") == ["a", 1]


def version(reg: Registry, v: int) -> Any:
    @workflow(name="versioned", version=v, check=False, registry=reg)
    async def versioned(ctx: Context, _: None) -> Any:
        got = await ctx.signal("go")
        if v == 2 and ctx.patched("v2-extra"):
            return ["v2", got]
        return [f"v{v}", got]

    return versioned


async def test_a_run_of_an_unregistered_version_waits_until_it_is_registered(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    old_reg, new_reg = Registry(), Registry()
    v1 = version(old_reg, 1)
    v2 = version(new_reg, 2)
    assert v1.code_hash != v2.code_hash
    async with code_runner(tmp_path, old_reg) as old:
        await old.start(v1, "v-1", None)
        async with old.running():
            await trio.sleep(1)
        assert (await old.describe("v-1")).code_hash == v1.code_hash
        new = type(old)(old.engine, new_reg)
        await new.signal("v-1", "go", "x")
        async with new.running():
            await trio.sleep(1)
            info = await new.describe("v-1")
            assert info.status == "parked" and info.parked is not None
            assert info.parked["reason"] == "version"
            assert info.parked["stored"] == v1.code_hash
            assert [i.run_id for i in await new.version_mismatches()] == ["v-1"]
            await new.start(v2, "v-2", None)  # new runs take the new code
            await new.signal("v-2", "go", "y")
            assert await new.result("v-2") == ["v2", "y"]
            new_reg.add(v1)  # deploy the old version beside the new one
            await new.resume("v-1")
            assert await new.result("v-1") == ["v1", "x"]


@workflow(check=False, registry=Registry())
async def leaky(ctx: Context, _: None) -> Any:
    try:
        await ctx.signal("never")
    except BaseException:
        await ctx.activity(step, "after")
    return None


async def test_a_swallowed_suspension_parks_the_run(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    reg = Registry()
    reg.add(leaky)
    async with code_runner(tmp_path, reg, sticky_runs=0) as r, r.running():
        await r.start(leaky, "l1", None)
        await trio.sleep(1)
        info = await r.describe("l1")
        assert info.status == "parked" and info.parked is not None
        assert info.parked["reason"] == "suspend_leak"


async def test_resume_of_a_run_that_is_not_parked_is_wrong_state(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    reg = Registry()
    define(reg)
    async with code_runner(tmp_path, reg) as r:
        await r.start("flow", "x1", None)
        try:
            await r.resume("x1")
        except fa.WrongState:
            pass
        else:
            raise AssertionError("resume of a ready run")
