"""Writing consents: granted, changed, re-given after a revocation, and their events.

A consent row is never changed in place: the planner reads consents by a watermark on their
ids, so a change ends the old row and adds a new one, which the planner then plans afresh.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Select,
    and_,
    delete,
    func,
    insert,
    literal,
    select,
    union_all,
    update,
)

from dispatcher.store import Status, SupporterRecord, Terms
from dispatcher.store.consent import allows, current
from dispatcher.store.engine import dialect_insert
from dispatcher.store.reasons import Reason
from dispatcher.store.schema import consent_events, consents, deliveries, personal_words, supporters

UNSENT = (Status.PENDING.value, Status.SENDING.value)
# Why a letter was cancelled when the consent it relied on ended.
WITHDRAWN = Reason.WITHDRAWN.value
LAPSED = Reason.LAPSED.value
NARROWED = Reason.NARROWED.value
ENDINGS = (WITHDRAWN, LAPSED, NARROWED)
CLOSED_BY_STAFF = Reason.CLOSED_BY_STAFF.value  # what a reopen takes back
# What a consent row carries over when it is renewed unchanged.
COPIED = tuple(c.name for c in consents.columns if c.name not in ("id", "ended_at", "revoked_at"))


def upsert_supporters(conn: Connection, batch: Sequence[SupporterRecord], now: dt.datetime) -> int:
    """Add or update the supporters, then record their consents."""
    upsert = dialect_insert(conn, supporters)
    kept = {k: upsert.excluded[k] for k in ("name", "language", "city", "country", "updated_at")}
    # A record without a receipts choice leaves the supporter's as it is.
    for given in (True, False):
        rows = [_supporter_row(r, now) for r in batch if (r.receipts is not None) == given]
        changes = {**kept, "receipts": upsert.excluded.receipts} if given else kept
        if rows:
            conn.execute(upsert.on_conflict_do_update(index_elements=["email"], set_=changes), rows)
    s = supporters
    found = conn.execute(select(s.c.email, s.c.id).where(s.c.email.in_([r.email for r in batch])))
    grant(conn, batch, {email: int(supporter_id) for email, supporter_id in found}, now)
    return len(batch)


def _supporter_row(r: SupporterRecord, now: dt.datetime) -> dict[str, Any]:
    return {
        "email": r.email,
        "name": r.name,
        "language": r.language,
        "city": r.city,
        "country": r.country,
        "receipts": r.receipts or "off",
        "created_at": now,
        "updated_at": now,
    }


def terms_columns(terms: Terms) -> dict[str, Any]:
    return {
        "channels": ",".join(terms.channels) or "*",
        "languages": " ".join(terms.languages) or "*",
        "name_display": terms.name_display,
        "replies": terms.replies,
        "monthly_cap": terms.monthly_cap,
        "expires_at": terms.expires_at,
        "text_version": terms.text_version,
    }


@dataclass
class _Held:
    """What the store already has for some supporters: live consents by supporter and scope,
    and when each supporter last withdrew consent (a revocation withdraws every scope)."""

    live: dict[int, dict[str, Any]] = field(default_factory=dict)
    revoked: dict[int, dt.datetime] = field(default_factory=dict)


def _held(conn: Connection, supporter_ids: Sequence[int]) -> _Held:
    c = consents
    rows = conn.execute(select(c).where(c.c.supporter_id.in_(supporter_ids), c.c.ended_at.is_(None)))
    held = _Held()
    for row in rows:
        if row.revoked_at is None:
            held.live.setdefault(row.supporter_id, {})[row.scope] = row
        else:
            before = held.revoked.get(row.supporter_id, row.revoked_at)
            held.revoked[row.supporter_id] = max(before, row.revoked_at)
    return held


def _same(row: Any, wanted: Mapping[str, Any]) -> bool:
    return all(getattr(row, name) == value for name, value in wanted.items())


def grant(
    conn: Connection, records: Sequence[SupporterRecord], ids: Mapping[str, int], now: dt.datetime
) -> None:
    """Record the consents in ``records`` (``ids``: email → supporter id). A consent given
    before the supporter last withdrew theirs is old news (a CRM export that still lists the
    person) and is skipped; one given after is a new consent."""
    # One writer per supporter at a time (PostgreSQL; SQLite has one writer anyway): a revoke
    # racing a change could otherwise miss the consent the change adds. Locked in one order.
    people = sorted(ids.values())
    conn.execute(
        select(supporters.c.id).where(supporters.c.id.in_(people)).order_by(supporters.c.id).with_for_update()
    )
    held = _held(conn, people)
    fresh: list[tuple[dict[str, Any], SupporterRecord]] = []
    given: list[int] = []  # supporters with a new consent
    for record in records:
        person = ids[record.email]
        terms = terms_columns(record.terms)
        revoked = held.revoked.get(person)
        if revoked is not None and revoked >= record.opted_in_at:
            continue
        theirs, before = held.live.get(person, {}), len(fresh)
        changed: dict[str, dict[str, Any]] = {}
        for scope in record.scopes:
            row = _consent_row(person, scope, record, terms)
            if scope not in theirs:
                fresh.append((row, record))
            # A row older than the consent held (a nightly CRM export after the person changed
            # their terms on the form) is not a change.
            elif not _same(theirs[scope], terms) and record.opted_in_at >= theirs[scope].opted_in_at:
                changed[scope] = row
        if changed:
            _renew(conn, list(theirs.values()), changed, record, now)
        if changed or len(fresh) > before:
            given.append(person)
        _words(conn, person, record.words, now)
    if fresh:
        # One executemany; the events are then written from the new rows by the database
        # (RETURNING in a given order made SQLite insert row by row, and an event per row sent
        # from Python tripled PostgreSQL's import time).
        floor = conn.scalar(select(func.max(consents.c.id))) or 0
        conn.execute(insert(consents), [r for r, _ in fresh])
        _granted_events(conn, people, floor)
    if given:
        _unblock(conn, given)


def _unblock(conn: Connection, people: Sequence[int]) -> None:
    """A consent given (again) can cover letters cancelled when an earlier one ended: those
    never tried are dropped, so the planner plans them afresh under the new consent."""
    d = deliveries
    never_tried = and_(d.c.status == Status.CANCELLED, d.c.attempts == 0, d.c.last_error.in_(ENDINGS))
    conn.execute(delete(d).where(d.c.supporter_id.in_(people), never_tried))


def _consent_row(
    person: int, scope: str, record: SupporterRecord, terms: Mapping[str, Any]
) -> dict[str, Any]:
    return {
        "supporter_id": person,
        "scope": scope,
        "source": record.source,
        "opted_in_at": record.opted_in_at,
        "confirmed_at": record.confirmed_at or record.opted_in_at,
        **terms,
    }


def _renew(
    conn: Connection,
    live: Sequence[Any],
    changed: Mapping[str, dict[str, Any]],
    record: SupporterRecord,
    now: dt.datetime,
) -> None:
    """Replace every live consent of a supporter whose terms changed: the changed scopes with
    their new terms, the others as they were. New rows have ids above every watermark, so the
    planner plans the supporter afresh, whichever of their consents covers a letter."""
    for old in live:
        row = changed.get(old.scope) or {k: getattr(old, k) for k in COPIED}
        # The old row ends first: only one row per scope may be live.
        conn.execute(update(consents).where(consents.c.id == old.id).values(ended_at=now))
        new = int(conn.execute(insert(consents).values(row).returning(consents.c.id)).scalar_one())
        allowed = () if row["channels"] == "*" else tuple(row["channels"].split(","))
        _move_unsent(conn, old.id, new, allowed, now)
        if old.scope in changed:
            conn.execute(insert(consent_events), [_event(row, new, record, "changed", now)])


def successor() -> Select[Any]:
    """For a letter (correlated on ``deliveries``) whose consent ended: the supporter's live
    consent of the same scope, if it allows the letter's channel."""
    d, old, new = deliveries, consents.alias("old"), consents.alias("new")
    scope = select(old.c.scope).where(old.c.id == d.c.consent_id).correlate_except(old).scalar_subquery()
    mine = and_(new.c.supporter_id == d.c.supporter_id, new.c.scope == scope)
    # Current, not live: at most one row (the partial unique index), and an expired one is
    # the sweep's to cancel the letter for, as it would on the letter's own consent.
    return select(new.c.id).where(mine, current(new), allows(d.c.channel, new)).correlate_except(new)


def _move_unsent(conn: Connection, old: int, new: int, channels: Sequence[str], now: dt.datetime) -> None:
    """Letters of the old consent never tried are dropped, for the planner to plan again from
    the supporter's new consents; ones already tried keep their history: moved to the new
    consent if it allows their channel (a fax at its provider too), cancelled if not. A fax
    still at its provider on a withdrawn channel stays with the old consent: if it comes back
    to be tried again, the sweep cancels it."""
    d = deliveries
    mine = d.c.consent_id == old
    conn.execute(delete(d).where(mine, d.c.status == Status.PENDING, d.c.attempts == 0))
    moving = and_(mine, d.c.status.in_((*UNSENT, Status.SUBMITTED.value)))
    kept = moving if not channels else and_(moving, d.c.channel.in_(channels))
    conn.execute(update(d).where(kept).values(consent_id=new, updated_at=now))
    cancel_unsent(conn, mine, NARROWED, now)


def cancel_unsent(conn: Connection, which: ColumnElement[bool], why: str, now: dt.datetime) -> int:
    """Cancel these letters if not sent yet (pending, or held by a running dispatcher, which
    hands them back); how many."""
    d = deliveries
    unsent = update(d).where(which, d.c.status.in_(UNSENT))
    return int(
        conn.execute(unsent.values(status=Status.CANCELLED.value, last_error=why, updated_at=now)).rowcount
    )


def _granted_events(conn: Connection, people: Sequence[int], floor: int) -> None:
    """A granted then a confirmed event for each consent of these supporters above ``floor``
    (ids are not reused, and the supporters' rows are locked: these are the ones just added)."""
    c = consents
    version = func.coalesce(func.nullif(c.c.text_version, ""), "-")
    detail = (c.c.scope + "; text version " + version).label("detail")
    added = and_(c.c.supporter_id.in_(people), c.c.id > floor)
    both = union_all(
        *(
            select(c.c.supporter_id, c.c.id.label("consent_id"), at.label("at"), literal(kind).label("kind"))
            .add_columns(c.c.source, detail, literal(n).label("n"))
            .where(added)
            for n, (kind, at) in enumerate((("granted", c.c.opted_in_at), ("confirmed", c.c.confirmed_at)))
        )
    ).subquery()
    columns = ["supporter_id", "consent_id", "at", "kind", "source", "detail"]
    ordered = select(*(both.c[k] for k in columns)).order_by(both.c.consent_id, both.c.n)
    conn.execute(insert(consent_events).from_select(columns, ordered))


def _event(
    row: Mapping[str, Any], consent: int, record: SupporterRecord, kind: str, now: dt.datetime
) -> dict[str, Any]:
    at = {"granted": row["opted_in_at"], "confirmed": row["confirmed_at"]}.get(kind, now)
    detail = f"{row['scope']}; text version {record.terms.text_version or '-'}"
    return {
        "supporter_id": row["supporter_id"],
        "consent_id": consent,
        "at": at,
        "kind": kind,
        "source": record.source,
        "detail": detail,
    }


def _words(conn: Connection, person: int, words: Mapping[str, str], now: dt.datetime) -> None:
    if not words:
        return
    stmt = dialect_insert(conn, personal_words)
    stmt = stmt.on_conflict_do_update(
        index_elements=["supporter_id", "action_id"],
        set_={"words": stmt.excluded.words, "updated_at": stmt.excluded.updated_at},
    )
    conn.execute(
        stmt,
        [{"supporter_id": person, "action_id": a, "words": w, "updated_at": now} for a, w in words.items()],
    )


def revoke_event(conn: Connection, person: int, source: str, now: dt.datetime) -> None:
    conn.execute(
        insert(consent_events).values(supporter_id=person, at=now, kind="revoked", source=source, detail="")
    )
