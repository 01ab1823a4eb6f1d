"""Claims from the store: fair across groups, paced by buckets every worker shares.

Run over a SQLite file and a real PostgreSQL, with separate connections standing in for workers.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Iterator

import pytest

from dispatcher.models import ClaimBatch, ClaimGroup, ProviderEvent
from dispatcher.pacing import Limits
from dispatcher.store import ClaimRequest, Store, open_store
from tests.conftest import never_retry
from tests.store.test_store_contract import LEASE, NOW, claims_in_threads, people

DEFAULT = Limits(rate=2, burst=10, global_rate=100)


def group(target: str, *copies: str, action: str = "act") -> ClaimGroup:
    keys = tuple(f"email:{t}@example.org" for t in (target, *copies))
    return ClaimGroup(action, target, "email", keys)


def claim(
    store: Store, worker: str, groups: list[ClaimGroup], room: int, limits: Limits, at: dt.datetime = NOW
) -> ClaimBatch:
    return store.claim(worker, ClaimRequest(groups, {"email": room}, limits), at, LEASE)


@pytest.fixture
def second(store: Store, db_url: str) -> Iterator[Store]:
    other = open_store(db_url, migrate=False)
    yield other
    other.close()


def test_a_group_with_nothing_due_takes_nothing_from_the_others(store: Store) -> None:
    # The reported defect: two `to` targets, lifted pacing; the second got no letters at all.
    store.import_supporters(people(400), NOW)
    store.plan("act", [("t1", "email"), ("t2", "email")], NOW)
    lifted = Limits(10_000, 10_000, 100_000)
    groups = [group("t1"), group("t2"), group("t3")]  # t3 has no deliveries
    batch = claim(store, "A", groups, 32, lifted)
    per_target = Counter(c.target_id for c in batch.claims)
    assert per_target == {"t1": 16, "t2": 16}
    assert batch.dry == {("act", "t3", "email")}


def test_a_small_action_is_served_beside_big_ones_under_default_pacing(store: Store) -> None:
    # Five actions, one target each, one supporter for the fifth: it used to wait forever.
    store.import_supporters(people(50, scopes=("a1", "a2", "a3", "a4")), NOW)
    store.import_supporters(people(1, scopes=("a5",), start=50), NOW)
    for n in range(1, 6):
        store.plan(f"a{n}", [(f"t{n}", "email")], NOW)
    groups = [group(f"t{n}", action=f"a{n}") for n in range(1, 6)]
    batch = claim(store, "A", groups, 16, DEFAULT)
    per_action = Counter(c.action_id for c in batch.claims)
    assert per_action["a5"] == 1 and sum(per_action.values()) == 16


def test_pacing_is_shared_by_every_worker(store: Store, second: Store) -> None:
    store.import_supporters(people(100), NOW)
    store.plan("act", [("t1", "email")], NOW)
    tight = Limits(rate=5, burst=5, global_rate=100)
    total = 0
    for tick in range(11):  # 10 seconds, both workers asking every second
        at = NOW + dt.timedelta(seconds=tick)
        for worker in (store, second):
            total += len(claim(worker, f"w{id(worker)}", [group("t1")], 50, tight, at).claims)
    assert total == 5 + 5 * 10  # burst + rate × time, not twice that


def test_a_copied_official_limits_every_letter_copied_to_them(store: Store) -> None:
    store.import_supporters(people(20), NOW)
    store.plan("act", [("p1", "email"), ("p2", "email")], NOW)
    groups = [group("p1", "amb"), group("p2", "amb")]
    batch = claim(store, "A", groups, 100, Limits(rate=1, burst=4, global_rate=100))
    assert Counter(c.target_id for c in batch.claims) == {"p1": 2, "p2": 2}
    assert batch.wait == pytest.approx(1.0)


def test_the_global_limit_holds_across_workers(store: Store, second: Store) -> None:
    store.import_supporters(people(60), NOW)
    store.plan("act", [(f"t{n}", "email") for n in range(6)], NOW)
    groups = [group(f"t{n}") for n in range(6)]
    limits = Limits(rate=100, burst=100, global_rate=20)
    first = claim(store, "A", groups, 100, limits)
    other = claim(second, "B", groups, 100, limits)
    assert len(first.claims) == 20 and other.claims == []
    assert other.wait == pytest.approx(0.05)
    assert len(claim(second, "B", groups, 100, limits, NOW + dt.timedelta(seconds=1)).claims) == 20


def test_concurrent_workers_never_overspend_a_bucket(store: Store, db_url: str) -> None:
    store.import_supporters(people(300), NOW)
    store.plan("act", [("t1", "email"), ("t2", "email")], NOW)
    limits = Limits(rate=1, burst=40, global_rate=1000)
    batches = claims_in_threads(
        db_url, 4, 10, lambda s, w: claim(s, w, [group("t1"), group("t2")], 7, limits)
    )
    got = [c.delivery_id for b in batches for c in b.claims]
    assert len(got) == len(set(got)) == 80  # 40 per target, at one instant, from four workers


def test_recover_hands_back_only_leases_that_ran_out(store: Store) -> None:
    store.import_supporters(people(3), NOW)
    store.plan("act", [("t1", "email")], NOW)
    lifted = Limits(1e6, 1e6, 1e6)
    claim(store, "dead", [group("t1")], 2, lifted)
    assert store.recover("B", NOW + LEASE) == 0
    assert store.recover("B", NOW + LEASE + dt.timedelta(seconds=1)) == 2
    assert store.next_due([("act", "t1", "email")], NOW) == NOW


def test_a_recovered_letter_keeps_its_place_ahead_of_letters_due_later(store: Store) -> None:
    store.import_supporters(people(1), NOW)
    store.plan("act", [("t1", "email")], NOW)
    lifted = Limits(1e6, 1e6, 1e6)
    (lost,) = [c.delivery_id for c in claim(store, "dead", [group("t1")], 1, lifted).claims]
    store.import_supporters(people(5, start=1), NOW)
    store.plan("act", [("t1", "email")], NOW + dt.timedelta(seconds=1))  # the backlog behind it
    later = NOW + LEASE + dt.timedelta(seconds=5)
    assert store.recover("B", later) == 1
    assert store.next_due([("act", "t1", "email")], later) == NOW  # its own due time, not "now"
    assert [c.delivery_id for c in claim(store, "B", [group("t1")], 1, lifted, later).claims] == [lost]


def fax_group(target: str, number: str, action: str = "act") -> ClaimGroup:
    return ClaimGroup(action, target, "fax", (f"fax:{number}",), f"line:fax:{number}")


def test_one_fax_at_a_time_per_number_across_workers(store: Store, second: Store) -> None:
    from dispatcher.models import AttemptResult, Outcome, Submission

    store.import_supporters(people(6), NOW)
    store.plan("act", [("pres", "fax")], NOW)
    store.plan("other", [("pres", "fax")], NOW)  # the same office named by another action
    lifted = Limits(1e6, 1e6, 1e6)
    same_number = [fax_group("pres", "+861062381025"), fax_group("pres", "+861062381025", "other")]

    def fax_claim(s: Store, worker: str) -> list[int]:
        request = ClaimRequest(same_number, {"fax": 10}, lifted)
        return [c.delivery_id for c in s.claim(worker, request, NOW, LEASE).claims]

    first = fax_claim(store, "A")
    assert len(first) == 1 and fax_claim(second, "B") == []  # the line is busy
    submitted = AttemptResult(
        first[0],
        "act",
        "pres",
        "fax",
        NOW,
        NOW,
        Outcome.SUBMITTED,
        submission=Submission("file", "job-1", "+861062381025", 1),
    )
    store.record("A", [submitted], never_retry)
    assert fax_claim(second, "B") == []  # still busy while the provider has it
    store.resolve(ProviderEvent("file", "job-1", True, NOW), "poll", never_retry)
    assert len(fax_claim(second, "B")) == 1
