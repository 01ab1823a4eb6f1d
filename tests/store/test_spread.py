"""Spread to the deadline, held by the claim for every worker (plans/spread.py, pacing.py).

A seeded campaign on an injected clock: actions whose targets keep different office hours in
different zones, letters planned at launch and late joiners planned mid-campaign, two workers
claiming in turn, each group's pace worked out from the store's pending counts at every round as
a worker's refresh does. Whatever the draw: every letter goes before its deadline less the
margin, no address above its caps, a target's letters never closer than the jittered pace
allows nor all alike, late joiners raise the pace, and an ``asap`` target's letters go at once,
as fast as its caps allow. Run over a SQLite file and a real PostgreSQL.
"""

from __future__ import annotations

import datetime as dt
import itertools
import random
from collections import Counter, defaultdict
from dataclasses import dataclass, replace
from zoneinfo import ZoneInfo

import pytest

from dispatcher.models import AttemptResult, Caps, Claim, ClaimGroup, GroupId, Outcome
from dispatcher.pacing import Limits
from dispatcher.plans import spread
from dispatcher.plans.calendar import Calendar
from dispatcher.plans.hours import parse_hours
from dispatcher.store import ClaimRequest, Store
from dispatcher.store.explain import Context, State
from tests.conftest import never_retry
from tests.store.test_caps import Received, second  # noqa: F401 (second: a fixture)
from tests.store.test_store_contract import LEASE, NOW, people, statuses

LIFTED = Limits(10_000, 10_000, 100_000)  # the per-recipient pacing out of the way
MARGIN = dt.timedelta(hours=24)
OFFICES = [
    ("always", "UTC"),
    ("Mon-Fri 08:00-18:00", "Europe/Brussels"),
    ("Mon-Fri 09:00-17:00", "America/New_York"),
    ("Mon-Sat 10:00-16:00", "Asia/Tokyo"),
]
EVEN_CAPS = Caps(per_hour=30, per_day=200, domain_per_hour=50)  # never bind at these paces
ASAP_HOURLY = 4
ASAP_CAPS = Caps(per_hour=ASAP_HOURLY, per_day=20, domain_per_hour=50)


@dataclass(frozen=True)
class Planned:
    group: ClaimGroup  # without its pace: worked out each round
    calendar: Calendar
    deadline: dt.datetime
    asap: bool


def campaign(rng: random.Random) -> list[Planned]:
    """Three actions spread even, of two or three targets, and one asap of one."""
    out = []
    for a in range(3):
        deadline = NOW + dt.timedelta(days=rng.randint(6, 12), hours=rng.randint(0, 23))
        for t in range(rng.randint(2, 3)):
            hours, zone = rng.choice(OFFICES)
            group = ClaimGroup(f"a{a}", f"t{t}", "email", (f"email:a{a}t{t}@parl.example",), caps=EVEN_CAPS)
            out.append(Planned(group, Calendar(parse_hours(hours), ZoneInfo(zone)), deadline, False))
    group = ClaimGroup("now", "t0", "email", ("email:now@gov.example",), caps=ASAP_CAPS)
    out.append(
        Planned(group, Calendar(parse_hours("always"), ZoneInfo("UTC")), NOW + dt.timedelta(days=3), True)
    )
    return out


def plan(store: Store, planned: list[Planned], rng: random.Random, start: int, at: dt.datetime) -> None:
    """Supporters of each action (some of them late joiners), and their letters."""
    for n, action in enumerate(sorted({p.group.action_id for p in planned})):
        store.import_supporters(people(rng.randint(8, 20), scopes=(action,), start=start + 100 * n), at)
        store.plan(action, [(p.group.target_id, "email") for p in planned if p.group.action_id == action], at)


def paced(store: Store, planned: list[Planned], kept: dict[GroupId, float | None], at: dt.datetime) -> None:
    """Each group's pace, as ``Catalogue.pace`` works it out at a refresh."""
    pending = store.pending_counts()
    for p in planned:
        new = (
            None
            if p.asap
            else spread.pace(pending.get(p.group.ident, 0), p.calendar, at, p.deadline - MARGIN)
        )
        kept[p.group.ident] = spread.steady(kept.get(p.group.ident), new)


def sent(store: Store, worker: str, claims: list[Claim], at: dt.datetime) -> None:
    results = [
        AttemptResult(c.delivery_id, c.action_id, c.target_id, c.channel, at, at, Outcome.SENT)
        for c in claims
    ]
    store.record(worker, results, never_retry)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [5, 2026])
def test_a_campaign_spreads_each_targets_letters_to_its_deadline(
    store: Store,
    second: Store,  # noqa: F811
    seed: int,
) -> None:
    rng = random.Random(seed)
    planned = campaign(rng)
    by_id = {p.group.ident: p for p in planned}
    plan(store, planned, rng, 0, NOW)
    launched = store.pending_counts()
    late_at: dt.datetime | None = NOW + dt.timedelta(days=rng.randint(2, 4))
    received = Received(EVEN_CAPS)
    kept: dict[GroupId, float | None] = {}
    times: dict[GroupId, list[tuple[dt.datetime, float | None]]] = defaultdict(list)
    before: dict[GroupId, float | None] = {}
    after: dict[GroupId, float | None] = {}
    at = NOW
    for _ in range(3000):
        if late_at is not None and at >= late_at:  # late joiners, planned as the campaign runs
            before = dict(kept)
            plan(store, planned, rng, 10_000, at)
            paced(store, planned, kept, at)
            after, late_at = dict(kept), None
        paced(store, planned, kept, at)
        groups = [replace(p.group, pace=kept[i]) for i, p in by_id.items() if p.calendar.is_open(at)]
        ends = [p.calendar.next_open(at) or at for p in planned if not p.calendar.is_open(at)]
        for worker, name in rng.sample([(store, "A"), (second, "B")], 2):
            request = ClaimRequest(groups, {"email": 50}, LIFTED, jitter=lambda: spread.cost(rng))
            batch = worker.claim(name, request, at, LEASE)
            for c in batch.claims:
                ident = (c.action_id, c.target_id, c.channel)
                times[ident].append((at, kept[ident]))
                received.add(by_id[ident].group.keys, at)
            sent(worker, name, batch.claims, at)
            ends += batch.capped.values()
        if late_at is None and "pending" not in statuses(store):
            break
        # Nothing to do until a token, a cap's window or an office opens: a round's latency later.
        wake = min([*ends, at + dt.timedelta(hours=2)] + ([late_at] if late_at else []))
        at = max(wake, at) + dt.timedelta(seconds=rng.uniform(0, 60))
    assert set(statuses(store)) == {"sent"}, (at, statuses(store))
    received.check()
    for ident, sends in times.items():
        p = by_id[ident]
        if p.asap:
            # At once, as fast as its caps allow: the cap's worth in each hour until done.
            hours = Counter(t.replace(minute=0, second=0, microsecond=0) for t, _ in sends)
            full = [NOW + dt.timedelta(hours=h) for h in range(launched[ident] // ASAP_HOURLY)]
            assert full and all(hours[h] == ASAP_HOURLY for h in full), hours
            assert max(hours.values()) == ASAP_HOURLY
            continue
        assert sends[-1][0] <= p.deadline - MARGIN, (ident, sends[-1], p.deadline)
        gaps = [((b - a).total_seconds() * pace) for (a, _), (b, pace) in itertools.pairwise(sends) if pace]
        # Never closer than the jittered pace allows (no bursts), and no metronome either.
        assert min(gaps) >= 1 - spread.JITTER - 1e-6, (ident, sorted(gaps)[:3])
        assert min(gaps) < 0.95 and max(gaps) > 1.05, (ident, gaps)
    raised = [i for i, p in by_id.items() if not p.asap and (after[i] or 0) > (before.get(i) or 0)]
    assert before and raised, "late joiners raised no target's pace"


def test_two_workers_share_one_spread(store: Store, second: Store) -> None:  # noqa: F811
    """The spread bucket is the store's: a second worker finds the token spent by the first,
    is told when the next comes (no wait to spin on), and ``why`` names the spread."""
    store.import_supporters(people(5), NOW)
    store.plan("act", [("t1", "email")], NOW)
    pace = 12 / 86400  # twelve a day
    group = ClaimGroup("act", "t1", "email", ("email:t1@example.org",), pace=pace)
    request = ClaimRequest([group], {"email": 50}, LIFTED, jitter=lambda: 1.0)
    assert len(store.claim("A", request, NOW, LEASE).claims) == 1
    other = second.claim("B", request, NOW + dt.timedelta(minutes=1), LEASE)
    assert other.claims == [] and other.wait is None
    assert other.capped == {group.ident: NOW + dt.timedelta(hours=2)}
    aim = spread.Aim(str(group.spread), pace, dt.datetime(2030, 1, 30, 9, 0, tzinfo=dt.UTC), MARGIN)
    waiting = store.reports.explain(2, NOW + dt.timedelta(minutes=20), Context(keys=group.keys, spread=aim))
    assert waiting is not None and waiting.state is State.SPREAD
    assert waiting.summary == (
        "spread to the deadline: this target's next letter about 2026-11-23 14:00 UTC "
        "(12 a day to reach 2030-01-30 09:00 UTC with a day's margin)"
    )
    assert len(second.claim("B", request, NOW + dt.timedelta(hours=2), LEASE).claims) == 1
