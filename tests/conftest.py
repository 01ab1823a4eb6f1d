"""Shared fixtures: a real SQLite file and a real PostgreSQL database per test."""

from __future__ import annotations

import datetime as dt
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from dispatcher.settings import Settings
from dispatcher.store import Store, open_store
from tests.support.processes import CLOCK_FREE

ROOT = Path(__file__).resolve().parent.parent

# Clock-independent faxes and pace (see CLOCK_FREE): for the commands tests start with this environment, and
# for the settings they build in-process, by hand or from the environment.
os.environ.update(CLOCK_FREE)
Settings.model_fields["fax_office_hours"].default = CLOCK_FREE["DISPATCHER_FAX_OFFICE_HOURS"]
Settings.model_fields["spread"].default = CLOCK_FREE["DISPATCHER_SPREAD"]
Settings.model_rebuild(force=True)
PG_ADMIN_URL = os.environ.get("DISPATCHER_TEST_PG_URL", "postgresql+psycopg:///postgres")


def _pg_admin_available() -> str | None:
    try:
        engine = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            conn.execute(text("select 1"))
        engine.dispose()
    except Exception as exc:  # any failure means: no server to test against
        return f"{type(exc).__name__}: {exc}"
    return None


def cli_env(tmp_path: Path, world: Path | None = None, **extra: str) -> dict[str, str]:
    """Settings for the real ``dispatcher`` command: a SQLite file and local outboxes under
    ``tmp_path``, no settings file; actions and templates from ``world`` (default: the repo's)."""
    return {
        "DISPATCHER_SETTINGS": str(tmp_path / "none.toml"),
        "DISPATCHER_DATABASE_URL": f"sqlite:///{tmp_path / 'd.db'}",
        "DISPATCHER_ACTIONS_DIR": str((world or ROOT / "config") / "actions"),
        "DISPATCHER_TEMPLATES_DIR": str(world / "templates" if world else ROOT / "templates"),
        "DISPATCHER_OUTBOX": str(tmp_path / "outbox"),
        "DISPATCHER_FAX_OUTBOX": str(tmp_path / "fax-outbox"),
        **CLOCK_FREE,  # callers that drop the inherited DISPATCHER_* variables keep it
        **extra,
    }


@pytest.fixture(scope="session")
def pg_admin() -> str:
    problem = _pg_admin_available()
    if problem:
        if os.environ.get("DISPATCHER_REQUIRE_PG") == "1":
            pytest.fail(f"PostgreSQL required (DISPATCHER_REQUIRE_PG=1) but unreachable: {problem}")
        pytest.skip(f"no PostgreSQL server: {problem}")
    return PG_ADMIN_URL


@pytest.fixture
def pg_url(pg_admin: str) -> Iterator[str]:
    """A fresh, empty database on the real server, dropped afterwards."""
    name = f"dispatcher_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(pg_admin, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(pg_admin).set(database=name).render_as_string(hide_password=False)
    try:
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'dispatcher.db'}"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest) -> str:
    return str(request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "pg_url"))


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    s = open_store(db_url)
    try:
        yield s
    finally:
        s.close()


def never_retry(attempts: int, now: dt.datetime) -> dt.datetime | None:
    """A retry policy that gives up at once (for store tests that are not about retries)."""
    return None
