"""Claims: pacing buckets refilled and spent, due letters leased to a worker, what is due next."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterator, Sequence
from typing import Any

from sqlalchemy import Connection, and_, case, func, literal, select, union_all, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql import CompoundSelect, Select

from dispatcher import pacing
from dispatcher.pacing import Limits
from dispatcher.store import (
    Backlog,
    Claim,
    ClaimBatch,
    ClaimGroup,
    ClaimRequest,
    GroupId,
    Signer,
    Status,
    caps,
    quota,
)
from dispatcher.store.consent import letter_live, live
from dispatcher.store.engine import SqlPart, dialect_insert, wait_for_locks
from dispatcher.store.schema import (
    UTCDateTime,
    consents,
    deliveries,
    pacing_buckets,
    personal_words,
    supporters,
)

# A claim waits this long for the pacing buckets, then gives up and is tried again next round:
# the worker's other store calls (recovering leases, recording results) are not held behind it.
CLAIM_LOCK_WAIT = "1s"
CLAIM_AGAIN = 0.2  # seconds until a claim given up is asked again
# Lock wait timed out (another worker holds the buckets); this session's transaction ended by
# the server after it idled (this worker was the frozen one).
_CLAIM_GIVEN_UP = frozenset({"55P03", "25P03"})

log = logging.getLogger("dispatcher")


def _compound(parts: Sequence[Select[Any]]) -> Iterator[Select[Any] | CompoundSelect[Any]]:
    """UNION ALL of ``parts``: one statement for most rounds (SQLite allows 500 terms in one)."""
    for chunk in range(0, len(parts), 200):
        piece = parts[chunk : chunk + 200]
        yield piece[0] if len(piece) == 1 else union_all(*piece)


def due_queries(
    groups: Sequence[ClaimGroup], wanted: Sequence[int], now: dt.datetime
) -> Iterator[Select[Any] | CompoundSelect[Any]]:
    """The statements ``_due`` runs: each group's due letters (its row ``g`` is the group's
    index), on the deliveries index by group, status and due time, locked or skipped."""
    d, c = deliveries, consents
    parts = []
    for i, (g, n) in enumerate(zip(groups, wanted, strict=True)):
        if n <= 0:
            continue
        head = (
            select(d.c.id, literal(i).label("g"))
            .join(c, c.c.id == d.c.consent_id)
            .where(
                d.c.action_id == g.action_id,
                d.c.target_id == g.target_id,
                d.c.channel == g.channel,
                d.c.status == Status.PENDING,
                d.c.next_attempt_at <= now,
                # Nothing goes out on a consent that lapsed, ended or was withdrawn.
                live(now),
            )
            .order_by(d.c.next_attempt_at)
            .limit(n)
            .with_for_update(skip_locked=True, of=d)
            .subquery()
        )
        parts.append(select(head.c.id, head.c.g))
    return _compound(parts)


class SqlClaims(SqlPart):
    def claim(self, worker: str, request: ClaimRequest, now: dt.datetime, lease: dt.timedelta) -> ClaimBatch:
        groups = list(request.groups)
        if not groups:
            return ClaimBatch([], frozenset(), None)
        try:
            return self._claim(worker, groups, request, now, lease)
        except DBAPIError as exc:
            # Nothing of a claim outlives its transaction: one given up is simply asked again.
            if getattr(exc.orig, "sqlstate", None) not in _CLAIM_GIVEN_UP and not exc.connection_invalidated:
                raise
            log.warning("claim given up, asking again: %s", str(exc.orig).partition("\n")[0])
            return ClaimBatch([], frozenset(), CLAIM_AGAIN)

    def _claim(
        self,
        worker: str,
        groups: list[ClaimGroup],
        request: ClaimRequest,
        now: dt.datetime,
        lease: dt.timedelta,
    ) -> ClaimBatch:
        with self.engine.begin() as conn:
            wait_for_locks(conn, CLAIM_LOCK_WAIT)
            tokens = self._buckets(conn, groups, request.limits, now)
            tokens |= self._lines(conn, groups)
            wanted = pacing.asks(groups, tokens, request.room)
            rows = self._due(conn, groups, wanted, now)
            # Caps are spent like buckets: ``budget`` holds both, only the buckets are written back.
            held, budget, chosen = caps.allocate(conn, groups, rows, tokens, request, now)
            claims = self._lease(conn, worker, [row for _, row in chosen], now, lease)
            caps.charge(conn, held, claims)
            self._spend(conn, {k: budget[k] for k in tokens}, now)
        dry = frozenset(g.ident for g, n, got in zip(groups, wanted, rows, strict=True) if n and len(got) < n)
        capped = held.capped(budget)
        waiting = [g for g in groups if g.ident not in dry and g.ident not in capped]
        return ClaimBatch(claims, dry, pacing.wait(waiting, budget, request.limits), capped)

    def _buckets(
        self, conn: Connection, groups: Sequence[ClaimGroup], limits: Limits, now: dt.datetime
    ) -> dict[str, float]:
        """Lock and refill every bucket these groups spend (the global one first, always)."""
        keys = sorted({pacing.GLOBAL, *(k for g in groups for k in g.keys)})
        b = pacing_buckets
        conn.execute(
            dialect_insert(conn, b)
            .values([{"key": k, "tokens": limits.of(k)[1], "updated_at": now} for k in keys])
            .on_conflict_do_nothing()
        )
        # Sorted, the global bucket first: every claim locks in the same order, and no two
        # claims deadlock on each other's buckets.
        found = conn.execute(
            select(b.c.key, b.c.tokens, b.c.updated_at)
            .where(b.c.key.in_(keys))
            .order_by(b.c.key)
            .with_for_update()
        )
        return {r.key: pacing.refilled(r.tokens, r.updated_at, now, *limits.of(r.key)) for r in found}

    def _lines(self, conn: Connection, groups: Sequence[ClaimGroup]) -> dict[str, float]:
        """One token per line, none for a line with a letter in flight (leased or submitted)."""
        lines = {g.ident: g.line for g in groups if g.line}
        if not lines:
            return {}
        d = deliveries
        in_flight = conn.execute(
            select(d.c.action_id, d.c.target_id, d.c.channel)
            .where(
                d.c.status.in_([Status.SENDING, Status.SUBMITTED]), d.c.channel.in_({c for _, _, c in lines})
            )
            .distinct()
        )
        busy = {lines.get((r.action_id, r.target_id, r.channel)) for r in in_flight}
        return {line: 0.0 if line in busy else 1.0 for line in lines.values() if line}

    def _spend(self, conn: Connection, tokens: dict[str, float], now: dt.datetime) -> None:
        b = pacing_buckets
        left = {k: v for k, v in tokens.items() if not k.startswith("line:")}
        # One statement, not one per bucket: psycopg sends an executemany as a pipeline, and a
        # process frozen before the pipeline's last message leaves a session that PostgreSQL
        # counts as busy, not idle, so it never times out and the bucket locks stay held.
        level = case(left, value=b.c.key, else_=b.c.tokens)
        conn.execute(update(b).where(b.c.key.in_(list(left))).values(tokens=level, updated_at=now))

    def _due(
        self, conn: Connection, groups: Sequence[ClaimGroup], wanted: Sequence[int], now: dt.datetime
    ) -> list[list[int]]:
        """Up to ``wanted[i]`` due delivery ids of each group, oldest due first: one statement."""
        out: list[list[int]] = [[] for _ in groups]
        for query in due_queries(groups, wanted, now):
            for row in conn.execute(query):
                out[row.g].append(row.id)
        return out

    def _lease(
        self, conn: Connection, worker: str, ids: list[int], now: dt.datetime, lease: dt.timedelta
    ) -> list[Claim]:
        ids = quota.charge(conn, ids, now)
        if not ids:
            return []
        d, s, c, w = deliveries, supporters, consents, personal_words
        conn.execute(
            update(d)
            .where(d.c.id.in_(ids))
            .values(
                status=Status.SENDING.value,
                lease_owner=worker,
                lease_until=now + lease,
                attempts=d.c.attempts + 1,
                updated_at=now,
            )
        )
        full = c.c.name_display != "name"  # "name": the letter is signed by the name alone
        rows = conn.execute(
            select(
                d.c.id,
                d.c.action_id,
                d.c.target_id,
                d.c.channel,
                d.c.attempts,
                s.c.name,
                s.c.email,
                case((full, s.c.city), else_="").label("city"),
                case((full, s.c.country), else_="").label("country"),
                s.c.language,
                w.c.words,
                c.c.replies,
            )
            .join(s, s.c.id == d.c.supporter_id)
            .join(c, c.c.id == d.c.consent_id)
            .outerjoin(w, and_(w.c.supporter_id == d.c.supporter_id, w.c.action_id == d.c.action_id))
            .where(d.c.id.in_(ids))
        )
        by_id = {
            r.id: Claim(
                delivery_id=r.id,
                action_id=r.action_id,
                target_id=r.target_id,
                channel=r.channel,
                attempt=r.attempts,
                signer=Signer(r.name, r.email, r.city, r.country, r.language, r.words or "", r.replies),
            )
            for r in rows
        }
        return [by_id[i] for i in ids]  # the fair order the allocator chose

    def next_due(self, groups: Sequence[GroupId], now: dt.datetime) -> dt.datetime | None:
        if not groups:
            return None
        d = deliveries
        # The first letter by due time that may still go (its consent lives): ordered by the
        # group's index and stopped at the first, rather than a min() over every pending letter.
        parts = [
            select(d.c.next_attempt_at.label("due"))
            .where(d.c.action_id == a, d.c.target_id == t, d.c.channel == c, d.c.status == Status.PENDING)
            .where(letter_live(now))
            .order_by(d.c.next_attempt_at)
            .limit(1)
            .subquery()
            for a, t, c in groups
        ]
        heads = [select(part.c.due) for part in parts]
        heads.append(select(func.min(d.c.lease_until).label("due")).where(d.c.status == Status.SENDING))
        with self._read() as conn:
            times = [due for query in _compound(heads) for due in conn.scalars(query) if due is not None]
        return min(times, default=None)

    def backlog(self, now: dt.datetime) -> Backlog:
        d = deliveries
        later = d.c.next_attempt_at > now
        with self._read() as conn:
            row = conn.execute(
                select(
                    func.count(case((later, 1))),
                    func.count(case((~later, 1))),
                    func.min(case((later, d.c.next_attempt_at)), type_=UTCDateTime()),
                ).where(d.c.status == Status.PENDING)
            ).one()
        return Backlog(int(row[1]), int(row[0]), row[2])
