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

from dispatcher.models import ClaimGroup, Outcome, Status, SupporterRecord, Terms
from dispatcher.store import ClaimRequest, Store, open_store
from dispatcher.store.mandates import upsert_supporters
from dispatcher.store.schema import consent_events, consents, deliveries, supporters
from tests.conftest import never_retry as no_retry
from tests.store.test_store_contract import LEASE, NOW, UNPACED, result, run_in_threads

DAY = dt.timedelta(days=1)
HOUR = dt.timedelta(hours=1)


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


def test_a_change_is_planned_afresh_and_keeps_what_was_tried(store: Store) -> None:
    store.import_supporters([person(0, ("a1",))], NOW)
    assert plan(store, "a1") == 3
    (tried,) = claim(store, NOW, 1)
    store.record("w", [result(tried.delivery_id, Outcome.RETRY)], lambda n, t: t)
    fax_only = person(0, ("a1",), Terms(channels=("fax",), text_version="v2"), at=NOW)
    store.import_supporters([fax_only], NOW + DAY)
    assert plan(store, "a1") == 1
    assert planned(store) == {("m0@example.net", "a1", "t1", "fax")}
    engine = store.engine  # type: ignore[attr-defined]
    with engine.connect() as conn:
        live = conn.execute(select(consents).where(consents.c.ended_at.is_(None))).one()
        unsent = conn.execute(select(deliveries.c.consent_id).where(deliveries.c.status == Status.PENDING))
        assert {r.consent_id for r in unsent} == {live.id}
        was_tried = conn.execute(select(deliveries).where(deliveries.c.id == tried.delivery_id)).one()
        kinds = [e.kind for e in conn.execute(select(consent_events).order_by(consent_events.c.id))]
    assert (live.text_version, live.channels) == ("v2", "fax")
    assert (was_tried.status, was_tried.last_error) == ("cancelled", "consent changed: channel withdrawn")
    assert kinds == ["granted", "confirmed", "changed"]
    # Widening again: the letters never tried are planned afresh; the one tried and cancelled
    # keeps its place (a letter is one delivery, whatever happens to it).
    store.import_supporters([replace(fax_only, terms=Terms())], NOW + 2 * DAY)
    assert plan(store, "a1") == 2
    assert len(planned(store)) == 2


def test_revoked_stays_revoked_until_a_newer_consent(store: Store) -> None:
    store.import_supporters([person(0, ("all",))], NOW)
    assert plan(store, "a1") == 3
    assert store.people.revoke("m0@example.net", NOW, "cli") == 3
    # The CRM's next export still lists the person with the old consent: not a new consent.
    store.import_supporters([person(0, ("all",))], NOW + DAY)
    assert plan(store, "a1") == 0
    assert store.people.revoked_since(NOW) == {"m0@example.net"}
    # Consent given again: the letters cancelled when they withdrew come back, once each.
    store.import_supporters([person(0, ("all",), at=NOW + DAY)], NOW + DAY)
    assert plan(store, "a1") == 3
    assert len(planned(store)) == 3
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

    run_in_threads(worker, 8)
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


def covers(scope: str, terms: Terms, action: str, tags: tuple[str, ...], language: str, channel: str) -> bool:
    """The model: what one consent allows, in plain Python."""
    return (
        scope in ("all", action, *(f"tag:{t}" for t in tags))
        and (not terms.channels or channel in terms.channels)
        and (not terms.languages or language in terms.languages)
        and (terms.expires_at is None or terms.expires_at > NOW)
    )


def random_terms(rng: random.Random) -> Terms:
    return Terms(
        channels=tuple(rng.sample(("email", "fax"), rng.randint(0, 2))),
        languages=tuple(rng.sample(("en", "fr", "zh-Hans", "de"), rng.choice((0, 0, 1, 2)))),
        name_display=rng.choice(("full", "name")),
        monthly_cap=rng.choice((None, None, 5)),
        expires_at=rng.choice((None, None, NOW - DAY, NOW + DAY)),
        text_version=rng.choice(("v1", "v2")),
    )


PAIRS = (("t1", "email"), ("t1", "fax"), ("t2", "email"))


@pytest.mark.parametrize("seed", range(6))
def test_planning_matches_the_model_of_consent(store: Store, seed: int) -> None:
    """Random supporters and consents (scopes by action, tag or all; random terms), random
    actions (tags, letters in several languages), three rounds of imports that add, change and
    keep consents, revocations, planning after each round: exactly the covered letters wait."""
    rng = random.Random(seed)
    actions = {
        f"a{i}": tuple(rng.sample(("china", "europe", "detention"), rng.randint(0, 2))) for i in range(4)
    }
    scopes = ["all", *actions, "tag:china", "tag:europe", "tag:detention"]
    written_in = {
        a: {"t1": rng.choice(("en", "fr", "zh-Hans")), "t2": rng.choice(("en", "de"))} for a in actions
    }
    live: dict[tuple[str, str], Terms] = {}  # (email, scope) → terms
    revoked: set[str] = set()
    for round_ in range(3):
        batch = [
            person(
                n, tuple(rng.sample(scopes, rng.randint(1, 2))), random_terms(rng), NOW - DAY + round_ * HOUR
            )
            for n in rng.sample(range(30), 20)
        ]
        store.import_supporters(batch, NOW)
        live |= {(r.email, scope): r.terms for r in batch if r.email not in revoked for scope in r.scopes}
        for email in rng.sample(sorted({e for e, _ in live} - revoked), 2):
            store.people.revoke(email, NOW, "cli")  # later imports carry older consents: stale
            revoked.add(email)
        for action, tags in actions.items():
            plan(store, action, tags, written_in[action])
    want = {
        (email, action, target, channel)
        for (email, scope), terms in live.items()
        if email not in revoked
        for action, tags in actions.items()
        for target, channel in PAIRS
        if covers(scope, terms, action, tags, written_in[action][target], channel)
    }
    assert planned(store) == want


def test_letters_whose_consent_was_withdrawn_are_not_due_nor_brought_back(store: Store) -> None:
    """A run --once waits for what is due: a letter that can never be claimed must not count,
    and neither extend (revive) nor requeue may bring back a withdrawn supporter's letter."""
    store.import_supporters([person(0, ("a1",)), person(1, ("a1",), Terms(expires_at=NOW + HOUR))], NOW)
    plan(store, "a1")
    group = [("a1", "t1", "email")]
    assert store.next_due(group, NOW) == NOW
    assert store.next_due(group, NOW + 2 * HOUR) == NOW  # m0's letter is still due
    for claimed in claim(store, NOW, 10):
        store.record("w", [result(claimed.delivery_id, Outcome.FAILED)], no_retry)
    store.people.revoke("m0@example.net", NOW, "cli")
    assert store.requeue_failed("a1", NOW + 2 * HOUR) == 0  # one withdrew, the other lapsed
    assert store.next_due(group, NOW + 2 * HOUR) is None
    # m1's other two (m0's were cancelled)
    assert store.finish_pending("a1", Status.EXPIRED, NOW, deadline=NOW) == 2
    assert store.revive("a1", Status.EXPIRED, NOW + 2 * HOUR) == 0


def test_the_sweep_moves_letters_planned_on_an_ended_consent_or_cancels_them(store: Store) -> None:
    """A plan that read a consent just before a change ended it (PostgreSQL, read committed)
    leaves letters on the old row: the sweep hands them to its successor, or cancels them."""
    store.import_supporters([person(0, ("a1",))], NOW)
    store.import_supporters([person(0, ("a1",), Terms(channels=("email",)), at=NOW)], NOW + HOUR)
    engine = store.engine  # type: ignore[attr-defined]
    with engine.begin() as conn:
        old, new = (r.id for r in conn.execute(select(consents.c.id).order_by(consents.c.id)))
        for channel in ("email", "fax"):
            late = {"action_id": "a1", "supporter_id": 1, "target_id": "t1", "channel": channel}
            times = dict.fromkeys(("next_attempt_at", "created_at", "updated_at"), NOW)
            conn.execute(deliveries.insert().values(**late, **times, consent_id=old, status="pending"))
    assert store.people.lapse(NOW + HOUR) == 1  # the fax: no longer allowed
    with engine.connect() as conn:
        rows = conn.execute(select(deliveries.c.channel, deliveries.c.status, deliveries.c.consent_id))
        assert sorted(tuple(r) for r in rows) == [("email", "pending", new), ("fax", "cancelled", old)]


def test_an_older_crm_row_does_not_undo_a_newer_change(store: Store) -> None:
    """The person chose name-only on the form; the nightly CRM export still has their first
    consent, with full name: the newer choice stands."""
    store.import_supporters([person(0, ("a1",))], NOW)
    store.import_supporters([person(0, ("a1",), Terms(name_display="name"), at=NOW)], NOW)
    store.import_supporters([person(0, ("a1",))], NOW + DAY)
    consents_held = (store.people.export("m0@example.net") or {})["consents"]
    assert [c["name_display"] for c in consents_held if c["ended_at"] is None] == ["name"]


def test_a_new_tag_or_a_new_letter_language_is_planned_afresh(store: Store) -> None:
    """Staff tag a running action, then add a translation: the watermark does not hide
    consents below it, and letters in a language their supporter does not sign are cancelled."""
    store.import_supporters(
        [person(0, ("tag:china",)), person(1, ("a1",), Terms(languages=("en",))), person(2, ("a1",))], NOW
    )
    assert plan(store, "a1", languages={"t1": "en", "t2": "en"}) == 2 * 3
    assert plan(store, "a1", tags=("china",), languages={"t1": "en", "t2": "en"}) == 3
    assert plan(store, "a1", tags=("china",), languages={"t1": "zh-Hans", "t2": "en"}) == 0
    waiting = {(email, target) for email, _, target, _ in planned(store)}
    assert ("m1@example.net", "t1") not in waiting and ("m1@example.net", "t2") in waiting
    assert {("m0@example.net", "t1"), ("m2@example.net", "t1")} <= waiting


def test_the_first_sweep_reaches_consents_that_lapsed_long_ago(store: Store) -> None:
    # No dispatcher ran for weeks: letters whose consent lapsed then were never claimed and never
    # cancelled. A sweep not bounded to the past week (a worker's first) shows the truth.
    gone = Terms(expires_at=NOW + dt.timedelta(hours=1))
    store.import_supporters([person(0, ("a1",), gone), person(1, ("a1",))], NOW)
    plan(store, "a1")
    later = NOW + dt.timedelta(days=30)
    assert store.people.lapse(later, since=later - dt.timedelta(days=7)) == 0
    assert store.people.lapse(later) == 3
    assert {e for e, *_ in planned(store)} == {"m1@example.net"}
