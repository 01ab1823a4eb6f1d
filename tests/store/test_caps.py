"""Caps per recipient address and per email domain, held by the claim for every worker.

A seeded campaign on an injected clock: several actions naming shared officials, letters copied
to others, two workers claiming in turn over days of clock time, some attempts retried. Whatever
the draw, no address receives more than its hourly or daily cap in any window, no domain more
than its hourly cap, and every letter is sent in the end. Run over a SQLite file and a real
PostgreSQL.
"""

from __future__ import annotations

import datetime as dt
import random
from collections import Counter
from collections.abc import Iterator
from zoneinfo import ZoneInfo

import pytest

from dispatcher.models import AttemptResult, Caps, Claim, ClaimBatch, ClaimGroup, GroupId, Outcome
from dispatcher.pacing import Limits
from dispatcher.store import ClaimRequest, Store, caps, open_store
from dispatcher.store.explain import Context, State
from tests.conftest import never_retry
from tests.store.test_store_contract import LEASE, NOW, claims_in_threads, people, statuses

LIFTED = Limits(10_000, 10_000, 100_000)  # pacing out of the way: only the caps bind
OFFICIALS = [f"{n}@parl.example" for n in ("pres", "speaker", "clerk")] + [
    f"{n}@gov.example" for n in ("minister", "deputy")
]


@pytest.fixture
def second(store: Store, db_url: str) -> Iterator[Store]:
    other = open_store(db_url, migrate=False)
    yield other
    other.close()


def groups_for(rng: random.Random, caps: Caps) -> list[ClaimGroup]:
    """Three actions of two or three targets each, drawn from the same officials, some letters
    copied to another official."""
    out = []
    for a in range(3):
        for target in rng.sample(OFFICIALS, rng.randint(2, 3)):
            copies = rng.sample([o for o in OFFICIALS if o != target], rng.choice([0, 0, 1, 2]))
            keys = tuple(f"email:{m}" for m in (target, *copies))
            out.append(ClaimGroup(f"a{a}", target.partition("@")[0], "email", keys, caps=caps))
    return out


class Received:
    """What each address and domain received per window, as the test counts it (not caps.py)."""

    def __init__(self, caps: Caps) -> None:
        self.caps = caps
        self.hours: Counter[tuple[str, dt.datetime]] = Counter()
        self.days: Counter[tuple[str, dt.date]] = Counter()
        self.domains: Counter[tuple[str, dt.datetime]] = Counter()

    def add(self, keys: tuple[str, ...], at: dt.datetime) -> None:
        hour = at.replace(minute=0, second=0, microsecond=0)
        for key in keys:
            self.hours[key, hour] += 1
            self.days[key, at.astimezone(ZoneInfo(self.caps.zone)).date()] += 1
        for domain in {k.rpartition("@")[2] for k in keys}:
            self.domains[domain, hour] += 1

    def check(self) -> None:
        assert max(self.hours.values()) <= (self.caps.per_hour or 0), self.hours.most_common(3)
        assert max(self.days.values()) <= (self.caps.per_day or 0), self.days.most_common(3)
        assert max(self.domains.values()) <= (self.caps.domain_per_hour or 0), self.domains.most_common(3)


def claim(store: Store, worker: str, groups: list[ClaimGroup], at: dt.datetime) -> ClaimBatch:
    return store.claim(worker, ClaimRequest(groups, {"email": 50}, LIFTED), at, LEASE)


def settle(store: Store, worker: str, claims: list[Claim], rng: random.Random, at: dt.datetime) -> int:
    """Most letters sent, some retried a little later (a retry counts again); returns how many
    were sent."""
    results = []
    for c in claims:
        retry = rng.random() < 0.15
        outcome = Outcome.RETRY if retry else Outcome.SENT
        later = at + dt.timedelta(minutes=rng.randint(1, 90)) if retry else None
        results.append(
            AttemptResult(
                c.delivery_id, c.action_id, c.target_id, c.channel, at, at, outcome, next_attempt_at=later
            )
        )
    store.record(worker, results, never_retry)
    return sum(r.outcome is Outcome.SENT for r in results)


def plan(store: Store, rng: random.Random, groups: list[ClaimGroup]) -> int:
    """Supporters of two of the three actions each; returns how many letters were planned."""
    for n in range(3):
        scopes = tuple(rng.sample(["a0", "a1", "a2"], 2))
        store.import_supporters(people(rng.randint(3, 7), scopes=scopes, start=100 * n), NOW)
    for action in ("a0", "a1", "a2"):
        store.plan(action, [(g.target_id, "email") for g in groups if g.action_id == action], NOW)
    return statuses(store)["pending"]


@pytest.mark.parametrize("seed", [7, 2026])
def test_no_address_or_domain_goes_over_its_caps_and_every_letter_goes(
    store: Store, second: Store, seed: int
) -> None:
    rng = random.Random(seed)
    zone = rng.choice(["UTC", "Europe/Brussels", "America/New_York", "Asia/Kolkata"])
    caps = Caps(per_hour=4, per_day=rng.choice([9, 14]), domain_per_hour=7, zone=zone)
    groups = groups_for(rng, caps)
    keys = {g.ident: g.keys for g in groups}
    total, sent, received, at = plan(store, rng, groups), 0, Received(caps), NOW
    capped: set[GroupId] = set()
    for _ in range(1000):
        ends: list[dt.datetime] = []
        for worker, name in rng.sample([(store, "A"), (second, "B")], 2):
            batch = claim(worker, name, groups, at)
            for c in batch.claims:
                received.add(keys[c.action_id, c.target_id, c.channel], at)
            assert all(until > at and until.minute == 0 for until in batch.capped.values())
            capped |= set(batch.capped)
            ends += batch.capped.values()
            sent += settle(worker, name, batch.claims, rng, at)
        if sent == total:
            break
        # Nothing to do until a cap's window ends: skip to about then, as an idle worker sleeps.
        step = dt.timedelta(minutes=rng.randint(1, 40))
        at = min(ends) + step / 8 if ends and min(ends) > at + step else at + step
    received.check()
    assert sent == total and statuses(store) == {"sent": total}, (sent, total, at)
    # The caps did bind: some group waited for its window, some address got its hour's full cap.
    assert capped and max(received.hours.values()) == caps.per_hour


def test_workers_claiming_at_once_share_one_hourly_cap(store: Store, db_url: str) -> None:
    store.import_supporters(people(40), NOW)
    store.plan("act", [("t1", "email")], NOW)
    caps = Caps(per_hour=5)
    group = ClaimGroup("act", "t1", "email", ("email:t1@example.org",), caps=caps)
    got = claims_in_threads(db_url, 4, 3, lambda s, w: claim(s, w, [group], NOW + dt.timedelta(minutes=10)))
    assert sum(len(b.claims) for b in got) == 5
    # Whoever saw the cap reached was told until when, and no wait for pacing: nothing to spin on.
    full = [b for b in got if not b.claims]
    assert full and all(
        b.capped == {group.ident: NOW + dt.timedelta(hours=1)} and b.wait is None for b in full
    )
    assert len(claim(store, "A", [group], NOW + dt.timedelta(hours=1)).claims) == 5


def test_the_days_cap_counts_midnight_to_midnight_in_the_recipients_zone(store: Store) -> None:
    store.import_supporters(people(10), NOW)
    store.plan("act", [("t1", "email")], NOW)
    caps = Caps(per_day=3, zone="America/New_York")  # NOW is 07:00 there
    group = ClaimGroup("act", "t1", "email", ("email:t1@example.org",), caps=caps)
    assert len(claim(store, "A", [group], NOW).claims) == 3
    local_midnight = dt.datetime(2026, 11, 24, 5, 0, tzinfo=dt.UTC)
    late = claim(store, "A", [group], local_midnight - dt.timedelta(seconds=1))
    assert late.claims == [] and late.capped == {group.ident: local_midnight}
    assert len(claim(store, "A", [group], local_midnight).claims) == 3


@pytest.mark.parametrize(
    ("caps", "said"),
    [
        (Caps(per_hour=2), "the hourly cap of 2 for t1@example.org is reached until 13:00 UTC"),
        (
            Caps(per_day=2, zone="Europe/Brussels"),
            "the day's cap of 2 for t1@example.org is reached until 23:00 UTC (midnight in Europe/Brussels)",
        ),
        (
            Caps(domain_per_hour=2),
            "the hourly cap of 2 for the domain example.org is reached until 13:00 UTC",
        ),
    ],
)
def test_why_names_the_cap_a_letter_waits_for(store: Store, caps: Caps, said: str) -> None:
    store.import_supporters(people(3), NOW)
    store.plan("act", [("t1", "email")], NOW)
    group = ClaimGroup("act", "t1", "email", ("email:t1@example.org",), caps=caps)
    sent = {c.delivery_id for c in claim(store, "A", [group], NOW).claims}
    waiting = next(i for i in (1, 2, 3) if i not in sent)
    context = Context(keys=group.keys, limits=LIFTED, caps=caps)
    answer = store.reports.explain(waiting, NOW + dt.timedelta(minutes=5), context)
    assert answer is not None and (answer.state, answer.summary) == (State.CAPPED, said)
    later = store.reports.explain(waiting, NOW + dt.timedelta(days=1), context)
    assert later is not None and later.state is State.DUE


def test_a_day_across_a_dst_change_is_the_recipients_day() -> None:
    # Brussels springs forward on 29 March 2026: that day runs 23 hours, 23:00 to 22:00 UTC.
    at = dt.datetime(2026, 3, 29, 12, 0, tzinfo=dt.UTC)
    window = caps.day(at, "Europe/Brussels")
    assert window.label == "day 2026-03-29 Europe/Brussels"
    assert window.ends == dt.datetime(2026, 3, 29, 22, 0, tzinfo=dt.UTC)
    day_before = caps.day(dt.datetime(2026, 3, 28, 22, 59, tzinfo=dt.UTC), "Europe/Brussels")
    assert day_before.ends == dt.datetime(2026, 3, 28, 23, 0, tzinfo=dt.UTC)
