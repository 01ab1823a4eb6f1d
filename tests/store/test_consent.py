"""The consent rule (store/consent.py) read the same way wherever a letter depends on it, and
still served by the indexes: the claim's, and migration 0006's partial index of current consents.

Run over a SQLite file and a real PostgreSQL.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

from sqlalchemy import Connection, Engine, event, func, literal, select
from sqlalchemy.sql import Executable

from dispatcher.models import Terms
from dispatcher.store import AttemptResult, ClaimGroup, Outcome, Store
from dispatcher.store.claims import due_queries
from dispatcher.store.consent import allows
from dispatcher.store.mandates import successor
from dispatcher.store.schema import consents, deliveries
from tests.conftest import never_retry
from tests.store.test_store_contract import NOW, people
from tests.store.test_submissions import fax_letters, plan_fax

LATER = NOW + dt.timedelta(hours=1)


def lapse_at(store: Store, when: dt.datetime) -> None:
    with store.engine.begin() as conn:  # type: ignore[attr-defined]
        conn.execute(consents.update().values(expires_at=when))


def test_a_fax_failing_after_its_consent_lapsed_does_not_fall_back(store: Store) -> None:
    # The fallback letter could never be claimed (its consent is not live): the log would say
    # "falling back to email" for an email that never goes.
    delivery = plan_fax(store)
    lapse_at(store, NOW + dt.timedelta(minutes=1))
    failed = AttemptResult(delivery, "act", "t1", "fax", LATER, LATER, Outcome.FAILED, detail="422")
    store.record("w", [failed], never_retry)
    assert fax_letters(store) == [("fax", "failed")]
    assert [a.detail for a in store.attempt_log()] == ["422"]


def test_a_supporter_whose_consent_lapsed_gets_no_more_receipts(store: Store) -> None:
    # As after revoking: a receipt is an email to someone whose consent no longer stands.
    person = replace(people(1)[0], receipts="weekly")
    store.import_supporters([person], NOW - dt.timedelta(days=30))
    due = {"weekly": NOW - dt.timedelta(days=1)}
    assert [r.email for r in store.privacy.receipts_due(due, NOW, 10)] == [person.email]
    lapse_at(store, NOW - dt.timedelta(hours=1))
    assert store.privacy.receipts_due(due, NOW, 10) == []


@contextmanager
def explaining(engine: Engine, *setup: str) -> Iterator[Connection]:
    """A connection whose statements are explained instead of run, inside a transaction rolled
    back at the end (``setup``: statements run first, such as a DROP INDEX undone with it)."""
    sqlite = engine.dialect.name == "sqlite"
    prefix = "EXPLAIN QUERY PLAN " if sqlite else "EXPLAIN "

    def explain(*args: Any) -> tuple[str, Any]:
        statement, parameters = args[2], args[3]
        return prefix + statement, parameters

    with engine.connect() as conn, conn.begin() as transaction:
        # Without statistics on empty tables PostgreSQL would scan them whatever the indexes:
        # this asks whether the index can serve the query, as it does on a real queue.
        conn.exec_driver_sql("PRAGMA schema_version" if sqlite else "SET LOCAL enable_seqscan = off")
        for statement in setup:
            conn.exec_driver_sql(statement)
        event.listen(conn, "before_cursor_execute", explain, retval=True)
        try:
            yield conn
        finally:
            event.remove(conn, "before_cursor_execute", explain)
            transaction.rollback()


def plan_of(conn: Connection, query: Executable) -> str:
    rows = conn.execute(query).cursor.fetchall()  # the plan's rows, not the query's columns
    return "\n".join(str(row[-1]) for row in rows)


def test_the_claim_finds_due_letters_by_the_deliveries_index(store: Store) -> None:
    # The consent rule adds a lookup of the letter's consent by an index (SQLite: its primary
    # key; PostgreSQL may take the partial index of current consents), never a scan.
    group = ClaimGroup("act", "t1", "email", ("email:t1@example.org",))
    engine = store.engine  # type: ignore[attr-defined]
    with explaining(engine) as conn:
        (query,) = due_queries([group], [10], NOW)
        plan = plan_of(conn, query)
    # PostgreSQL cuts names at 63 bytes.
    assert "ix_deliveries_action_id_target_id_channel_status_next_a" in plan, plan
    for table in ("deliveries", "consents"):
        assert f"SCAN {table}" not in plan and f"Seq Scan on {table}" not in plan, plan
    if engine.dialect.name == "sqlite":
        assert "SEARCH consents USING INTEGER PRIMARY KEY" in plan, plan


def test_current_consents_are_found_by_the_partial_index_of_migration_0006(store: Store) -> None:
    # The successor of an ended consent (revive, the sweep) is looked up by supporter and scope
    # under consent.current, which must imply the index's WHERE for either database to use it.
    # The other indexes on those columns are dropped (in the transaction) so none can stand in.
    others = ("ix_consents_scope_supporter_id", "ix_consents_supporter_id")
    engine = store.engine  # type: ignore[attr-defined]
    with explaining(engine, *(f"DROP INDEX {name}" for name in others)) as conn:
        plan = plan_of(conn, select(deliveries.c.id).where(successor().exists()))
    assert "uq_consents_live_scope" in plan, plan


def test_a_consent_allows_a_channel_by_its_whole_name(store: Store) -> None:
    # Channels are stored as "email,fax": a name inside another ("mail", "ax") is not one of them.
    one, two = people(2)
    store.import_supporters(
        [
            replace(one, terms=Terms(channels=("email",))),
            replace(two, terms=Terms(channels=("email", "fax"))),
        ],
        NOW,
    )
    engine = store.engine  # type: ignore[attr-defined]

    def allowing(channel: str) -> int:
        with engine.connect() as conn:
            by_name = conn.scalar(select(func.count()).select_from(consents).where(allows(channel)))
            by_column = conn.scalar(
                select(func.count()).select_from(consents).where(allows(literal(channel)))
            )
        assert by_name == by_column, channel
        return int(by_name or 0)

    assert [allowing(c) for c in ("email", "fax", "mail", "ax", "")] == [2, 1, 0, 0, 0]
