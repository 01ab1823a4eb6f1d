"""Digest delivery end to end: the real dispatcher, a real SQLite file, aiosmtpd on 127.0.0.1.

A target whose plan says ``delivery: digest`` gets one email a day carrying every letter planned
before its moment, each supporter named by name and city, never by address; every letter is
recorded sent with the digest's Message-ID; late joiners go in the next day's.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import select

from dispatcher.store import Store
from dispatcher.store.schema import digest_letters, digests
from dispatcher.store.sql import SqlStore
from tests.campaigns.test_email_smtp import (
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
from tests.support.smtp_server import SmtpServer

DIGEST = {"delivery": "digest", "digest_at": "09:00"}


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


def at(day: dt.date, hour: int, minute: int = 0) -> Callable[[], dt.datetime]:
    """A clock stopped at this London wall time (the demo action's zone)."""
    from zoneinfo import ZoneInfo

    fixed = dt.datetime(day.year, day.month, day.day, hour, minute, tzinfo=ZoneInfo("Europe/London"))
    return lambda: fixed


async def test_one_digest_a_day_with_every_letter_and_no_supporter_address(
    tmp_path: Path, smtp: SmtpServer, db: Store
) -> None:
    write_action(tmp_path / "actions", plan=DIGEST)
    settings = make_settings(tmp_path, smtp.url)
    db.import_supporters(people(5), dt.datetime.now(dt.UTC))
    today = dt.datetime.now(dt.UTC).date()

    # Before 09:00 London: planned, nothing sent.
    await run_once(settings, db, at(today, 8, 59))
    assert smtp.received() == []
    assert {r.status for r in delivery_rows(db)} == {"pending"}

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
