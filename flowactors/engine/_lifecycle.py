"""The guards of the Flow lifecycle, as data: which fenced command may act on a flow in
which kind of state, under which guard, with what effect.

Every command a worker sends about a flow it claimed presents the flow's fencing token and
(usually) its lease token. Whether the command may act is decided by the same ordered
guards for all of them (`GUARDS`), differing only in whether the flow must be leased
(`Rule.lease`). Both ways of deciding use this module, so a guard is written once:

- the per-item deciders (`_machine.decide_*`, `_coord.decide_spawn`) call `check`, which
  raises the first guard's error;
- the batch deciders (`decide_finish_run`, `decide_transition_run`) admit an item to the
  batch path only when `holds_lease` is true, the one situation in which every rule passes
  every guard; any other item goes the per-item way and hears `check`'s error there.

`python -m flowactors.engine._lifecycle` writes `docs/lifecycle.md`, the table of every
rule against every situation, generated from `RULES` and `check`; a test keeps it current
and tests the table directly.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ._errors import FlowError, FlowTerminal, StaleLease, WrongState
from ._record import FENCING, ID, LEASE_TOKEN, STATE, TERMINAL, Record


@dataclass(frozen=True, slots=True)
class Rule:
    """One fenced command. `lease`: "required" (the flow must be running under the lease
    presented) or "if held" (a lease, if the flow has one, must be the one presented)."""

    command: str
    lease: Literal["required", "if held"]
    effect: str
    batch: str | None = None  # the batch form whose common items skip the per-item path


RULES: dict[str, Rule] = {
    r.command: r
    for r in (
        Rule("extend_lease", "required", "the lease deadline moves; nothing else changes"),
        Rule(
            "step_continue",
            "required",
            "stays running under a new lease (fencing + 1), at step `to_state`",
        ),
        Rule(
            "transition",
            "if held",
            "to `to_state`, due at `run_at` (default now); the lease is dropped",
            "transition_many",
        ),
        Rule(
            "complete",
            "required",
            "to `completed` (terminal): result stored, retention set, lease dropped",
            "complete_many",
        ),
        Rule(
            "fail",
            "required",
            "to `failed` (terminal): error stored, retention set, lease dropped",
            "fail_many",
        ),
        Rule(
            "retry",
            "required",
            "due again after the policy's backoff, or to `exhausted_to` once out of budget",
        ),
        Rule(
            "spawn_children",
            "if held",
            "children created; parked in `wait_state` until the group resolves",
        ),
    )
}

# The guards, in the order they are checked; the first that fails answers.
GUARDS: tuple[tuple[str, str], ...] = (
    ("the flow is terminal", "FlowTerminal: rewind it to change it"),
    ("the fencing token is not the flow's current one", "StaleLease"),
    ("the flow is leased and the lease token is not its lease's", "StaleLease"),
    (
        "the flow is not leased, a lease token is presented, and the flow was claimed "
        "before (its lease was dropped by a signal or a transition)",
        "StaleLease",
    ),
    ("the flow is not leased and the rule requires a lease", "WrongState"),
    ("the flow is not leased and a lease token is presented", "StaleLease"),
)


def holds_lease(r: Record, fencing: object, lease_token: object) -> bool:
    """The flow is running under exactly the lease presented: every rule's guards pass
    (the batch paths' admission test)."""
    return r[LEASE_TOKEN] is not None and r[LEASE_TOKEN] == lease_token and r[FENCING] == fencing


def check(rule: Rule, r: Record, fencing: int, lease_token: str | None) -> None:
    """Apply `GUARDS` in order for `rule`; raise the first failing guard's error."""
    if r[STATE] in TERMINAL:
        raise FlowTerminal(f"flow {r[ID]!r} is {r[STATE]}; rewind it to change it")
    if fencing != r[FENCING]:
        raise StaleLease(f"flow {r[ID]!r}: fencing token {fencing} is stale (current {r[FENCING]})")
    if r[LEASE_TOKEN] is not None:
        if lease_token != r[LEASE_TOKEN]:
            raise StaleLease(f"flow {r[ID]!r}: lease token does not match the current lease")
    elif lease_token is not None and r[FENCING] > 0:
        # The claim that issued this fencing token lost its lease (a signal moved the
        # flow, or the holder released it): the caller's lease is what is stale.
        raise StaleLease(f"flow {r[ID]!r} holds no lease; its lease token is stale")
    elif rule.lease == "required":
        raise WrongState(f"flow {r[ID]!r} is {r[STATE]!r}, not running under a lease")
    elif lease_token is not None:
        raise StaleLease(f"flow {r[ID]!r} holds no lease; its lease token is stale")


# -- the generated table -----------------------------------------------------------------

# (situation, the flow's record fields that make it, the fencing and lease token presented)
SITUATIONS: tuple[tuple[str, dict[str, object], int, str | None], ...] = (
    ("running, the lease presented", {"state": "running", "lease": "L", "fencing": 3}, 3, "L"),
    ("running, another lease token", {"state": "running", "lease": "L", "fencing": 3}, 3, "X"),
    ("running, a stale fencing token", {"state": "running", "lease": "L", "fencing": 3}, 2, "L"),
    ("queued, never claimed, no lease token", {"state": "queued", "fencing": 0}, 0, None),
    ("queued, never claimed, a lease token", {"state": "queued", "fencing": 0}, 0, "L"),
    ("queued after a lost lease, its lease token", {"state": "queued", "fencing": 3}, 3, "L"),
    ("queued after a lost lease, no lease token", {"state": "queued", "fencing": 3}, 3, None),
    ("completed", {"state": "completed", "fencing": 3}, 3, "L"),
)


def situation_record(fields: dict[str, object]) -> Record:
    """A record with just the fields the guards read (the rest None)."""
    from ._record import FIELDS

    record: list[object] = [None] * len(FIELDS)
    record[ID] = "f"
    record[STATE] = fields["state"]
    record[FENCING] = fields["fencing"]
    record[LEASE_TOKEN] = fields.get("lease")
    return tuple(record)


def outcome(rule: Rule, fields: dict[str, object], fencing: int, token: str | None) -> str:
    try:
        check(rule, situation_record(fields), fencing, token)
    except FlowError as exc:
        return type(exc).__name__
    return "acts"


def table() -> str:
    """docs/lifecycle.md: every rule against every situation."""
    rules = list(RULES.values())
    head = "| situation | " + " | ".join(f"`{r.command}`" for r in rules) + " |"
    lines = [
        "# The Flow lifecycle: fenced commands and their guards",
        "",
        "Generated by `python -m flowactors.engine._lifecycle` from `engine/_lifecycle.py`",
        "(`RULES`, `GUARDS`, `check`); do not edit. `tests/test_lifecycle.py` keeps it current.",
        "",
        "## Rules",
        "",
        "| command | lease | effect | batch form |",
        "|---|---|---|---|",
        *(f"| `{r.command}` | {r.lease} | {r.effect} | {r.batch or ''} |" for r in rules),
        "",
        "## Guards, in order (the first that fails answers)",
        "",
        *(f"{i}. {what}: `{error}`" for i, (what, error) in enumerate(GUARDS, 1)),
        "",
        "An exact replay of a command that already took effect (same target state and",
        "fencing token) returns the flow unchanged before any guard is checked.",
        "",
        "## Every rule in every situation",
        "",
        head,
        "|---" * (len(rules) + 1) + "|",
    ]
    for name, fields, fencing, token in SITUATIONS:
        cells = [outcome(r, fields, fencing, token) for r in rules]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


DOC = Path(__file__).resolve().parents[2] / "docs" / "lifecycle.md"


def main() -> None:
    DOC.parent.mkdir(exist_ok=True)
    DOC.write_text(table())
    print(f"wrote {DOC}")


if __name__ == "__main__":
    main()
