"""Claims: pacing buckets refilled and spent, due letters leased to a worker, what is due next."""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    FromClause,
    Integer,
    Row,
    Text,
    and_,
    bindparam,
    case,
    cast,
    column,
    func,
    select,
    true,
    update,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql import ClauseElement, Executable, Select
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import ColumnClause

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
from dispatcher.store.consent import live
from dispatcher.store.engine import SqlPart, dialect_insert, is_postgres, keyed_values, wait_for_locks
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

# What a lease reads back of each letter: its claim, and where its signer's details are.
_LEASED = ("id", "action_id", "target_id", "channel", "attempts", "supporter_id", "consent_id")

# A round looks at no more groups of a channel than it may claim letters by it, and at least this
# many: its cost grows with what it claims, not with every group that exists (at 900 groups, most
# of a round was reading their buckets and probing the index for each). The feeder asks the
# groups it did not reach first next round, so each is looked at within a few rounds.
WINDOW_MIN = 50


def window(groups: Sequence[ClaimGroup], room: Mapping[str, int]) -> int:
    """How many of ``groups``, from the first, one round looks at."""
    seen: dict[str, int] = {}
    for i, g in enumerate(groups):
        n = seen.get(g.channel, 0)
        if n >= max(WINDOW_MIN, room.get(g.channel, 0)):
            return i
        seen[g.channel] = n + 1
    return len(groups)


class DueLetters(Executable, ClauseElement):
    """Up to ``limit`` due letters of each group, oldest due first: rows (g, id, due), g the
    group's index. One statement of the same shape however many groups there are: the groups
    travel as one JSON parameter, and each is looked up on the deliveries index by group, status
    and due time. (A UNION ALL of one subquery per group cost the claim a second at 900 groups,
    most of it building and compiling the statement.) Spelled per dialect: see ``_due_lateral``
    and ``_due_correlated``."""

    # Not cached itself (the claim runs the dialect's select, which SQLAlchemy caches).
    inherit_cache = False

    def __init__(self, groups: str, limit: int, now: dt.datetime) -> None:
        self.groups = groups  # JSON: [{"i": index, "a": action, "t": target, "c": channel}]
        self.limit = limit  # the same for every group: SQLite's LIMIT cannot read the group's row
        self.now = now


@dataclass(frozen=True)
class Asked:
    """The groups of one statement as rows: the JSON list unpacked by the database."""

    rows: FromClause
    i: Any  # the group's index in the caller's list
    action: Any
    target: Any
    channel: Any

    def of(self, d: FromClause) -> list[ColumnElement[bool]]:
        """The letters of the group on this row."""
        return [d.c.action_id == self.action, d.c.target_id == self.target, d.c.channel == self.channel]


def asked(groups: str, postgres: bool) -> Asked:
    """``groups`` (JSON: [{"i", "a", "t", "c"}]) as rows: jsonb_to_recordset on PostgreSQL,
    json_each (with json_extract per field) on SQLite."""
    param = bindparam("groups", groups, type_=Text)
    if postgres:
        cols: list[ColumnClause[Any]] = [column(name, Text) for name in ("a", "t", "c")]
        cols.insert(0, column("i", Integer))
        rs = func.jsonb_to_recordset(cast(param, JSONB)).table_valued(*cols).render_derived("asked", True)
        return Asked(rs, rs.c.i, rs.c.a, rs.c.t, rs.c.c)
    each = func.json_each(param).table_valued("value").alias("asked")
    a, t, c, i = (func.json_extract(each.c.value, f"$.{name}") for name in ("a", "t", "c", "i"))
    return Asked(each, i, a, t, c)


def _cap(d: FromClause, c: FromClause) -> ColumnElement[Any]:
    """A letter's consent's monthly cap while the letter is not yet charged to it (``quota``)."""
    return case((d.c.charged.is_(None), c.c.monthly_cap)).label("cap")


def _due_lateral(due: DueLetters) -> Select[Any]:
    """PostgreSQL: a LATERAL subquery per group row, locking what it takes or skipping it."""
    d, c, g = deliveries, consents, asked(due.groups, postgres=True)
    head = (
        select(d.c.id, d.c.next_attempt_at, d.c.supporter_id, _cap(d, c))
        .join(c, c.c.id == d.c.consent_id)
        .where(*g.of(d), d.c.status == Status.PENDING, d.c.next_attempt_at <= due.now, live(due.now))
        .order_by(d.c.next_attempt_at)
        .limit(due.limit)
        .with_for_update(skip_locked=True, of=d)
        .lateral("head")
    )
    return (
        select(
            g.i.label("g"), head.c.id, head.c.next_attempt_at.label("due"), head.c.supporter_id, head.c.cap
        )
        .select_from(g.rows)
        .join(head, true())
        .order_by(g.i, head.c.next_attempt_at)
    )


def _due_correlated(due: DueLetters) -> Select[Any]:
    """SQLite (no LATERAL, no row locks: its one lock is the transaction's): each group row's
    letters by ``id IN`` a subquery correlated on it, which SQLite runs per group row."""
    d, c, picked, g = deliveries, consents, deliveries.alias("picked"), asked(due.groups, postgres=False)
    head = (
        select(d.c.id)
        .join(c, c.c.id == d.c.consent_id)
        .where(*g.of(d), d.c.status == Status.PENDING, d.c.next_attempt_at <= due.now, live(due.now))
        .order_by(d.c.next_attempt_at)
        .limit(due.limit)
    )
    signed = consents.alias("signed")
    return (
        select(g.i.label("g"), picked.c.id, picked.c.next_attempt_at.label("due"), picked.c.supporter_id)
        .add_columns(_cap(picked, signed))
        .select_from(g.rows)
        .join(picked, picked.c.id.in_(head))
        .join(signed, signed.c.id == picked.c.consent_id)
        .order_by(g.i, picked.c.next_attempt_at)
    )


@compiles(DueLetters)
def _compile_due(due: DueLetters, compiler: SQLCompiler, **kw: Any) -> str:
    return str(compiler.process(_due_correlated(due), **kw))


@compiles(DueLetters, "postgresql")
def _compile_due_pg(due: DueLetters, compiler: SQLCompiler, **kw: Any) -> str:
    return str(compiler.process(_due_lateral(due), **kw))


def due_queries(
    groups: Sequence[ClaimGroup], wanted: Sequence[int], now: dt.datetime
) -> Iterator[DueLetters]:
    """The statements ``_due`` runs, one per number of letters wanted (most rounds want the same
    of every group): each group's due letters (its row ``g`` is the group's index), on the
    deliveries index by group, status and due time, locked or skipped. Nothing goes out on a
    consent that lapsed, ended or was withdrawn (``live``)."""
    by_limit: dict[int, list[dict[str, Any]]] = {}
    for i, (g, n) in enumerate(zip(groups, wanted, strict=True)):
        if n > 0:
            by_limit.setdefault(n, []).append({"i": i, "a": g.action_id, "t": g.target_id, "c": g.channel})
    for n, rows in sorted(by_limit.items()):
        yield DueLetters(json.dumps(rows), n, now)


class SqlClaims(SqlPart):
    def claim(self, worker: str, request: ClaimRequest, now: dt.datetime, lease: dt.timedelta) -> ClaimBatch:
        groups = list(request.groups)
        if not groups:
            return ClaimBatch([], frozenset(), None)
        reach = window(groups, request.room)
        try:
            return replace(self._claim(worker, groups[:reach], request, now, lease), reached=reach)
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
            refilled = dict(tokens)
            tokens |= self._lines(conn, groups)
            wanted = pacing.asks(groups, tokens, request.room)
            rows, uncharged = self._due(conn, groups, wanted, now)
            # Caps are spent like buckets: ``budget`` holds both, only the buckets are written back.
            held, budget, chosen = caps.allocate(conn, groups, rows, tokens, request, now)
            ids = quota.charge(conn, [row for _, row in chosen], uncharged, now)
            claims = self._lease(conn, worker, ids, now, lease)
            caps.charge(conn, held, claims)
            pacing.jitter(budget, refilled, request.jitter)
            self._spend(conn, {k: budget[k] for k in tokens}, refilled, now)
        dry = frozenset(g.ident for g, n, got in zip(groups, wanted, rows, strict=True) if n and len(got) < n)
        # A group waiting for its spread's next token is left out until then, as a capped one.
        spread = pacing.spread_waits([g for g in groups if g.ident not in dry], budget, now)
        capped = {**spread, **held.capped(budget)}
        waiting = [g for g in groups if g.ident not in dry and g.ident not in capped]
        return ClaimBatch(claims, dry, pacing.wait(waiting, budget, request.limits), capped)

    def _buckets(
        self, conn: Connection, groups: Sequence[ClaimGroup], limits: Limits, now: dt.datetime
    ) -> dict[str, float]:
        """Refill every bucket these groups spend, under the global bucket's lock (taken first, always)."""
        rates = pacing.rates(groups, limits)
        keys = list(rates)
        found = self._lock_buckets(conn, keys)
        if len(found) < len(keys):  # a recipient's first letter: its bucket starts full
            missing = sorted(set(keys) - {r.key for r in found})
            conn.execute(
                dialect_insert(conn, pacing_buckets)
                .values([{"key": k, "tokens": rates[k][1], "updated_at": now} for k in missing])
                .on_conflict_do_nothing()
            )
            found = self._lock_buckets(conn, keys)
        return {r.key: pacing.refilled(r.tokens, r.updated_at, now, *rates[r.key]) for r in found}

    @staticmethod
    def _lock_buckets(conn: Connection, keys: list[str]) -> list[Row[Any]]:
        # Every claim locks the global bucket first and holds it to the end (only claims write
        # buckets), so claims run one at a time and, each statement seeing what committed before
        # it, read the other buckets as the claim before left them: no lock of their own is
        # needed (on PostgreSQL each one was a write, 900 a round at 900 groups). SQLite's one
        # lock is the transaction's. Buckets are inserted only when missing: a multi-row INSERT
        # of every key each round cost more than the rest of the claim.
        b = pacing_buckets
        if is_postgres(conn):
            conn.execute(select(b.c.key).where(b.c.key == pacing.GLOBAL).with_for_update())
        asked = select(keyed_values(conn, "keys", dict.fromkeys(keys, 0)).c.key)  # as caps._locked
        return list(conn.execute(select(b.c.key, b.c.tokens, b.c.updated_at).where(b.c.key.in_(asked))))

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

    def _spend(
        self, conn: Connection, tokens: dict[str, float], refilled: dict[str, float], now: dt.datetime
    ) -> None:
        """Store the buckets this round spent. The others are left as they were: refilling is
        worked out from ``updated_at`` when read, so writing their refilled level changes nothing
        but cost a round of idle groups as much as a busy one."""
        b = pacing_buckets
        left = {k: v for k, v in tokens.items() if k in refilled and v != refilled[k]}
        if not left:
            return
        # One statement, not one per bucket: psycopg sends an executemany as a pipeline, and a
        # process frozen before the pipeline's last message leaves a session that PostgreSQL
        # counts as busy, not idle, so it never times out and the bucket locks stay held.
        level = keyed_values(conn, "levels", left)
        conn.execute(update(b).where(b.c.key == level.c.key).values(tokens=level.c.value, updated_at=now))

    def _due(
        self, conn: Connection, groups: Sequence[ClaimGroup], wanted: Sequence[int], now: dt.datetime
    ) -> tuple[list[list[int]], dict[int, tuple[int, int]]]:
        """Up to ``wanted[i]`` due delivery ids of each group, oldest due first: one statement.
        And of those under a monthly cap not yet charged, the supporter and the cap."""
        out: list[list[int]] = [[] for _ in groups]
        capped: dict[int, tuple[int, int]] = {}
        spell = _due_lateral if is_postgres(conn) else _due_correlated
        for due in due_queries(groups, wanted, now):
            # The dialect's statement itself, not ``due``: SQLAlchemy caches its compiled form.
            for row in conn.execute(spell(due)):
                out[row.g].append(row.id)
                if row.cap is not None:
                    capped[row.id] = (row.supporter_id, row.cap)
        return out, capped

    def _lease(
        self, conn: Connection, worker: str, ids: list[int], now: dt.datetime, lease: dt.timedelta
    ) -> list[Claim]:
        if not ids:
            return []
        d, s, c, w = deliveries, supporters, consents, personal_words
        leased = (
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
        source: Any = d
        if is_postgres(conn):  # one statement: the rows leased are joined to their signers as returned
            source = leased.returning(*(d.c[n] for n in _LEASED)).cte("leased")
        else:  # SQLite has no UPDATE in a WITH
            conn.execute(leased)
        full, got = c.c.name_display != "name", source.c  # "name": signed by the name alone
        query = (
            select(
                *(got[n] for n in _LEASED[:5]),
                s.c.name,
                s.c.email,
                case((full, s.c.city), else_="").label("city"),
                case((full, s.c.country), else_="").label("country"),
                s.c.language,
                w.c.words,
                c.c.replies,
            )
            .join(s, s.c.id == got.supporter_id)
            .join(c, c.c.id == got.consent_id)
            .outerjoin(w, and_(w.c.supporter_id == got.supporter_id, w.c.action_id == got.action_id))
        )
        rows = conn.execute(query if source is not d else query.where(d.c.id.in_(ids)))
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
        rows = json.dumps([{"i": n, "a": a, "t": t, "c": c} for n, (a, t, c) in enumerate(groups)])
        with self._read() as conn:
            g = asked(rows, is_postgres(conn))
            # Each group's first letter by due time that may still go (its consent lives), on
            # the group's index and stopped at the first, rather than a min() over every pending
            # letter; the groups as one JSON parameter, as in the claim.
            first = (
                select(d.c.next_attempt_at)
                .join(consents, consents.c.id == d.c.consent_id)
                .where(*g.of(d), d.c.status == Status.PENDING, live(now))
                .order_by(d.c.next_attempt_at)
                .limit(1)
                .scalar_subquery()
            )
            heads = select(func.min(first, type_=UTCDateTime())).select_from(g.rows)
            leases = select(func.min(d.c.lease_until)).where(d.c.status == Status.SENDING)
            times = [conn.scalar(heads), conn.scalar(leases)]
        return min((t for t in times if t is not None), default=None)

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

    def pending_counts(self) -> dict[GroupId, int]:
        d = deliveries
        with self._read() as conn:
            rows = conn.execute(
                select(d.c.action_id, d.c.target_id, d.c.channel, func.count())
                .where(d.c.status == Status.PENDING)
                .group_by(d.c.action_id, d.c.target_id, d.c.channel)
            )
            return {(r[0], r[1], r[2]): int(r[3]) for r in rows}
