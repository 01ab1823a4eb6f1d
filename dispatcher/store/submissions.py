"""Faxes between the provider's acceptance and its final word, in SQL.

A fax is ``submitted`` once its provider accepted the job: the lease is released, and the
delivery waits for the provider's final word (a verified webhook, or polling), found by the
provider's job id. Applying that word is idempotent: a duplicate finds the delivery no longer
``submitted``; a late event about a job since resubmitted finds the job only in the attempt log;
an event that outruns our own commit of the submission is kept in ``early_events`` and applied
in the transaction that records the submission.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from sqlalchemy import Connection, delete, literal, select, update

from dispatcher import capabilities
from dispatcher.store import AttemptResult, Outcome, ProviderEvent, Resolution, Retry, Status, quota
from dispatcher.store.consent import allows, unexpired, withdrawn
from dispatcher.store.engine import dialect_insert
from dispatcher.store.failures import Failure
from dispatcher.store.leases import end_each
from dispatcher.store.reasons import gave_up
from dispatcher.store.schema import attempts, consents, deliveries, early_events


def record_submitted(conn: Connection, worker: str, results: Sequence[AttemptResult], retry: Retry) -> None:
    rows = [r for r in results if r.submission is not None]
    columns = [
        {
            "id": r.delivery_id,
            "updated_at": r.finished_at,
            "provider": r.submission.provider,
            "provider_job": r.submission.job_id,
            "submitted_at": r.finished_at,
            "language": r.language,
        }
        for r in rows
        if r.submission is not None
    ]
    end_each(conn, Status.SUBMITTED, columns, worker)
    for r in rows:
        assert r.submission is not None
        _apply_early(conn, r.submission.provider, r.submission.job_id, worker, retry)


def _apply_early(conn: Connection, provider: str, job_id: str, by: str, retry: Retry) -> None:
    e = early_events
    found = conn.execute(
        select(e).where(e.c.provider == provider, e.c.job_id == job_id).order_by(e.c.id)
    ).all()
    for row in found:
        event = ProviderEvent(
            provider,
            job_id,
            row.delivered,
            row.at,
            row.reason,
            row.failure,
            row.retry_at,
            row.pages,
            row.duration,
        )
        resolve(conn, event, by, retry)
    if found:
        conn.execute(delete(e).where(e.c.provider == provider, e.c.job_id == job_id))


def resolve(conn: Connection, event: ProviderEvent, by: str, retry: Retry) -> Resolution:
    """The provider's word on a job, applied to every letter it carried (a digest fax carries
    several, sending/digest.py)."""
    d, a = deliveries, attempts
    rows = conn.execute(
        select(
            d.c.id,
            d.c.status,
            d.c.action_id,
            d.c.target_id,
            d.c.channel,
            d.c.submitted_at,
            d.c.attempts,
            d.c.fallback,
        )
        .where(d.c.provider == event.provider, d.c.provider_job == event.job_id)
        .order_by(d.c.id)
        .with_for_update()
    ).all()
    if not rows:
        if conn.scalar(select(a.c.id).where(a.c.provider == event.provider, a.c.job_id == event.job_id)):
            return Resolution.IGNORED  # the delivery was submitted again since, under a new job
        conn.execute(early_events.insert().values(_early_row(event)))
        return Resolution.EARLY
    waiting = [row for row in rows if row.status == Status.SUBMITTED]
    for row in waiting:
        _apply(conn, row, event, by, retry)
    return Resolution.APPLIED if waiting else Resolution.IGNORED


def _apply(conn: Connection, row: Any, event: ProviderEvent, by: str, retry: Retry) -> None:
    d, a = deliveries, attempts
    outcome, later, detail = _outcome(event, row.attempts, retry)
    status = {Outcome.SENT: Status.SENT, Outcome.RETRY: Status.PENDING}.get(outcome, Status.FAILED)
    withdrawn = event.failure == Failure.CANCELLED
    conn.execute(
        update(d)
        .where(d.c.id == row.id)
        .values(
            status=status.value,
            sent_at=event.at if event.delivered else None,
            next_attempt_at=later or event.at,
            last_error=None if event.delivered else detail,
            updated_at=event.at,
            # Withdrawn by us (a pause) is not an attempt at the number.
            attempts=d.c.attempts - 1 if withdrawn else d.c.attempts,
        )
    )
    if status is Status.FAILED:
        quota.refund(conn, [row.id])
    if status is Status.FAILED and row.fallback:
        detail += fall_back(conn, [row.id], event.at)
    destination = conn.scalar(
        select(a.c.destination).where(a.c.provider == event.provider, a.c.job_id == event.job_id).limit(1)
    )
    conn.execute(
        a.insert().values(
            delivery_id=row.id,
            action_id=row.action_id,
            target_id=row.target_id,
            channel=row.channel,
            started_at=row.submitted_at or event.at,
            finished_at=event.at,
            outcome=outcome.value,
            detail=detail,
            worker=by,
            provider=event.provider,
            job_id=event.job_id,
            destination=destination,
            pages=event.pages,
            duration=event.duration,
        )
    )


def _outcome(event: ProviderEvent, attempts: int, retry: Retry) -> tuple[Outcome, dt.datetime | None, str]:
    """What the provider's word makes of the delivery: the outcome, when to try again, why."""
    if event.delivered:
        return Outcome.SENT, None, event.reason
    failure = _failure(event.failure)
    detail = f"{failure.value}: {event.reason}" if event.reason else failure.value
    if failure is Failure.CANCELLED:
        return Outcome.RETRY, event.at, detail  # withdrawn by a pause: waits for the resume
    later = retry(attempts, event.at) if failure.retryable else None
    if later is not None:
        return Outcome.RETRY, max(later, event.retry_at or later), detail
    if failure.retryable:
        detail = gave_up(attempts, detail)
    return Outcome.FAILED, None, detail


def _failure(value: str | None) -> Failure:
    try:
        return Failure(value or "")
    except ValueError:
        return Failure.PROVIDER  # a reason we have no word for is the provider's to explain


def fall_back_failed(conn: Connection, results: Sequence[AttemptResult]) -> list[AttemptResult]:
    """Falls back each letter that failed for good (a fax to a bad number): the same results,
    their log detail saying which fell back."""
    out = []
    for r in results:
        if r.outcome is Outcome.FAILED and capabilities.of(r.channel).falls_back:
            r = replace(r, detail=r.detail + fall_back(conn, [r.delivery_id], r.finished_at))
        out.append(r)
    return out


def fall_back(conn: Connection, delivery_ids: Sequence[int], now: dt.datetime) -> str:
    """After a fax's last failure, the same letter to the same target by its fallback channel
    (unless that delivery exists already), if the supporter's consent covers that channel.
    Returns the note for the attempt log."""
    d, c = deliveries, consents
    fields = ("action_id", "supporter_id", "target_id", "consent_id")
    chosen = select(
        *(d.c[f] for f in fields),
        d.c.fallback,
        literal(Status.PENDING.value),
        literal(now, d.c.next_attempt_at.type),
        literal(now, d.c.created_at.type),
        literal(now, d.c.updated_at.type),
    ).where(
        d.c.id.in_(delivery_ids),
        d.c.fallback.is_not(None),
        c.c.id == d.c.consent_id,
        # Not live: a consent ended by a change of terms is left to the sweep, which moves the
        # new letter to its successor if that allows the channel (``people.lapse``).
        ~withdrawn(),
        unexpired(now),
        allows(d.c.fallback),
    )
    columns = [*fields, "channel", "status", "next_attempt_at", "created_at", "updated_at"]
    insert = dialect_insert(conn, d).from_select(columns, chosen).on_conflict_do_nothing()
    made = conn.execute(insert.returning(d.c.channel)).scalars().all()  # rowcount: -1 on psycopg 3
    return "".join(f"; falling back to {channel}" for channel in made)


EARLY_FIELDS = ("delivered", "at", "reason", "failure", "retry_at", "pages", "duration")


def _early_row(event: ProviderEvent) -> dict[str, object]:
    return {k: getattr(event, k) for k in ("provider", "job_id", *EARLY_FIELDS)}
