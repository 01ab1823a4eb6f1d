"""Supporters' monthly caps, enforced for the whole deployment at claim time.

A letter is charged to its supporter's month once, when first claimed, by a conditional update
of a shared counter: on PostgreSQL the row lock makes a second worker re-read the count after
the first commits, so two workers cannot both take the last place; SQLite serialises writers.
A letter over the cap waits (and expires if its deadline comes first); one that finally fails
gives its place back.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence

from sqlalchemy import Connection, and_, select, update

from dispatcher.store.engine import dialect_insert
from dispatcher.store.reasons import Reason
from dispatcher.store.schema import deliveries, letter_quota

RECHECK = dt.timedelta(hours=1)


def month_of(now: dt.datetime) -> str:
    return now.astimezone(dt.UTC).strftime("%Y-%m")


def next_month(now: dt.datetime) -> dt.datetime:
    first = now.astimezone(dt.UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    return (first + dt.timedelta(days=32)).replace(day=1)


def charge(
    conn: Connection, ids: Sequence[int], capped: Mapping[int, tuple[int, int]], now: dt.datetime
) -> list[int]:
    """The ids that may be sent now, in their order; the others wait for next month. ``capped``:
    of the letters not charged yet whose consent has a monthly cap, the supporter and the cap
    (the claim reads them with the letters: a query of their own was a tenth of a round)."""
    # Counters are locked in one order by every worker, so two claims cannot deadlock.
    rows = sorted((capped[i][0], i, capped[i][1]) for i in ids if i in capped)
    if not rows:
        return list(ids)
    d, q = deliveries, letter_quota
    month = month_of(now)
    start = dialect_insert(conn, q).on_conflict_do_nothing()
    people = sorted({supporter for supporter, _, _ in rows})
    # One multi-row INSERT, not an executemany (a pipeline, see ``SqlStore._spend``).
    conn.execute(start.values([{"supporter_id": p, "month": month, "used": 0} for p in people]))
    over: set[int] = set()
    for supporter, delivery, cap in rows:
        took = conn.execute(
            update(q)
            .where(q.c.supporter_id == supporter, q.c.month == month, q.c.used < cap)
            .values(used=q.c.used + 1)
        ).rowcount
        if not took:
            over.add(delivery)
    charged = [delivery for _, delivery, _ in rows if delivery not in over]
    if charged:
        conn.execute(update(d).where(d.c.id.in_(charged)).values(charged=month))
    if over:
        waiting = Reason.MONTHLY_CAP.value
        # Looked at again hourly: a letter that fails gives its place back within the month.
        again = min(next_month(now), now + RECHECK)
        later = update(d).where(d.c.id.in_(over))
        conn.execute(later.values(next_attempt_at=again, last_error=waiting))
    return [i for i in ids if i not in over]


def refund(conn: Connection, ids: Sequence[int]) -> None:
    """Give back the places of letters that finally failed: they were not sent in anyone's name."""
    if not ids:
        return
    d, q = deliveries, letter_quota
    rows = conn.execute(
        select(d.c.id, d.c.supporter_id, d.c.charged)
        .where(d.c.id.in_(list(ids)), d.c.charged.is_not(None))
        .order_by(d.c.supporter_id, d.c.id)
    ).all()
    for row in rows:
        mine = and_(q.c.supporter_id == row.supporter_id, q.c.month == row.charged, q.c.used > 0)
        conn.execute(update(q).where(mine).values(used=q.c.used - 1))
    if rows:
        conn.execute(update(d).where(d.c.id.in_([r.id for r in rows])).values(charged=None))
