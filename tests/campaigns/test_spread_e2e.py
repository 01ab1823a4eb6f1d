"""Spread to the deadline end to end: a real ``dispatcher run`` with aiosmtpd, an action due in
under a minute, no margin: its letters to one official arrive spread over that time, none close
on another's heels, the last before the deadline, and the worker sleeps between them. And
``dispatcher why`` says when a letter waiting for the spread goes, and why."""

from __future__ import annotations

import datetime as dt
import itertools
import subprocess
import time
from pathlib import Path

import pytest

from dispatcher.channels import Channel, make_channels
from dispatcher.models import ActionState
from dispatcher.sending.catalogue import Catalogue
from dispatcher.sending.runtime import Dispatcher, utcnow
from dispatcher.settings import Settings
from dispatcher.store import open_store
from tests.campaigns.test_caps_e2e import letters, targets, why
from tests.campaigns.test_email_smtp import make_settings, people, write_action
from tests.campaigns.test_office_hours import target as office_target
from tests.campaigns.test_office_hours import world
from tests.campaigns.test_run_once import cpu_seconds
from tests.support.actions import action_data
from tests.support.processes import dispatcher_executable, wait_until
from tests.support.smtp_server import SmtpServer
from tests.support.workers import Workers, seed, worker_env

LETTERS = 8
EVEN = {"DISPATCHER_SPREAD": "even", "DISPATCHER_SPREAD_MARGIN_HOURS": "0"}


def due_in(tmp_path: Path, seconds: float) -> dt.datetime:
    """The demo action, to its president alone, due ``seconds`` from now, its plan the default
    (the demo's says ``spread: asap``)."""
    deadline = (dt.datetime.now(dt.UTC) + dt.timedelta(seconds=seconds)).replace(microsecond=0)
    write_action(tmp_path / "actions", targets=targets()[:1], deadline=deadline, plan={})
    return deadline


@pytest.mark.slow
def test_letters_arrive_spread_over_the_time_left(tmp_path: Path, db_url: str) -> None:
    seed(db_url, tmp_path, LETTERS)
    deadline = due_in(tmp_path, 45)
    with SmtpServer() as smtp:
        workers = Workers(tmp_path, worker_env(tmp_path, db_url, smtp.url, **EVEN))
        try:
            proc = workers.start("w1")
            wait_until(lambda: len(smtp.received()) >= 2, 30, "the first letters")
            before = cpu_seconds(proc.pid)
            time.sleep(2)
            used = cpu_seconds(proc.pid) - before
            wait_until(lambda: len(smtp.received()) >= LETTERS, 50, "every letter", interval=0.2)
            arrivals = [r.at for r in smtp.received()]
        finally:
            codes = workers.stop()
    assert codes == {"w1": 0}, workers.logs()
    gaps = [b - a for a, b in itertools.pairwise(arrivals)]
    # Spread: no two letters within a couple of seconds, over most of the time, all in time.
    assert min(gaps) > 2.0, gaps
    assert arrivals[-1] - arrivals[0] > 25, gaps
    assert arrivals[-1] <= deadline.timestamp(), (arrivals[-1], deadline)
    # Jittered, and the worker wakes when the token comes, not at its next whole second: the
    # gaps are not whole seconds apart (all seven outside by chance: 0.4 ** 7, under 0.2%).
    assert any(0.2 < gap % 1 < 0.8 for gap in gaps), gaps
    # Between letters the worker sleeps until the next token: no claim every round.
    assert used < 0.3, used


def test_why_names_the_spread_for_a_waiting_letter(tmp_path: Path, sqlite_url: str) -> None:
    seed(sqlite_url, tmp_path, 3)
    write_action(tmp_path / "actions", targets=targets()[:1], deadline="2030-01-30", plan={})
    env = worker_env(tmp_path, sqlite_url, "", **EVEN)  # no SMTP URL: the outbox folder
    run = subprocess.run(
        [dispatcher_executable(), "run", "--once"], env=env, capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 0, run.stderr
    counts, waiting = letters(sqlite_url)
    # One letter went; --once does not wait days for the next token, and says why it left two.
    assert counts == {"sent": 1, "pending": 2}, (counts, run.stderr)
    assert "2 due but held, paused, over a cap, waiting for the spread" in run.stderr + run.stdout, run
    answer = why(env, waiting)
    assert "waiting for the spread: spread to the deadline: this target's next letter about" in answer, answer
    # The end of the deadline day in the action's zone (London), and a letter every year or so.
    assert "(one every " in answer and "days to reach 2030-01-31 00:00 UTC with no margin)" in answer, answer


def test_the_catalogue_paces_each_group_from_its_pending_letters(tmp_path: Path, sqlite_url: str) -> None:
    """Even: pending (plus one) over the open time left less the margin, in the target's office
    hours; kept while it barely moves; raised by late joiners, lowered by an extension; none for
    a target whose plan says asap."""
    brussels = office_target("brussels", plan={"office_hours": "Mon-Fri 09:00-17:00"})
    action = action_data("a", [brussels, office_target("newyork", plan={"spread": "asap"})])
    action["deadline"] = "2030-01-14T09:00:00+01:00"  # Monday 09:00 in Brussels: two office weeks
    settings = world(tmp_path, sqlite_url, [action]).model_copy(update={"spread": "even"})
    monday = dt.datetime(2030, 1, 7, 8, tzinfo=dt.UTC)  # 09:00 in Brussels
    catalogue = Catalogue(settings, ("email",), lambda: monday)
    catalogue.reload()
    catalogue.pace({("a", "brussels", "email"): 39})
    paces = {g.target_id: g.pace for g in catalogue.groups(("email",), channels(settings))}
    # Aimed at Sunday 09:00 (a day's margin): five office days of eight hours.
    assert paces == {"brussels": pytest.approx(40 / (5 * 8 * 3600)), "newyork": None}
    first = paces["brussels"]
    catalogue.pace({("a", "brussels", "email"): 41})  # within a tenth: kept as it was
    assert catalogue.paces[("a", "brussels", "email")] == first
    catalogue.pace({("a", "brussels", "email"): 79})  # late joiners
    assert catalogue.paces[("a", "brussels", "email")] == pytest.approx(2 * first)
    extended = ActionState("a", None, dt.datetime(2030, 1, 21, 8, tzinfo=dt.UTC), monday, "staff")
    catalogue.set_states({"a": extended})
    catalogue.pace({("a", "brussels", "email"): 79}, fresh=False)  # a deadline moved: paced again
    assert catalogue.paces[("a", "brussels", "email")] == pytest.approx(first)


def channels(settings: Settings) -> dict[str, Channel]:
    store = open_store(str(settings.database_url))
    try:
        return make_channels(settings, store)
    finally:
        store.close()


async def test_late_joiners_raise_the_pace_at_the_plan_that_finds_them(tmp_path: Path) -> None:
    """A plan that writes letters counts the pending ones again at once (not COUNT_EVERY later)."""
    write_action(tmp_path / "actions", targets=targets()[:1], deadline="2030-01-30", plan={})
    settings = make_settings(tmp_path, "", spread="even", spread_margin_hours=0)
    store = open_store(settings.database_url)
    ident = ("demo-xinjiang", "president-demo", "email")
    try:
        dispatcher = Dispatcher(settings, store, make_channels(settings, store), worker_id="w")
        store.import_supporters(people(3), utcnow())
        await dispatcher.plan()
        first = dispatcher.catalogue.paces[ident]
        store.import_supporters(people(6, start=3), utcnow())
        await dispatcher.plan()
        dispatcher.db.shutdown()
    finally:
        store.close()
    # Three letters (plus one) over the time left, then nine (plus one).
    assert dispatcher.catalogue.paces[ident] == pytest.approx(first * 10 / 4, rel=0.01)
