"""Faxes between the provider's acceptance and its final word: submitted, then resolved once.

Run over a SQLite file and a real PostgreSQL.
"""

from __future__ import annotations

import datetime as dt

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from dispatcher.store import (
    AttemptResult,
    Outcome,
    ProviderEvent,
    Resolution,
    Store,
    Submission,
)
from dispatcher.store.schema import metadata
from tests.test_store_contract import LEASE, NOW, people, statuses, take

FAX = "+861062381025"


def submitted(store: Store, delivery_id: int, job: str, at: dt.datetime = NOW) -> None:
    result = AttemptResult(
        delivery_id=delivery_id,
        action_id="act",
        target_id="t1",
        channel="fax",
        started_at=at,
        finished_at=at,
        outcome=Outcome.SUBMITTED,
        detail="queued",
        language="zh-Hans",
        submission=Submission("telnyx", job, FAX, 2),
    )
    store.record("w", [result])


def event(job: str, delivered: bool = True, retry_at: dt.datetime | None = None) -> ProviderEvent:
    return ProviderEvent(
        "telnyx",
        job,
        delivered,
        NOW + dt.timedelta(minutes=3),
        reason="" if delivered else "the line was busy",
        failure=None if delivered else "busy",
        retry_at=retry_at,
        pages=2,
        duration=74.5,
    )


def one_claim(store: Store) -> int:
    store.import_supporters(people(1), NOW)
    store.plan("act", [("t1", "email")], NOW)
    (claim,) = take(store, "w")
    return claim.delivery_id


def test_a_submitted_fax_holds_no_lease_and_is_resolved_once(store: Store) -> None:
    delivery = one_claim(store)
    submitted(store, delivery, "job-1")
    assert statuses(store) == {"submitted": 1}
    # No lease: nobody takes it over, however long the provider takes.
    assert store.recover("other", NOW + LEASE * 100) == 0
    assert take(store, "other", at=NOW + LEASE * 100) == []
    assert store.resolve(event("job-1"), "webhook:telnyx") is Resolution.APPLIED
    assert store.resolve(event("job-1"), "webhook:telnyx") is Resolution.IGNORED  # sent twice
    assert store.resolve(event("job-1", delivered=False), "poll") is Resolution.IGNORED  # out of order
    assert statuses(store) == {"sent": 1}
    log = list(store.attempt_log())
    assert [(a.outcome, a.job_id, a.destination) for a in log] == [
        ("submitted", "job-1", FAX),
        ("sent", "job-1", FAX),
    ]
    assert (log[1].pages, log[1].duration, log[1].worker) == (2, 74.5, "webhook:telnyx")
    assert log[1].started_at == NOW and log[1].finished_at == NOW + dt.timedelta(minutes=3)


def test_a_busy_line_retries_and_news_of_the_old_job_changes_nothing(store: Store) -> None:
    delivery = one_claim(store)
    submitted(store, delivery, "job-1")
    later = NOW + dt.timedelta(minutes=20)
    assert store.resolve(event("job-1", delivered=False, retry_at=later), "poll") is Resolution.APPLIED
    assert statuses(store) == {"pending": 1}
    assert take(store, "w", at=NOW + dt.timedelta(minutes=5)) == []
    (again,) = take(store, "w", at=later)
    submitted(store, again.delivery_id, "job-2", at=later)
    assert store.resolve(event("job-1", delivered=False), "webhook") is Resolution.IGNORED
    assert statuses(store) == {"submitted": 1}
    assert store.resolve(event("job-2", delivered=False), "webhook") is Resolution.APPLIED
    assert statuses(store) == {"failed": 1}
    assert [a.outcome for a in store.attempt_log()] == ["submitted", "retry", "submitted", "failed"]
    assert "busy: the line was busy" in list(store.attempt_log())[-1].detail


def test_an_event_that_outruns_the_submission_is_kept_and_applied(store: Store) -> None:
    delivery = one_claim(store)
    assert store.resolve(event("job-9"), "webhook:telnyx") is Resolution.EARLY
    assert statuses(store) == {"sending": 1}
    submitted(store, delivery, "job-9")
    assert statuses(store) == {"sent": 1}
    assert [a.outcome for a in store.attempt_log()] == ["submitted", "sent"]
    assert store.resolve(event("job-9"), "webhook:telnyx") is Resolution.IGNORED


def test_migrations_build_exactly_the_schema(store: Store) -> None:
    engine = store.engine  # type: ignore[attr-defined]
    with engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), metadata) == []
