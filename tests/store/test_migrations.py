"""Upgrading a database that holds a campaign keeps every row: SQLite rebuilds tables to alter
them, and a rebuild under enforced foreign keys would cascade into the send log."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from dispatcher.store.migrate import upgrade
from dispatcher.store.sql import engine_for

ROWS = {
    "supporters": "INSERT INTO supporters (email, name, language, city, country, created_at, updated_at) "
    "VALUES ('a@example.net', 'A', 'en', '', '', :t, :t)",
    "consents": "INSERT INTO consents (supporter_id, scope, channels, source, opted_in_at) "
    "VALUES (1, 'all', '*', 'import', :t)",
    "deliveries": "INSERT INTO deliveries (action_id, supporter_id, target_id, channel, consent_id, status, "
    "next_attempt_at, created_at, updated_at) VALUES ('x', 1, 't', 'email', 1, 'sent', :t, :t, :t)",
    "attempts": "INSERT INTO attempts (delivery_id, action_id, target_id, channel, started_at, finished_at, "
    "outcome, worker) VALUES (1, 'x', 't', 'email', :t, :t, 'sent', 'w')",
}


@contextlib.contextmanager
def upgraded_from(
    revision: str, tables: Iterable[str], backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[Engine]:
    """A database of the backend migrated up to the revision only, given the ROWS of these
    tables there, then upgraded to the head."""
    url = f"sqlite:///{tmp_path / 'old.db'}" if backend == "sqlite" else request.getfixturevalue("pg_url")
    engine = engine_for(url)
    try:
        upgrade(engine, revision)
        with engine.begin() as conn:
            for table in tables:
                conn.execute(text(ROWS[table]), {"t": "2026-01-01 00:00:00"})
        upgrade(engine)
        yield engine
    finally:
        engine.dispose()


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_upgrading_from_0005_keeps_the_campaign(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    with upgraded_from("0005", ROWS, backend, tmp_path, request) as engine, engine.connect() as conn:
        counts = {t: conn.execute(text(f"SELECT count(*) FROM {t}")).scalar() for t in ROWS}  # noqa: S608
        linked = conn.execute(text("SELECT supporter_id, consent_id FROM deliveries")).one()
        confirmed = conn.execute(text("SELECT confirmed_at IS NOT NULL FROM consents")).scalar()
        enforced = conn.exec_driver_sql("PRAGMA foreign_keys").scalar() if backend == "sqlite" else 1
    assert counts == dict.fromkeys(ROWS, 1)
    assert tuple(linked) == (1, 1) and confirmed
    assert enforced == 1


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_upgrading_from_0006_makes_every_consent_held_reply_through_the_organisation(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    tables = ("supporters", "consents")
    with upgraded_from("0006", tables, backend, tmp_path, request) as engine, engine.connect() as conn:
        replies = conn.execute(text("SELECT replies FROM consents")).scalars().all()
    assert replies == ["organisation"]
