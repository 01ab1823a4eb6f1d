"""What the dashboard and /metrics read: counted by the database, paged, never loaded whole.

Each query is one short read and is served by an index (see bench/dashboard_scale.py): the
dashboard must stay fast with a million deliveries.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace

from sqlalchemy import ColumnElement, Connection, Select, and_, case, exists, func, or_, select

from dispatcher import capabilities
from dispatcher.addresses import stored_email
from dispatcher.redaction import person_pattern, redacted
from dispatcher.store import AttemptRow, Outcome, Status
from dispatcher.store.consent import plannable
from dispatcher.store.engine import SqlPart, seconds_between
from dispatcher.store.explain import ROW_FIELDS, Context, Explanation, explain
from dispatcher.store.failures import Failure
from dispatcher.store.reasons import gave_up
from dispatcher.store.schema import attempts, cap_counts, consents, deliveries, supporters


@dataclass(frozen=True)
class LogFilter:
    action_id: str | None = None
    target_id: str | None = None
    channel: str | None = None
    outcome: str | None = None
    since: dt.datetime | None = None
    until: dt.datetime | None = None

    def apply(self, query: Select[tuple[object, ...]]) -> Select[tuple[object, ...]]:
        a = attempts
        for column in ("action_id", "target_id", "channel", "outcome"):
            if value := getattr(self, column):
                query = query.where(a.c[column] == value)
        if self.since:
            query = query.where(a.c.finished_at >= self.since)
        if self.until:
            query = query.where(a.c.finished_at < self.until)
        return query


@dataclass(frozen=True)
class Latency:
    """One channel's attempt durations: how many took at most each bucket's seconds
    (cumulative, as Prometheus counts them), how many in all, and their total in seconds."""

    at_most: tuple[int, ...]
    count: int
    seconds: float


class SqlReports(SqlPart):
    def cap_usage(self, now: dt.datetime) -> dict[str, int]:
        """The letters counted in every cap window still open (``caps.Cap.counter`` → used):
        the forecast starts from them."""
        t = cap_counts
        with self._read() as conn:
            return {
                r.counter: int(r.used)
                for r in conn.execute(select(t.c.counter, t.c.used).where(t.c.ends > now))
            }

    def unplanned(
        self,
        action_id: str,
        pairs: Sequence[tuple[str, str]],
        now: dt.datetime,
        tags: Sequence[str] = (),
        languages: Mapping[str, str] | None = None,
    ) -> dict[tuple[str, str], int]:
        """Per target × channel, the supporters whose consent today would be planned a letter
        (as ``plan`` chooses them) who have none yet: what ``check`` forecasts before launch."""
        c, d = consents, deliveries
        scopes = ["all", action_id, *(f"tag:{t}" for t in tags)]
        out = {}
        with self._read() as conn:
            for target_id, channel in pairs:
                planned = exists().where(
                    d.c.action_id == action_id,
                    d.c.supporter_id == c.c.supporter_id,
                    d.c.target_id == target_id,
                    d.c.channel == channel,
                )
                language = (languages or {}).get(target_id) or None
                chosen = c.c.scope.in_(scopes), plannable(now, channel, language), ~planned
                count = conn.scalar(select(func.count(func.distinct(c.c.supporter_id))).where(*chosen))
                out[target_id, channel] = int(count or 0)
        return out

    def attempts_page(
        self,
        where: LogFilter,
        limit: int,
        *,
        after_id: int = 0,
        before_id: int | None = None,
        redact: bool = False,
    ) -> list[AttemptRow]:
        """Oldest first after ``after_id``; or, with ``before_id``, newest first before it.
        ``redact``: each reply without its letter's supporter (see ``redaction``)."""
        a = attempts
        query = where.apply(select(*(a.c[f] for f in ROW_FIELDS)))
        if before_id is not None:
            query = query.where(a.c.id < before_id).order_by(a.c.id.desc())
        else:
            query = query.where(a.c.id > after_id).order_by(a.c.id)
        with self._read() as conn:
            rows = [AttemptRow(**row._mapping) for row in conn.execute(query.limit(limit))]
            if not redact:
                return rows
            found = _patterns(conn, deliveries.c.id.in_({r.delivery_id for r in rows}))
        return [replace(r, detail=redacted(r.detail, found.get(r.delivery_id))) for r in rows]

    def progress(self) -> dict[str, dict[str, int]]:
        """Per action: deliveries by status, and ``retrying`` (pending after a failed attempt)."""
        d = deliveries
        retrying = func.sum(case((and_(d.c.status == Status.PENDING, d.c.attempts > 0), 1), else_=0))
        query = select(d.c.action_id, d.c.status, func.count(), retrying).group_by(d.c.action_id, d.c.status)
        out: dict[str, dict[str, int]] = {}
        with self._read() as conn:
            for action_id, status, count, again in conn.execute(query):
                counts = out.setdefault(action_id, {})
                counts[status] = int(count)
                counts["retrying"] = counts.get("retrying", 0) + int(again or 0)
        return out

    def sent_since(self, since: dt.datetime) -> dict[str, int]:
        """Letters sent per action since then (attempts that ended ``sent``)."""
        a = attempts
        query = (
            select(a.c.action_id, func.count())
            .where(a.c.finished_at >= since, a.c.outcome == "sent")
            .group_by(a.c.action_id)
        )
        with self._read() as conn:
            return {action_id: int(n) for action_id, n in conn.execute(query)}

    def failure_reasons(
        self, action_id: str, limit: int = 20, *, redact: bool = False
    ) -> list[tuple[str, str, int]]:
        """Failed deliveries of an action grouped by channel and reason, most common first.
        ``redact``: a reason that names a supporter names one of its group, whose identical
        replies quoted the same name: it is cut out as one of them."""
        d = deliveries
        reason = func.coalesce(d.c.last_error, "")
        query = (
            select(d.c.channel, reason, func.count(), func.min(d.c.id))
            .where(d.c.action_id == action_id, d.c.status == Status.FAILED)
            .group_by(d.c.channel, reason)
            .order_by(func.count().desc())
            .limit(limit)
        )
        with self._read() as conn:
            rows = [(str(c), str(r), int(n), int(i)) for c, r, n, i in conn.execute(query)]
            found = _patterns(conn, d.c.id.in_({i for *_, i in rows})) if redact else {}
        return [(c, redacted(r, found.get(i)), n) for c, r, n, i in rows]

    def failed_deliveries(
        self, action_id: str, limit: int = 50, *, redact: bool = False
    ) -> list[tuple[int, str, str, str]]:
        """Recent failed deliveries: id, target, channel, reason (to requeue one by one)."""
        d = deliveries
        query = (
            select(d.c.id, d.c.target_id, d.c.channel, func.coalesce(d.c.last_error, ""))
            .where(d.c.action_id == action_id, d.c.status == Status.FAILED)
            .order_by(d.c.updated_at.desc())
            .limit(limit)
        )
        with self._read() as conn:
            rows = [(int(i), str(t), str(c), str(r)) for i, t, c, r in conn.execute(query)]
            found = _patterns(conn, d.c.id.in_({i for i, *_ in rows})) if redact else {}
        return [(i, t, c, redacted(r, found.get(i))) for i, t, c, r in rows]

    def outcome_counts(self) -> list[tuple[str, str, str, int]]:
        """Attempts by action, channel and outcome (for /metrics)."""
        a = attempts
        query = select(a.c.action_id, a.c.channel, a.c.outcome, func.count()).group_by(
            a.c.action_id, a.c.channel, a.c.outcome
        )
        with self._read() as conn:
            return [(str(x), str(c), str(o), int(n)) for x, c, o, n in conn.execute(query)]

    def _seconds(self) -> ColumnElement[float]:
        """An attempt's duration in seconds (finished_at - started_at), computed by the database."""
        return seconds_between(self.engine, attempts.c.started_at, attempts.c.finished_at)

    def attempt_latency(self, buckets: Sequence[float]) -> dict[str, Latency]:
        """Per channel, how long the dispatcher's own attempts took (an SMTP conversation, a
        fax submission), counted into ``buckets`` (upper bounds, ascending) by the database.

        A fax's time at its provider (the rows its final word adds) and interrupted attempts
        (no duration known) are left out. One read, but it scans the whole attempts table (no
        index holds both timestamps): see bench/dashboard_scale.py for its cost.
        """
        a = attempts
        # Rows of a provider's final word get no duration (NULL: not counted). Kept out by CASE,
        # not WHERE: an OR there lets SQLite walk two indexes with a lookup per row.
        own = or_(a.c.provider.is_(None), a.c.outcome == Outcome.SUBMITTED)
        seconds = case((own, self._seconds())).label("seconds")
        rows = select(a.c.channel, seconds).where(a.c.outcome != Outcome.INTERRUPTED)
        # The LIMIT (never reached) keeps the database from merging this subquery into the outer
        # one (SQLite's flattening, PostgreSQL's pull-up), which would compute each duration once
        # per bucket instead of once: four times slower with ten buckets.
        timed = rows.limit(2**62).subquery()
        query = select(
            timed.c.channel,
            func.count(timed.c.seconds),
            func.coalesce(func.sum(timed.c.seconds), 0.0),
            *(func.sum(case((timed.c.seconds <= bound, 1), else_=0)) for bound in buckets),
        ).group_by(timed.c.channel)
        with self._read() as conn:
            return {
                str(channel): Latency(tuple(int(n or 0) for n in within), int(count), float(total))
                for channel, count, total, *within in conn.execute(query)
            }

    def explain(
        self, delivery_id: int, now: dt.datetime, context: Context, *, redact: bool = False
    ) -> Explanation | None:
        """Why this letter is where it is (see ``explain``); None: no such delivery.
        ``redact``: without its supporter, in the answer and in the replies quoted."""
        with self._read() as conn:
            return explain(conn, delivery_id, now, context, redact=redact)

    def find_delivery(self, action_id: str, target_id: str, email: str) -> list[int]:
        """The letters (one per channel) of this supporter to this target in this action."""
        d, s = deliveries, supporters
        query = (
            select(d.c.id)
            .join(s, s.c.id == d.c.supporter_id)
            .where(d.c.action_id == action_id, d.c.target_id == target_id, s.c.email == stored_email(email))
            .order_by(d.c.id)
        )
        with self._read() as conn:
            return [int(i) for i in conn.scalars(query)]

    def fax_failures(self) -> list[tuple[str, str, int]]:
        """Fax attempts that failed or wait for a retry, by provider and the failure their detail
        starts with ("busy: ...", "gave up after 3 attempts: busy: ..."); ``other`` for the rest.
        A submission the provider refused has no provider recorded: ``unknown``.
        Scans the attempts of the channels with a provider (the attempts table: no index on channel
        and outcome)."""
        a = attempts
        word = case(
            *(
                (
                    or_(
                        a.c.detail == failure.value,
                        a.c.detail.like(f"{failure.value}:%"),
                        a.c.detail.like(gave_up("%", f"{failure.value}%")),
                    ),
                    failure.value,
                )
                for failure in Failure
            ),
            else_="other",
        ).label("failure")
        provider = func.coalesce(a.c.provider, "unknown").label("fax_provider")
        query = (
            select(provider, word, func.count())
            .where(
                a.c.channel.in_(capabilities.named(lambda c: c.provider)),
                a.c.outcome.in_([Outcome.RETRY, Outcome.FAILED]),
            )
            .group_by(provider, word)
            .order_by(provider, word)
        )
        with self._read() as conn:
            return [(str(p), str(w), int(n)) for p, w, n in conn.execute(query)]


def _patterns(conn: Connection, letters: ColumnElement[bool]) -> dict[int, re.Pattern[str] | None]:
    """What names the supporter of each of these letters (by delivery id) in a reply."""
    d, s = deliveries, supporters
    query = select(d.c.id, s.c.email, s.c.name, s.c.city).join(s, s.c.id == d.c.supporter_id).where(letters)
    return _compiled((int(i), (e, n, c)) for i, e, n, c in conn.execute(query))


def _compiled(people: Iterable[tuple[int, tuple[str, str, str]]]) -> dict[int, re.Pattern[str] | None]:
    cache: dict[tuple[str, str, str], re.Pattern[str] | None] = {}
    out = {}
    for delivery, person in people:
        if person not in cache:  # one supporter's letters: one pattern
            cache[person] = person_pattern(*person)
        out[delivery] = cache[person]
    return out
