"""Faxes between the provider's acceptance and its final word, in SQL.

A fax is ``submitted`` once its provider accepted the job: the lease is released, and the
delivery waits for the provider's final word (a verified webhook, or polling), found by the
provider's job id. Applying that word is idempotent: a duplicate finds the delivery no longer
``submitted``; a late event about a job since resubmitted finds the job only in the attempt log;
an event that outruns our own commit of the submission is kept in ``early_events`` and applied
in the transaction that records the submission.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Connection, bindparam, delete, select, update

from dispatcher.store import AttemptResult, Outcome, ProviderEvent, Resolution, Status
from dispatcher.store.schema import attempts, deliveries, early_events


def record_submitted(conn: Connection, worker: str, results: Sequence[AttemptResult]) -> None:
    d = deliveries
    rows = [r for r in results if r.submission is not None]
    if not rows:
        return
    conn.execute(
        update(d)
        .where(d.c.id == bindparam("b_id"), d.c.status == Status.SENDING, d.c.lease_owner == worker)
        .values(
            status=Status.SUBMITTED.value,
            provider=bindparam("b_provider"),
            provider_job=bindparam("b_job"),
            submitted_at=bindparam("b_at"),
            language=bindparam("b_language"),
            lease_owner=None,
            lease_until=None,
            updated_at=bindparam("b_at"),
        ),
        [
            {
                "b_id": r.delivery_id,
                "b_provider": r.submission.provider,
                "b_job": r.submission.job_id,
                "b_at": r.finished_at,
                "b_language": r.language,
            }
            for r in rows
            if r.submission is not None
        ],
    )
    for r in rows:
        assert r.submission is not None
        _apply_early(conn, r.submission.provider, r.submission.job_id, worker)


def _apply_early(conn: Connection, provider: str, job_id: str, by: str) -> None:
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
        resolve(conn, event, by)
    if found:
        conn.execute(delete(e).where(e.c.provider == provider, e.c.job_id == job_id))


def resolve(conn: Connection, event: ProviderEvent, by: str) -> Resolution:
    d, a = deliveries, attempts
    row = conn.execute(
        select(d.c.id, d.c.status, d.c.action_id, d.c.target_id, d.c.channel, d.c.submitted_at)
        .where(d.c.provider == event.provider, d.c.provider_job == event.job_id)
        .with_for_update()
    ).first()
    if row is None:
        if conn.scalar(select(a.c.id).where(a.c.provider == event.provider, a.c.job_id == event.job_id)):
            return Resolution.IGNORED  # the delivery was submitted again since, under a new job
        conn.execute(early_events.insert().values(_early_row(event)))
        return Resolution.EARLY
    if row.status != Status.SUBMITTED:
        return Resolution.IGNORED
    outcome, status = _outcome(event)
    conn.execute(
        update(d)
        .where(d.c.id == row.id)
        .values(
            status=status.value,
            sent_at=event.at if event.delivered else None,
            next_attempt_at=event.retry_at or event.at,
            last_error=None if event.delivered else event.reason,
            updated_at=event.at,
        )
    )
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
            detail=event.reason if not event.failure else f"{event.failure}: {event.reason}",
            worker=by,
            provider=event.provider,
            job_id=event.job_id,
            destination=destination,
            pages=event.pages,
            duration=event.duration,
        )
    )
    return Resolution.APPLIED


def _outcome(event: ProviderEvent) -> tuple[Outcome, Status]:
    if event.delivered:
        return Outcome.SENT, Status.SENT
    if event.retry_at is not None:
        return Outcome.RETRY, Status.PENDING
    return Outcome.FAILED, Status.FAILED


EARLY_FIELDS = ("delivered", "at", "reason", "failure", "retry_at", "pages", "duration")


def _early_row(event: ProviderEvent) -> dict[str, object]:
    return {k: getattr(event, k) for k in ("provider", "job_id", *EARLY_FIELDS)}
