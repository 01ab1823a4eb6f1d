"""What a consent allows, on a SQLite file and a real PostgreSQL: scope by action, tag or all;
channels; the languages a supporter signs; expiry; changes and consent given again after a
revocation; the monthly cap, charged once per letter, even with claimers racing."""

from __future__ import annotations

import datetime as dt
import random
import threading
from collections import Counter
from dataclasses import replace

import pytest
from sqlalchemy import select

from dispatcher.store import (
    ClaimGroup,
    ClaimRequest,
    Outcome,
    Status,
    Store,
    SupporterRecord,
    Terms,
    open_store,
)
from dispatcher.store.mandates import upsert_supporters
from dispatcher.store.schema import consent_events, consents, deliveries, supporters
from tests.conftest import never_retry as no_retry
from tests.test_store_contract import LEASE, NOW, UNPACED, result

DAY = dt.timedelta(days=1)


ANY = Terms()


def person(
    n: int, scopes: tuple[str, ...], terms: Terms = ANY, at: dt.datetime = NOW - DAY
) -> SupporterRecord:
    return SupporterRecord(f"m{n}@example.net", f"Mandate {n}", "en", "Lyon", "FR", scopes, at, terms=terms)


def planned(store: Store) -> set[tuple[str, str, str, str]]:
    """(supporter email, action, target, channel) of every unsent, uncancelled delivery."""
    engine = store.engine  # type: ignore[attr-defined]
    d, s = deliveries, supporters
    query = select(s.c.email, d.c.action_id, d.c.target_id, d.c.channel).join(s, s.c.id == d.c.supporter_id)
    with engine.connect() as conn:
        return {tuple(r) for r in conn.execute(query.where(d.c.status == Status.PENDING))}


def plan(
    store: Store, action: str, tags: tuple[str, ...] = (), languages: dict[str, str] | None = None
) -> int:
    pairs = [("t1", "email"), ("t1", "fax"), ("t2", "email")]
    return store.plan(action, pairs, NOW, tags=tags, languages=languages)


def test_scope_channels_languages_and_expiry_decide_what_is_planned(store: Store) -> None:
    store.import_supporters(
        [
            person(0, ("all",)),
            person(1, ("tag:china",)),
            person(2, ("a1",), Terms(channels=("fax",))),
            person(3, ("all",), Terms(languages=("fr", "en"))),
            person(4, ("all",), Terms(expires_at=NOW - dt.timedelta(minutes=1))),
            person(5, ("a2",)),
        ],
        NOW,
    )
    plan(store, "a1", tags=("china", "detention"), languages={"t1": "zh-Hans", "t2": "en"})
    plan(store, "a3", tags=("europe",), languages={"t1": "de", "t2": "de"})
    every = {("t1", "email"), ("t1", "fax"), ("t2", "email")}
    want = {(f"m{n}@example.net", "a1", t, c) for n in (0, 1) for t, c in every}
    want |= {("m2@example.net", "a1", "t1", "fax"), ("m3@example.net", "a1", "t2", "email")}
    want |= {("m0@example.net", "a3", t, c) for t, c in every}
    assert planned(store) == want


def test_a_change_moves_unsent_letters_to_the_new_consent_or_cancels_them(store: Store) -> None:
    store.import_supporters([person(0, ("a1",))], NOW)
    plan(store, "a1")
    narrower = replace(person(0, ("a1",), Terms(channels=("email",), text_version="v2")), opted_in_at=NOW)
    store.import_supporters([narrower], NOW + DAY)
    assert planned(store) == {
        ("m0@example.net", "a1", "t1", "email"),
        ("m0@example.net", "a1", "t2", "email"),
    }
    engine = store.engine  # type: ignore[attr-defined]
    with engine.connect() as conn:
        live = conn.execute(select(consents).where(consents.c.ended_at.is_(None))).one()
        unsent = conn.execute(select(deliveries.c.consent_id).where(deliveries.c.status == Status.PENDING))
        assert {r.consent_id for r in unsent} == {live.id}
        kinds = [e.kind for e in conn.execute(select(consent_events).order_by(consent_events.c.id))]
    assert live.text_version == "v2" and live.channels == "email"
    assert kinds == ["granted", "confirmed", "changed"]
    # Widening again is seen by the planner's watermark: the fax letter comes back.
    store.import_supporters([replace(narrower, terms=Terms())], NOW + 2 * DAY)
    assert plan(store, "a1") == 0  # the cancelled fax delivery keeps its place: never twice


def test_revoked_stays_revoked_until_a_newer_consent(store: Store) -> None:
    store.import_supporters([person(0, ("all",))], NOW)
    assert store.people.revoke("m0@example.net", NOW, "cli") == 0
    # The CRM's next export still lists the person with the old consent: not a new consent.
    store.import_supporters([person(0, ("all",))], NOW + DAY)
    assert plan(store, "a1") == 0
    assert store.people.revoked_since(NOW) == {"m0@example.net"}
    store.import_supporters([person(0, ("all",), at=NOW + DAY)], NOW + DAY)
    assert plan(store, "a1") == 3
    assert store.people.revoked_since(NOW) == frozenset()  # no longer dropped by running senders
    kinds = [e["kind"] for e in (store.people.export("m0@example.net") or {})["consent_events"]]
    assert kinds == ["granted", "confirmed", "revoked", "granted", "confirmed"]


def test_claims_skip_letters_whose_consent_lapsed(store: Store) -> None:
    soon = Terms(expires_at=NOW + dt.timedelta(hours=1))
    store.import_supporters([person(0, ("a1",), soon), person(1, ("a1",))], NOW)
    plan(store, "a1")
    later = NOW + dt.timedelta(hours=2)
    claims = claim(store, later, 10)
    assert {c.signer.email for c in claims} == {"m1@example.net"}
    # The sweep then cancels what the lapsed consent left unsent: the queue shows the truth.
    assert store.people.lapse(later) == 3
    assert {e for e, *_ in planned(store)} == {"m1@example.net"}


def claim(store: Store, at: dt.datetime, n: int, worker: str = "w") -> list:  # type: ignore[type-arg]
    group = ClaimGroup("a1", "t1", "email", ("email:t1@example.org",))
    return store.claim(worker, ClaimRequest([group], {"email": n}, UNPACED), at, LEASE).claims


def test_monthly_cap_counts_each_letter_once_and_resets_next_month(store: Store) -> None:
    capped = Terms(monthly_cap=2)
    store.import_supporters([person(0, ("all",), capped), person(1, ("all",))], NOW)
    for action in ("a1", "a2", "a3"):
        store.plan(action, [("t1", "email")], NOW)
    group = [ClaimGroup(a, "t1", "email", (f"email:{a}",)) for a in ("a1", "a2", "a3")]
    taken = store.claim("w", ClaimRequest(group, {"email": 10}, UNPACED), NOW, LEASE).claims
    assert Counter(c.signer.email for c in taken) == {"m0@example.net": 2, "m1@example.net": 3}
    # A retried letter is not charged again.
    first = next(c for c in taken if c.signer.email == "m0@example.net")
    store.record(
        "w", [replace(result(first.delivery_id, Outcome.RETRY), action_id=first.action_id)], lambda n, t: t
    )
    again = store.claim("w", ClaimRequest(group, {"email": 10}, UNPACED), NOW, LEASE).claims
    assert [c.delivery_id for c in again] == [first.delivery_id]
    # A letter that finally fails gives its place back: the waiting one goes within the hour.
    failed = replace(result(first.delivery_id, Outcome.FAILED), action_id=first.action_id)
    store.record("w", [failed], no_retry)
    assert take_all(store, NOW + dt.timedelta(minutes=30)) == []
    assert take_all(store, NOW + dt.timedelta(hours=1)) == ["m0@example.net"]
    # The month is full again; the next one starts from zero.
    store.plan("a4", [("t1", "email")], NOW)
    assert take_all(store, NOW + dt.timedelta(hours=3)) == ["m1@example.net"]
    assert take_all(store, dt.datetime(2026, 12, 1, tzinfo=dt.UTC)) == ["m0@example.net"]


def take_all(store: Store, at: dt.datetime) -> list[str]:
    groups = [ClaimGroup(a, "t1", "email", (f"email:{a}",)) for a in ("a1", "a2", "a3", "a4")]
    return [
        c.signer.email
        for c in store.claim("w", ClaimRequest(groups, {"email": 10}, UNPACED), at, LEASE).claims
    ]


def test_the_cap_holds_when_claimers_race(store: Store, db_url: str) -> None:
    """Eight connections claim at once, each one letter at a time: still the cap exactly."""
    cap, actions = 3, [f"a{i}" for i in range(12)]
    people = [person(n, ("all",), Terms(monthly_cap=cap)) for n in range(4)]
    store.import_supporters(people, NOW)
    for action in actions:
        store.plan(action, [("t1", "email")], NOW)
    groups = [ClaimGroup(a, "t1", "email", (f"email:{a}",)) for a in actions]
    got: list[str] = []
    lock = threading.Lock()

    def worker(n: int) -> None:
        own = open_store(db_url, migrate=False)
        rng = random.Random(n)
        try:
            for _ in range(20):
                mine = rng.sample(groups, 3)
                claims = own.claim(f"w{n}", ClaimRequest(mine, {"email": 1}, UNPACED), NOW, LEASE).claims
                with lock:
                    got.extend(c.signer.email for c in claims)
        finally:
            own.close()

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert Counter(got) == {p.email: cap for p in people}


def test_claims_carry_the_name_display_and_the_supporters_own_words(store: Store) -> None:
    quiet = replace(person(0, ("a1",), Terms(name_display="name")), words={"a1": "Free them now."})
    store.import_supporters([quiet, person(1, ("a1",))], NOW)
    plan(store, "a1")
    signers = {c.signer.email: c.signer for c in claim(store, NOW, 10)}
    assert (signers["m0@example.net"].city, signers["m0@example.net"].words) == ("", "Free them now.")
    assert (signers["m1@example.net"].city, signers["m1@example.net"].words) == ("Lyon", "")


@pytest.mark.postgres
def test_planning_never_passes_a_consent_still_being_written(pg_url: str) -> None:
    """PostgreSQL hands out ids before commit: a consent with a lower id can commit after one
    with a higher id. Planning past it would skip that supporter for good."""
    store = open_store(pg_url)
    try:
        store.import_supporters([person(0, ("all",))], NOW)
        engine = store.engine  # type: ignore[attr-defined]
        with engine.connect() as slow, slow.begin():
            upsert_supporters(slow, [person(1, ("all",))], NOW)
            store.import_supporters([person(2, ("all",))], NOW)  # a higher id, committed first
            assert plan(store, "a1") == 0  # waits for the slow writer, then tries next round
        assert plan(store, "a1") == 3 * 3
    finally:
        store.close()
