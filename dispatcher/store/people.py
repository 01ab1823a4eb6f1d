"""Supporters' rights over what is held about them: withdraw consent, see it all, be forgotten.

Forgetting keeps the letters already sent, as anonymous rows (the counts reported to officials
stay right), and removes the person: name, email, city, country, consents, and fax PDFs still
waiting to be fetched. On SQLite the freed space is overwritten (``secure_delete``) and the
write-ahead log truncated, so the bytes are gone from the database files too.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import Connection, Engine, delete, select, update

from dispatcher.store import Status
from dispatcher.store.reading import reading
from dispatcher.store.schema import attempts, consents, deliveries, fax_media, supporters

UNSENT = (Status.PENDING.value, Status.SENDING.value)


def _iso(value: Any) -> Any:
    return value.isoformat() if isinstance(value, dt.datetime) else value


class SqlPeople:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def _id(self, conn: Connection, email: str) -> int | None:
        found = conn.scalar(select(supporters.c.id).where(supporters.c.email == email.strip().lower()))
        return None if found is None else int(found)

    def revoke(self, email: str, now: dt.datetime) -> int | None:
        """Withdraw every consent; the letters not yet sent are cancelled (a running dispatcher
        hands back any it holds). Returns how many letters were cancelled; None: no such person."""
        with self.engine.begin() as conn:
            person = self._id(conn, email)
            if person is None:
                return None
            c, d = consents, deliveries
            conn.execute(
                update(c).where(c.c.supporter_id == person, c.c.revoked_at.is_(None)).values(revoked_at=now)
            )
            unsent = update(d).where(d.c.supporter_id == person, d.c.status.in_(UNSENT))
            values = {"status": Status.CANCELLED.value, "last_error": "consent withdrawn", "updated_at": now}
            return int(conn.execute(unsent.values(**values)).rowcount)

    def revoked_since(self, since: dt.datetime) -> frozenset[str]:
        """Emails whose consent was withdrawn since then (a running dispatcher drops their
        letters from its queues)."""
        query = (
            select(supporters.c.email)
            .join(consents, consents.c.supporter_id == supporters.c.id)
            .where(consents.c.revoked_at >= since)
        )
        with reading(self.engine) as conn:
            return frozenset(str(e) for e in conn.scalars(query))

    def export(self, email: str) -> dict[str, Any] | None:
        """Everything held about the person, and every letter sent in their name."""
        with reading(self.engine) as conn:
            person = self._id(conn, email)
            if person is None:
                return None
            row = conn.execute(select(supporters).where(supporters.c.id == person)).one()
            held = {k: _iso(v) for k, v in row._mapping.items()}
            held["consents"] = _rows(conn, select(consents).where(consents.c.supporter_id == person))
            d, a = deliveries, attempts
            letters = select(d.c.id, d.c.action_id, d.c.target_id, d.c.channel, d.c.status, d.c.sent_at)
            held["letters"] = _rows(conn, letters.where(d.c.supporter_id == person).order_by(d.c.id))
            tries = select(a.c.delivery_id, a.c.finished_at, a.c.outcome, a.c.detail)
            tries = tries.join(d, d.c.id == a.c.delivery_id)
            held["attempts"] = _rows(conn, tries.where(d.c.supporter_id == person).order_by(a.c.id))
        return held

    def forget(self, email: str, now: dt.datetime) -> bool:
        with self.engine.connect() as conn:
            sqlite = conn.dialect.name == "sqlite"
            raw = conn.connection.driver_connection  # pragmas outside any transaction
            if sqlite:  # freed space is overwritten, not left for a file viewer to find
                raw.execute("PRAGMA secure_delete = ON")  # type: ignore[union-attr]
            with conn.begin():
                person = self._id(conn, email)
                if person is None:
                    return False
                _erase(conn, person, now)
            if sqlite:  # and the log of the pages as they were is emptied
                raw.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # type: ignore[union-attr]
                raw.execute("PRAGMA secure_delete = OFF")  # type: ignore[union-attr]
        if not sqlite:
            # Dead row versions stay in PostgreSQL's pages until vacuumed.
            with self.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as pg:
                pg.exec_driver_sql("VACUUM supporters, consents, fax_media")
        return True


def _rows(conn: Connection, query: Any) -> list[dict[str, Any]]:
    return [{k: _iso(v) for k, v in r._mapping.items()} for r in conn.execute(query)]


def _erase(conn: Connection, person: int, now: dt.datetime) -> None:
    d = deliveries
    theirs = select(d.c.id).where(d.c.supporter_id == person)
    for (delivery,) in conn.execute(theirs):
        conn.execute(delete(fax_media).where(fax_media.c.reference.like(f"d{delivery}-%")))
    conn.execute(
        update(d)
        .where(d.c.supporter_id == person, d.c.status.in_(UNSENT))
        .values(status=Status.CANCELLED.value, last_error="supporter forgotten", updated_at=now)
    )
    conn.execute(delete(consents).where(consents.c.supporter_id == person))
    # The row stays as an anonymous stub: the letters sent still count for their targets.
    anonymous = {"name": "", "email": f"forgotten-{person}@forgotten.invalid", "city": "", "country": ""}
    stub = update(supporters).where(supporters.c.id == person)
    conn.execute(stub.values(**anonymous, language="", updated_at=now))
