"""Faxes between the provider's acceptance and its final word: submitted, then resolved once.

Run over a SQLite file and a real PostgreSQL.
"""

from __future__ import annotations

import datetime as dt

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from dispatcher.models import ClaimGroup, Outcome, ProviderEvent, Resolution, Submission
from dispatcher.store import ClaimRequest, Store
from dispatcher.store.failures import Failure
from dispatcher.store.schema import consents, metadata
from tests.conftest import never_retry
from tests.store.test_store_contract import LEASE, NOW, UNPACED, people, result, statuses, take

FAX = "+861062381025"


def submitted(store: Store, delivery_id: int, job: str, at: dt.datetime = NOW) -> None:
    submission = Submission("telnyx", job, FAX, 2)
    attempt = result(
        delivery_id, Outcome.SUBMITTED, "fax", at, detail="queued", language="zh-Hans", submission=submission
    )
    store.record("w", [attempt], twice)


def twice(attempts: int, now: dt.datetime) -> dt.datetime | None:
    return now + dt.timedelta(minutes=20) if attempts < 2 else None


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
    assert store.resolve(event("job-1"), "webhook:telnyx", twice) is Resolution.APPLIED
    assert store.resolve(event("job-1"), "webhook:telnyx", twice) is Resolution.IGNORED  # sent twice
    assert store.resolve(event("job-1", delivered=False), "poll", twice) is Resolution.IGNORED  # out of order
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
    later = NOW + dt.timedelta(minutes=3 + 20)  # the event's time, plus what the policy says
    assert store.resolve(event("job-1", delivered=False), "poll", twice) is Resolution.APPLIED
    assert statuses(store) == {"pending": 1}
    assert take(store, "w", at=NOW + dt.timedelta(minutes=5)) == []
    (again,) = take(store, "w", at=later)
    submitted(store, again.delivery_id, "job-2", at=later)
    assert store.resolve(event("job-1", delivered=False), "webhook", twice) is Resolution.IGNORED
    assert statuses(store) == {"submitted": 1}
    assert store.resolve(event("job-2", delivered=False), "webhook", twice) is Resolution.APPLIED
    assert statuses(store) == {"failed": 1}
    assert [a.outcome for a in store.attempt_log()] == ["submitted", "retry", "submitted", "failed"]
    assert "busy: the line was busy" in list(store.attempt_log())[-1].detail


def test_an_event_that_outruns_the_submission_is_kept_and_applied(store: Store) -> None:
    delivery = one_claim(store)
    assert store.resolve(event("job-9"), "webhook:telnyx", twice) is Resolution.EARLY
    assert statuses(store) == {"sending": 1}
    submitted(store, delivery, "job-9")
    assert statuses(store) == {"sent": 1}
    assert [a.outcome for a in store.attempt_log()] == ["submitted", "sent"]
    assert store.resolve(event("job-9"), "webhook:telnyx", twice) is Resolution.IGNORED


def test_migrations_build_exactly_the_schema(store: Store) -> None:
    engine = store.engine  # type: ignore[attr-defined]
    with engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), metadata) == []


def fax_claims(store: Store, at: dt.datetime = NOW, attempt: int = 1) -> list[int]:
    group = ClaimGroup("act", "t1", "fax", ("fax:+861062381025",), "line:fax:+861062381025")
    claims = store.claim("w", ClaimRequest([group], {"fax": 10}, UNPACED), at, LEASE).claims
    assert all(c.attempt == attempt for c in claims)
    return [c.delivery_id for c in claims]


def plan_fax(store: Store, channels: str = "*") -> int:
    person = people(1)[0]
    store.import_supporters([person], NOW)
    if channels != "*":
        with store.engine.begin() as conn:  # type: ignore[attr-defined]
            conn.execute(consents.update().values(channels=channels))
    store.plan("act", [("t1", "fax")], NOW, fallbacks={"t1": "email"})
    (delivery,) = fax_claims(store)
    return delivery


def fax_letters(store: Store) -> list[tuple[str, str]]:
    return sorted((row.channel, row.status) for row in store.queue_counts())


def test_a_fax_refused_for_good_falls_back_to_email_once(store: Store) -> None:
    delivery = plan_fax(store)
    failed = result(delivery, Outcome.FAILED, "fax", detail="bad number: 422")
    store.record("w", [failed], never_retry)
    assert fax_letters(store) == [("email", "pending"), ("fax", "failed")]
    assert [a.detail for a in store.attempt_log()] == ["bad number: 422; falling back to email"]
    store.plan("act", [("t1", "fax")], NOW, fallbacks={"t1": "email"})  # planning again adds none
    assert sum(row.count for row in store.queue_counts()) == 2


def test_a_busy_line_falls_back_only_after_the_last_attempt(store: Store) -> None:
    delivery = plan_fax(store)
    submitted(store, delivery, "job-1")
    store.resolve(event("job-1", delivered=False), "webhook", twice)
    assert fax_letters(store) == [("fax", "pending")]  # one more try first
    (again,) = fax_claims(store, NOW + dt.timedelta(hours=1), attempt=2)
    submitted(store, again, "job-2")
    store.resolve(event("job-2", delivered=False), "webhook", twice)
    assert fax_letters(store) == [("email", "pending"), ("fax", "failed")]
    assert list(store.attempt_log())[-1].detail.endswith("; falling back to email")


def test_no_fallback_by_a_channel_the_supporter_did_not_consent_to(store: Store) -> None:
    delivery = plan_fax(store, channels="fax")
    store.record("w", [result(delivery, Outcome.FAILED, "fax")], never_retry)
    assert fax_letters(store) == [("fax", "failed")]


def test_a_withdrawn_fax_waits_without_spending_an_attempt(store: Store) -> None:
    delivery = plan_fax(store)
    submitted(store, delivery, "job-1")
    withdrawn = ProviderEvent("telnyx", "job-1", False, NOW, "action paused", Failure.CANCELLED)
    assert store.resolve(withdrawn, "cancel", never_retry) is Resolution.APPLIED
    assert fax_letters(store) == [("fax", "pending")]
    assert fax_claims(store, NOW, attempt=1) == [delivery]  # the withdrawn one did not count


def test_a_webhook_message_is_applied_once_and_media_expire(store: Store) -> None:
    delivery = plan_fax(store)
    submitted(store, delivery, "job-1")
    assert store.accept_webhook("telnyx", "evt-1", event("job-1"), never_retry, NOW) is Resolution.APPLIED
    assert store.accept_webhook("telnyx", "evt-1", event("job-1"), never_retry, NOW) is None  # replay
    assert store.accept_webhook("telnyx", "evt-0", None, never_retry, NOW) is None  # news, no outcome
    store.put_media("d1-abc", b"%PDF-1.4", NOW)
    assert store.media("d1-abc") == b"%PDF-1.4"
    assert store.prune_fax_records(NOW + dt.timedelta(seconds=1)) == 3
    assert store.media("d1-abc") is None
    assert store.accept_webhook("telnyx", "evt-1", event("job-1"), never_retry, NOW) is Resolution.IGNORED
