"""Digest delivery end to end: the real dispatcher, a real SQLite file, aiosmtpd on 127.0.0.1.

A target whose plan says ``delivery: digest`` gets one email a day carrying every letter planned
before its moment, each supporter named by name and city, never by address; every letter is
recorded sent with the digest's Message-ID; late joiners go in the next day's.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from dispatcher.channels import make_channels
from dispatcher.channels.fax import digest_reference
from dispatcher.models import ClaimGroup
from dispatcher.sending.runtime import Dispatcher
from dispatcher.sending.why import explain
from dispatcher.settings import Settings
from dispatcher.store import Store, open_store
from dispatcher.store.digests import Digest
from dispatcher.store.explain import State
from dispatcher.store.schema import digest_letters, digests
from dispatcher.store.sql import SqlStore
from tests.campaigns.test_cli import cli
from tests.campaigns.test_email_smtp import (
    ACTION_ID,
    TO,
    delivery_rows,
    make_settings,
    people,
    run_once,
    write_action,
)
from tests.campaigns.test_email_smtp import (
    db as db,
)
from tests.campaigns.test_email_smtp import (
    smtp as smtp,
)
from tests.conftest import cli_env
from tests.support.actions import action_data
from tests.support.actions import write_action as write_data
from tests.support.processes import until, wait_until
from tests.support.sink import received, smtp_sink
from tests.support.smtp_server import SmtpServer
from tests.support.workers import Workers, seed, worker_env

LONDON = ZoneInfo("Europe/London")
DIGEST = {"delivery": "digest", "digest_at": "09:00"}
TOTAL = 12
HOLD_250 = 3.0  # seconds the kill test's server holds its answer to the digest


def digest_rows_at(db_url: str) -> list[tuple[str, str, str, int]]:
    store = open_store(db_url, migrate=False)
    try:
        return digest_rows(store)
    finally:
        store.close()


def statuses(db_url: str) -> set[str]:
    store = open_store(db_url, migrate=False)
    try:
        return {row.status for row in delivery_rows(store)}
    finally:
        store.close()


def digest_rows(store: Store) -> list[tuple[str, str, str, int]]:
    """(day, status, Message-ID, letters) of every digest, oldest first."""
    assert isinstance(store, SqlStore)
    g, m = digests, digest_letters
    with store.engine.begin() as conn:
        rows = conn.execute(select(g.c.id, g.c.day, g.c.status, g.c.message_id).order_by(g.c.id)).all()
        count = {
            r.id: len(conn.execute(select(m.c.delivery_id).where(m.c.digest_id == r.id)).all()) for r in rows
        }
    return [(r.day, r.status, r.message_id, count[r.id]) for r in rows]


def at(day: dt.date, hour: int, minute: int = 0, second: int = 0) -> Callable[[], dt.datetime]:
    """A clock stopped at this London wall time (the demo action's zone)."""
    fixed = dt.datetime(day.year, day.month, day.day, hour, minute, second, tzinfo=LONDON)
    return lambda: fixed


def london_today() -> dt.date:
    return dt.datetime.now(LONDON).date()


def digest_world(tmp_path: Path, smtp: SmtpServer, db: Store, supporters: int) -> tuple[Settings, dt.date]:
    """The demo action with a 09:00 London digest, these supporters; the settings and today."""
    write_action(tmp_path / "actions", plan=DIGEST)
    db.import_supporters(people(supporters), dt.datetime.now(dt.UTC))
    return make_settings(tmp_path, smtp.url), london_today()


async def test_one_digest_a_day_with_every_letter_and_no_supporter_address(
    tmp_path: Path, smtp: SmtpServer, store: Store
) -> None:
    db = store  # SQLite and PostgreSQL
    settings, today = digest_world(tmp_path, smtp, db, 5)

    # Before 09:00 London: planned, nothing sent.
    await run_once(settings, db, at(today, 8, 59))
    assert smtp.received() == []
    assert {r.status for r in delivery_rows(db)} == {"pending"}
    first = delivery_rows(db)[0].id
    waiting = explain(db, settings, first, at(today, 8, 59))
    assert waiting is not None and waiting.state is State.DIGEST
    assert waiting.summary == f"next digest: {today} 09:00 GMT, with 4 others"

    # At 09:00: one message carrying the five letters; again later that day: nothing more.
    await run_once(settings, db, at(today, 9, 0))
    await run_once(settings, db, at(today, 15, 0))
    received = smtp.received()
    assert len(received) == 1
    mail = received[0]
    assert mail.rcpt_tos[0] == TO
    assert b"@example.net" not in mail.data  # no supporter's address anywhere on the wire
    assert mail.reply_to is None
    message = mail.message()
    assert message["Subject"].startswith("5 supporters wrote to you")
    parts = [p.get_content() for p in message.iter_parts()]
    assert len(parts) == 6 and "5 supporters" in parts[0]
    for i, part in enumerate(parts[1:]):
        assert f"Letter {i + 1} of 5: Supporter {i} 支持者, Genève" in part
    [(day, status, mid, count)] = digest_rows(db)
    assert (day, status, mid, count) == (today.isoformat(), "sent", mail.message_id, 5)
    rows = delivery_rows(db)
    assert {r.status for r in rows} == {"sent"} and all(r.attempts == 1 for r in rows)
    # Counted for the target as five letters: the reports' counts and the dashboard's progress.
    assert [(c.target_id, c.letters) for c in db.sent_counts(ACTION_ID)] == [("president-demo", 5)]
    assert db.reports.progress()[ACTION_ID]["sent"] == 5
    told = explain(db, settings, first, at(today, 15, 0))
    assert told is not None and told.state is State.SENT and f"Message-ID: {mid}" in told.details
    log = list(db.attempt_log())
    assert len(log) == 5 and all(a.outcome == "sent" and mid in a.detail for a in log)

    # Late joiners wait for tomorrow's digest, which carries them alone.
    db.import_supporters(people(3, start=5), dt.datetime.now(dt.UTC))
    await run_once(settings, db, at(today, 16, 0))
    assert len(smtp.received()) == 1
    tomorrow = today + dt.timedelta(days=1)
    await run_once(settings, db, at(tomorrow, 9, 30))
    received = smtp.received()
    assert len(received) == 2 and received[1].message().get("Subject", "").startswith("3 supporters")
    assert [(d, s, n) for d, s, _, n in digest_rows(db)] == [
        (today.isoformat(), "sent", 5),
        (tomorrow.isoformat(), "sent", 3),
    ]


def planned_for_workers(tmp_path: Path) -> str:
    """TOTAL letters for ``dispatcher run`` workers, planned before today's 00:00 London, the
    digest's moment (a digest carries the letters planned by then); the database URL."""
    db_url = f"sqlite:///{tmp_path / 'dispatcher.db'}"
    seed(db_url, tmp_path, TOTAL)
    write_action(tmp_path / "actions", plan={"delivery": "digest", "digest_at": "00:00"})
    store = open_store(db_url, migrate=False)
    try:
        before = at(london_today(), 0, 0)() - dt.timedelta(hours=1)
        store.plan(ACTION_ID, [("president-demo", "email")], before)
    finally:
        store.close()
    return db_url


@contextlib.contextmanager
def slow_server_workers(tmp_path: Path, db_url: str, lease: str) -> Iterator[Workers]:
    """Workers (started by the caller) with leases of ``lease`` seconds, and a server that
    holds its answer to each message HOLD_250 seconds; every worker killed at the end."""
    with smtp_sink(tmp_path, delay=HOLD_250) as smtp_url:
        workers = Workers(tmp_path, worker_env(tmp_path, db_url, smtp_url, DISPATCHER_LEASE_SECONDS=lease))
        try:
            yield workers
        finally:
            workers.stop(signal.SIGKILL)


@pytest.mark.slow
def test_two_workers_send_the_digest_once_however_long_the_server_takes(tmp_path: Path) -> None:
    """The server holds its answer longer than a lease: the worker sending renews it, so the
    other never takes the digest over."""
    db_url, out = planned_for_workers(tmp_path), tmp_path / "received.txt"
    with slow_server_workers(tmp_path, db_url, lease="1") as workers:
        workers.start("one")
        workers.start("two")
        wait_until(lambda: set(statuses(db_url)) == {"sent"}, 30, "every letter recorded sent")
        time.sleep(2)  # a second send would have begun by now
        assert set(workers.stop().values()) == {0}, workers.logs()
    assert len(received(out)) == 1
    [(_, status, mid, count)] = digest_rows_at(db_url)
    assert (status, count, received(out)[0][0]) == ("sent", TOTAL, mid)


@pytest.mark.slow
def test_kill_9_mid_digest_then_another_worker_sends_the_same_digest_and_every_letter_once(
    tmp_path: Path,
) -> None:
    db_url, out = planned_for_workers(tmp_path), tmp_path / "received.txt"
    # The server logs the digest, then holds its 250 long enough for the kill to land first.
    with slow_server_workers(tmp_path, db_url, lease="2") as workers:
        first = workers.start("first")
        wait_until(lambda: len(received(out)) == 1 or first.poll() is not None, 30, "the digest")
        assert first.poll() is None, workers.log("first")
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
        second = workers.start("second")
        wait_until(lambda: len(received(out)) == 2 or second.poll() is not None, 30, "the digest again")
        wait_until(lambda: set(statuses(db_url)) == {"sent"}, 30, "every letter recorded sent")
        assert workers.stop()["second"] == 0, workers.log("second")
    got = received(out)
    [(_, status, mid, count)] = digest_rows_at(db_url)
    assert [m for m, _ in got] == [mid, mid] and count == TOTAL and status == "sent"
    store = open_store(db_url, migrate=False)
    try:
        sent = [a for a in store.attempt_log() if a.outcome == "sent"]
    finally:
        store.close()
    assert sorted(a.delivery_id for a in sent) == list(range(1, TOTAL + 1))  # each letter once
    assert all(mid in a.detail for a in sent)


async def test_a_refused_digest_is_tried_again_with_the_same_message_id_and_letters_still_allowed(
    tmp_path: Path, smtp: SmtpServer, db: Store
) -> None:
    settings, today = digest_world(tmp_path, smtp, db, 3)
    smtp.fail(at="data", reply="451", times=1)
    await run_once(settings, db, at(today, 9, 0))
    assert smtp.received() == [] and {r.status for r in delivery_rows(db)} == {"pending"}
    [(_, status, mid, count)] = digest_rows(db)
    assert (status, count) == ("pending", 3)
    # Not before its backoff (retry_initial 30 s, jittered up to 30 s more), then the same digest.
    await run_once(settings, db, at(today, 9, 0, 20))
    assert smtp.received() == []
    # Meanwhile a supporter withdraws: the digest goes again without their letter.
    db.people.revoke("supporter0001@example.net", at(today, 9, 1)(), "test")
    await run_once(settings, db, at(today, 9, 2))
    [mail] = smtp.received()
    assert mail.message_id == mid and mail.message()["Subject"].startswith("2 supporters")
    assert b"Supporter 1 " not in mail.data
    assert sorted(r.status for r in delivery_rows(db)) == ["cancelled", "sent", "sent"]
    outcomes = sorted(a.outcome for a in db.attempt_log())
    assert outcomes == ["retry"] * 3 + ["sent"] * 2


def test_check_says_when_a_digest_target_gets_its_digest(tmp_path: Path) -> None:
    fax = {"fax": "+3222222222", "channels": ["email", "fax"], "timezone": "Europe/Brussels"}
    official = {"id": "minister", "name": "Minister", "email": "m@example.org", "salutation": {"en": "Dear"}}
    plan = {"delivery": "digest", "digest_at": "11:30"}
    write_data(
        tmp_path / "world" / "actions", action_data("both", [official | fax], plan=plan, template_set="a")
    )
    (tmp_path / "world" / "templates" / "a").mkdir(parents=True)
    (tmp_path / "world" / "templates" / "a" / "en.j2").write_text(
        "{% block subject %}Hello{% endblock %}{% block body %}Free them. {{ supporter.words }}{% endblock %}"
    )
    result = cli(cli_env(tmp_path, tmp_path / "world"), "check")
    for via in ("email", "fax"):
        assert f"ok: both × minister × {via} × en, one digest a day at 11:30 Europe/Brussels" in result.stdout


async def test_a_letter_that_fails_to_render_holds_its_action_and_the_digest_waits_untouched(
    tmp_path: Path, smtp: SmtpServer, db: Store
) -> None:
    settings, today = digest_world(tmp_path, smtp, db, 4)
    # Checked with a sample supporter, this template renders; for supporter 2 it does not.
    letter = (
        "{% block subject %}Free them{% endblock %}{% block body %}{{ target.salutation }}\n"
        "{% if supporter.name.startswith('Supporter 2 ') %}{{ supporter.nope }}{% endif %}\n"
        "{{ supporter.words }}{% endblock %}"
    )
    folder = tmp_path / "templates" / "ua-61-21-update-1"
    folder.mkdir(parents=True)
    (folder / "en.j2").write_text(letter, encoding="utf-8")
    settings = settings.model_copy(update={"templates_dir": tmp_path / "templates"})
    await run_once(settings, db, at(today, 9, 0))
    assert smtp.received() == []
    holds = db.action_holds(at(today, 9, 0)())
    assert [h.action_id for h in holds] == [ACTION_ID] and "supporter.nope" in holds[0].reason
    [(_, status, _, count)] = digest_rows(db)
    assert (status, count) == ("pending", 4)
    rows = delivery_rows(db)
    assert {r.status for r in rows} == {"pending"} and all(r.attempts == 0 for r in rows)


@pytest.mark.slow
async def test_a_running_worker_sends_each_days_digest_as_its_moment_comes(
    tmp_path: Path, smtp: SmtpServer, db: Store
) -> None:
    settings, today = digest_world(tmp_path, smtp, db, 2)
    clock = [at(today, 8, 59)()]
    worker = Dispatcher(settings, db, make_channels(settings, db), worker_id="w", clock=lambda: clock[0])
    running = asyncio.create_task(worker.run_forever())
    try:
        await asyncio.sleep(1.5)
        assert smtp.received() == []
        clock[0] = at(today, 9, 0)()
        await until(lambda: len(smtp.received()) == 1, 5, "today's digest")
        db.import_supporters(people(3, start=2), clock[0])
        clock[0] = at(today, 23, 59)()
        await worker.plan()  # the plan job's timer runs on the real clock, hours behind this one
        await asyncio.sleep(2)
        assert len(smtp.received()) == 1  # the late joiners wait for tomorrow's
        clock[0] = at(today + dt.timedelta(days=1), 9, 0)()
        await until(lambda: len(smtp.received()) == 2, 5, "tomorrow's digest")
        await asyncio.sleep(1.5)
    finally:
        worker.stop()
        await asyncio.wait_for(running, 30)
    subjects = [r.message()["Subject"] for r in smtp.received()]
    assert [s.split(" wrote")[0] for s in subjects] == ["2 supporters", "3 supporters"]


MINISTER = {
    "id": "minister",
    "name": "Minister (demo)",
    "role": "to",
    "languages": ["en"],
    "salutation": {"en": "Dear Minister"},
    "fax": "+442079460123",
    "channels": ["fax"],
}


def fax_world(tmp_path: Path, db: Store) -> tuple[Settings, Path]:
    """The demo action to one fax target, its digest at 09:00 London, at most 3 pages a fax
    (a cover and two one-page letters), 7 supporters; the settings and the file provider's folder."""
    write_action(tmp_path / "actions", plan=DIGEST, targets=[MINISTER])
    db.import_supporters(people(7), dt.datetime.now(dt.UTC))
    outbox = tmp_path / "fax"
    return make_settings(tmp_path, "smtp://127.0.0.1:9", fax_outbox=outbox, fax_digest_pages=3), outbox


def pdf_text(path: Path) -> list[str]:
    """The text of each page of a PDF (poppler's pdftotext)."""
    done = subprocess.run(
        ["pdftotext", "-layout", str(path), "-"], capture_output=True, text=True, check=True
    )
    return done.stdout.split("\f")[:-1]


@pytest.mark.skipif(shutil.which("pdftotext") is None, reason="poppler-utils is not installed")
async def test_a_fax_digest_is_split_into_faxes_of_at_most_n_pages_each_letter_with_its_job(
    tmp_path: Path, db: Store
) -> None:
    settings, outbox = fax_world(tmp_path, db)
    await run_once(settings, db, at(london_today(), 9, 0))
    faxes = sorted(outbox.glob("*.pdf"), key=lambda p: int(p.stem.split("-")[1]))
    pages = {path.stem: pdf_text(path) for path in faxes}
    assert len(faxes) >= 3 and all(len(p) <= 3 for p in pages.values())
    covers = [p[0] for p in pages.values()]
    assert all("7 supporters wrote to you: Demo" in cover for cover in covers)
    assert all(f"Fax {i} of {len(faxes)}: letters" in cover for i, cover in enumerate(covers, 1))
    # Every letter once, in the fax its attempt rows name, and recorded sent once the provider said so.
    log = [a for a in db.attempt_log() if a.outcome == "sent"]
    assert sorted(a.delivery_id for a in log) == list(range(1, 8))
    signed = {a.delivery_id: pages[a.job_id or ""] for a in log}
    for delivery_id, text in signed.items():
        assert sum(f"Supporter {delivery_id - 1} " in page for page in text) >= 1
    assert {r.status for r in delivery_rows(db)} == {"sent"}
    [(_, status, _, count)] = digest_rows(db)
    assert (status, count) == ("sent", 7)


async def test_a_fax_digest_taken_over_after_a_crash_submits_no_fax_twice(tmp_path: Path, db: Store) -> None:
    settings, outbox = fax_world(tmp_path, db)
    nine = at(london_today(), 9, 0)()
    await run_once(settings, db, lambda: nine - dt.timedelta(minutes=1))  # planned, nothing sent
    # A worker took the digest and got its first fax to the provider, then was killed.
    group = ClaimGroup(ACTION_ID, "minister", "fax", ("fax:+442079460123",))
    lease = dt.timedelta(seconds=settings.lease_seconds)
    ghost = db.digests.take_digest("ghost", group, f"{nine:%Y-%m-%d}", nine, nine, lease, "fax.invalid")
    assert isinstance(ghost, Digest)
    first = digest_reference(db.instance_secret(), ghost.id, ghost.delivery_ids[0])
    outbox.mkdir()
    (outbox / f"{first}.pdf").write_bytes(b"the fax the killed worker submitted")
    await run_once(settings, db, lambda: nine + 2 * lease)
    assert (outbox / f"{first}.pdf").read_bytes() == b"the fax the killed worker submitted"
    log = [a for a in db.attempt_log() if a.outcome == "sent"]
    assert sorted(a.delivery_id for a in log) == ghost.delivery_ids
    assert {a.job_id for a in log if a.delivery_id in ghost.delivery_ids[:2]} == {first}
    assert len(list(outbox.glob("*.pdf"))) == 4  # 7 letters, two a fax: no part twice
