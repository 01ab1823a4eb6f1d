"""Outcomes: attempts recorded, providers' final words applied, fax media and webhooks kept."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from sqlalchemy import Connection, and_, delete, select, update

from dispatcher.store import (
    AttemptResult,
    Outcome,
    ProviderEvent,
    Resolution,
    Retry,
    Status,
    quota,
    submissions,
)
from dispatcher.store.engine import SqlPart, dialect_insert
from dispatcher.store.leases import end_each, lease_ended
from dispatcher.store.schema import attempts, deliveries, early_events, fax_media, webhook_messages


def _landed(conn: Connection, worker: str, results: Sequence[AttemptResult]) -> set[int]:
    """Deliveries whose outcome here is already recorded: a retry of a ``record`` whose COMMIT
    landed but whose answer was lost. Its attempt row is there and the letter is no longer
    leased to this worker (a new attempt would have leased it again)."""
    d, a = deliveries, attempts
    mine = and_(d.c.status == Status.SENDING, d.c.lease_owner == worker)
    rows = conn.execute(
        select(a.c.delivery_id, a.c.started_at, a.c.outcome)
        .join(d, d.c.id == a.c.delivery_id)
        .where(a.c.delivery_id.in_([r.delivery_id for r in results]), a.c.worker == worker, ~mine)
    )
    seen = {(r.delivery_id, r.started_at, r.outcome) for r in rows}
    return {r.delivery_id for r in results if (r.delivery_id, r.started_at, r.outcome.value) in seen}


def _submission_columns(result: AttemptResult) -> dict[str, object]:
    sub = result.submission
    if sub is None:
        return {"provider": None, "job_id": None, "destination": None, "pages": None}
    return {
        "provider": sub.provider,
        "job_id": sub.job_id,
        "destination": sub.destination,
        "pages": sub.pages,
    }


def _attempt_row(worker: str, r: AttemptResult) -> dict[str, object]:
    return {
        "delivery_id": r.delivery_id,
        "action_id": r.action_id,
        "target_id": r.target_id,
        "channel": r.channel,
        "started_at": r.started_at,
        "finished_at": r.finished_at,
        "outcome": r.outcome.value,
        "code": r.code,
        "detail": r.detail,
        "worker": worker,
        **_submission_columns(r),
    }


def _mark_sent(conn: Connection, results: Sequence[AttemptResult]) -> None:
    """What happened on the wire wins: a letter sent while staff closed the action is sent.
    Sent letters are the bulk: one UPDATE per language, not one per letter (sent_at is the
    group's last finish; each attempt row keeps its exact time)."""
    d = deliveries
    sent: dict[str | None, list[AttemptResult]] = {}
    for r in results:
        sent.setdefault(r.language, []).append(r)
    for language, group in sent.items():
        finished = max(r.finished_at for r in group)
        conn.execute(
            update(d)
            .where(d.c.id.in_([r.delivery_id for r in group]))
            .values(lease_ended(Status.SENT, finished, sent_at=finished, last_error=None, language=language))
        )


def _mark_failed(conn: Connection, failed: Sequence[AttemptResult]) -> None:
    quota.refund(conn, [r.delivery_id for r in failed])
    rows = [
        {"id": r.delivery_id, "updated_at": r.finished_at, "last_error": r.detail, "language": r.language}
        for r in failed
    ]
    end_each(conn, Status.FAILED, rows)


def _mark_retry(conn: Connection, worker: str, again: Sequence[AttemptResult]) -> None:
    """A retry must not revive a delivery that was cancelled or expired meanwhile."""
    rows = [
        {
            "id": r.delivery_id,
            "updated_at": r.finished_at,
            "next_attempt_at": r.next_attempt_at or r.finished_at,
            "last_error": r.detail,
        }
        for r in again
    ]
    end_each(conn, Status.PENDING, rows, worker)


class SqlOutcomes(SqlPart):
    def record(self, worker: str, results: Sequence[AttemptResult], retry: Retry) -> None:
        if not results:
            return
        with self.engine.begin() as conn:
            landed = _landed(conn, worker, results)
            results = submissions.fall_back_failed(conn, [r for r in results if r.delivery_id not in landed])
            if not results:
                return
            conn.execute(attempts.insert(), [_attempt_row(worker, r) for r in results])
            submissions.record_submitted(conn, worker, results, retry)
            _mark_sent(conn, [r for r in results if r.outcome is Outcome.SENT])
            _mark_failed(conn, [r for r in results if r.outcome is Outcome.FAILED])
            _mark_retry(conn, worker, [r for r in results if r.outcome is Outcome.RETRY])

    def resolve(self, event: ProviderEvent, by: str, retry: Retry) -> Resolution:
        with self.engine.begin() as conn:
            return submissions.resolve(conn, event, by, retry)

    def accept_webhook(
        self, provider: str, message: str, event: ProviderEvent | None, retry: Retry, now: dt.datetime
    ) -> Resolution | None:
        with self.engine.begin() as conn:
            seen = dialect_insert(conn, webhook_messages).values(
                provider=provider, message=message, received_at=now
            )
            # rowcount is unreliable for INSERT … ON CONFLICT on psycopg 3: ask for the row.
            if (
                conn.execute(seen.on_conflict_do_nothing().returning(webhook_messages.c.message)).first()
                is None
            ):
                return None
            return submissions.resolve(conn, event, f"webhook:{provider}", retry) if event else None

    def put_media(self, reference: str, data: bytes, now: dt.datetime) -> None:
        with self.engine.begin() as conn:
            put = dialect_insert(conn, fax_media).values(reference=reference, data=data, created_at=now)
            conn.execute(put.on_conflict_do_update(index_elements=["reference"], set_={"data": data}))

    def media(self, reference: str) -> bytes | None:
        with self._read() as conn:
            data = conn.scalar(select(fax_media.c.data).where(fax_media.c.reference == reference))
        return None if data is None else bytes(data)

    def prune_fax_records(self, before: dt.datetime) -> int:
        with self.engine.begin() as conn:
            # An early event whose submission never came (another app's fax on the account).
            gone = conn.execute(delete(early_events).where(early_events.c.at < before)).rowcount
            gone += conn.execute(delete(fax_media).where(fax_media.c.created_at < before)).rowcount
            w = webhook_messages
            return gone + conn.execute(delete(w).where(w.c.received_at < before)).rowcount

    def submitted_for(self, provider: str, action_ids: Sequence[str]) -> list[str]:
        d = deliveries
        query = select(d.c.provider_job).where(
            d.c.provider == provider, d.c.status == Status.SUBMITTED, d.c.action_id.in_(action_ids)
        )
        with self._read() as conn:
            return [str(job) for job in conn.scalars(query)]

    def submitted(self, provider: str, limit: int) -> list[str]:
        d = deliveries
        query = (
            select(d.c.provider_job)
            .where(d.c.provider == provider, d.c.status == Status.SUBMITTED)
            .order_by(d.c.submitted_at)
            .limit(limit)
        )
        with self._read() as conn:
            return [str(job) for job in conn.scalars(query)]
