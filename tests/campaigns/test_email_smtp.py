"""The email channel end to end: the real dispatcher, a real SQLite file, a real SMTP server.

Every test drives ``Dispatcher`` (``run_once`` or ``run_forever``) against aiosmtpd on 127.0.0.1
(``tests/support/smtp_server.py``), scripted to answer 421, 451, 550 or to drop the connection, and then
checks what the server received against the store's deliveries and its attempt log.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import select

from dispatcher.actions import controls
from dispatcher.actions.model import Action
from dispatcher.channels import make_channels
from dispatcher.channels.email import message_id
from dispatcher.letters.render import Renderer
from dispatcher.models import AttemptRow, SupporterRecord, Terms
from dispatcher.people.csv_import import KnownScopes, import_file
from dispatcher.sending.runtime import Dispatcher, Tally, utcnow
from dispatcher.settings import Settings
from dispatcher.store import Store, open_store
from dispatcher.store.schema import deliveries, supporters
from dispatcher.store.sql import SqlStore
from tests.support.caps import NO_CAPS
from tests.support.processes import until
from tests.support.smtp_server import Received, ScriptedHandler, SmtpServer

ROOT = Path(__file__).resolve().parents[2]
DEMO_ACTION = ROOT / "config" / "actions" / "demo-xinjiang.yaml"
DEMO_SUPPORTERS = ROOT / "config" / "demo-supporters.csv"
ACTION_ID = "demo-xinjiang"
TO = "president@example.org"
CC = "ambassador@example.org"
ORG = "letters@example.org"
WORKER = "test-worker"


# the world: action file, settings, store, supporters ----------------------------------------------
def write_action(actions_dir: Path, **changes: Any) -> Action:
    """The demo action (fictional example.org targets only) in its own directory, edited."""
    data = yaml.safe_load(DEMO_ACTION.read_text(encoding="utf-8"))
    data.update(changes)
    actions_dir.mkdir(parents=True, exist_ok=True)
    (actions_dir / f"{ACTION_ID}.yaml").write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return Action.model_validate(data)


def make_settings(tmp_path: Path, smtp_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": f"sqlite:///{tmp_path / 'dispatcher.db'}",
        "actions_dir": tmp_path / "actions",
        "templates_dir": ROOT / "templates",
        "outbox": tmp_path / "outbox",
        "smtp_url": smtp_url,
        "smtp_pool": 2,
        "smtp_timeout": 5.0,
        "rate_per_target": 1000.0,
        "burst_per_target": 1000,
        "rate_global": 1000.0,
        **NO_CAPS,
        # Retries wait half a minute or more: a run never retries by itself; tests let time pass
        # with a clock running ahead (``later``), so every run sees exactly what is due.
        "retry_initial": 30.0,
        "retry_max": 120.0,
        "lease_seconds": 30.0,
    }
    values.update(overrides)
    return Settings.model_validate(values)


# Their letters carry their address as Reply-To, which tests here and elsewhere tell them by.
DIRECT = Terms(replies="direct")


def people(n: int, start: int = 0) -> list[SupporterRecord]:
    opted = utcnow() - dt.timedelta(days=1)
    return [
        SupporterRecord(
            email=f"supporter{i:04d}@example.net",
            name=f"Supporter {i} 支持者",
            language="en",
            city="Genève",
            country="CH",
            scopes=(ACTION_ID,),
            opted_in_at=opted,
            terms=DIRECT,
        )
        for i in range(start, start + n)
    ]


def later(seconds: float) -> Callable[[], dt.datetime]:
    """A dispatcher clock running ``seconds`` ahead: makes scheduled retries due at once."""
    return lambda: utcnow() + dt.timedelta(seconds=seconds)


async def run_once(settings: Settings, store: Store, clock: Callable[[], dt.datetime] = utcnow) -> Tally:
    # Channels are closed when a run finishes, so every run gets its own.
    channels = make_channels(settings, store)
    return await Dispatcher(settings, store, channels, worker_id=WORKER, clock=clock).run_once()


def delivery_rows(store: Store) -> list[Any]:
    assert isinstance(store, SqlStore)
    d, s = deliveries, supporters
    with store.engine.begin() as conn:
        return list(
            conn.execute(
                select(
                    d.c.id,
                    d.c.status,
                    d.c.attempts,
                    d.c.next_attempt_at,
                    d.c.last_error,
                    d.c.language,
                    d.c.sent_at,
                    d.c.target_id,
                    s.c.email,
                )
                .join(s, s.c.id == d.c.supporter_id)
                .order_by(d.c.id)
            ).all()
        )


def statuses(store: Store) -> Counter[str]:
    return Counter(row.status for row in delivery_rows(store))


def log_by_delivery(store: Store) -> dict[int, list[AttemptRow]]:
    out: dict[int, list[AttemptRow]] = defaultdict(list)
    for row in store.attempt_log():
        out[row.delivery_id].append(row)
    return out


def expected_ids(store: Store) -> dict[int, str]:
    secret = store.instance_secret()
    return {row.id: message_id(secret, row.id, "example.org") for row in delivery_rows(store)}


def assert_log_matches_wire(store: Store, server: SmtpServer) -> None:
    """Every SMTP transaction the server saw is one attempt row, and every attempt is counted."""
    log = list(store.attempt_log())
    assert len(log) == server.transactions, (len(log), server.transactions)
    per_delivery = Counter(row.delivery_id for row in log)
    for row in delivery_rows(store):
        assert row.attempts == per_delivery[row.id], row


async def settle(server: SmtpServer, quiet: float, within: float) -> list[Received]:
    """Wait until no message has arrived for ``quiet`` seconds; what had arrived by then."""
    deadline = time.monotonic() + within
    seen = -1
    since = time.monotonic()
    while True:
        got = server.received()
        if len(got) != seen:
            seen, since = len(got), time.monotonic()
        elif time.monotonic() - since >= quiet:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"server never went quiet for {quiet} s within {within} s")
        await asyncio.sleep(0.02)


# fixtures -------------------------------------------------------------------------------------------
@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    with SmtpServer() as server:
        yield server


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Store]:
    store = open_store(f"sqlite:///{tmp_path / 'dispatcher.db'}")
    try:
        yield store
    finally:
        store.close()


@pytest.fixture
def action(tmp_path: Path) -> Action:
    return write_action(tmp_path / "actions")


# delivery and headers ---------------------------------------------------------------------------------
async def test_every_letter_delivered_once_with_correct_headers_and_body(
    tmp_path: Path, smtp: SmtpServer, db: Store, action: Action
) -> None:
    import_file(db, DEMO_SUPPORTERS, KnownScopes(frozenset({ACTION_ID})), utcnow())
    # A display name that must be quoted (comma, quotes), next to the CSV's 林小文 and Amélie.
    tricky = SupporterRecord(
        email="quote.me@example.net",
        name='Zoë "Z" O\'Brien, Jr.',
        language="en",
        city="",
        country="",
        scopes=(ACTION_ID,),
        opted_in_at=utcnow() - dt.timedelta(days=1),
        terms=Terms(replies="direct"),
    )
    db.import_supporters([tricky], utcnow())
    settings = make_settings(tmp_path, smtp.url)

    before = utcnow().replace(microsecond=0)
    tally = await run_once(settings, db)
    after = utcnow()

    rows = delivery_rows(db)
    assert len(rows) == 7 and all(r.target_id == "president-demo" for r in rows)  # the cc rides along
    assert tally.counts["sent"] == 7
    assert {r.status for r in rows} == {"sent"}
    assert all(r.attempts == 1 and r.language == "zh-Hans" and r.sent_at is not None for r in rows)

    received = smtp.received()
    ids = expected_ids(db)
    assert sorted(r.message_id or "" for r in received) == sorted(ids.values())  # each exactly once

    log = log_by_delivery(db)
    renderer = Renderer(settings.templates_dir)
    target = action.target("president-demo")
    by_id = {r.message_id: r for r in received}
    for row in rows:
        mail = by_id[ids[row.id]]
        assert mail.mail_from == ORG
        assert mail.rcpt_tos == (TO, CC)
        assert mail.data.isascii()  # 7-bit clean: encoded words and base64, no SMTPUTF8 needed
        signer = db.find_signer(row.email)
        assert signer is not None
        msg = mail.message()

        sender = msg["From"].addresses
        assert len(sender) == 1 and sender[0].addr_spec == ORG and sender[0].display_name == signer.name
        if row.email == tricky.email:  # the only one who chose direct replies
            reply_to = msg["Reply-To"].addresses
            assert len(reply_to) == 1 and reply_to[0].addr_spec == signer.email
            assert reply_to[0].display_name == signer.name
        else:
            assert msg["Reply-To"] is None and signer.email.encode() not in mail.data.lower()
        assert [(a.display_name, a.addr_spec) for a in msg["To"].addresses] == [("President (demo)", TO)]
        assert [(a.display_name, a.addr_spec) for a in msg["Cc"].addresses] == [("Ambassador (demo)", CC)]
        assert msg["Message-ID"] == ids[row.id]
        date = parsedate_to_datetime(str(msg["Date"]))
        assert before <= date <= after
        assert msg["MIME-Version"] == "1.0"
        assert msg.get_content_type() == "text/plain" and msg.get_content_charset() == "utf-8"
        assert msg["Content-Language"] == "zh-Hans"

        (attempt,) = log[row.id]
        assert (attempt.outcome, attempt.code, attempt.worker) == ("sent", 250, WORKER)
        letter = renderer.render(action, target, "zh-Hans", signer, attempt.started_at.date())
        assert msg["Subject"] == letter.subject
        body = msg.get_content()
        assert body == letter.body
        assert "尊敬的主席（演示）" in body and "释放新疆受拘留者" in body and signer.name in body

    assert_log_matches_wire(db, smtp)

    # Nothing is due any more: a second run sends nothing.
    await run_once(settings, db, clock=later(3600))
    assert len(smtp.received()) == 7


# transient and permanent failures ---------------------------------------------------------------------
async def test_451_schedules_a_retry_in_the_future_and_sends_once_the_server_recovers(
    tmp_path: Path, smtp: SmtpServer, db: Store, action: Action
) -> None:
    db.import_supporters(people(3), utcnow())
    settings = make_settings(tmp_path, smtp.url, retry_initial=2.0, retry_max=60.0)
    smtp.fail(at="data", reply="451")

    await run_once(settings, db)
    checked_at = utcnow()
    rows = delivery_rows(db)
    assert [r.status for r in rows] == ["pending"] * 3
    for row in rows:
        assert row.attempts == 1 and "451" in (row.last_error or "")
        # initial 2 s, doubled per attempt, plus up to 2 s of jitter
        assert checked_at < row.next_attempt_at <= checked_at + dt.timedelta(seconds=4.5)
    assert [(a.outcome, a.code) for a in db.attempt_log()] == [("retry", 451)] * 3
    assert smtp.received() == []
    assert_log_matches_wire(db, smtp)

    # Not due yet: a run now must not touch them.
    wire = smtp.transactions
    await run_once(settings, db)
    assert smtp.transactions == wire
    assert [r.attempts for r in delivery_rows(db)] == [1, 1, 1]

    # The server recovers and the retry comes due.
    smtp.clear_rules()
    await run_once(settings, db, clock=later(3600))
    assert [r.status for r in delivery_rows(db)] == ["sent"] * 3
    assert sorted(smtp.message_ids()) == sorted(expected_ids(db).values())
    for attempts in log_by_delivery(db).values():
        assert [a.outcome for a in attempts] == ["retry", "sent"]
    # The retry carried the Message-ID of the refused attempt.
    refused = {e.message_id for e in smtp.events() if e.stage == "data" and e.reply == "451"}
    assert refused == set(expected_ids(db).values())
    assert_log_matches_wire(db, smtp)


@pytest.mark.parametrize("stage", ["rcpt", "data"])
async def test_550_fails_for_good_without_retry(
    tmp_path: Path, smtp: SmtpServer, db: Store, action: Action, stage: str
) -> None:
    db.import_supporters(people(2), utcnow())
    settings = make_settings(tmp_path, smtp.url)
    smtp.fail(at="rcpt" if stage == "rcpt" else "data", reply="550", messages={1})  # every recipient

    await run_once(settings, db)
    await run_once(settings, db, clock=later(86400))  # nothing more, however long we wait

    rows = delivery_rows(db)
    assert sorted(r.status for r in rows) == ["failed", "sent"]
    (failed,) = [r for r in rows if r.status == "failed"]
    (sent,) = [r for r in rows if r.status == "sent"]
    assert failed.attempts == 1 and (failed.last_error or "").startswith("550")
    log = log_by_delivery(db)
    assert [(a.outcome, a.code) for a in log[failed.id]] == [("failed", 550)]
    assert [a.outcome for a in log[sent.id]] == ["sent"]
    assert smtp.message_ids() == [expected_ids(db)[sent.id]]
    assert_log_matches_wire(db, smtp)


@pytest.mark.parametrize("stage", ["rcpt", "data"])
async def test_421_is_transient_and_the_pool_reconnects(
    tmp_path: Path, smtp: SmtpServer, db: Store, action: Action, stage: str
) -> None:
    db.import_supporters(people(4), utcnow())
    settings = make_settings(tmp_path, smtp.url, smtp_pool=1)
    smtp.fail(at="rcpt" if stage == "rcpt" else "data", reply="421", rcpt=TO, messages={1})

    await run_once(settings, db)
    rows = delivery_rows(db)
    assert sorted(r.status for r in rows) == ["pending", "sent", "sent", "sent"]
    (hit,) = [r for r in rows if r.status == "pending"]
    (attempt,) = log_by_delivery(db)[hit.id]
    assert attempt.outcome == "retry"
    # At DATA the 421 reaches the channel; at RCPT aiosmtplib drops the connection on the 421 and
    # the Cc's RCPT then fails as "disconnected": transient either way.
    assert attempt.code == 421 if stage == "data" else attempt.code in (421, None)
    assert smtp.connections >= 2  # the closed connection was replaced, the others went through

    await run_once(settings, db, clock=later(3600))
    assert {r.status for r in delivery_rows(db)} == {"sent"}
    assert [a.outcome for a in log_by_delivery(db)[hit.id]] == ["retry", "sent"]
    assert sorted(smtp.message_ids()) == sorted(expected_ids(db).values())
    assert_log_matches_wire(db, smtp)


async def test_connection_dropped_mid_data_is_transient_and_delivered_exactly_once(
    tmp_path: Path, smtp: SmtpServer, db: Store, action: Action
) -> None:
    db.import_supporters(people(3), utcnow())
    settings = make_settings(tmp_path, smtp.url, smtp_pool=1)
    smtp.fail(at="data", reply="drop", messages={2})

    await run_once(settings, db)
    rows = delivery_rows(db)
    assert sorted(r.status for r in rows) == ["pending", "sent", "sent"]
    (hit,) = [r for r in rows if r.status == "pending"]
    (attempt,) = log_by_delivery(db)[hit.id]
    assert attempt.outcome == "retry" and attempt.code is None
    assert "Disconnected" in attempt.detail
    dropped = [e for e in smtp.events() if e.reply == "drop"]
    assert [e.message_id for e in dropped] == [expected_ids(db)[hit.id]]  # the whole letter had arrived

    await run_once(settings, db, clock=later(3600))
    assert {r.status for r in delivery_rows(db)} == {"sent"}
    ids = smtp.message_ids()
    assert sorted(ids) == sorted(expected_ids(db).values()) and len(ids) == len(set(ids)) == 3
    # The resend carries the Message-ID of the dropped attempt.
    assert ids.count(expected_ids(db)[hit.id]) == 1
    assert_log_matches_wire(db, smtp)


async def test_max_attempts_bounds_retries(
    tmp_path: Path, smtp: SmtpServer, db: Store, action: Action
) -> None:
    db.import_supporters(people(2), utcnow())
    settings = make_settings(tmp_path, smtp.url, max_attempts=3)
    smtp.fail(at="data", reply="451")

    for hour in range(1, 6):  # each run an hour later than the last: every retry is due
        await run_once(settings, db, clock=later(3600 * hour))

    rows = delivery_rows(db)
    assert [(r.status, r.attempts) for r in rows] == [("failed", 3), ("failed", 3)]
    for row in rows:
        attempts = log_by_delivery(db)[row.id]
        assert [(a.outcome, a.code) for a in attempts] == [("retry", 451), ("retry", 451), ("failed", 451)]
        assert attempts[-1].detail.startswith("gave up after 3 attempts: 451")
        assert (row.last_error or "").startswith("gave up after 3 attempts")
    assert smtp.transactions == 6 and smtp.received() == []
    assert_log_matches_wire(db, smtp)


async def test_a_transport_error_outside_smtp_replies_is_one_logged_attempt(
    tmp_path: Path, smtp: SmtpServer, db: Store, action: Action
) -> None:
    db.import_supporters(people(1), utcnow())
    # The test server offers no STARTTLS: aiosmtplib raises a bare SMTPException on connect.
    settings = make_settings(tmp_path, smtp.url.replace("smtp://", "smtp+starttls://"), max_attempts=2)

    await run_once(settings, db)
    (row,) = delivery_rows(db)
    assert (row.status, row.attempts) == ("pending", 1)  # not stuck in "sending" until its lease ends
    (attempt,) = db.attempt_log()
    assert attempt.outcome == "retry" and "STARTTLS" in attempt.detail

    await run_once(settings, db, clock=later(3600))
    assert [a.outcome for a in db.attempt_log()] == ["retry", "failed"]
    assert smtp.received() == [] and smtp.transactions == 0


async def test_a_healthy_dispatcher_never_sends_a_letter_twice_when_the_server_is_slow(
    tmp_path: Path, db: Store, action: Action
) -> None:
    # One connection for four senders, 50 ms per message: sending 60 letters takes 3 s,
    # twice the lease. No process dies, so nothing may be "interrupted" and nothing sent twice.
    total = 60
    db.import_supporters(people(total), utcnow())
    with SmtpServer(ScriptedHandler(delay=0.05)) as slow:
        settings = make_settings(tmp_path, slow.url, smtp_pool=1, lease_seconds=1.5)
        await run_once(settings, db)
        ids = slow.message_ids()

    assert {r.status for r in delivery_rows(db)} == {"sent"}
    duplicated = {mid: n for mid, n in Counter(ids).items() if n > 1}
    assert duplicated == {}, f"{len(duplicated)} letters sent more than once"
    assert [a.outcome for a in db.attempt_log()] == ["sent"] * total


# staff controls and deadlines in a running dispatcher -----------------------------------------------
async def test_pause_resume_and_close_take_effect_in_a_running_dispatcher(
    tmp_path: Path, smtp: SmtpServer, db: Store, action: Action
) -> None:
    total = 200
    db.import_supporters(people(total), utcnow())
    settings = make_settings(tmp_path, smtp.url, rate_per_target=25.0, burst_per_target=1)
    dispatcher = Dispatcher(settings, db, make_channels(settings, db), worker_id=WORKER)
    task = asyncio.create_task(dispatcher.run_forever())
    try:
        await until(lambda: len(smtp.received()) >= 10, 10, "the first letters")

        paused_at = time.time()
        await asyncio.to_thread(controls.pause, db, action, "staff", utcnow())
        got = await settle(smtp, quiet=0.6, within=5)
        assert got[-1].at - paused_at < 2.0  # the dispatcher re-reads controls every second
        await asyncio.sleep(1.0)
        assert len(smtp.received()) == len(got), "letters went out while paused"
        counts = statuses(db)
        assert counts == {"sent": len(got), "pending": total - len(got)}  # claims were given back

        resumed_at = time.time()
        await asyncio.to_thread(controls.resume, db, action, "staff", utcnow())
        await until(lambda: len(smtp.received()) >= len(got) + 10, 5, "sending to resume")
        assert smtp.received()[len(got)].at - resumed_at < 2.5

        closed_at = utcnow()
        cancelled = await asyncio.to_thread(controls.close, db, action, "staff", closed_at)
        assert cancelled > 0
        final = await settle(smtp, quiet=0.6, within=5)
        assert final[-1].at - closed_at.timestamp() < 1.0  # pending rows are cancelled at once
        await asyncio.sleep(0.5)
        assert len(smtp.received()) == len(final)
    finally:
        dispatcher.stop()
        await asyncio.wait_for(task, 15)

    counts = statuses(db)
    assert counts["sent"] == len(final) and counts["sent"] + counts["cancelled"] == total, counts
    assert len({r.message_id for r in final}) == len(final)
    assert all(a.started_at <= closed_at + dt.timedelta(seconds=0.5) for a in db.attempt_log())
    assert_log_matches_wire(db, smtp)


@pytest.mark.slow  # the sweep that expires runs every 10 s
async def test_deadline_stops_attempts_and_expires_what_is_left(
    tmp_path: Path, smtp: SmtpServer, db: Store
) -> None:
    total = 100
    deadline = (utcnow() + dt.timedelta(seconds=3)).replace(microsecond=0)
    write_action(tmp_path / "actions", deadline=deadline.isoformat(), timezone="UTC")
    db.import_supporters(people(total), utcnow())
    settings = make_settings(tmp_path, smtp.url, rate_per_target=10.0, burst_per_target=1)
    dispatcher = Dispatcher(settings, db, make_channels(settings, db), worker_id=WORKER)
    task = asyncio.create_task(dispatcher.run_forever())
    try:
        await until(lambda: utcnow() > deadline + dt.timedelta(seconds=0.5), 10, "the deadline")
        sent_by_deadline = len(smtp.received())
        assert 0 < sent_by_deadline < total
        # The periodic sweep (every 10 s) expires what is left.
        await until(lambda: set(statuses(db)) <= {"sent", "expired"}, 15, "pending letters to expire")
        await asyncio.sleep(0.3)
    finally:
        dispatcher.stop()
        await asyncio.wait_for(task, 15)

    received = smtp.received()
    assert len(received) == sent_by_deadline, "letters went out after the deadline"
    assert all(r.at <= deadline.timestamp() + 0.5 for r in received)
    assert all(a.started_at < deadline for a in db.attempt_log()), "an attempt started after the deadline"
    counts = statuses(db)
    assert counts == {"sent": len(received), "expired": total - len(received)}
    assert_log_matches_wire(db, smtp)


# regression: a refused addressee must not let the copy go out ----------------------------------------
# (found while writing these tests: ``aiosmtplib.SMTP.sendmail`` sends DATA as soon as any recipient
# is accepted, so the ambassador got the letter the president refused, once more on every retry)
@pytest.mark.parametrize("code", ["451", "550"])
async def test_refused_to_recipient_sends_nothing_to_the_copies(
    tmp_path: Path, smtp: SmtpServer, db: Store, action: Action, code: str
) -> None:
    db.import_supporters(people(1), utcnow())
    settings = make_settings(tmp_path, smtp.url, max_attempts=3)
    smtp.fail(at="rcpt", reply="451" if code == "451" else "550", rcpt=TO)

    for hour in range(1, 4):
        await run_once(settings, db, clock=later(3600 * hour))

    (row,) = delivery_rows(db)
    assert row.status == "failed" and code in (row.last_error or "")
    expected = [("retry", 451), ("retry", 451), ("failed", 451)] if code == "451" else [("failed", 550)]
    assert [(a.outcome, a.code) for a in db.attempt_log()] == expected
    # The letter was not delivered to its addressee, so the copy must not go out either (and
    # certainly not once per retry): no DATA at all.
    assert smtp.received() == []
    assert [e for e in smtp.events() if e.stage == "data"] == []
    assert_log_matches_wire(db, smtp)


async def test_an_unreachable_server_costs_one_attempt_per_connection_then_waits(
    tmp_path: Path, db: Store, action: Action
) -> None:
    db.import_supporters(people(30), utcnow())
    with SmtpServer() as gone:
        url = gone.url  # a port that was just free: nothing listens on it once the server stops
    settings = make_settings(tmp_path, url)
    started = time.monotonic()
    tally = await run_once(settings, db)
    assert time.monotonic() - started < 15
    assert tally.counts["sent"] == 0 and 1 <= tally.counts["retry"] <= settings.smtp_pool
    assert {r.status for r in delivery_rows(db)} == {"pending"}
    assert all(a.outcome == "retry" and "connect" in a.detail.lower() for a in db.attempt_log())
    with SmtpServer(port=int(url.rsplit(":", 1)[1])) as back:
        await run_once(settings, db, clock=later(3600))
        assert len(set(back.message_ids())) == 30
    assert {r.status for r in delivery_rows(db)} == {"sent"}
