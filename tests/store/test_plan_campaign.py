"""A two-week campaign on an injected clock, against the real store (a SQLite file, PostgreSQL).

Three actions with their own deadlines write to four officials in three zones: two mailboxes of
one Belgian parliament (one domain: its cap binds across them), a US minister with office hours, a
Tokyo envoy; faxes to two of them, in fax office hours. In spring (Europe's clocks go forward,
Belgium's Easter Monday) and in autumn (Europe's and America's clocks go back, Japan's Culture
Day). Supporters join through the campaign; two
workers claim in turn from the real ``Catalogue`` and store claim, as ``dispatcher run`` does; some
attempts fail and are retried. The clock moves minutes at a time while letters go, and skips to
the next event (a cap's window ending, an office opening, a letter falling due, a supporter
joining) when none can, as an idle worker sleeps.

Whatever the seed: no address above its hourly or daily cap (its day in its zone), no domain
above its hourly cap, nothing outside office hours or on a holiday, nothing after its action's
deadline, every letter sent once, every letter sent when the caps and hours left room for it (a
bound the test works out itself), and the run ends.
"""

from __future__ import annotations

import datetime as dt
import random
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from dispatcher.actions.planner import finish_action, plan_action
from dispatcher.channels import Channel, make_channels
from dispatcher.models import AttemptResult, Claim, ClaimBatch, Outcome, SupporterRecord
from dispatcher.pacing import Limits
from dispatcher.plans.calendar import Calendar
from dispatcher.plans.hours import parse_hours
from dispatcher.sending.catalogue import Catalogue
from dispatcher.settings import Settings
from dispatcher.store import ClaimRequest, Store, open_store
from tests.campaigns.test_office_hours import world
from tests.conftest import never_retry
from tests.store.test_store_contract import statuses
from tests.support.actions import action_data
from tests.unit.test_calendar import wall_open

# "asap" also shows the caps binding and letters going at the first moment the plans allow; "even"
# spreads each target's letters to its deadline, and must keep every other invariant. Its deadline
# is not checked yet: a spread leaves early room unused, and on 8 Dec 2026 (spring seed 1, about
# one run in three) a0's president (email) still had letters at the deadline although the forecast
# at the last joining said they would all go (retries and the crashed worker's letters, which it
# does not foresee, may be the difference): issue 20 stays open on it.
SPREADS = ["asap", "even"]


@dataclass(frozen=True)
class Season:
    """Two weeks and a bit: a DST change inside them, and a holiday closing one office."""

    start: dt.datetime  # a Monday
    deadlines: dict[str, str]  # action -> the last day, to its end (UTC)
    holiday: dt.datetime  # 09:00 on a public holiday of ``closed``'s country: supporters join
    closed: tuple[str, str]  # the official and channel it closes (they are in every draw's a0)
    # The public holidays of these weeks, as the test knows them (not from the package).
    holidays: dict[str, set[dt.date]]

    @property
    def last_join(self) -> dt.datetime:
        return self.start + dt.timedelta(days=8)


SEASONS = {
    # Europe's clocks go forward on Sunday 29 March; Belgium's Easter Monday is 6 April.
    "spring": Season(
        dt.datetime(2026, 3, 23, 5, tzinfo=dt.UTC),
        {"a0": "2026-04-09", "a1": "2026-04-03", "a2": "2026-03-25"},
        dt.datetime(2026, 4, 6, 7, tzinfo=dt.UTC),
        ("president", "email"),
        {"BE": {dt.date(2026, 4, 6)}, "US": set(), "JP": set()},
    ),
    # Europe's clocks go back on Sunday 25 October, America's on 1 November; Japan's Culture Day
    # is Tuesday 3 November (Belgium's All Saints' Day falls on a Sunday).
    "autumn": Season(
        dt.datetime(2026, 10, 19, 5, tzinfo=dt.UTC),
        {"a0": "2026-11-06", "a1": "2026-10-30", "a2": "2026-10-21"},
        dt.datetime(2026, 11, 3, 0, tzinfo=dt.UTC),
        ("envoy", "fax"),
        {"BE": {dt.date(2026, 11, 1)}, "US": set(), "JP": {dt.date(2026, 11, 3)}},
    ),
}
ACTIONS = ("a0", "a1", "a2")
PER_HOUR, DOMAIN, FAX_HOURS = 3, 4, "Mon-Fri 08:00-18:00"
LIFTED = Limits(10_000, 10_000, 100_000)  # pacing out of the way: the plans bind
LEASE = dt.timedelta(minutes=5)
ROOM = {"email": 20, "fax": 5}
RETRY = 0.15  # the share of attempts that fail and go again later
CRASH = 0.05  # the chance, at each step, that a third worker claims and dies holding its letters
# (and it does at the first step with letters to claim, whatever the draw)


@dataclass(frozen=True)
class Official:
    id: str
    country: str
    zone: str
    email: str
    hours: str | None  # email office hours; None: always
    fax: str | None = None

    def address(self, channel: str) -> str:
        return f"{channel}:{self.fax if channel == 'fax' else self.email}"

    def open_at(self, channel: str, t: dt.datetime, season: Season) -> bool:
        """By the wall clock of the official's zone, on a day that is no public holiday there."""
        hours = FAX_HOURS if channel == "fax" else self.hours
        if hours is None:
            return True
        holiday = season.holidays[self.country].__contains__
        return wall_open(Calendar(parse_hours(hours), ZoneInfo(self.zone), holiday), t)


OFFICIALS = {
    o.id: o
    for o in (
        Official(
            "president",
            "BE",
            "Europe/Brussels",
            "president@parl.example",
            "Mon-Fri 09:00-17:00",
            "+3222222222",
        ),
        Official("speaker", "BE", "Europe/Brussels", "speaker@parl.example", None),
        Official("minister", "US", "America/New_York", "minister@state.example", "Mon-Fri 08:00-18:00"),
        Official("envoy", "JP", "Asia/Tokyo", "envoy@mofa.example", None, "+81312345678"),
    )
}


def target(official: Official, plan: dict[str, Any]) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": official.id,
        "name": official.id.title(),
        "salutation": {"en": f"Dear {official.id.title()}"},
        "email": official.email,
        "country": official.country,
        "timezone": official.zone,
        "channels": ["email", "fax"] if official.fax else ["email"],
        "plan": plan,
    }
    if official.hours:
        plan["office_hours"] = {"email": official.hours}
    return data | ({"fax": official.fax} if official.fax else {})


@dataclass
class Draw:
    """What the seed chose: each action's officials, each official's caps, who joins when."""

    rng: random.Random
    season: Season
    per_day: int
    targets: dict[str, list[str]] = field(default_factory=dict)  # action -> officials
    per_hour: dict[str, int] = field(default_factory=dict)  # official -> hourly cap
    joins: list[tuple[dt.datetime, list[SupporterRecord]]] = field(default_factory=list)

    @classmethod
    def of(cls, seed: int, season: Season) -> Draw:
        rng = random.Random(seed)
        draw = cls(rng, season, rng.choice([10, 14]))
        for action in ACTIONS:
            draw.targets[action] = sorted(rng.sample(sorted(OFFICIALS), rng.randint(2, 3)))
        # Both mailboxes of the parliament in one action at least (its domain's cap is shared),
        # and the office the season's holiday closes.
        draw.targets["a0"] = sorted({*draw.targets["a0"], "president", "speaker", season.closed[0]})
        draw.per_hour = {o: PER_HOUR for o in OFFICIALS} | {rng.choice(sorted(OFFICIALS)): 2}
        at, n = season.start, 0
        while at <= season.last_join:
            scopes = tuple(rng.sample(ACTIONS, rng.randint(1, 2)))
            people = [person(n + i, scopes, at) for i in range(rng.randint(2, 8))]
            draw.joins.append((at, people))
            n, at = n + len(people), at + dt.timedelta(minutes=rng.randint(60, 36 * 60))
        draw.joins.append((season.holiday, [person(n + i, ("a0",), season.holiday) for i in range(3)]))
        return draw

    def actions(self) -> list[dict[str, Any]]:
        out = []
        for action, officials in self.targets.items():
            plans = {
                o: {"max_per_hour": self.per_hour[o]} if self.per_hour[o] != PER_HOUR else {}
                for o in officials
            }
            targets = [target(OFFICIALS[o], plans[o]) for o in officials]
            out.append(action_data(action, targets, deadline=self.season.deadlines[action]))
        return out


def person(i: int, scopes: tuple[str, ...], at: dt.datetime) -> SupporterRecord:
    return SupporterRecord(
        f"s{i}@example.net", f"S {i}", "en", "Town", "GB", scopes, at - dt.timedelta(minutes=1)
    )


@dataclass(frozen=True)
class Attempt:
    delivery_id: int
    action_id: str
    official: Official
    channel: str
    at: dt.datetime
    sent: bool
    joined: dt.datetime  # when its supporter joined


class Campaign:
    """Two workers on their own store connections, one catalogue, the clock in the test's hands."""

    def __init__(self, settings: Settings, stores: dict[str, Store], draw: Draw) -> None:
        self.now, self.draw, self.stores, self.rng = draw.season.start, draw, stores, draw.rng
        first = next(iter(stores.values()))
        self.channels: dict[str, Channel] = make_channels(settings, first)
        self.catalogue = Catalogue(settings, tuple(self.channels), lambda: self.now, fonts=False)
        self.catalogue.reload()
        self.joins = list(draw.joins)
        self.joined = {p.email: at for at, people in draw.joins for p in people}
        self.attempts: list[Attempt] = []
        self.round = 0
        self.crashed = 0  # letters a worker died holding

    def play(self, steps: int) -> int:
        """Until every letter is done (sent, or expired at its deadline); the steps it took."""
        for step in range(steps):
            self.catalogue.recompute()  # the actions open now: deadlines pass
            self.join()
            self.catalogue.pace(self.first().pending_counts())  # spread: even (a refresh's count)
            self.finish()
            if not self.joins and set(statuses(self.first())) <= {"sent", "expired"}:
                return step
            claimed, ends = self.claim_rounds()
            self.now = self.later(claimed, ends)
        raise AssertionError(f"the campaign had not ended after {steps} steps, at {self.now}")

    def first(self) -> Store:
        return next(iter(self.stores.values()))

    def join(self) -> None:
        while self.joins and self.joins[0][0] <= self.now:
            _, people = self.joins.pop(0)
            self.first().import_supporters(people, self.now)
            for action, _deadline in self.catalogue.open.values():
                plan_action(self.first(), action, tuple(self.channels), self.now)

    def finish(self) -> None:
        """What a worker's sweep does: an action past its deadline expires what it had left."""
        for action_id, final in list(self.catalogue.finished()):
            finish_action(self.first(), self.catalogue.loaded.actions[action_id], final, self.now)

    def claim_rounds(self) -> tuple[int, list[dt.datetime]]:
        """Each worker claims once, in a drawn order; letters claimed, when groups held back
        (by a cap, by their pace) may claim again. First, now and then, a third worker claims
        and dies holding its letters: the others take them back when their leases run out (a
        letter's fate unknown: it may have reached the filter)."""
        claimed, ends = 0, list[dt.datetime]()
        if self.rng.random() < CRASH or not self.crashed:
            for c in self.claim(self.first(), "crashed").claims:
                self.attempt(c, sent=False)
                self.crashed += 1
        for name in self.rng.sample(sorted(self.stores), len(self.stores)):
            store = self.stores[name]
            batch = self.claim(store, name)
            store.record(
                name, [self.attempt(c, self.rng.random() >= RETRY) for c in batch.claims], never_retry
            )
            claimed, ends = claimed + len(batch.claims), ends + list(batch.capped.values())
            if batch.wait is not None:  # a group's pace (its spread) lets it claim again then
                ends.append(self.now + dt.timedelta(seconds=batch.wait))
        self.first().recover("A", self.now)
        return claimed, ends

    def claim(self, store: Store, name: str) -> ClaimBatch:
        groups = self.catalogue.groups(tuple(self.channels), self.channels)
        self.round += 1
        return store.claim(name, ClaimRequest(groups, ROOM, LIFTED, self.round), self.now, LEASE)

    def attempt(self, claim: Claim, sent: bool) -> AttemptResult:
        official = OFFICIALS[claim.target_id]
        joined = self.joined[claim.signer.email]
        self.attempts.append(
            Attempt(claim.delivery_id, claim.action_id, official, claim.channel, self.now, sent, joined)
        )
        again = None if sent else self.now + dt.timedelta(minutes=self.rng.randint(1, 90))
        outcome = Outcome.SENT if sent else Outcome.RETRY
        ident = (claim.delivery_id, claim.action_id, claim.target_id, claim.channel)
        return AttemptResult(*ident, self.now, self.now, outcome, next_attempt_at=again)

    def later(self, claimed: int, ends: list[dt.datetime]) -> dt.datetime:
        """A few minutes on while letters go; else the next moment one might."""
        step = self.now + dt.timedelta(minutes=self.rng.randint(1, 15))
        if claimed:  # a worker wakes when a group's pace gives it its next letter, not later
            return min([step, *(t for t in ends if t > self.now)])
        groups = self.catalogue.groups(tuple(self.channels), self.channels)
        due = self.first().next_due([g.ident for g in groups], self.now)
        joins = [self.joins[0][0]] if self.joins else []
        deadlines = [d for _, d in self.catalogue.open.values()]
        events = [t for t in (*ends, due, self.catalogue.opens, *joins, *deadlines) if t and t > self.now]
        return max(min(events, default=step), self.now + dt.timedelta(minutes=1))


def within_caps(draw: Draw, attempts: list[Attempt], asap: bool) -> None:
    """Every attempt counts (a failed one may have reached the filter), as the test counts them.
    ``asap``: letters went as fast as the caps allow, so the caps bound (a spread keeps below)."""
    hours: Counter[tuple[str, dt.datetime]] = Counter()
    days: Counter[tuple[str, dt.date]] = Counter()
    domains: Counter[tuple[str, dt.datetime]] = Counter()
    for a in attempts:
        hour, key = a.at.replace(minute=0, second=0, microsecond=0), a.official.address(a.channel)
        hours[key, hour] += 1
        days[key, a.at.astimezone(ZoneInfo(a.official.zone)).date()] += 1
        if a.channel == "email":
            domains[a.official.email.partition("@")[2], hour] += 1
    by_key = {o.address(c): o.id for o in OFFICIALS.values() for c in ("email", "fax")}
    over = [(k, h, n) for (k, h), n in hours.items() if n > draw.per_hour[by_key[k]]]
    assert not over, over
    assert max(days.values()) <= draw.per_day, days.most_common(3)
    assert max(domains.values()) <= DOMAIN, domains.most_common(3)
    # The caps did bind: some address got its hour's full cap (the domain's binds only when both
    # its mailboxes have letters waiting in an open hour, as the draw has it or not).
    assert not asap or max(hours.values()) == max(draw.per_hour.values())


def open_hours(
    official: Official, channel: str, start: dt.datetime, end: dt.datetime, season: Season
) -> Iterator[dt.datetime]:
    """The whole clock hours from ``start`` to ``end`` the official's office is open throughout."""
    t = start.replace(minute=0, second=0, microsecond=0) + dt.timedelta(hours=1)
    while t + dt.timedelta(hours=1) <= end:
        last = t + dt.timedelta(minutes=59)
        if official.open_at(channel, t, season) and official.open_at(channel, last, season):
            yield t
        t += dt.timedelta(hours=1)


def room(draw: Draw, official: Official, channel: str, start: dt.datetime, end: dt.datetime) -> int:
    """Letters the caps and office hours let through to one address from ``start`` to ``end``,
    at the least: its hourly cap (or its share of its domain's, split with the domain's other
    mailboxes) in each open hour, at most its daily cap in each of its days."""
    sharing = sum(o.email.partition("@")[2] == official.email.partition("@")[2] for o in OFFICIALS.values())
    hourly = (
        draw.per_hour[official.id] if channel == "fax" else min(draw.per_hour[official.id], DOMAIN // sharing)
    )
    per_day: Counter[dt.date] = Counter()
    for hour in open_hours(official, channel, start, end, draw.season):
        per_day[hour.astimezone(ZoneInfo(official.zone)).date()] += hourly
    return sum(min(n, draw.per_day) for n in per_day.values())


def letters_since(
    draw: Draw, deadlines: dict[str, dt.datetime], since: dt.datetime
) -> Counter[tuple[str, str]]:
    """Letters to each official × channel of the supporters who joined from ``since`` on, to
    actions still open when they joined."""
    out: Counter[tuple[str, str]] = Counter()
    for at, people in draw.joins:
        for action in (a for p in people for a in p.scopes if since <= at < deadlines[a]):
            for o in draw.targets[action]:
                out.update((o, c) for c in ("email", "fax") if c == "email" or OFFICIALS[o].fax)
    return out


def fits(draw: Draw, attempts: list[Attempt], deadlines: dict[str, dt.datetime], action_id: str) -> bool:
    """Whether the caps and office hours leave room for every letter to the action's officials
    before its deadline (less a day for retries' waits), whenever the queue last started: from
    each supporter's joining on, the letters (of any action: they share the caps) and retries of
    those who joined since fit in the room there is from the next local midnight (the day's cap
    may be spent before it) to the deadline. Sending as soon as the plans allow (asap) clears
    a queue that fits so."""
    end = deadlines[action_id] - dt.timedelta(days=1)
    for at, _ in draw.joins:
        if at >= deadlines[action_id]:
            break
        demand = letters_since(draw, deadlines, at)
        demand.update((a.official.id, a.channel) for a in attempts if not a.sent and a.joined >= at)
        for o, c in {(o, c) for o in draw.targets[action_id] for c in ("email", "fax")}:
            official = OFFICIALS[o]
            local = at.astimezone(ZoneInfo(official.zone)).date() + dt.timedelta(days=1)
            midnight = dt.datetime.combine(local, dt.time(), ZoneInfo(official.zone)).astimezone(dt.UTC)
            if demand[o, c] > room(draw, official, c, midnight, end):
                return False
    return True


@pytest.mark.slow
@pytest.mark.parametrize("spread", SPREADS)
@pytest.mark.parametrize(("season", "seed"), [("spring", 1), ("spring", 20), ("autumn", 2026)])
def test_a_two_week_campaign_keeps_every_plan(
    tmp_path: Path, db_url: str, season: str, seed: int, spread: str
) -> None:
    draw = Draw.of(seed, SEASONS[season])
    settings = world(tmp_path, db_url, draw.actions()).model_copy(
        update={
            "max_per_hour": PER_HOUR,
            "max_per_day": draw.per_day,
            "domain_max_per_hour": DOMAIN,
            "fax_office_hours": FAX_HOURS,
            "fax_outbox": tmp_path / "fax",
            "spread": spread,
        }
    )
    stores = {name: open_store(db_url) for name in ("A", "B")}
    try:
        campaign = Campaign(settings, stores, draw)
        campaign.play(steps=4000)
        ended = statuses(stores["A"])
        expired = {r.action_id for r in stores["A"].queue_counts() if r.status != "sent"}
        taken_back = sum(r.outcome == "interrupted" for r in stores["A"].attempt_log())
    finally:
        for store in stores.values():
            store.close()
    attempts = campaign.attempts
    deadlines = {a: campaign.catalogue.loaded.actions[a].deadline_at for a in ACTIONS}
    within_caps(draw, attempts, spread == "asap")
    shut = [a for a in attempts if not a.official.open_at(a.channel, a.at, draw.season)]
    assert not shut, shut[:3]
    assert all(a.at < deadlines[a.action_id] for a in attempts)
    sent = Counter(a.delivery_id for a in attempts if a.sent)
    assert set(sent.values()) == {1} and ended.get("sent") == len(sent), (ended, len(sent))
    assert taken_back == campaign.crashed > 0, (taken_back, campaign.crashed)
    if spread == "asap":  # letters the plans left room for all went; the others expired
        roomy = {a for a in deadlines if fits(draw, attempts, deadlines, a)}
        assert "a0" in roomy, "the draw left no action room to check the deadline bound with"
        assert not expired & roomy, (expired, roomy, ended)
    # The holiday held its office's letters (asap: to the next day); the speaker's mailbox
    # (always open) took its own at once (asap).
    holiday, (official, channel) = draw.season.holiday, draw.season.closed
    joined = [a for a in attempts if a.joined == holiday]
    local = {
        a.at.astimezone(ZoneInfo(a.official.zone)).date()
        for a in joined
        if (a.official.id, a.channel) == (official, channel)
    }
    assert local and min(local) > holiday.date(), local
    if spread == "asap":
        assert local >= {holiday.date() + dt.timedelta(days=1)}, local
        assert {a.at for a in joined if (a.official.id, a.channel) == ("speaker", "email")} >= {holiday}
