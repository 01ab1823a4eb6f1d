"""Seeded random campaigns, run through the real CLI against the real SMTP server and checked
against invariants on what the server received and what the store logged (tests/campaigns/campaign.py).

The CI set: ``CAMPAIGN_SCENARIOS`` SQLite scenarios (default 12), ``CAMPAIGN_PG_SCENARIOS``
two-worker PostgreSQL scenarios (default 3), one kill -9 + restart scenario per backend, and the
hand-built shapes that stopped the foundation. A soak: ``CAMPAIGN_SCENARIOS=200``. A failure
prints its seed and one line describing the campaign; replay it alone with ``CAMPAIGN_SEED=<n>``
(and ``CAMPAIGN_FIRST_SEED`` moves the window of seeds, to explore new ones).

Scenarios under the default pacing (2 letters/s per official) take 10–25 s each and are marked
``slow``, as is the kill scenario: ``-m "not slow"`` runs the quick half.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import pytest

from tests.campaigns.campaign import (
    DEFAULT,
    LANGS,
    LIFTED,
    SLACK,
    TIGHT,
    UNASKED_LANGUAGE,
    ActionSpec,
    Kind,
    Official,
    Pacing,
    Role,
    Scenario,
    SupporterSpec,
    check,
    generate,
    run_and_check,
    worst_window,
)

SQLITE_SCENARIOS = int(os.environ.get("CAMPAIGN_SCENARIOS", "12"))
PG_SCENARIOS = int(os.environ.get("CAMPAIGN_PG_SCENARIOS", "3"))
KILL_SCENARIOS = int(os.environ.get("CAMPAIGN_KILL_SCENARIOS", "1"))
FIRST_SEED = int(os.environ.get("CAMPAIGN_FIRST_SEED", "1"))
REPLAY = os.environ.get("CAMPAIGN_SEED")


def seeds(kind: Kind, count: int, test: str) -> list[object]:
    chosen = [int(REPLAY)] if REPLAY else list(range(FIRST_SEED, FIRST_SEED + count))
    params: list[object] = []
    for seed in chosen:
        scenario = generate(seed, kind, test)
        slow = scenario.pacing is DEFAULT or scenario.kill
        params.append(pytest.param(seed, id=f"seed={seed}", marks=[pytest.mark.slow] if slow else []))
    return params


@pytest.mark.parametrize("seed", seeds("sqlite", SQLITE_SCENARIOS, "test_campaign_sqlite"))
def test_campaign_sqlite(seed: int, tmp_path: Path) -> None:
    scenario = generate(seed, "sqlite", "test_campaign_sqlite")
    run_and_check(scenario, tmp_path, f"sqlite:///{tmp_path / 'dispatcher.db'}")


@pytest.mark.postgres
@pytest.mark.parametrize("seed", seeds("postgres", PG_SCENARIOS, "test_campaign_postgres_two_workers"))
def test_campaign_postgres_two_workers(seed: int, tmp_path: Path, pg_url: str) -> None:
    scenario = generate(seed, "postgres", "test_campaign_postgres_two_workers")
    run_and_check(scenario, tmp_path, pg_url)


@pytest.mark.slow
@pytest.mark.parametrize("seed", seeds("kill", KILL_SCENARIOS, "test_campaign_kill_and_restart"))
def test_campaign_kill_and_restart(seed: int, tmp_path: Path) -> None:
    scenario = generate(seed, "kill", "test_campaign_kill_and_restart")
    run_and_check(scenario, tmp_path, f"sqlite:///{tmp_path / 'dispatcher.db'}")


# The shapes that stopped the foundation, through the same runner and checker -----------------------------
def _official(name: str) -> Official:
    return Official(name, name.title(), "Official", f"{name}@example.org", ("en",))


def _action(action_id: str, *targets: str) -> ActionSpec:
    parsed: list[tuple[Official, Role]] = []
    for spec in targets:
        name, _, role = spec.partition(":")
        parsed.append((_official(name), "cc" if role == "cc" else "to"))
    return ActionSpec(action_id, f"Action {action_id}", tuple(parsed), ("en",), ("en",))


def _supporters(
    n: int, scopes: tuple[str, ...] = ("all",), start: int = 0, wave: int = 0
) -> tuple[SupporterSpec, ...]:
    return tuple(
        SupporterSpec(
            f"s{i}@example.net",
            "林小文" if i % 3 == 0 else f"Supporter {i}",
            "en",
            "Taipei",
            "TW",
            scopes,
            "2025-01-01T00:00:00+00:00",
            wave,
        )
        for i in range(start, start + n)
    )


def _shape(
    name: str,
    pacing: Pacing,
    actions: list[ActionSpec],
    supporters: int | tuple[SupporterSpec, ...],
    kind: Kind = "shape",
) -> Scenario:
    test = "test_known_shape_postgres" if kind == "postgres" else "test_known_shape"
    return Scenario(
        seed=name,
        kind=kind,
        pacing=pacing,
        actions=tuple(actions),
        supporters=_supporters(supporters) if isinstance(supporters, int) else supporters,
        workers=2 if kind == "postgres" else 1,
        test=test,
    )


SHAPES = {
    # One action, two `to` targets, lifted pacing: the second target got nothing, --once never ended.
    "two-to-lifted": _shape("two-to-lifted", LIFTED, [_action("a1", "pres", "minister")], 60),
    # Five actions of one target each at the default pacing; four have sent all their letters when
    # a supporter of the fifth joins: the four, with nothing due, took all the claim room.
    "five-single-default-late-joiner": _shape(
        "five-single-default-late-joiner",
        DEFAULT,
        [_action(f"a{n}", f"t{n}") for n in range(1, 6)],
        _supporters(12, ("a1", "a2", "a3", "a4")) + _supporters(1, ("a5",), start=12, wave=1),
    ),
    # Six actions of 1–5 targets, one a cc, one official in two actions, 30 supporters.
    "six-actions-cc-shared": _shape(
        "six-actions-cc-shared",
        LIFTED,
        [
            _action("a1", "p1"),
            _action("a2", "p2", "m2"),
            _action("a3", "p3", "m3", "amb3:cc"),
            _action("a4", "p4", "m4", "j4", "k4"),
            _action("a5", "p5", "m5", "j5", "k5", "l5"),
            _action("a6", "p6", "p1"),
        ],
        30,
    ),
    # A held action (no template in any of its languages) next to one that sends.
    "held-beside-active": _shape(
        "held-beside-active",
        TIGHT,
        [
            _action("a1", "pres", "amb:cc"),
            ActionSpec(
                "a2",
                "Action a2",
                ((_official("minister"), "to"),),
                ("de", "fr"),
                (UNASKED_LANGUAGE,),
                hold="no-template",
            ),
        ],
        20,
    ),
}


@pytest.mark.parametrize("name", list(SHAPES))
def test_known_shape(name: str, tmp_path: Path) -> None:
    run_and_check(SHAPES[name], tmp_path, f"sqlite:///{tmp_path / 'dispatcher.db'}")


@pytest.mark.postgres
def test_known_shape_postgres(tmp_path: Path, pg_url: str) -> None:
    # Two workers, limit 5/s burst 5 per official: each used to spend the whole budget (10.5/s seen).
    scenario = _shape(
        "two-workers-tight",
        TIGHT,
        [_action("a", "pres", "amb:cc"), _action("b", "minister")],
        30,
        kind="postgres",
    )
    run_and_check(scenario, tmp_path, pg_url)


# The suite's own parts, without I/O ---------------------------------------------------------------------
def test_the_generator_is_deterministic_and_keeps_its_promises() -> None:
    for kind in ("sqlite", "postgres", "kill"):
        for seed in range(1, 61):
            scenario = generate(seed, kind)
            assert scenario == generate(seed, kind), seed
            assert any(a.sendable for a in scenario.actions), scenario.describe()
            assert 1 <= len(scenario.actions) <= 8 and 5 <= len(scenario.supporters) <= 60
            per_address, letters = scenario.load()
            assert letters > 0 and letters <= scenario.pacing.max_letters, scenario.describe()
            assert max(per_address.values()) <= scenario.pacing.max_per_address, scenario.describe()
            for action in scenario.actions:
                assert 1 <= len(action.targets) <= 5 and action.to, action.describe(set())
                ids = [o.id for o, _ in action.targets]
                assert len(ids) == len(set(ids))
                for official, _ in action.targets:
                    language = action.language_for(official)
                    assert (language is None) == (action.hold == "no-template"), action.describe(set())
                    assert language is None or language in LANGS
    # Over the CI seeds, every shape the suite promises turns up somewhere.
    scenarios = [generate(seed, "sqlite") for seed in range(1, 13)]
    states = {a.state.split(" (")[0] for s in scenarios for a in s.actions}
    assert {"active", "held", "paused", "closed", "deadline passed"} <= states, states
    assert any(s.shared for s in scenarios)
    assert any(a.cc for s in scenarios for a in s.actions)
    assert any(s.refused for s in scenarios) and any(s.transient_faults for s in scenarios)
    assert any(supporter.wave for s in scenarios for supporter in s.supporters), "nobody joins late"
    assert {s.pacing.name for s in scenarios} == {"default", "lifted", "tight"}
    fallbacks = [
        (a.id, o.id)
        for s in scenarios
        for a in s.actions
        for o, _ in a.targets
        if a.hold is None and a.language_for(o) not in o.languages
    ]
    assert fallbacks, "no target falls back to the action's languages"


def test_the_pacing_check_flags_a_burst_and_passes_a_paced_stream() -> None:
    paced = [i / 2 for i in range(40)]  # 2/s, no burst
    assert worst_window(paced, rate=2, burst=10) is None
    burst_then_paced = [0.0] * 10 + [5 + i / 2 for i in range(20)]
    assert worst_window(burst_then_paced, rate=2, burst=10) is None
    doubled = sorted(paced + paced)  # two workers, each with the whole budget
    window = worst_window(doubled, rate=2, burst=10)
    assert window is not None and window.count > window.allowed
    # 11 at once exceeds a burst of 10 only beyond the slack: 10 + 2 × SLACK = 12 allowed.
    assert worst_window([0.0] * 12, rate=2, burst=10) is None
    assert worst_window([0.0] * 13, rate=2, burst=10) is not None
    assert SLACK == 1.0


def test_the_checker_flags_what_it_should(tmp_path: Path) -> None:
    """One real run, then outcomes altered the ways the dispatcher could get it wrong."""
    scenario = _shape(
        "checker-self-test",
        LIFTED,
        [
            _action("a1", "pres", "minister", "amb:cc"),
            ActionSpec(
                "a2", "Action a2", ((_official("judge"), "to"),), ("en",), ("en",), file_status="paused"
            ),
        ],
        16,
    )
    outcome = run_and_check(scenario, tmp_path, f"sqlite:///{tmp_path / 'dispatcher.db'}")
    received = outcome.received
    assert len(received) == 32

    def problems(**changes: object) -> str:
        found = check(changes.pop("scenario", scenario), replace(outcome, **changes))  # type: ignore[arg-type]
        assert found, f"no finding for {sorted(changes)}"
        return "\n".join(found)

    to_minister = [r for r in received if r.rcpt_tos[0] == "minister@example.org"]
    lost = problems(received=[r for r in received if r not in to_minister[:3]])
    assert "a1 → minister@example.org: 13 of 16 letters arrived" in lost
    assert "the log's 'sent' rows ≠ what the server accepted" in lost
    assert "received twice" in problems(received=[*received, received[0]])
    relabelled = replace(received[0], data=received[0].data.replace(b"Subject: [a1]", b"Subject: [a2]", 1))
    assert relabelled.data != received[0].data
    wrong = problems(received=[relabelled, *received[1:]])
    assert "a2 is paused (file): expected nothing" in wrong
    someone = scenario.supporters[0].address.encode()  # none of them chose direct replies
    leaked = replace(
        received[0], data=received[0].data.replace(b"\r\n\r\n", b"\r\nX-Note: " + someone + b"\r\n\r\n", 1)
    )
    assert "a supporter's address in a letter to a target" in problems(received=[leaked, *received[1:]])
    replied = replace(received[0], reply_to=someone.decode())
    assert "a Reply-To its supporter did not choose" in problems(received=[replied, *received[1:]])
    uncopied = replace(received[0], rcpt_tos=received[0].rcpt_tos[:1], rcpt_at=received[0].rcpt_at[:1])
    assert "RCPTs accepted ≠ the target then its copies" in problems(received=[uncopied, *received[1:]])
    at_once = [replace(r, rcpt_at=(0.0,) * len(r.rcpt_tos)) for r in received]
    flooded = problems(scenario=replace(scenario, pacing=TIGHT), received=at_once)
    assert "pacing: amb@example.org (letters accepted) got 32 in 0.00 s" in flooded
    assert "pacing: the deployment (global, letters) got 32" in flooded
    pending = [replace(d, status="pending") if d.id == 1 else d for d in outcome.deliveries]
    assert "a delivery that should be sent is not" in problems(deliveries=pending)
    assert "'retry' rows" in problems(
        attempts=[*outcome.attempts, replace(outcome.attempts[0], outcome="retry")]
    )
