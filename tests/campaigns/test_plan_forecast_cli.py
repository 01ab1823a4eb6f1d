"""The plan's forecast where staff read it: ``dispatcher check`` before launch (the supporters
consenting today, no letter planned yet), ``dispatcher actions`` while running, and the action
page. A real action file, a real store (SQLite and PostgreSQL), the real command and app."""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dispatcher.accounts import Role
from dispatcher.actions.files import load_actions
from dispatcher.actions.planner import plan_action
from dispatcher.channels import IMPLEMENTED
from dispatcher.cli import check, overview
from dispatcher.store import Store, open_store
from tests.campaigns.test_campaign_shapes import TEMPLATE
from tests.campaigns.test_cli import cli
from tests.conftest import cli_env
from tests.store.test_store_contract import people
from tests.support import actions
from tests.support.web_client import add_users, client, web_settings
from tests.web.test_dashboard import as_role

ACTION = "forecast-demo"
MONDAY = dt.datetime(2026, 12, 14, 9, 0, tzinfo=dt.UTC)  # after the people's consents, before 2027
# One official reached by email, a day's cap of 100 and no other (the pacing sends 100 in 50 s).
MINISTER = {"id": "minister", "name": "Minister", "salutation": {"en": "Dear Minister"}} | {
    "email": "minister@gov.example",
    "channels": ["email"],
}
PLAN = {"max_per_day": 100, "max_per_hour": None, "domain_max_per_hour": None}


def world(tmp_path: Path, deadline: str, **fields: Any) -> Path:
    data = actions.action_data(ACTION, [MINISTER], deadline=deadline, timezone="UTC", plan=PLAN, **fields)
    actions.write_action(tmp_path / "actions", data)
    (tmp_path / "templates" / ACTION).mkdir(parents=True)
    (tmp_path / "templates" / ACTION / "en.j2").write_text(TEMPLATE, encoding="utf-8")
    return tmp_path


@pytest.fixture
def at_monday(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for module in (check, overview):
        monkeypatch.setattr(module, "utcnow", lambda: MONDAY)
    yield


def supporters(store: Store, n: int) -> None:
    store.import_supporters(people(n, scopes=(ACTION,)), MONDAY)


# Six days from Monday 09:00 to Saturday's end hold 600; 900 need nine, so the last goes on
# Tuesday the 22nd; 150 a day fit.
WARNING = (
    f"warning: {ACTION} × minister (email): 900 letters need 9 office days at 100/day; 6 left before "
    "the deadline 2026-12-19 24:00 UTC → raise max_per_day to 150, or use delivery: digest, or extend to "
    "2026-12-22"
)


@contextlib.contextmanager
def launched(
    tmp_path: Path, db_url: str, deadline: str, signers: int
) -> Iterator[tuple[dict[str, str], Store]]:
    """The command's environment over the action due ``deadline`` and a store with ``signers``."""
    env = cli_env(tmp_path, world(tmp_path, deadline), DISPATCHER_DATABASE_URL=db_url)
    store = open_store(db_url)
    try:
        supporters(store, signers)
        yield env, store
    finally:
        store.close()


@pytest.mark.usefixtures("at_monday")
def test_check_warns_from_the_supporters_consenting_today(tmp_path: Path, db_url: str) -> None:
    with launched(tmp_path, db_url, "2026-12-19", 900) as (env, store):
        result = cli(env, "check")  # a warning, not an error: it exits 0
        counted = f"forecast: {ACTION}: 0 letters pending, 900 more for the supporters who consent today"
        assert counted in result.stdout.splitlines()
        assert WARNING in result.stderr.splitlines()
        assert not store.queue_counts()  # nothing planned by a check


@pytest.mark.usefixtures("at_monday")
def test_check_says_when_the_last_letter_goes_when_it_fits(tmp_path: Path, db_url: str) -> None:
    with launched(tmp_path, db_url, "2026-12-31", 250) as (env, _):
        result = cli(env, "check")
    # 100 on Monday and Tuesday, 50 on Wednesday from midnight at 2 a second.
    said = f"forecast: {ACTION} × minister (email): 250 letters, the last 2026-12-16 00:00 UTC"
    assert said in result.stdout.splitlines() and "warning" not in result.stderr


@pytest.mark.usefixtures("at_monday")
def test_actions_warns_per_target_while_running(tmp_path: Path, db_url: str) -> None:
    with launched(tmp_path, db_url, "2026-12-19", 900) as (env, store):
        loaded = load_actions(tmp_path / "actions")
        assert plan_action(store, loaded.actions[ACTION], IMPLEMENTED, MONDAY) == 900
        result = cli(env, "actions")
    row = next(line for line in result.stdout.splitlines() if line.startswith(ACTION))
    assert "not sending: no dispatcher running" in row  # no worker: said before the plan
    assert WARNING in result.stderr.splitlines()


async def test_the_action_page_names_the_fix(tmp_path: Path, store: Store) -> None:
    """The real clock: three days hold 300 at most, whatever the hour."""
    deadline = (dt.datetime.now(dt.UTC) + dt.timedelta(days=2)).date().isoformat()
    settings = web_settings(
        tmp_path, actions_dir=world(tmp_path, deadline) / "actions", templates_dir=tmp_path / "templates"
    )
    add_users(store)
    supporters(store, 900)
    plan_action(
        store, load_actions(settings.actions_dir).actions[ACTION], IMPLEMENTED, dt.datetime.now(dt.UTC)
    )
    async with client(settings, store) as web:
        await as_role(web, Role.VIEWER)
        page = (await web.get(f"/actions/{ACTION}")).text
        data = (await web.get("/api/overview")).json()[ACTION]
    assert data["at_risk"] and "Last letters" in page
    assert '<li class="risk">minister (email): 900 letters need 9 office days at 100/day; 3 left' in page
    assert "raise max_per_day to" in page and "or use delivery: digest, or extend to" in page


def test_check_forecasts_no_closed_action(tmp_path: Path) -> None:
    out = cli(cli_env(tmp_path), "check").stdout  # the repository's actions: one active, four closed
    assert "forecast: demo-xinjiang: 0 letters pending, 0 more" in out
    assert "forecast: ua-61-21" not in out and "forecast: petition-xuar-camps" not in out


def test_the_forecast_starts_from_what_the_caps_counted_today(tmp_path: Path, db_url: str) -> None:
    """A worker sent the day's 100: the 50 left go tomorrow, not in the next half minute."""
    pace = {"DISPATCHER_RATE_PER_TARGET": "1000", "DISPATCHER_BURST_PER_TARGET": "1000"}
    with launched(tmp_path, db_url, "2035-01-01", 150) as (env, store):
        cli({**env, **pace}, "run", "--once")
        assert store.action_counts()[ACTION].get("sent") == 100
        out = cli(env, "actions").stdout
    tomorrow = dt.datetime.now(dt.UTC).date() + dt.timedelta(days=1)
    assert f"forecast: {ACTION} × minister (email): 50 letters, the last {tomorrow} 00:00 UTC" in out
