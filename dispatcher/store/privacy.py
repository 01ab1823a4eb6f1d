"""What supporters are told, and how long what names them is kept: receipts and retention.

Receipts: who is due a digest of the letters sent in their name, a claim on that digest so two
dispatchers never both send it, and the watermark (``supporters.receipts_through``) moved on
once the email was handed to the transport. The claim is a row in ``meta`` keyed
``receipts:<supporter id>`` whose value starts with its expiry: inserting it is atomic on both
databases, and a runner that died leaves a claim that expires instead of a digest never sent.

Retention: an action's letters stop naming their supporter (``supporter_id`` and the consent
they relied on set to NULL), its supporters' own words and its fax PDFs are deleted, and the
supporter's email, name and city are cut out of the server replies kept for those letters.
The rows themselves stay, so every count per target is unchanged. As for ``forget``, SQLite
overwrites the freed space (``secure_delete``) and its write-ahead log is truncated; PostgreSQL
vacuums the small tables that lost rows (words, fax PDFs).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Engine,
    String,
    and_,
    bindparam,
    cast,
    delete,
    func,
    literal,
    or_,
    select,
    update,
)

from dispatcher.redaction import person_pattern, redacted
from dispatcher.store import Status
from dispatcher.store.consent import live
from dispatcher.store.engine import SqlPart, dialect_insert
from dispatcher.store.reading import reading
from dispatcher.store.schema import (
    attempts,
    consents,
    deliveries,
    fax_media,
    meta,
    personal_words,
    supporters,
)

FORGOTTEN = "%@forgotten.invalid"  # the stub ``forget`` leaves: nobody to write to
CLAIM_PREFIX = "receipts:"
# Letters whose outcome is known: a letter in flight still needs its supporter (a fax the
# provider reports on later may fall back to email in their name), and a pending one is
# expired or cancelled by the next sweep first.
SETTLED = (Status.SENT.value, Status.FAILED.value, Status.EXPIRED.value, Status.CANCELLED.value)
_MEDIA = re.compile(r"d(\d+)-")


@dataclass(frozen=True)
class Recipient:
    """A supporter who asked for receipts, as read when their digest was found due."""

    id: int
    email: str
    name: str
    language: str
    receipts: str  # weekly | monthly
    through: dt.datetime | None  # the end of the last digest; None: none sent yet


@dataclass(frozen=True)
class SentLetter:
    action_id: str
    target_id: str
    channel: str
    sent_at: dt.datetime


def _stamp(when: dt.datetime) -> str:
    """Fixed-width UTC text: claims' expiries compare as strings in SQL on both databases."""
    return when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def retained_key(action_id: str) -> str:
    """Set once an action's letters stopped naming their supporters: it is never planned again
    (reopened by ``extend``, it could not tell who already wrote, and would write twice)."""
    return f"retained:{action_id}"


def _claim_key(person: int) -> str:
    return f"{CLAIM_PREFIX}{person}"


class SqlPrivacy(SqlPart):
    # receipts ----------------------------------------------------------------------------
    def receipts_due(self, ends: Mapping[str, dt.datetime], now: dt.datetime, limit: int) -> list[Recipient]:
        """Supporters whose digest period (``ends``: receipts kind → end of the period due now)
        has ended since their last one, who still hold a live consent, and whose digest nobody
        holds a claim on (a failed send waits out its claim instead of retrying every run)."""
        s, c, m = supporters, consents, meta
        # A lapsed consent stands no more than a withdrawn one: no receipt either.
        held = select(c.c.id).where(c.c.supporter_id == s.c.id, live(now))
        key = literal(CLAIM_PREFIX, String) + cast(s.c.id, String)
        claimed = select(m.c.key).where(m.c.key == key, m.c.value > _stamp(now))
        periods = [
            and_(s.c.receipts == kind, or_(s.c.receipts_through.is_(None), s.c.receipts_through < end))
            for kind, end in ends.items()
        ]
        query = (
            select(s.c.id, s.c.email, s.c.name, s.c.language, s.c.receipts, s.c.receipts_through)
            .where(or_(*periods), ~s.c.email.like(FORGOTTEN), held.exists(), ~claimed.exists())
            .order_by(s.c.id)
            .limit(limit)
        )
        with reading(self.engine) as conn:
            return [Recipient(*row) for row in conn.execute(query)]

    def claim_receipt(
        self, person: Recipient, worker: str, now: dt.datetime, lease: dt.timedelta
    ) -> str | None:
        """Take this supporter's digest for ``lease``; the claim's token, or None when another
        runner holds it or already sent it (their watermark moved since it was read)."""
        key, token = _claim_key(person.id), f"{_stamp(now + lease)} {worker}"
        m, s = meta, supporters
        with self.engine.begin() as conn:
            made = (
                dialect_insert(conn, m)
                .values(key=key, value=token)
                .on_conflict_do_nothing()
                .returning(m.c.key)
            )
            if conn.execute(made).first() is None:
                # Only a claim whose runner died (it expired) may be taken over.
                stale = update(m).where(m.c.key == key, m.c.value < _stamp(now)).values(value=token)
                if not conn.execute(stale).rowcount:
                    return None
            # Read after the claim: a runner that finished this digest just before our insert
            # committed its new watermark with the deletion of its claim, so it shows here.
            row = conn.execute(select(s.c.receipts, s.c.receipts_through).where(s.c.id == person.id)).first()
            if row is None or (row.receipts, row.receipts_through) != (person.receipts, person.through):
                conn.execute(delete(m).where(m.c.key == key, m.c.value == token))
                return None
        return token

    def letters_sent(
        self, person: int, since: dt.datetime | None, until: dt.datetime, limit: int
    ) -> tuple[list[SentLetter], int]:
        """Letters sent in this supporter's name in [since, until), oldest first (at most
        ``limit`` of them), and how many there are in all."""
        d = deliveries
        where = [d.c.supporter_id == person, d.c.status == Status.SENT.value, d.c.sent_at < until]
        if since is not None:
            where.append(d.c.sent_at >= since)
        rows = select(d.c.action_id, d.c.target_id, d.c.channel, d.c.sent_at).where(*where)
        with reading(self.engine) as conn:
            total = int(conn.scalar(select(func.count()).select_from(d).where(*where)) or 0)
            found = conn.execute(rows.order_by(d.c.sent_at, d.c.id).limit(limit))
            return [SentLetter(*row) for row in found], total

    def finish_receipt(self, person: Recipient, token: str, through: dt.datetime) -> bool:
        """The digest up to ``through`` went out (or had nothing to say): move the watermark
        and let go of the claim. False: the watermark had moved meanwhile (nothing changed)."""
        s, m = supporters, meta
        with self.engine.begin() as conn:
            moved = (
                update(s)
                .where(s.c.id == person.id, s.c.receipts_through.is_not_distinct_from(person.through))
                .values(receipts_through=through)
            )
            done = bool(conn.execute(moved).rowcount)
            conn.execute(delete(m).where(m.c.key == _claim_key(person.id), m.c.value == token))
        return done

    def hold_receipt(self, person: Recipient, token: str, until: dt.datetime) -> None:
        """The digest could not be handed on: keep the claim until ``until``, so it is tried
        again then rather than on every run."""
        held, m = f"{_stamp(until)} {token.partition(' ')[2]}", meta
        with self.engine.begin() as conn:
            conn.execute(
                update(m).where(m.c.key == _claim_key(person.id), m.c.value == token).values(value=held)
            )

    # retention ---------------------------------------------------------------------------
    def scrubbable(self, action_id: str) -> int:
        """Letters of this action that still name their supporter (what ``scrub`` would do)."""
        with reading(self.engine) as conn:
            return int(
                conn.scalar(select(func.count()).select_from(deliveries).where(_linked(action_id))) or 0
            )

    def scrub(self, action_id: str, limit: int) -> int:
        """Up to ``limit`` of this action's settled letters stop naming their supporter; its
        supporters' own words go. Returns how many letters were scrubbed."""
        with wiping(self.engine) as wipe:
            with wipe.conn.begin():
                words = delete(personal_words).where(personal_words.c.action_id == action_id)
                if wipe.conn.execute(words).rowcount:
                    wipe.tables.add("personal_words")
                done = _scrub_batch(wipe.conn, action_id, limit, wipe.tables)
                if done:
                    mark = dialect_insert(wipe.conn, meta).values(
                        key=retained_key(action_id), value="scrubbed"
                    )
                    wipe.conn.execute(mark.on_conflict_do_nothing())
            wipe.changed = bool(done or wipe.tables)
        return done


@dataclass
class Wipe:
    conn: Connection
    tables: set[str] = field(default_factory=set)  # tables that lost text
    changed: bool = False


@contextlib.contextmanager
def wiping(engine: Engine) -> Iterator[Wipe]:
    """A connection whose deletions leave no bytes behind: on SQLite freed space is
    overwritten and, once something changed, the log of the pages as they were emptied; on
    PostgreSQL the tables that lost text are vacuumed. Forget and retention both erase so."""
    with engine.connect() as conn:
        wipe = Wipe(conn)
        sqlite_db = conn.dialect.name == "sqlite"
        raw: Any = conn.connection.driver_connection  # pragmas act outside a transaction
        if sqlite_db:
            raw.execute("PRAGMA secure_delete = ON")
        try:
            yield wipe
            if sqlite_db and wipe.changed:
                # Until a checkpoint the database file keeps the pages as they were.
                raw.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            if sqlite_db:
                raw.execute("PRAGMA secure_delete = OFF")
    if wipe.tables and not sqlite_db:
        # Dead row versions keep the old text in PostgreSQL's pages until vacuumed.
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as pg:
            pg.exec_driver_sql(f"VACUUM {', '.join(sorted(wipe.tables))}")


def _linked(action_id: str) -> ColumnElement[bool]:
    d = deliveries
    named = or_(d.c.supporter_id.is_not(None), d.c.consent_id.is_not(None))
    return and_(d.c.action_id == action_id, named, d.c.status.in_(SETTLED))


def _scrub_batch(conn: Connection, action_id: str, limit: int, wiped: set[str]) -> int:
    d = deliveries
    rows = conn.execute(
        select(d.c.id, d.c.supporter_id, d.c.last_error)
        .where(_linked(action_id))
        .order_by(d.c.id)
        .limit(limit)
        .with_for_update(skip_locked=True)  # two dispatchers scrub different rows, no deadlock
    ).all()
    if not rows:
        return 0
    ids = [int(r.id) for r in rows]
    if delete_media(conn, ids):
        wiped.add("fax_media")
    # Replies rewritten here leave dead row versions in PostgreSQL's two biggest tables: those
    # are left to autovacuum, as a VACUUM of them per batch would cost more than it protects.
    redact(conn, rows)
    # The consent names the supporter too (consents.supporter_id): both links go.
    conn.execute(update(d).where(d.c.id.in_(ids)).values(supporter_id=None, consent_id=None))
    return len(ids)


def delete_media(conn: Connection, ids: Sequence[int]) -> bool:
    """Fax PDFs (named ``d<delivery id>-…``) of these letters; the table is small (pruned)."""
    wanted = set(ids)
    refs = conn.scalars(select(fax_media.c.reference)).all()
    theirs = [r for r in refs if (m := _MEDIA.match(r)) and int(m[1]) in wanted]
    if theirs:
        conn.execute(delete(fax_media).where(fax_media.c.reference.in_(theirs)))
    return bool(theirs)


def redact(conn: Connection, rows: Sequence[Any]) -> None:
    """Cut the supporter's email, name and city out of the server replies kept for their
    letters (a mail server may quote the Reply-To or the From's name). The rest stays: the
    dashboard groups failures by these texts, and /metrics counts fax failures by them."""
    s, a, d = supporters, attempts, deliveries
    owners = {int(r.id): r.supporter_id for r in rows if r.supporter_id is not None}
    people = sorted(set(owners.values()))
    named = conn.execute(select(s.c.id, s.c.email, s.c.name, s.c.city).where(s.c.id.in_(people)))
    patterns = {int(p.id): cut for p in named if (cut := person_pattern(p.email, p.name, p.city))}
    if not patterns:
        return
    tries = conn.execute(select(a.c.id, a.c.delivery_id, a.c.detail).where(a.c.delivery_id.in_(list(owners))))
    details = _changes([(t.id, owners[t.delivery_id], t.detail) for t in tries], patterns)
    errors = _changes([(r.id, r.supporter_id, r.last_error) for r in rows if r.id in owners], patterns)
    if details:
        conn.execute(update(a).where(a.c.id == bindparam("b_id")).values(detail=bindparam("b_text")), details)
    if errors:
        conn.execute(
            update(d).where(d.c.id == bindparam("b_id")).values(last_error=bindparam("b_text")), errors
        )


def _changes(
    rows: Sequence[tuple[int, int, str | None]], patterns: Mapping[int, re.Pattern[str]]
) -> list[dict[str, Any]]:
    out = []
    for row_id, person, text in rows:
        if text and (cut := redacted(text, patterns.get(person))) != text:
            out.append({"b_id": row_id, "b_text": cut})
    return out
