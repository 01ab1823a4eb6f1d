"""One contract for every Store implementation, run over a SQLite file and a real PostgreSQL."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable

import pytest
from sqlalchemy import update

from dispatcher.models import AttemptResult, Claim, ClaimBatch, ClaimGroup, Outcome, Status, SupporterRecord
from dispatcher.pacing import Limits
from dispatcher.store import ClaimRequest, Store, open_store
from dispatcher.store.schema import consents
from tests.conftest import never_retry

NOW = dt.datetime(2026, 11, 23, 12, 0, tzinfo=dt.UTC)
LEASE = dt.timedelta(seconds=60)


def people(n: int, scopes: tuple[str, ...] = ("act",), start: int = 0) -> list[SupporterRecord]:
    return [
        SupporterRecord(
            email=f"p{i}@example.net",
            name=f"Person {i}",
            language="en",
            city="Town",
            country="GB",
            scopes=scopes,
            opted_in_at=NOW - dt.timedelta(days=1),
        )
        for i in range(start, start + n)
    ]


UNPACED = Limits(rate=1e6, burst=1e6, global_rate=1e6)


def take(
    store: Store, worker: str, limit: int = 100, at: dt.datetime = NOW, limits: Limits = UNPACED
) -> list[Claim]:
    """Claim up to ``limit`` letters of act × t1 × email."""
    group = ClaimGroup("act", "t1", "email", ("email:t1@example.org",))
    return store.claim(worker, ClaimRequest([group], {"email": limit}, limits), at, LEASE).claims


def result(
    claim_id: int, outcome: Outcome, channel: str = "email", at: dt.datetime = NOW, **kw: object
) -> AttemptResult:
    """An attempt at the letter to act's t1, started and finished at one instant."""
    return AttemptResult(
        delivery_id=claim_id,
        action_id="act",
        target_id="t1",
        channel=channel,
        started_at=at,
        finished_at=at,
        outcome=outcome,
        **kw,  # type: ignore[arg-type]
    )


def run_in_threads(worker: Callable[[int], None], count: int, timeout: float = 60) -> None:
    """Starts the worker in `count` threads at once (numbered from 0) and waits for them all."""
    threads = [threading.Thread(target=worker, args=(n,)) for n in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=timeout)


def claims_in_threads(
    db_url: str, count: int, rounds: int, claim: Callable[[Store, str], ClaimBatch]
) -> list[ClaimBatch]:
    """``count`` workers at once, each with its own store, each claiming ``rounds`` times."""
    got: list[ClaimBatch] = []
    lock = threading.Lock()

    def worker(n: int) -> None:
        s = open_store(db_url, migrate=False)
        try:
            for _ in range(rounds):
                batch = claim(s, f"w{n}")
                with lock:
                    got.append(batch)
        finally:
            s.close()

    run_in_threads(worker, count)
    return got


def statuses(store: Store) -> dict[str, int]:
    out: dict[str, int] = {}
    for row in store.queue_counts():
        out[row.status] = out.get(row.status, 0) + row.count
    return out


def test_import_upserts_and_keeps_first_consent(store: Store) -> None:
    assert store.import_supporters(people(3), NOW) == 3
    renamed = SupporterRecord("p0@example.net", "Renamed", "de", "", "", ("act", "all"), NOW)
    store.import_supporters([renamed], NOW + dt.timedelta(hours=1))
    assert store.supporter_count() == 3
    signer = store.find_signer("p0@example.net")
    assert signer is not None and signer.name == "Renamed" and signer.language == "de"
    assert store.find_signer("nobody@example.net") is None


def test_plan_is_idempotent_batched_and_follows_consent(store: Store) -> None:
    store.import_supporters(people(5), NOW)
    store.import_supporters(people(2, scopes=("all",), start=5), NOW)
    store.import_supporters(people(2, scopes=("other",), start=7), NOW)
    seen: list[tuple[int, int]] = []
    pairs = [("t1", "email"), ("t2", "email")]
    created = store.plan("act", pairs, NOW, batch=2, progress=lambda done, top: seen.append((done, top)))
    assert created == 7 * 2
    assert seen[-1] == (18, 18) and len(seen) == 10  # 9 consents for each of 2 pairs, 2 at a time
    assert store.plan("act", pairs, NOW, batch=2) == 0
    assert statuses(store) == {"pending": 14}


def test_plan_skips_revoked_consent_and_replans_only_new_consents(store: Store) -> None:
    store.import_supporters(people(3), NOW)
    engine = store.engine  # type: ignore[attr-defined]
    with engine.begin() as conn:
        conn.execute(update(consents).where(consents.c.supporter_id == 1).values(revoked_at=NOW))
    assert store.plan("act", [("t1", "email")], NOW) == 2
    store.import_supporters(people(2, start=3), NOW)
    assert store.plan("act", [("t1", "email")], NOW) == 2
    # A new target starts from the first consent; another action is planned on its own.
    assert store.plan("act", [("t1", "email"), ("t2", "email")], NOW) == 4
    assert store.plan("act2", [("t1", "email")], NOW) == 0


def test_claim_leases_and_two_workers_never_share(store: Store) -> None:
    store.import_supporters(people(10), NOW)
    store.plan("act", [("t1", "email")], NOW)
    a = take(store, "A", 6)
    b = take(store, "B", 6)
    assert len(a) == 6 and len(b) == 4
    assert not {c.delivery_id for c in a} & {c.delivery_id for c in b}
    assert all(c.attempt == 1 and c.signer.email.endswith("@example.net") for c in a)
    assert take(store, "C") == []


def test_expired_lease_is_taken_over_and_logged_as_interrupted(store: Store) -> None:
    store.import_supporters(people(2), NOW)
    store.plan("act", [("t1", "email")], NOW)
    first = take(store, "dead")
    assert store.recover("B", NOW + dt.timedelta(seconds=30)) == 0
    assert take(store, "B", at=NOW + dt.timedelta(seconds=30)) == []
    assert store.recover("B", NOW + dt.timedelta(seconds=61)) == 2
    taken = take(store, "B", at=NOW + dt.timedelta(seconds=61))
    assert [c.delivery_id for c in taken] == [c.delivery_id for c in first]
    assert all(c.attempt == 2 for c in taken)
    log = list(store.attempt_log())
    assert [r.outcome for r in log] == ["interrupted", "interrupted"]
    assert "dead" in log[0].detail and log[0].worker == "B"


def test_restart_under_same_worker_id_reclaims_at_once(store: Store) -> None:
    store.import_supporters(people(2), NOW)
    store.plan("act", [("t1", "email")], NOW)
    take(store, "w1")
    assert store.expire_leases_of("w1", NOW) == 2
    assert store.recover("w1", NOW) == 2
    assert len(take(store, "w1")) == 2


def test_record_outcomes(store: Store) -> None:
    store.import_supporters(people(3), NOW)
    store.plan("act", [("t1", "email")], NOW)
    c1, c2, c3 = take(store, "A")
    later = NOW + dt.timedelta(minutes=5)
    store.record(
        "A",
        [
            result(c1.delivery_id, Outcome.SENT, code=250, detail="ok", language="en"),
            result(c2.delivery_id, Outcome.RETRY, code=451, detail="try later", next_attempt_at=later),
            result(c3.delivery_id, Outcome.FAILED, code=550, detail="no such user"),
        ],
        never_retry,
    )
    assert statuses(store) == {"sent": 1, "pending": 1, "failed": 1}
    assert store.next_due([("act", "t1", "email")], NOW) == later
    assert store.next_due([("act", "t1", "fax"), ("act", "t2", "email")], NOW) is None
    assert take(store, "A") == []
    again = take(store, "A", at=later)
    assert [c.delivery_id for c in again] == [c2.delivery_id] and again[0].attempt == 2
    assert [(r.outcome, r.code) for r in store.attempt_log(target_id="t1")] == [
        ("sent", 250),
        ("retry", 451),
        ("failed", 550),
    ]
    assert list(store.attempt_log(action_id="other")) == []


def test_retry_does_not_revive_cancelled_but_sent_wins(store: Store) -> None:
    store.import_supporters(people(2), NOW)
    store.plan("act", [("t1", "email")], NOW)
    c1, c2 = take(store, "A")
    # Closing while both are in flight: leased rows are left to their senders.
    assert store.finish_pending("act", Status.CANCELLED, NOW, deadline=NOW, by_file=True) == 0
    store.record("A", [result(c1.delivery_id, Outcome.SENT)], never_retry)
    store.finish_pending("act", Status.CANCELLED, NOW + dt.timedelta(seconds=61), deadline=NOW, by_file=True)
    store.record("A", [result(c2.delivery_id, Outcome.RETRY, next_attempt_at=NOW)], never_retry)
    assert statuses(store) == {"sent": 1, "cancelled": 1}


def test_release_gives_back_without_counting_an_attempt(store: Store) -> None:
    store.import_supporters(people(2), NOW)
    store.plan("act", [("t1", "email")], NOW)
    claims = take(store, "A")
    assert store.release("B", [c.delivery_id for c in claims], NOW) == 0  # not B's lease
    assert store.release("A", [c.delivery_id for c in claims], NOW) == 2
    assert all(c.attempt == 1 for c in take(store, "A"))


def test_expire_and_revive(store: Store) -> None:
    store.import_supporters(people(4), NOW)
    store.plan("act", [("t1", "email")], NOW)
    assert store.finish_pending("act", Status.EXPIRED, NOW, deadline=NOW) == 4
    assert take(store, "A") == []
    assert store.revive("act", Status.EXPIRED, NOW) == 4
    assert len(take(store, "A")) == 4


def test_action_state_roundtrip(store: Store) -> None:
    assert store.action_states() == {}
    store.set_action_state("act", by="staff", now=NOW, status="paused")
    later = NOW + dt.timedelta(days=3)
    store.set_action_state("act", by="boss", now=NOW, deadline=later)
    state = store.action_states()["act"]
    assert (state.status, state.deadline, state.updated_by) == ("paused", later, "boss")


def test_instance_secret_is_stable(store: Store, db_url: str) -> None:
    secret = store.instance_secret()
    assert len(secret) == 16
    other = open_store(db_url)
    try:
        assert other.instance_secret() == secret
    finally:
        other.close()


def test_concurrent_claims_from_separate_connections_are_disjoint(store: Store, db_url: str) -> None:
    store.import_supporters(people(400), NOW)
    store.plan("act", [("t1", "email")], NOW)
    got: dict[str, list[int]] = {}
    stores = [open_store(db_url, migrate=False) for _ in range(4)]

    def worker(n: int) -> None:
        ids: list[int] = []
        while claims := take(stores[n], f"w{n}", 7):
            ids += [c.delivery_id for c in claims]
        got[f"w{n}"] = ids

    run_in_threads(worker, len(stores))
    for s in stores:
        s.close()
    everything = [i for ids in got.values() for i in ids]
    assert len(everything) == 400 == len(set(everything))


@pytest.mark.parametrize("n", [0])
def test_plan_with_no_pairs_creates_nothing(store: Store, n: int) -> None:
    store.import_supporters(people(2), NOW)
    assert store.plan("act", [], NOW) == n


def test_reports_are_counted_by_the_database_and_paged(store: Store) -> None:
    store.import_supporters(people(5), NOW)
    store.plan("act", [("t1", "email")], NOW)
    c1, c2, c3, _c4, _c5 = take(store, "A")
    store.record(
        "A",
        [
            result(c1.delivery_id, Outcome.SENT),
            result(c2.delivery_id, Outcome.SENT),
            result(c3.delivery_id, Outcome.FAILED, detail="550"),
        ],
        never_retry,
    )
    assert store.action_counts() == {"act": {"sent": 2, "failed": 1, "sending": 2}}
    assert [(s.target_id, s.letters) for s in store.sent_counts()] == [("t1", 2)]
    assert store.sent_counts("other") == []
    first = store.attempts_after(0, 2)
    assert [a.outcome for a in first] == ["sent", "sent"]
    rest = store.attempts_after(first[-1].id, 2)
    assert [a.outcome for a in rest] == ["failed"] and store.attempts_after(rest[-1].id, 2) == []
    assert [a.id for a in store.attempt_log(page=1)] == [a.id for a in first + rest]
    backlog = store.backlog(NOW)
    assert (backlog.due_now, backlog.later) == (0, 0)
