"""What a consent allows, as SQL predicates: the one spelling of the rule.

A consent row (schema.consents) is *current* until withdrawn (``revoked_at``) or replaced by a
change of terms (``ended_at``), *live* while also not past ``expires_at``; it *allows* a channel
(``channels``: comma-separated, "*" any), the supporter *signs* a letter's language
(``languages``: space-separated BCP 47 tags, "*" any), and it was *confirmed* (the form's link
followed; imports and the API vouch for it). Who uses which, and why only that part:

- planning (a new letter): live, confirmed, allows the letter's channel, signs its language;
- claiming, what is due next, requeue and revive (a letter already planned): live only. The
  channel and language were judged when it was planned, and a change of terms ends the consent
  (the letter then moves to the successor, or is cancelled: ``mandates``); confirmed_at is never
  cleared once set;
- the supporters due a receipt: any live consent (a lapsed one stands no more than a withdrawn);
- the successor of an ended consent: current, and allows the letter's channel (see ``current``);
- a failed fax's fallback: not withdrawn, not expired, allows the fallback channel; an ended
  consent is left to the sweep, which moves the new letter to the successor (``people.lapse``).

Times are compared with the caller's ``now`` (each writer's clock), as everywhere in the store.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import ColumnElement, FromClause, and_, exists, literal, or_, true

from dispatcher.store.schema import consents, deliveries

Consents = FromClause  # the consents table or an alias of it


def current(c: Consents = consents) -> ColumnElement[bool]:
    """Neither withdrawn nor replaced. Exactly the condition of the partial unique index
    ``uq_consents_live_scope`` (migration 0006, ``schema.LIVE_CONSENT``: ``revoked_at IS NULL
    AND ended_at IS NULL``), in the same two terms: SQLite uses a partial index only for a query
    whose WHERE contains its terms as written, and PostgreSQL must prove them from the query's.
    Both use it for the successor's lookup, and PostgreSQL may for the claim's consent lookup
    (tests/store/test_consent.py explains both). The index keeps one current row per supporter and
    scope, which ``mandates.successor`` relies on (a scalar subquery).

    Without the expiry: the successor's expiry is the sweep's and the claim's to judge, not a
    reason to leave a letter on its ended consent."""
    return and_(c.c.revoked_at.is_(None), c.c.ended_at.is_(None))


def unexpired(now: dt.datetime, c: Consents = consents) -> ColumnElement[bool]:
    return or_(c.c.expires_at.is_(None), c.c.expires_at > now)


def live(now: dt.datetime, c: Consents = consents) -> ColumnElement[bool]:
    """Current and not expired: nothing goes out on a consent that is not live."""
    return and_(current(c), unexpired(now, c))


def state(
    revoked_at: dt.datetime | None,
    ended_at: dt.datetime | None,
    expires_at: dt.datetime | None,
    now: dt.datetime,
) -> str:
    """A consent read back (an export, a report) in one word, as ``live`` judges it in SQL."""
    if revoked_at is not None:
        return "revoked"
    if ended_at is not None:
        return "ended"
    return "expired" if expires_at is not None and expires_at <= now else "live"


def withdrawn(c: Consents = consents) -> ColumnElement[bool]:
    return c.c.revoked_at.is_not(None)


def confirmed(c: Consents = consents) -> ColumnElement[bool]:
    return c.c.confirmed_at.is_not(None)


def allows(channel: str | ColumnElement[str], c: Consents = consents) -> ColumnElement[bool]:
    """The consent covers letters by ``channel`` (a name, or a column such as the letter's)."""
    # Stored as "email,fax": a whole name between commas, not one inside another ("mail").
    return or_(c.c.channels == "*", ("," + c.c.channels + ",").contains(literal(",") + channel + ","))


def signs(language: str | None, c: Consents = consents) -> ColumnElement[bool]:
    """The supporter signs letters written in ``language``; None (not known): any consent."""
    if language is None:
        return true()
    return or_(c.c.languages == "*", (" " + c.c.languages + " ").contains(f" {language} "))


def plannable(now: dt.datetime, channel: str, language: str | None) -> ColumnElement[bool]:
    """A consent a new letter by ``channel`` in ``language`` may be planned under."""
    return and_(live(now), confirmed(), allows(channel), signs(language))


def letter_live(now: dt.datetime) -> ColumnElement[bool]:
    """The letter's (correlated on ``deliveries``) consent is live. A letter past its retention
    period has no consent left, so never qualifies."""
    c = consents
    return exists().where(c.c.id == deliveries.c.consent_id, live(now))
