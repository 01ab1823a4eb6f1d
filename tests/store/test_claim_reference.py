"""The claim against a straightforward reference, on random sets of groups (SQLite and PostgreSQL).

The store's claim fetches every group's due letters in one statement and writes back only the
buckets it spent; the reference reads each group's letters with a query of its own, keeps every
bucket itself, and hands out with the same pacing arithmetic. Both must claim the same letters (by
group and due time: letters due at the same moment are interchangeable) and call the same
groups dry, round after round, with letters leased, consents lapsing and groups with nothing.
"""

from __future__ import annotations

import datetime as dt
import random
import re
from collections import Counter
from typing import Any

import pytest
from sqlalchemy import Engine, event, select, update

from dispatcher import pacing
from dispatcher.models import ClaimGroup, GroupId, SupporterRecord
from dispatcher.pacing import Limits
from dispatcher.store import ClaimRequest, Status, Store
from dispatcher.store.consent import live
from dispatcher.store.schema import consents, deliveries
from tests.store.test_store_contract import LEASE, NOW

Outcome = tuple[Counter[tuple[GroupId, dt.datetime]], frozenset[GroupId]]


def campaign(store: Store, rng: random.Random) -> list[ClaimGroup]:
    """Random actions × targets, letters planned in batches due from half an hour ago to half an
    hour ahead, some consents lapsed; the groups asked include some with nothing planned."""
    groups, person = [], 0
    for a in range(rng.randint(1, 6)):
        pairs = [(f"t{t}", "email") for t in range(rng.randint(1, 3))]
        for _ in range(rng.randint(1, 3)):
            n = rng.randint(0, 6)
            store.import_supporters([supporter(person + i, f"a{a}") for i in range(n)], NOW)
            person += n
            store.plan(f"a{a}", pairs, NOW + dt.timedelta(minutes=rng.randint(-30, 30)))
        # Officials shared across actions share a bucket: t0 is the same person everywhere.
        groups += [
            ClaimGroup(f"a{a}", t, c, (f"email:{t if t == 't0' else f'a{a}-{t}'}@x.org",)) for t, c in pairs
        ]
    groups.append(ClaimGroup("none", "t0", "email", ("email:nobody@x.org",)))
    lapse(store.engine, rng)  # type: ignore[attr-defined]
    return rng.sample(groups, len(groups))


def supporter(i: int, scope: str) -> SupporterRecord:
    return SupporterRecord(
        f"p{i}@example.net", f"P {i}", "en", "Town", "GB", (scope,), NOW - dt.timedelta(days=1)
    )


def lapse(engine: Engine, rng: random.Random) -> None:
    with engine.begin() as conn:
        ids = list(conn.scalars(select(consents.c.id)))
        gone = rng.sample(ids, len(ids) // 5)
        conn.execute(update(consents).where(consents.c.id.in_(gone)).values(expires_at=NOW - LEASE))


Buckets = dict[str, tuple[float, dt.datetime]]  # the reference's own: level and when last set


def reference(engine: Engine, buckets: Buckets, request: ClaimRequest, now: dt.datetime) -> Outcome:
    """What the claim should take, the plain way: one query per group, and the pacing buckets
    kept here (every one refilled and set each round), not read from the store."""
    d, c, limits = deliveries, consents, request.limits
    groups = list(request.groups)
    keys = {k for g in groups for k in (pacing.GLOBAL, *g.keys)}
    # A bucket first used starts full.
    tokens = {k: pacing.refilled(*buckets.get(k, (limits.of(k)[1], now)), now, *limits.of(k)) for k in keys}
    wanted = pacing.asks(groups, tokens, request.room)
    rows: list[list[Any]] = []
    with engine.connect() as conn:
        for g, n in zip(groups, wanted, strict=True):
            query = (
                select(d.c.next_attempt_at)
                .join(c, c.c.id == d.c.consent_id)
                .where(d.c.action_id == g.action_id, d.c.target_id == g.target_id, d.c.channel == g.channel)
                .where(d.c.status == Status.PENDING, d.c.next_attempt_at <= now, live(now))
                .order_by(d.c.next_attempt_at)
                .limit(n)
            )
            rows.append(list(conn.scalars(query)) if n else [])
    chosen = pacing.allocate(groups, rows, tokens, dict(request.room), request.start)
    buckets.update({k: (level, now) for k, level in tokens.items()})
    dry = frozenset(g.ident for g, n, got in zip(groups, wanted, rows, strict=True) if n and len(got) < n)
    return Counter((groups[i].ident, due) for i, due in chosen), dry


def claimed(store: Store, request: ClaimRequest, now: dt.datetime, worker: str) -> Outcome:
    batch = store.claim(worker, request, now, LEASE)
    engine = store.engine  # type: ignore[attr-defined]
    with engine.connect() as conn:
        due = {
            r.id: r.next_attempt_at
            for r in conn.execute(select(deliveries.c.id, deliveries.c.next_attempt_at))
        }
    return Counter(
        ((c.action_id, c.target_id, c.channel), due[c.delivery_id]) for c in batch.claims
    ), batch.dry


@pytest.mark.parametrize("seed", range(8))
def test_the_claim_takes_what_a_query_per_group_would(store: Store, seed: int) -> None:
    rng = random.Random(seed)
    groups = campaign(store, rng)
    lifted = seed % 4 == 0  # pacing lifted, as for a backlog; otherwise buckets run dry
    limits = (
        Limits(1e6, 1e6, 1e6)
        if lifted
        else Limits(rng.choice([0.5, 2]), rng.choice([1, 3]), rng.choice([4, 50]))
    )
    engine = store.engine  # type: ignore[attr-defined]
    buckets: Buckets = {}
    for round_ in range(5):  # letters leased by earlier rounds, buckets spent and refilling
        now = NOW + dt.timedelta(seconds=round_ * rng.choice([0, 1, 30]))
        asked = rng.sample(groups, rng.randint(1, len(groups)))
        request = ClaimRequest(asked, {"email": rng.randint(1, 12)}, limits, rng.randrange(100))
        expected = reference(engine, buckets, request, now)
        assert claimed(store, request, now, f"w{round_ % 2}") == expected, f"seed {seed}, round {round_}"


def test_a_round_runs_the_same_statements_for_300_groups_as_for_2(store: Store) -> None:
    # The claim's cost must not grow with the groups asked: the same statements, with the groups
    # as parameters (a list of parameters for a bucket IN counts as one). The old claim built a
    # subquery per group, up to 200 to a statement.
    engine = store.engine  # type: ignore[attr-defined]
    seen: list[str] = []
    one_list = re.compile(r"\((?:\?|%\(\w+\)s(?:::\w+)?)(?:, (?:\?|%\(\w+\)s(?:::\w+)?))*\)")

    def record(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        seen.append(one_list.sub("(…)", statement))

    def round_of(n: int) -> list[str]:
        groups = [ClaimGroup(f"a{i}", "t1", "email", (f"email:a{i}@x.org",)) for i in range(n)]
        request = ClaimRequest(groups, {"email": 10}, Limits(1e6, 1e6, 1e6))
        store.claim("w", request, NOW, LEASE)  # the first round adds the buckets
        seen.clear()
        store.claim("w", request, NOW, LEASE)
        return list(seen)

    event.listen(engine, "before_cursor_execute", record)
    try:
        few, many = round_of(2), round_of(300)
    finally:
        event.remove(engine, "before_cursor_execute", record)
    assert few == many
