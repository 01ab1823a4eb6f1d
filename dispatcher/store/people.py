"""Supporters' rights over what is held about them: withdraw consent, see it all, be forgotten.

Forgetting keeps the letters already sent, as anonymous rows (the counts reported to officials
stay right), and removes the person: name, email, city, country, consents and their history,
their own words, forms waiting for confirmation, and fax PDFs still waiting to be fetched. On
SQLite the freed space is overwritten (``secure_delete``) and the write-ahead log truncated, so
the bytes are gone from the database files too.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from sqlalchemy import Connection, and_, delete, insert, or_, select, update

from dispatcher.addresses import stored_email
from dispatcher.store import Status, SupporterRecord, mandates
from dispatcher.store.consent import withdrawn
from dispatcher.store.engine import SqlPart, one_writer
from dispatcher.store.privacy import delete_media, redact, wiping
from dispatcher.store.reading import reading
from dispatcher.store.reasons import Reason
from dispatcher.store.schema import (
    attempts,
    consent_events,
    consents,
    deliveries,
    letter_quota,
    opt_ins,
    personal_words,
    supporters,
)

LAPSE_LOOKBACK = dt.timedelta(days=7)
OPT_IN_QUIET = dt.timedelta(hours=1)  # at most one confirmation email per address per hour
PERSONAL_TABLES = ("supporters", "consents", "consent_events", "personal_words", "opt_ins", "fax_media")


def _iso(value: Any) -> Any:
    return value.isoformat() if isinstance(value, dt.datetime) else value


class SqlPeople(SqlPart):
    def _id(self, conn: Connection, email: str, lock: bool = False) -> int | None:
        """The supporter's id; ``lock``: and hold their row, so that a change of their consent
        in another transaction waits (and cannot add a consent this one would miss)."""
        query = select(supporters.c.id).where(supporters.c.email == stored_email(email))
        found = conn.scalar(query.with_for_update() if lock else query)
        return None if found is None else int(found)

    def revoke(self, email: str, now: dt.datetime, source: str) -> int | None:
        """Withdraw every consent; the letters not yet sent are cancelled (a running dispatcher
        hands back any it holds). ``source``: where it was withdrawn (cli, dashboard, link, api),
        for the consent's history. Returns how many letters were cancelled; None: no such person."""
        with self.engine.begin() as conn:
            # A form not confirmed yet is withdrawn too: its link can no longer create a consent.
            _discard(conn, email)
            person = self._id(conn, email, lock=True)
            if person is None:
                return None
            mandates.revoke_event(conn, person, source, now)
            c, d = consents, deliveries
            conn.execute(update(c).where(c.c.supporter_id == person, ~withdrawn()).values(revoked_at=now))
            return mandates.cancel_unsent(conn, d.c.supporter_id == person, mandates.WITHDRAWN, now)

    def lapse(self, now: dt.datetime, since: dt.datetime | None = None) -> int:
        """Letters whose consent ended (since ``since``; None: ever): moved to the consent that
        replaced it if that allows their channel (a plan that raced the change), else cancelled,
        as are those whose consent expired. Returns how many were cancelled. A running worker
        looks back ``LAPSE_LOOKBACK`` past its previous sweep, which keeps the cost flat as
        history grows; its first sweep looks back without bound (no dispatcher may have run)."""
        c, d = consents, deliveries
        ended_since = c.c.ended_at.is_not(None) if since is None else c.c.ended_at > since
        expired_since = c.c.expires_at <= now if since is None else c.c.expires_at.between(since, now)
        ended = select(c.c.id).where(ended_since)
        with self.engine.begin() as conn:
            heir = mandates.successor()
            waiting = and_(d.c.status == Status.PENDING, d.c.consent_id.in_(ended))
            conn.execute(update(d).where(waiting, heir.exists()).values(consent_id=heir.scalar_subquery()))
            gone = or_(ended_since, expired_since)
            unsent = update(d).where(
                d.c.status == Status.PENDING, d.c.consent_id.in_(select(c.c.id).where(gone))
            )
            values = {
                "status": Status.CANCELLED.value,
                "last_error": mandates.LAPSED,
                "updated_at": now,
            }
            return int(conn.execute(unsent.values(**values)).rowcount)

    def revoked_since(self, since: dt.datetime) -> frozenset[str]:
        """Emails whose consent was withdrawn since then (a running dispatcher drops their
        letters from its queues)."""
        c, again = consents, consents.alias("again")
        given_again = select(again.c.id).where(
            again.c.supporter_id == c.c.supporter_id, again.c.confirmed_at > c.c.revoked_at
        )
        query = (
            select(supporters.c.email)
            .join(c, c.c.supporter_id == supporters.c.id)
            .where(c.c.revoked_at >= since, ~given_again.exists())
        )
        with reading(self.engine) as conn:
            return frozenset(str(e) for e in conn.scalars(query))

    def open_opt_in(self, email: str, payload: str, now: dt.datetime) -> int | None:
        """Keep a form until its confirmation link is followed. None: this address already has
        one waiting from the last hour, so no second email goes to it."""
        with self.engine.begin() as conn:
            one_writer(conn, email)  # one writer per address, so two cannot race
            o = opt_ins
            waiting = select(o.c.id).where(
                o.c.email == email, o.c.created_at > now - OPT_IN_QUIET, o.c.confirmed_at.is_(None)
            )
            if conn.execute(waiting.limit(1)).first():
                return None
            made = insert(o).values(email=email, payload=payload, created_at=now).returning(o.c.id)
            return int(conn.execute(made).scalar_one())

    def confirm_opt_in(
        self, opt_in: int, now: dt.datetime, record_of: Callable[[str], SupporterRecord]
    ) -> SupporterRecord | None:
        """Follow a confirmation link once: the form becomes a supporter and their consent.
        None: no such form, or its link was used already."""
        o = opt_ins
        with self.engine.begin() as conn:
            used = update(o).where(o.c.id == opt_in, o.c.confirmed_at.is_(None))
            payload = conn.execute(used.values(confirmed_at=now).returning(o.c.payload)).scalar()
            if payload is None:
                return None
            record = record_of(str(payload))
            mandates.upsert_supporters(conn, [record], now)
            # The form is not kept once it is a supporter: only that its link was used (until
            # the link expires and the row is pruned).
            conn.execute(update(o).where(o.c.id == opt_in).values(payload="{}", email=""))
        return record

    def discard_opt_ins(self, email: str) -> int:
        """Drop this address's forms still waiting for confirmation (one whose email could not
        be sent, so the person can ask again at once)."""
        with self.engine.begin() as conn:
            return _discard(conn, email)

    def prune_opt_ins(self, before: dt.datetime) -> int:
        with self.engine.begin() as conn:
            return int(conn.execute(delete(opt_ins).where(opt_ins.c.created_at < before)).rowcount)

    def export(self, email: str) -> dict[str, Any] | None:
        """Everything held about the person, and every letter sent in their name."""
        with reading(self.engine) as conn:
            person = self._id(conn, email)
            if person is None:
                return None
            row = conn.execute(select(supporters).where(supporters.c.id == person)).one()
            held = {k: _iso(v) for k, v in row._mapping.items()}
            held["consents"] = _rows(conn, select(consents).where(consents.c.supporter_id == person))
            events = select(consent_events).where(consent_events.c.supporter_id == person)
            held["consent_events"] = _rows(conn, events.order_by(consent_events.c.id))
            words = select(personal_words).where(personal_words.c.supporter_id == person)
            held["personal_words"] = _rows(conn, words)
            d, a = deliveries, attempts
            letters = select(d.c.id, d.c.action_id, d.c.target_id, d.c.channel, d.c.status, d.c.sent_at)
            held["letters"] = _rows(conn, letters.where(d.c.supporter_id == person).order_by(d.c.id))
            tries = select(a.c.delivery_id, a.c.finished_at, a.c.outcome, a.c.detail)
            tries = tries.join(d, d.c.id == a.c.delivery_id)
            held["attempts"] = _rows(conn, tries.where(d.c.supporter_id == person).order_by(a.c.id))
        return held

    def forget(self, email: str, now: dt.datetime) -> bool:
        with wiping(self.engine) as wipe:
            with wipe.conn.begin():
                wipe.conn.execute(delete(opt_ins).where(opt_ins.c.email == stored_email(email)))
                person = self._id(wipe.conn, email, lock=True)
                if person is None:
                    return False
                _erase(wipe.conn, person, now)
            wipe.tables.update(PERSONAL_TABLES)
            wipe.changed = True
        return True


def _discard(conn: Connection, email: str) -> int:
    o = opt_ins
    waiting = delete(o).where(o.c.email == stored_email(email), o.c.confirmed_at.is_(None))
    return int(conn.execute(waiting).rowcount)


def _rows(conn: Connection, query: Any) -> list[dict[str, Any]]:
    return [{k: _iso(v) for k, v in r._mapping.items()} for r in conn.execute(query)]


def _erase(conn: Connection, person: int, now: dt.datetime) -> None:
    d = deliveries
    # Server replies kept in the send log may quote their address or name: cut out first,
    # while the supporter's row still says what to look for.
    redact(
        conn,
        conn.execute(
            select(d.c.id, d.c.supporter_id, d.c.last_error).where(d.c.supporter_id == person)
        ).all(),
    )
    delete_media(conn, list(conn.scalars(select(d.c.id).where(d.c.supporter_id == person))))
    mandates.cancel_unsent(conn, d.c.supporter_id == person, Reason.FORGOTTEN.value, now)
    for table in (consent_events, consents, personal_words, letter_quota):
        conn.execute(delete(table).where(table.c.supporter_id == person))
    # The row stays as an anonymous stub: the letters sent still count for their targets.
    anonymous = {"name": "", "email": f"forgotten-{person}@forgotten.invalid", "city": "", "country": ""}
    stub = update(supporters).where(supporters.c.id == person)
    conn.execute(stub.values(**anonymous, language="", receipts="off", receipts_through=None, updated_at=now))
