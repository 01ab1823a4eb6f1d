"""Office hours in a running dispatcher, on an injected clock: a two-week campaign to officials
in Brussels, Shanghai and New York across a DST change and a public holiday, late joiners
included, sends each letter at the first moment its official's office is open and never outside;
a worker idle while every office is shut makes no claim and sends as one opens; a plan shut
until the deadline holds its action only; ``why`` says when the office opens; faxes keep office
hours by default, emails do not."""

from __future__ import annotations

import asyncio
import datetime as dt
import random
import time
from collections import Counter
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import create_engine, func, select

from dispatcher.channels import make_channels
from dispatcher.models import SupporterRecord
from dispatcher.plans.calendar import Calendar
from dispatcher.plans.hours import parse_hours
from dispatcher.plans.public_holidays import closed_days
from dispatcher.sending import why
from dispatcher.sending.catalogue import Catalogue
from dispatcher.sending.runtime import Dispatcher
from dispatcher.settings import Settings
from dispatcher.store import Store, open_store
from dispatcher.store.explain import State
from dispatcher.store.schema import deliveries, supporters
from tests.campaigns.test_campaign_shapes import LIFTED, TEMPLATE
from tests.campaigns.test_run_once import counted
from tests.contract.world import until
from tests.support.actions import action_data, write_action
from tests.unit.test_calendar import wall_open

# Each official's office as the action file says it (the action's default, or the target's own).
OFFICES: dict[str, tuple[str, str, str]] = {  # target -> country, zone, office hours
    "brussels": ("BE", "Europe/Brussels", "Mon-Fri 09:00-17:00"),
    "shanghai": ("CN", "Asia/Shanghai", "Mon-Fri 09:00-12:00, 14:00-18:00"),
    "newyork": ("US", "America/New_York", "Mon-Fri 08:00-18:00"),
}
# Two weeks over the EU's change to summer time (Sun 29 March 2026) and Belgium's Easter Monday.
START = dt.datetime(2026, 3, 23, tzinfo=dt.UTC)
END = dt.datetime(2026, 4, 7, 12, tzinfo=dt.UTC)


def target(target_id: str, **fields: Any) -> dict[str, Any]:
    country = OFFICES[target_id][0]
    return {
        "id": target_id,
        "name": target_id.title(),
        "salutation": {"en": f"Dear {target_id.title()}"},
        "email": f"{target_id}@example.org",
        "country": country,
        "channels": ["email"],
        **fields,
    }


def world(tmp_path: Path, db_url: str, actions: list[dict[str, Any]]) -> Settings:
    for data in actions:
        write_action(tmp_path / "actions", data)
        folder = tmp_path / "templates" / data["id"]
        folder.mkdir(parents=True)
        (folder / "en.j2").write_text(TEMPLATE)
    values = {"actions_dir": tmp_path / "actions", "templates_dir": tmp_path / "templates"}
    return Settings.model_validate(
        {"database_url": db_url, "outbox": tmp_path / "outbox", **values, **LIFTED}
    )


def three_zones() -> dict[str, Any]:
    """Brussels by the action's default hours and its country's zone; the others their own."""
    own = {
        t: target(t, timezone=OFFICES[t][1], plan={"office_hours": {"email": OFFICES[t][2]}})
        for t in ("shanghai", "newyork")
    }
    plan = {"office_hours": {"email": OFFICES["brussels"][2]}}
    return action_data("zones", [target("brussels"), *own.values()], plan=plan)


def people(start: int, n: int, at: dt.datetime) -> list[SupporterRecord]:
    opted = at - dt.timedelta(minutes=1)
    return [
        SupporterRecord(f"s{i}@example.net", f"S {i}", "en", "Town", "GB", ("all",), opted)
        for i in range(start, start + n)
    ]


def office_open(target_id: str, t: dt.datetime) -> bool:
    """Open by the wall clock of the official's zone, on a day that is no public holiday there."""
    country, zone, hours = OFFICES[target_id]
    return wall_open(Calendar(parse_hours(hours), ZoneInfo(zone), closed_days(country)), t)


async def run_at(settings: Settings, store: Store, now: dt.datetime) -> Dispatcher:
    worker = Dispatcher(settings, store, make_channels(settings, store), worker_id="w", clock=lambda: now)
    await asyncio.wait_for(worker.run_once(), 60)
    return worker


def letters(db_url: str) -> list[tuple[str, str, dt.datetime | None]]:
    """Each letter: its official, its supporter's address, when it was sent (None: not yet)."""
    d, s = deliveries, supporters
    query = select(d.c.target_id, s.c.email, d.c.sent_at).join(s, s.c.id == d.c.supporter_id)
    engine = create_engine(db_url)
    with engine.connect() as conn:
        rows = conn.execute(query).all()
    engine.dispose()
    return [(t, email, at) for t, email, at in rows]


def steps(seed: int) -> list[dt.datetime]:
    """Random moments of the campaign (10 min to 5 h apart), then one when every office is open
    (Tuesday 7 April, 10:00 in New York, 16:00 in Brussels) and one when Shanghai's is."""
    rng, t, out = random.Random(seed), START, []
    while t < END:
        out.append(t)
        t += dt.timedelta(seconds=rng.randrange(600, 5 * 3600))
    return [*out, END + dt.timedelta(hours=2), END + dt.timedelta(hours=14)]


@pytest.mark.slow
async def test_a_two_week_campaign_sends_each_letter_at_the_first_open_moment(
    tmp_path: Path, db_url: str
) -> None:
    settings = world(tmp_path, db_url, [three_zones()])
    rng, store = random.Random(20), open_store(db_url)
    joined: dict[str, dt.datetime] = {}  # supporter's address -> when they joined
    moments = steps(20)
    try:
        for i, now in enumerate(moments):
            if i < len(moments) - 2 and (i == 0 or rng.random() < 0.3):  # late joiners
                new = people(len(joined), rng.randint(1, 3), now)
                store.import_supporters(new, now)
                joined |= {p.email: now for p in new}
            await run_at(settings, store, now)
    finally:
        store.close()
    sent = letters(db_url)
    assert len(sent) == 3 * len(joined) and all(at is not None for _, _, at in sent)
    for official, email, at in sent:
        first_open = next(t for t in moments if t >= joined[email] and office_open(official, t))
        assert at == first_open, (official, email, joined[email], at, first_open)
    # The campaign crossed what it is about: a closed Easter Monday in Brussels, open elsewhere.
    easter = dt.datetime(2026, 4, 6, 12, tzinfo=dt.UTC)
    assert not office_open("brussels", easter) and office_open("newyork", easter + dt.timedelta(hours=2))


# Monday 7 January 2030, two seconds before 08:00 in Brussels.
BEFORE_EIGHT = dt.datetime(2030, 1, 7, 6, 59, 58, tzinfo=dt.UTC)


def eight_to_nine(action_id: str) -> dict[str, Any]:
    plan = {"office_hours": {"email": "Mon 08:00-09:00"}}
    return action_data(
        action_id, [target("brussels"), target("newyork", timezone="America/New_York")], plan=plan
    )


async def test_an_idle_worker_claims_nothing_while_offices_are_shut_and_sends_when_one_opens(
    tmp_path: Path, sqlite_url: str
) -> None:
    settings = world(tmp_path, sqlite_url, [eight_to_nine("a")])
    store = open_store(sqlite_url)
    store.import_supporters(people(0, 3, BEFORE_EIGHT), BEFORE_EIGHT)
    calls: Counter[str] = Counter()
    counted(store, calls, ("claim",))
    started = time.monotonic()
    clock = lambda: BEFORE_EIGHT + dt.timedelta(seconds=time.monotonic() - started)  # noqa: E731
    worker = Dispatcher(settings, store, make_channels(settings, store), worker_id="w", clock=clock)
    running = asyncio.create_task(worker.run_forever())
    try:
        await asyncio.sleep(1.5)
        shut = why.explain(store, settings, first_letter(sqlite_url, "brussels"), clock)
        assert calls["claim"] == 0 and outbox(tmp_path) == 0  # shut: no group to claim for
        await until(lambda: outbox(tmp_path) == 3, "Brussels' letters sent as its office opens", within=5)
        assert time.monotonic() - started < 2 + 2.5  # within a refresh of the opening
        await asyncio.sleep(1)
        assert outbox(tmp_path) == 3  # New York's office is still shut (02:00 there)
        later = why.explain(store, settings, first_letter(sqlite_url, "newyork"), clock)
    finally:
        worker.stop()
        await asyncio.wait_for(running, 30)
        store.close()
    assert shut is not None and shut.state == State.OFFICE
    assert shut.summary == "outside office hours until 2030-01-07 08:00 CET (Europe/Brussels)"
    assert later is not None and later.state == State.OFFICE
    assert later.summary == "outside office hours until 2030-01-07 08:00 EST (America/New_York)"


def first_letter(db_url: str, target_id: str) -> int:
    engine = create_engine(db_url)
    with engine.connect() as conn:
        found = conn.scalar(select(func.min(deliveries.c.id)).where(deliveries.c.target_id == target_id))
    engine.dispose()
    assert found is not None
    return int(found)


def outbox(tmp_path: Path) -> int:
    folder = tmp_path / "outbox" / "new"
    return len(list(folder.iterdir())) if folder.is_dir() else 0


async def test_a_plan_shut_until_the_deadline_holds_its_action_only(tmp_path: Path, sqlite_url: str) -> None:
    """Saturday hours and a Friday deadline: nothing of ``shut`` could go, so none is planned."""
    shut = eight_to_nine("shut") | {"deadline": "2030-01-11", "plan": {"office_hours": "Sat 10:00-12:00"}}
    settings = world(tmp_path, sqlite_url, [shut, eight_to_nine("fine")])
    store = open_store(sqlite_url)
    opened = BEFORE_EIGHT + dt.timedelta(minutes=5)
    store.import_supporters(people(0, 2, opened), opened)
    worker = await run_at(settings, store, opened)
    store.close()
    holds = worker.catalogue.holds("w", opened)
    assert worker.tally.counts["sent"] == 2 and outbox(tmp_path) == 2
    # fine's New York office opens at 08:00 there; run --once says so, and ends meanwhile.
    assert worker.left.due_now == 2 and worker.left.opens == dt.datetime(2030, 1, 7, 13, tzinfo=dt.UTC)
    assert "the first office shut now opens at 2030-01-07 13:00 UTC" in worker.left.line()
    assert set(holds) == {"shut"}
    assert holds["shut"].reason.startswith(
        "shut × brussels × -: plan: plan.office_hours (target brussels, email)"
    )
    assert (
        "Sat 10:00-12:00 (Europe/Brussels, less public holidays) never open before the deadline"
        in holds["shut"].reason
    )


def test_faxes_keep_office_hours_by_default_and_emails_do_not(tmp_path: Path, sqlite_url: str) -> None:
    """The product's default (the suite's is always): a fax to Brussels goes on weekdays from 08:00
    to 18:00 there, not on a Saturday nor on New Year's Day; the email to the same official does."""
    official = target("brussels", fax="+3222222222", channels=["email", "fax"])
    settings = world(tmp_path, sqlite_url, [action_data("a", [official])]).model_copy(
        update={"fax_office_hours": "Mon-Fri 08:00-18:00", "fax_outbox": tmp_path / "fax"}
    )
    store = open_store(sqlite_url)
    channels = make_channels(settings, store)
    store.close()
    now = [dt.datetime(2030, 1, 5, 12, tzinfo=dt.UTC)]  # a Saturday
    catalogue = Catalogue(settings, tuple(channels), lambda: now[0])
    catalogue.reload()

    def offered() -> set[str]:
        return {g.channel for g in catalogue.groups(tuple(channels), channels)}

    assert offered() == {"email"} and catalogue.opens == dt.datetime(2030, 1, 7, 7, tzinfo=dt.UTC)
    now[0] = dt.datetime(2030, 1, 7, 7, tzinfo=dt.UTC)  # Monday, 08:00 in Brussels
    assert offered() == {"email", "fax"} and catalogue.opens is None
    now[0] = dt.datetime(2030, 1, 7, 17, tzinfo=dt.UTC)  # 18:00: closed
    assert offered() == {"email"}
    now[0] = dt.datetime(2030, 1, 1, 10, tzinfo=dt.UTC)  # New Year's Day, a Tuesday
    assert offered() == {"email"} and catalogue.opens == dt.datetime(2030, 1, 2, 7, tzinfo=dt.UTC)
