"""``Store`` over SQLAlchemy: a SQLite file (default) or PostgreSQL (several workers)."""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Iterable

from sqlalchemy import case, func, select

from dispatcher.addresses import stored_email
from dispatcher.store import (
    AttemptRow,
    Outcome,
    QueueCount,
    SentCount,
    Signer,
    Status,
    Store,
    SupporterRecord,
    mandates,
)
from dispatcher.store.accounts import SqlAccounts
from dispatcher.store.claims import SqlClaims
from dispatcher.store.controls import SqlControls
from dispatcher.store.digests import SqlDigests

# Re-exported: the CLI and tests open engines from here (engine_for, the frozen-worker test's
# IDLE_IN_TRANSACTION).
from dispatcher.store.engine import IDLE_IN_TRANSACTION as IDLE_IN_TRANSACTION
from dispatcher.store.engine import dialect_insert
from dispatcher.store.engine import engine_for as engine_for
from dispatcher.store.leases import SqlLeases
from dispatcher.store.outcomes import SqlOutcomes
from dispatcher.store.people import SqlPeople
from dispatcher.store.planning import SqlPlanning
from dispatcher.store.privacy import SqlPrivacy
from dispatcher.store.reports import LogFilter, SqlReports
from dispatcher.store.schema import attempts, deliveries, meta, supporters

IMPORT_BATCH = 1000


class SqlStore(SqlClaims, SqlLeases, SqlOutcomes, SqlPlanning, SqlControls, Store):
    """The store: its parts by job, one module each (claims, leases, outcomes, planning,
    controls), sharing the engine (``engine.SqlPart``); people, privacy, reports and accounts are
    reached as attributes. What is left here: the instance secret, supporters, counts."""

    def __init__(self, url: str, *, migrate: bool = True) -> None:
        self.engine = engine_for(url)
        if migrate:
            from dispatcher.store.migrate import upgrade

            upgrade(self.engine)
        self._secret: bytes | None = None
        self._accounts = SqlAccounts(self.engine)
        self._reports = SqlReports(self.engine)
        self._people = SqlPeople(self.engine)
        self._privacy = SqlPrivacy(self.engine)
        self._digests = SqlDigests(self.engine)

    @property
    def accounts(self) -> SqlAccounts:
        return self._accounts

    @property
    def reports(self) -> SqlReports:
        return self._reports

    @property
    def people(self) -> SqlPeople:
        return self._people

    @property
    def privacy(self) -> SqlPrivacy:
        return self._privacy

    @property
    def digests(self) -> SqlDigests:
        return self._digests

    def close(self) -> None:
        self.engine.dispose()

    def instance_secret(self) -> bytes:
        if self._secret is None:
            with self.engine.begin() as conn:
                conn.execute(
                    dialect_insert(conn, meta)
                    .values(key="instance_secret", value=secrets.token_hex(16))
                    .on_conflict_do_nothing()
                )
                value = conn.scalar(select(meta.c.value).where(meta.c.key == "instance_secret"))
            self._secret = bytes.fromhex(str(value))
        return self._secret

    # supporters --------------------------------------------------------------------------
    def import_supporters(self, records: Iterable[SupporterRecord], now: dt.datetime) -> int:
        written = 0
        with self.engine.begin() as conn:
            batch: list[SupporterRecord] = []
            for record in records:
                batch.append(record)
                if len(batch) >= IMPORT_BATCH:
                    written += mandates.upsert_supporters(conn, batch, now)
                    batch = []
            if batch:
                written += mandates.upsert_supporters(conn, batch, now)
        return written

    def supporter_count(self) -> int:
        with self._read() as conn:
            return int(conn.scalar(select(func.count()).select_from(supporters)) or 0)

    def find_signer(self, email: str) -> Signer | None:
        s = supporters
        # Imported addresses are stored in lower case; whoever types one may not.
        with self._read() as conn:
            row = conn.execute(
                select(s.c.name, s.c.email, s.c.city, s.c.country, s.c.language).where(
                    s.c.email == stored_email(email)
                )
            ).first()
        return Signer(*row) if row else None

    # reports -----------------------------------------------------------------------------
    def queue_counts(self) -> list[QueueCount]:
        d = deliveries
        oldest = func.min(case((d.c.status == Status.PENDING, d.c.next_attempt_at)))
        with self._read() as conn:
            rows = conn.execute(
                select(d.c.action_id, d.c.target_id, d.c.channel, d.c.status, func.count(), oldest)
                .group_by(d.c.action_id, d.c.target_id, d.c.channel, d.c.status)
                .order_by(d.c.action_id, d.c.target_id, d.c.channel, d.c.status)
            ).all()
        return [QueueCount(r[0], r[1], r[2], r[3], int(r[4]), r[5]) for r in rows]

    def action_counts(self) -> dict[str, dict[str, int]]:
        d = deliveries
        with self._read() as conn:
            rows = conn.execute(
                select(d.c.action_id, d.c.status, func.count()).group_by(d.c.action_id, d.c.status)
            )
            out: dict[str, dict[str, int]] = {}
            for action_id, status, count in rows:
                out.setdefault(action_id, {})[status] = int(count)
        return out

    def sent_counts(self, action_id: str | None = None) -> list[SentCount]:
        d = deliveries
        query = (
            select(d.c.action_id, d.c.target_id, d.c.channel, func.count())
            .where(d.c.status == Status.SENT)
            .group_by(d.c.action_id, d.c.target_id, d.c.channel)
            .order_by(d.c.action_id, d.c.target_id, d.c.channel)
        )
        if action_id:
            query = query.where(d.c.action_id == action_id)
        with self._read() as conn:
            return [SentCount(r[0], r[1], r[2], int(r[3])) for r in conn.execute(query)]

    def fax_pages(self) -> list[tuple[str, str, int]]:
        a = attempts
        query = (
            select(a.c.action_id, a.c.provider, func.sum(a.c.pages))
            .where(a.c.outcome == Outcome.SUBMITTED, a.c.pages.is_not(None))
            .group_by(a.c.action_id, a.c.provider)
            .order_by(a.c.action_id, a.c.provider)
        )
        with self._read() as conn:
            return [(r[0], r[1], int(r[2])) for r in conn.execute(query)]

    def attempts_after(
        self,
        after_id: int,
        limit: int,
        action_id: str | None = None,
        target_id: str | None = None,
    ) -> list[AttemptRow]:
        return self._reports.attempts_page(LogFilter(action_id, target_id), limit, after_id=after_id)
