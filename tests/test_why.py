"""``dispatcher why``: one answer for every state a letter can be in, on SQLite and PostgreSQL.

The letters are planned and sent by a real run to aiosmtpd (sent, failed on a 550, waiting for
a retry after a 451); the states no run leaves behind for long (in flight, at a provider, a lease
run out) are written to their rows as a worker would leave them.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import re
from pathlib import Path

import httpx
import pytest
import yaml
from click.testing import CliRunner
from sqlalchemy import create_engine, select, update

from dispatcher.accounts import Role
from dispatcher.cli import main
from dispatcher.sending.runtime import utcnow
from dispatcher.settings import Settings
from dispatcher.store import Store, open_store
from dispatcher.store.reasons import Reason, gave_up
from dispatcher.store.schema import consents, deliveries, pacing_buckets
from tests.conftest import cli_env
from tests.smtp_server import ScriptedHandler, SmtpServer
from tests.test_campaign_shapes import run_once, settings, supporters, write_actions
from tests.web_client import add_users, client, log_in


def cli(env: dict[str, str], *args: str) -> str:
    result = CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def why(env: dict[str, str], *args: str) -> str:
    return cli(env, "why", *args)


def letter(db_url: str, action: str, target: str, n: int) -> str:
    store = open_store(db_url)
    try:
        return str(store.reports.find_delivery(action, target, f"s{n}@example.net")[0])
    finally:
        store.close()


def force(db_url: str, delivery: str, **values: object) -> None:
    """A row as a worker leaves it mid-way (what a run does not leave behind when it ends)."""
    engine = create_engine(db_url)
    with engine.begin() as conn:
        conn.execute(update(deliveries).where(deliveries.c.id == int(delivery)).values(**values))
    engine.dispose()


@pytest.fixture
def world(tmp_path: Path, db_url: str) -> dict[str, str]:
    """Letters of 4 supporters to pres (550), minister (sent), judge (451: retried in an hour)."""
    write_actions(tmp_path, {"a": ["pres", "minister"], "b": ["judge"], "c": ["envoy"]})
    handler = ScriptedHandler()
    handler.fail(at="rcpt", reply="550", rcpt="pres@example.org")
    handler.fail(at="rcpt", reply="451", rcpt="judge@example.org")
    with SmtpServer(handler) as smtp:
        config = settings(tmp_path, smtp.url, db_url, retry_initial=3600.0)
        store = open_store(db_url)
        store.import_supporters(supporters(4), utcnow())
        asyncio.run(run_once(config, store, limit=30))
        store.close()
    return cli_env(tmp_path, tmp_path, DISPATCHER_DATABASE_URL=db_url, DISPATCHER_SMTP_URL=smtp.url)


@pytest.mark.slow
def test_why_answers_for_every_state(world: dict[str, str], db_url: str) -> None:
    sent = why(world, "--action", "a", "--target", "minister", "--email", "s0@example.net")
    assert "sent: sent at" in sent and "Message-ID: <" in sent and "under consent #" in sent
    assert "failed: failed at" in why(world, letter(db_url, "a", "pres", 0))
    assert "waiting for a retry: attempt 1 failed" in why(world, letter(db_url, "b", "judge", 0))
    now = utcnow()
    force(db_url, letter(db_url, "c", "envoy", 0), status="pending", next_attempt_at=now)
    assert "due now: due since" in why(world, letter(db_url, "c", "envoy", 0))
    force(
        db_url,
        letter(db_url, "c", "envoy", 1),
        status="pending",
        attempts=0,
        next_attempt_at=now + dt.timedelta(hours=2),
    )
    assert "due later: due at" in why(world, letter(db_url, "c", "envoy", 1))
    cap = "waiting for next month: the supporter's monthly cap is reached"
    force(
        db_url,
        letter(db_url, "c", "envoy", 2),
        status="pending",
        last_error=cap,
        next_attempt_at=now + dt.timedelta(hours=1),
    )
    assert "waiting for the monthly cap" in why(world, letter(db_url, "c", "envoy", 2))
    flying = dict(status="sending", lease_owner="w9", lease_until=now + dt.timedelta(minutes=5))
    force(db_url, letter(db_url, "c", "envoy", 3), **flying)
    assert "sending: w9 is sending it" in why(world, letter(db_url, "c", "envoy", 3))
    force(db_url, letter(db_url, "c", "envoy", 3), lease_until=now - dt.timedelta(minutes=1))
    assert "waiting for its lease to run out" in why(world, letter(db_url, "c", "envoy", 3))
    force(
        db_url,
        letter(db_url, "a", "minister", 1),
        status="submitted",
        provider="file",
        provider_job="j1",
        submitted_at=now,
    )
    assert "submitted: file took it as job j1" in why(world, letter(db_url, "a", "minister", 1))
    due = letter(db_url, "c", "envoy", 0)
    cli(world, "pause", "c")
    assert "paused: the action is paused (by " in why(world, due)
    cli(world, "resume", "c")
    cli(world, "supporters", "revoke", "s0@example.net")
    assert "cancelled: the supporter withdrew their consent" in why(world, due)
    cli(world, "close", "b")
    assert "cancelled: staff closed the action" in why(world, letter(db_url, "b", "judge", 1))
    force(db_url, letter(db_url, "b", "judge", 2), status="expired")
    assert "expired: the action's deadline passed" in why(world, letter(db_url, "b", "judge", 2))


async def get_as(config: Settings, store: Store, role: Role | None, path: str) -> httpx.Response:
    async with client(config, store) as web:
        if role is not None:
            assert (await log_in(web, role.label)).status_code == 303
        return await web.get(path)


@pytest.mark.slow
async def test_the_delivery_page_explains_a_letter_by_role_without_naming_its_supporter(
    world: dict[str, str], db_url: str, tmp_path: Path
) -> None:
    failed, store = letter(db_url, "a", "pres", 0), open_store(db_url)
    config = settings(tmp_path, world["DISPATCHER_SMTP_URL"], db_url)
    add_users(store)
    try:
        assert (await get_as(config, store, None, f"/deliveries/{failed}")).status_code == 303  # log in
        page = await get_as(config, store, Role.VIEWER, f"/deliveries/{failed}")
        assert page.status_code == 200 and "failed at" in page.text and "550" in page.text
        assert "s0@example.net" not in page.text and "Supporter 0" not in page.text
        assert f'href="/deliveries/{failed}"' in (await get_as(config, store, Role.VIEWER, "/log")).text
        for missing in ("999999", "nine", "-1"):
            assert (await get_as(config, store, Role.VIEWER, f"/deliveries/{missing}")).status_code == 404
        operator = await get_as(config, store, Role.OPERATOR, "/actions/a")
        assert f'href="/deliveries/{failed}"' in operator.text  # from its failed letters
    finally:
        store.close()


def consent_facts(page: str) -> list[str]:
    """What the delivery page says outside the attempts table: state, why, details."""
    body = page.split('<dl class="facts" id="why">', 1)[1].split("<h2>", 1)[0]
    return re.findall(r"<(?:dd|li)[^>]*>([^<]*)</", body)


@pytest.mark.slow
async def test_the_delivery_page_does_not_tell_a_viewer_which_letters_share_a_supporter(
    world: dict[str, str], db_url: str, tmp_path: Path
) -> None:
    engine = create_engine(db_url)
    with engine.begin() as conn:  # each consent its own opt-in second and cap, as in life
        for cid, opted in conn.execute(select(consents.c.id, consents.c.opted_in_at)).all():
            moved = dict(opted_in_at=opted - dt.timedelta(seconds=cid), monthly_cap=cid + 5)
            conn.execute(update(consents).where(consents.c.id == cid).values(**moved))
    engine.dispose()
    store, config = open_store(db_url), settings(tmp_path, world["DISPATCHER_SMTP_URL"], db_url)
    add_users(store)
    try:
        seen: dict[int, set[str]] = {}
        for n in (0, 1):
            for action, target in (("a", "pres"), ("a", "minister"), ("b", "judge")):
                path = f"/deliveries/{letter(db_url, action, target, n)}"
                facts = consent_facts((await get_as(config, store, Role.VIEWER, path)).text)
                assert not [f for f in facts if re.search(r"\d:\d\d|#\d|cap", f)], facts
                seen.setdefault(n, set()).update(f for f in facts if "consent" in f)
        assert seen[0] == seen[1] and seen[0], seen  # one supporter's consent reads as another's
    finally:
        store.close()
    secrets = {
        "DISPATCHER_METRICS_TOKEN": "metrics-tok-1",
        "DISPATCHER_TELNYX_API_KEY": "telnyx-key-2",
        "DISPATCHER_API_TOKEN": "api-tok-3",
    }
    output = why(world | secrets, letter(db_url, "a", "minister", 0))
    assert "consent #" in output  # the operator's full view, from the shell
    assert not [s for s in secrets.values() if s in output], output


def rewrite(world: dict[str, str], action: str, **changes: object) -> None:
    """Staff edit an action's file: ``changes`` to the action, ``target`` to its one target."""
    path = Path(world["DISPATCHER_ACTIONS_DIR"]) / f"{action}.yaml"
    data = yaml.safe_load(path.read_text())
    data["targets"][0].update(changes.pop("target", {}))
    path.write_text(yaml.safe_dump(data | changes))


@pytest.mark.slow
def test_why_names_what_a_due_letter_waits_for_and_who_cancelled_it(
    world: dict[str, str], db_url: str
) -> None:
    now, ids = utcnow(), [letter(db_url, "c", "envoy", n) for n in range(4)]
    for delivery in ids:
        force(db_url, delivery, status="pending", next_attempt_at=now)
    engine = create_engine(db_url)
    with engine.begin() as conn:  # the envoy's bucket spent by a burst a moment ago
        spent = pacing_buckets.c.key == "email:envoy@example.org"
        assert conn.execute(update(pacing_buckets).where(spent).values(tokens=0.0, updated_at=now)).rowcount
    engine.dispose()
    # A slow refill: at the default 2 letters/s the bucket has a token again before a loaded
    # machine has started the command.
    slow = {**world, "DISPATCHER_RATE_PER_TARGET": "0.001"}
    assert "waiting for pacing: the recipient's pacing allows the next letter in" in why(slow, ids[0])
    (Path(world["DISPATCHER_TEMPLATES_DIR"]) / "c" / "en.j2").write_text("{{ broken")
    assert "held: nothing of this action is sent: c × envoy × en: " in why(world, ids[0])
    rewrite(world, "c", status="closed")
    assert "closed: the action is closed" in why(world, ids[0])
    force(db_url, ids[0], status="cancelled")
    assert "cancelled: the action was closed (its file says closed)" in why(world, ids[0])
    cli(world, "supporters", "forget", "s1@example.net")
    assert "cancelled: the supporter asked to be forgotten" in why(world, ids[1])
    # Written by the consent sweeps (mandates): their reasons, read back.
    force(db_url, ids[2], status="cancelled", last_error=Reason.LAPSED.value)
    assert "cancelled: the supporter's consent ended or expired" in why(world, ids[2])
    force(db_url, ids[3], status="cancelled", last_error=Reason.NARROWED.value)
    assert "cancelled: the supporter's new consent no longer allows this channel" in why(world, ids[3])
    force(db_url, ids[2], last_error=f"{Reason.UNSIGNED_LANGUAGE} de, which the supporter does not sign")
    assert "language is one the supporter does not sign" in why(world, ids[2])


@pytest.mark.slow
def test_why_says_a_fax_waits_for_its_line(world: dict[str, str], db_url: str) -> None:
    rewrite(world, "c", target={"channels": ["fax"], "fax": "+442079460000"})
    first, second = letter(db_url, "c", "envoy", 0), letter(db_url, "c", "envoy", 1)
    now = utcnow()
    force(
        db_url, first, channel="fax", status="submitted", provider="file", provider_job="j1", submitted_at=now
    )
    force(db_url, second, channel="fax", status="pending", next_attempt_at=now)
    assert f"waiting for the fax line: delivery {first} to the same fax line is in flight" in why(
        world, second
    )


@pytest.mark.slow
def test_why_reads_back_a_letter_given_up_after_its_retries(world: dict[str, str], db_url: str) -> None:
    failed = letter(db_url, "b", "judge", 0)
    force(db_url, failed, status="failed", attempts=3, last_error=gave_up(3, "451 4.3.0 try again later"))
    answer = why(world, failed)
    assert "failed: failed at" in answer
    assert "after 3 attempt(s): its retries ran out; the last reply: 451 4.3.0 try again later" in answer
