"""Digests: a target's letters of one day sent as one message (``delivery: digest``).

A digest's members and Message-ID are decided here, in the transaction that first leases it, and
never change: a worker killed mid-send leaves the digest leased until its lease runs out, then
the next worker takes the same digest, with the same members and Message-ID. One row per
action × target × channel × day (a unique key): two workers never both create a day's digest,
and only the one holding its lease sends it.

A digest counts as one letter against its recipients' caps (store/caps.py), every attempt.
"""

from __future__ import annotations

import datetime as dt
import secrets
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Connection, Row, Select, and_, exists, func, select, update

from dispatcher.models import ClaimGroup, Signer, Status
from dispatcher.store import caps
from dispatcher.store.consent import live
from dispatcher.store.engine import SqlPart, dialect_insert, is_postgres
from dispatcher.store.leases import lease_ended
from dispatcher.store.schema import cap_counts, consents, deliveries, digest_letters, digests, supporters

SENDING, PENDING, SENT, FAILED = "sending", "pending", "sent", "failed"


@dataclass(frozen=True)
class Digest:
    """A digest leased to a worker: its letters with their signers (never an email address)."""

    id: int
    message_id: str
    attempt: int
    letters: tuple[tuple[int, Signer], ...]  # (delivery id, signer), oldest first

    @property
    def delivery_ids(self) -> list[int]:
        return [delivery_id for delivery_id, _ in self.letters]


def _new_message_id(domain: str) -> str:
    return f"<digest.{secrets.token_hex(12)}@{domain}>"


def _of(group: ClaimGroup) -> list[ColumnElement[bool]]:
    g = digests
    return [g.c.action_id == group.action_id, g.c.target_id == group.target_id, g.c.channel == group.channel]


def _locked(conn: Connection, query: Select[Any]) -> Row[Any] | None:
    return conn.execute(query.with_for_update() if is_postgres(conn) else query).first()


def _unfinished(conn: Connection, group: ClaimGroup, day: str) -> Row[Any] | None:
    """The group's oldest digest not yet sent nor given up, up to ``day``: it goes first."""
    g = digests
    query = select(g).where(*_of(group), g.c.status.in_([SENDING, PENDING]), g.c.day <= day)
    return _locked(conn, query.order_by(g.c.day).limit(1))


def _exists(conn: Connection, group: ClaimGroup, day: str) -> bool:
    g = digests
    return conn.execute(select(g.c.id).where(*_of(group), g.c.day == day)).first() is not None


def _open_digests() -> Select[Any]:
    """Digests not yet sent nor given up: their letters are theirs. A letter of a digest sent
    that is pending again (its fax is to be tried again) goes in the next day's."""
    return select(digests.c.id).where(digests.c.status.in_([SENDING, PENDING]))


def _create(
    conn: Connection, group: ClaimGroup, day: str, planned_by: dt.datetime, now: dt.datetime, domain: str
) -> Row[Any] | None:
    """The day's digest with every pending letter of the group planned by ``planned_by`` and in
    no open digest; None when there is none, or another worker created it first."""
    d, m = deliveries, digest_letters
    ids = list(
        conn.scalars(
            select(d.c.id)
            .join(consents, consents.c.id == d.c.consent_id)
            .where(
                d.c.action_id == group.action_id,
                d.c.target_id == group.target_id,
                d.c.channel == group.channel,
                d.c.status == Status.PENDING,
                d.c.next_attempt_at <= planned_by,
                live(now),
                ~exists().where(m.c.delivery_id == d.c.id, m.c.digest_id.in_(_open_digests())),
            )
            .order_by(d.c.id)
        )
    )
    if not ids:
        return None
    values = {
        "action_id": group.action_id,
        "target_id": group.target_id,
        "channel": group.channel,
        "day": day,
        "message_id": _new_message_id(domain),
        "status": PENDING,
        "attempts": 0,
        "next_attempt_at": now,
        "created_at": now,
    }
    insert = dialect_insert(conn, digests).values(**values).on_conflict_do_nothing()
    digest_id = conn.execute(insert.returning(digests.c.id)).scalar()
    if digest_id is None:
        return None
    conn.execute(m.insert(), [{"digest_id": digest_id, "delivery_id": i} for i in ids])
    return _locked(conn, select(digests).where(digests.c.id == digest_id))


def _again(row: Row[Any], worker: str, now: dt.datetime) -> dt.datetime | None:
    """When this unfinished digest may be taken: None now (due, or its lease ran out or was this
    worker's, from before a restart), else when its retry is due or its lease runs out."""
    if row.status == SENDING:
        mine = row.lease_owner == worker or row.lease_until is None
        return None if mine or row.lease_until < now else row.lease_until
    return None if row.next_attempt_at <= now else row.next_attempt_at


def _members(conn: Connection, digest_id: int, now: dt.datetime) -> list[tuple[int, Signer]]:
    """The digest's letters still to send whose consent still allows it (one withdrawn since
    the last attempt is left out, as a claim leaves it), signed by name and city only (as a
    letter whose supporter chose "name" is signed by the name alone)."""
    d, s, c, m = deliveries, supporters, consents, digest_letters
    full = c.c.name_display != "name"
    rows = conn.execute(
        select(d.c.id, s.c.name, s.c.city, s.c.country, s.c.language, full.label("full"))
        .join(m, m.c.delivery_id == d.c.id)
        .join(s, s.c.id == d.c.supporter_id)
        .join(c, c.c.id == d.c.consent_id)
        .where(m.c.digest_id == digest_id, d.c.status.in_([Status.PENDING, Status.SENDING]), live(now))
        .order_by(d.c.id)
    )
    return [
        (r.id, Signer(r.name, "", r.city if r.full else "", r.country if r.full else "", r.language))
        for r in rows
    ]


def _charge_caps(conn: Connection, group: ClaimGroup, now: dt.datetime) -> None:
    """One letter against each cap the digest's recipients have."""
    held = caps.hold(conn, [group], [True], now)
    counters = sorted({c.counter for c in held.mine.get(group.ident, [])})
    if counters:
        t = cap_counts
        conn.execute(update(t).where(t.c.counter.in_(counters)).values(used=t.c.used + 1))


def _lease(
    conn: Connection, worker: str, group: ClaimGroup, row: Row[Any], until: dt.datetime, now: dt.datetime
) -> Digest | None:
    letters = _members(conn, row.id, now)
    g, d = digests, deliveries
    if not letters:  # every letter recorded but not the digest (a crash between), or withdrawn
        conn.execute(
            update(g).where(g.c.id == row.id).values(status=SENT, lease_owner=None, lease_until=None)
        )
        return None
    conn.execute(
        update(g)
        .where(g.c.id == row.id)
        .values(status=SENDING, lease_owner=worker, lease_until=until, attempts=g.c.attempts + 1)
    )
    leased = {"lease_owner": worker, "lease_until": until, "updated_at": now}
    more = d.c.attempts + 1
    ids = [i for i, _ in letters]
    conn.execute(
        update(d).where(d.c.id.in_(ids)).values(status=Status.SENDING.value, attempts=more, **leased)
    )
    _charge_caps(conn, group, now)
    return Digest(int(row.id), str(row.message_id), int(row.attempts) + 1, tuple(letters))


class SqlDigests(SqlPart):
    def take_digest(
        self,
        worker: str,
        group: ClaimGroup,
        day: str,
        planned_by: dt.datetime,
        now: dt.datetime,
        lease: dt.timedelta,
        domain: str,
        create: bool = True,
    ) -> Digest | dt.datetime | None:
        """Lease the group's oldest unfinished digest, else create ``day``'s (the target's local
        date; ``create``) with the letters planned by ``planned_by`` and lease it. A time: ask
        again then (another worker holds it, or its retry is not due); None: nothing more to
        send for ``day`` (sent, given up, or nothing was planned)."""
        with self.engine.begin() as conn:
            row = _unfinished(conn, group, day)
            if row is None and create and not _exists(conn, group, day):
                row = _create(conn, group, day, planned_by, now, domain)
            # Another worker may have created it meanwhile (PostgreSQL): then it is theirs to
            # send, and ours to take over should their lease run out.
            row = row or _unfinished(conn, group, day)
            if row is None:
                return None
            again = _again(row, worker, now)
            if again is not None:
                return again
            return _lease(conn, worker, group, row, now + lease, now)

    def renew_digest(self, worker: str, digest: Digest, until: dt.datetime) -> None:
        """Keep the digest and its letters leased while its send runs."""
        g, d = digests, deliveries
        with self.engine.begin() as conn:
            conn.execute(
                update(g).where(g.c.id == digest.id, g.c.lease_owner == worker).values(lease_until=until)
            )
            mine = and_(
                d.c.id.in_(digest.delivery_ids), d.c.lease_owner == worker, d.c.status == Status.SENDING
            )
            conn.execute(update(d).where(mine).values(lease_until=until))

    def end_digest(
        self, worker: str, digest_id: int, status: str, now: dt.datetime, again_at: dt.datetime | None = None
    ) -> None:
        """The digest sent, given up, or (``again_at``) to be tried again then; its letters'
        outcomes are recorded first, by ``record``, one attempt row each."""
        g = digests
        values: dict[str, object] = {"status": status, "lease_owner": None, "lease_until": None}
        if status == SENT:
            values["sent_at"] = now
        if again_at is not None:
            values["next_attempt_at"] = again_at
        with self.engine.begin() as conn:
            conn.execute(update(g).where(g.c.id == digest_id, g.c.lease_owner == worker).values(**values))

    def release_digest(self, worker: str, digest: Digest, now: dt.datetime) -> None:
        """Nothing was attempted (a letter did not render, the worker stops): back as it was."""
        g, d = digests, deliveries
        with self.engine.begin() as conn:
            mine = and_(g.c.id == digest.id, g.c.lease_owner == worker)
            conn.execute(
                update(g)
                .where(mine)
                .values(status=PENDING, lease_owner=None, lease_until=None, attempts=g.c.attempts - 1)
            )
            held = and_(
                d.c.id.in_(digest.delivery_ids), d.c.lease_owner == worker, d.c.status == Status.SENDING
            )
            conn.execute(
                update(d).where(held).values(lease_ended(Status.PENDING, now, attempts=d.c.attempts - 1))
            )

    def digest_of(self, delivery_id: int) -> tuple[str, str, str] | None:
        """The digest carrying a letter: (day, status, Message-ID), for ``dispatcher why``."""
        g, m = digests, digest_letters
        with self._read() as conn:
            row = conn.execute(
                select(g.c.day, g.c.status, g.c.message_id)
                .join(m, m.c.digest_id == g.c.id)
                .where(m.c.delivery_id == delivery_id)
                .order_by(g.c.id.desc())
                .limit(1)
            ).first()
        return None if row is None else (row.day, row.status, row.message_id)

    def waiting(self, delivery_id: int, day: str, planned_by: dt.datetime) -> tuple[bool, int] | None:
        """For ``dispatcher why``: whether the letter's group has its digest of ``day`` already,
        and how many of its letters in no digest yet were planned by ``planned_by``; None if
        this letter was not (it goes in a later one)."""
        d, g, m = deliveries, digests, digest_letters
        with self._read() as conn:
            row = conn.execute(
                select(d.c.action_id, d.c.target_id, d.c.channel).where(d.c.id == delivery_id)
            ).one()
            same = [
                d.c.action_id == row.action_id,
                d.c.target_id == row.target_id,
                d.c.channel == row.channel,
            ]
            mine = [
                g.c.action_id == row.action_id,
                g.c.target_id == row.target_id,
                g.c.channel == row.channel,
            ]
            made = conn.execute(select(g.c.id).where(*mine, g.c.day == day)).first() is not None
            count = conn.scalar(
                select(func.count())
                .select_from(d)
                .where(
                    *same,
                    d.c.status == Status.PENDING,
                    d.c.next_attempt_at <= planned_by,
                    ~exists().where(m.c.delivery_id == d.c.id),
                )
            )
        return made, int(count or 0)
