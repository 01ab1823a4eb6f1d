"""Digests on an injected clock against the real store (SQLite file and PostgreSQL).

A seeded fortnight across a DST change: supporters join at random moments, two workers look for
the day's digest in turn, some sends crash (the lease lapses), some fail and retry. Whatever the
draw: at most one digest per local day, taken first at its moment (digest_at in the target's
zone, its office hours permitting), carrying exactly the letters planned by then and not in an
earlier one; every take of a digest has the same Message-ID and members; every letter is sent
once, in one digest.
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from dispatcher.models import AttemptResult, Caps, ClaimGroup, Outcome, Terms
from dispatcher.plans import digests as schedule
from dispatcher.plans.calendar import Calendar
from dispatcher.plans.hours import parse_hours
from dispatcher.store import Store, open_store
from dispatcher.store.digests import PENDING, SENT, Digest
from dispatcher.store.schema import cap_counts, deliveries, digests
from dispatcher.store.sql import SqlStore
from tests.conftest import never_retry
from tests.store.test_store_contract import LEASE, people, run_in_threads, statuses

GROUP = ClaimGroup("act", "t1", "email", ("email:t1@parl.example",))
# (zone, the Sunday its clocks change in the fortnight from START)
ZONES = [("Europe/Brussels", dt.date(2026, 3, 29)), ("America/New_York", dt.date(2026, 3, 8))]
HOURS = ["always", "Mon-Fri 09:00-17:00", "Mon-Sat 11:00-15:00"]
STEP_MINUTES = 40  # the most the simulated clock moves between two looks
AT = [dt.time(10, 0), dt.time(8, 30), dt.time(2, 30)]  # 02:30 does not exist on a spring-forward day


@pytest.fixture
def second(store: Store, db_url: str) -> Iterator[Store]:
    other = open_store(db_url, migrate=False)
    yield other
    other.close()


@dataclass
class Seen:
    """What the workers did, as the test saw it."""

    planned: dict[int, dt.datetime] = field(default_factory=dict)  # delivery → when planned
    takes: dict[int, list[tuple[dt.datetime, str, tuple[int, ...]]]] = field(default_factory=dict)
    sent: dict[int, int] = field(default_factory=dict)  # delivery → the digest that carried it
    days: dict[int, str] = field(default_factory=dict)  # digest → its day


def join(store: Store, seen: Seen, n: int, start: int, at: dt.datetime) -> None:
    store.import_supporters([replace(p, opted_in_at=at) for p in people(n, start=start)], at)
    before = set(seen.planned)
    store.plan("act", [("t1", "email")], at)
    assert isinstance(store, SqlStore)
    with store.engine.begin() as conn:
        ids = conn.scalars(select(deliveries.c.id)).all()
    seen.planned |= {i: at for i in ids if i not in before}


def look(store: Store, worker: str, calendar: Calendar, at_time: dt.time, now: dt.datetime) -> Digest | None:
    """What a worker's digest job asks the store at ``now``."""
    moment = schedule.latest(calendar, at_time, now)
    if moment is None:
        return None
    today = moment.day == now.astimezone(calendar.zone).date()
    taken = store.digests.take_digest(
        worker, GROUP, moment.day.isoformat(), moment.at, now, LEASE, "example.org", today
    )
    return taken if isinstance(taken, Digest) else None


def finish(store: Store, worker: str, digest: Digest, now: dt.datetime, outcome: Outcome) -> None:
    later = now + dt.timedelta(minutes=20) if outcome is Outcome.RETRY else None
    results = [
        AttemptResult(i, "act", "t1", "email", now, now, outcome, next_attempt_at=later)
        for i in digest.delivery_ids
    ]
    store.record(worker, results, never_retry)
    status = SENT if outcome is Outcome.SENT else PENDING
    store.digests.end_digest(worker, digest.id, status, now, later)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2030])
def test_one_digest_a_day_at_its_moment_with_the_letters_planned_by_then(
    store: Store, second: Store, seed: int
) -> None:
    rng = random.Random(seed)
    zone_name, dst_day = rng.choice(ZONES)
    zone = ZoneInfo(zone_name)
    hours, at_time = rng.choice(HOURS), rng.choice(AT)
    calendar = Calendar(parse_hours(hours), zone)
    now = dt.datetime.combine(dst_day - dt.timedelta(days=6), dt.time(7, 0), tzinfo=zone)
    end = now + dt.timedelta(days=14)
    seen, joined = Seen(), 0
    while now < end:
        if rng.random() < 0.15:
            n = rng.randint(1, 3)
            join(store, seen, n, joined, now)
            joined += n
        for worker, name in rng.sample([(store, "A"), (second, "B")], 2):
            digest = look(worker, name, calendar, at_time, now)
            if digest is None:
                continue
            seen.takes.setdefault(digest.id, []).append((now, digest.message_id, tuple(digest.delivery_ids)))
            draw = rng.random()
            if draw < 0.1:
                continue  # killed mid-send: its lease lapses
            finish(worker, name, digest, now, Outcome.RETRY if draw < 0.2 else Outcome.SENT)
            if draw >= 0.2:
                seen.sent |= {i: digest.id for i in digest.delivery_ids}
        now += dt.timedelta(minutes=rng.randint(5, STEP_MINUTES))
    check(store, seen, calendar, at_time, now)


def check(store: Store, seen: Seen, calendar: Calendar, at_time: dt.time, now: dt.datetime) -> None:
    assert isinstance(store, SqlStore)
    with store.engine.begin() as conn:
        days = {r.id: r.day for r in conn.execute(select(digests.c.id, digests.c.day))}
    assert len(set(days.values())) == len(days), "two digests on one day"
    earlier: set[int] = set()
    for digest_id in sorted(seen.takes, key=lambda i: days[i]):
        takes = seen.takes[digest_id]
        first, mid, members = takes[0]
        assert {(m, tuple(ids)) for _, m, ids in takes} == {(mid, members)}, "a take changed the digest"
        moment = schedule.moment(calendar, at_time, dt.date.fromisoformat(days[digest_id]))
        assert moment is not None and moment.at <= first < moment.at + dt.timedelta(minutes=STEP_MINUTES)
        assert first.astimezone(calendar.zone).date() == moment.day
        expected = {i for i, at in seen.planned.items() if at <= moment.at} - earlier
        assert set(members) == expected
        earlier |= expected
    # Every letter planned before the last moment went, once, in the digest that carried it.
    last = schedule.latest(calendar, at_time, now)
    assert last is not None
    due = {i for i, at in seen.planned.items() if at <= last.at}
    assert set(seen.sent) >= due - {i for i, ids in _unfinished(seen) for i in ids}
    assert statuses(store).get("sent", 0) == len(seen.sent)
    assert len(seen.takes) >= 8  # a fortnight of office days, the first perhaps without letters


def _unfinished(seen: Seen) -> Iterator[tuple[int, tuple[int, ...]]]:
    """Digests whose last take was a crash or a retry when the fortnight ended."""
    for digest_id, takes in seen.takes.items():
        members = takes[-1][2]
        if not all(i in seen.sent for i in members):
            yield digest_id, members


def test_two_workers_at_once_one_takes_the_digest_and_a_crash_resends_it_the_same(
    store: Store, second: Store
) -> None:
    zone = ZoneInfo("Europe/Brussels")
    calendar = Calendar(parse_hours("always"), zone)
    morning = dt.datetime(2026, 11, 23, 8, 0, tzinfo=zone)
    store.import_supporters(people(4), morning)
    store.plan("act", [("t1", "email")], morning)
    ten = morning.replace(hour=10)
    taken = [look(s, w, calendar, dt.time(10), ten) for s, w in ((store, "A"), (second, "B"))]
    assert taken[0] is not None and taken[1] is None
    # A is killed; B takes the same digest once A's lease has run out, and not before.
    assert look(second, "B", calendar, dt.time(10), ten + LEASE / 2) is None
    again = look(second, "B", calendar, dt.time(10), ten + LEASE * 2)
    assert again is not None
    assert (again.id, again.message_id, again.letters) == (taken[0].id, taken[0].message_id, taken[0].letters)
    finish(second, "B", again, ten + LEASE * 2, Outcome.SENT)
    assert look(store, "A", calendar, dt.time(10), ten + LEASE * 3) is None
    assert statuses(store) == {"sent": 4}


def test_a_digest_counts_one_letter_against_the_caps(store: Store) -> None:
    zone = ZoneInfo("UTC")
    at = dt.datetime(2026, 11, 23, 10, 0, tzinfo=zone)
    store.import_supporters(people(6), at)
    store.plan("act", [("t1", "email")], at)
    capped = replace(GROUP, caps=Caps(per_hour=30, per_day=100, zone="UTC"))
    taken = store.digests.take_digest("A", capped, "2026-11-23", at, at, LEASE, "example.org")
    assert isinstance(taken, Digest) and len(taken.letters) == 6
    assert isinstance(store, SqlStore)
    with store.engine.begin() as conn:
        used = sorted(conn.execute(select(cap_counts.c.used)).scalars())
    assert used == [1, 1]  # the hour's and the day's count of t1@parl.example
    assert all(signer.email == "" for _, signer in taken.letters)


@pytest.mark.parametrize(("zone", "dst_day"), ZONES)
def test_the_digest_keeps_its_local_hour_across_a_dst_change(zone: str, dst_day: dt.date) -> None:
    calendar = Calendar(parse_hours("always"), ZoneInfo(zone))
    before, after = dst_day - dt.timedelta(days=1), dst_day + dt.timedelta(days=1)
    moments = [schedule.moment(calendar, dt.time(10), day) for day in (before, dst_day, after)]
    assert all(m is not None and m.at.astimezone(calendar.zone).hour == 10 for m in moments)
    offsets = [m.at.utcoffset() for m in moments if m is not None]
    assert offsets[0] != offsets[2]  # the same local hour, an hour apart in UTC
    # 02:30 does not exist on a spring-forward night: that day's digest goes at 03:30.
    skipped = schedule.moment(calendar, dt.time(2, 30), dst_day)
    assert skipped is not None and skipped.at.astimezone(calendar.zone).time() == dt.time(3, 30)


def test_a_shut_office_sends_at_its_opening_that_day_and_never_on_its_closed_days() -> None:
    calendar = Calendar(parse_hours("Mon-Fri 11:00-15:00"), ZoneInfo("Europe/Brussels"))
    monday, saturday = dt.date(2026, 11, 23), dt.date(2026, 11, 28)
    found = schedule.moment(calendar, dt.time(9), monday)
    assert found is not None and found.at.astimezone(calendar.zone).time() == dt.time(11)
    assert schedule.moment(calendar, dt.time(9), saturday) is None
    assert schedule.moment(calendar, dt.time(16), monday) is None  # after closing: none that day


def test_workers_racing_for_a_new_digest_one_takes_it_the_others_are_told_when_to_ask_again(
    store: Store, db_url: str
) -> None:
    ten = dt.datetime(2026, 11, 23, 10, 0, tzinfo=dt.UTC)
    store.import_supporters(people(5), ten)
    store.plan("act", [("t1", "email")], ten)
    got: list[Digest | dt.datetime | None] = []

    def take(n: int) -> None:
        other = open_store(db_url, migrate=False)
        try:
            got.append(
                other.digests.take_digest(f"w{n}", GROUP, "2026-11-23", ten, ten, LEASE, "example.org")
            )
        finally:
            other.close()

    run_in_threads(take, 4)
    taken = [t for t in got if isinstance(t, Digest)]
    assert len(taken) == 1 and len(taken[0].letters) == 5
    # The others may ask again once the taker's lease could have run out: a kill is taken over.
    assert sorted(t for t in got if not isinstance(t, Digest)) == [ten + LEASE] * 3  # type: ignore[type-var]


def test_a_digest_taken_again_leaves_out_letters_whose_consent_expired_and_names_by_choice(
    store: Store,
) -> None:
    ten = dt.datetime(2026, 11, 23, 10, 0, tzinfo=dt.UTC)
    expiring = Terms(expires_at=ten + dt.timedelta(minutes=30))
    named = Terms(name_display="name")
    records = people(3)
    records = [records[0], replace(records[1], terms=expiring), replace(records[2], terms=named)]
    store.import_supporters(records, ten)
    store.plan("act", [("t1", "email")], ten)
    first = store.digests.take_digest("A", GROUP, "2026-11-23", ten, ten, LEASE, "example.org")
    assert isinstance(first, Digest)
    assert [(s.name, s.city, s.email) for _, s in first.letters] == [
        ("Person 0", "Town", ""),
        ("Person 1", "Town", ""),
        ("Person 2", "", ""),  # their choice: the name alone
    ]
    # A is killed; by the time B takes it over, person 1's consent has expired.
    later = ten + dt.timedelta(hours=1)
    again = store.digests.take_digest("B", GROUP, "2026-11-23", ten, later, LEASE, "example.org")
    assert isinstance(again, Digest) and again.message_id == first.message_id
    assert [s.name for _, s in again.letters] == ["Person 0", "Person 2"]
