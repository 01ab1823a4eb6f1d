"""What a consent allows, as SQL predicates."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import and_, exists, or_
from sqlalchemy.sql import ColumnElement

from dispatcher.store.schema import consents, deliveries


def consented(now: dt.datetime) -> ColumnElement[bool]:
    """The letter's consent still allows it: not withdrawn, ended or lapsed. A letter past its
    retention period has no consent left, so never qualifies."""
    c = consents
    live = and_(
        c.c.revoked_at.is_(None), c.c.ended_at.is_(None), or_(c.c.expires_at.is_(None), c.c.expires_at > now)
    )
    return exists().where(c.c.id == deliveries.c.consent_id, live)
