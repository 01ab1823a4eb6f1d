"""/metrics and /healthz over ASGI, on the real app over a SQLite file and PostgreSQL.

/metrics wants the bearer token of DISPATCHER_METRICS_TOKEN (and does not exist without it);
what it reports is read from the store; /healthz fails when the database is gone.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import prometheus_client
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from dispatcher.accounts import Role
from dispatcher.models import (
    AttemptResult,
    ClaimGroup,
    Outcome,
    ProviderEvent,
    Resolution,
    Submission,
    WorkerBeat,
)
from dispatcher.store import ClaimRequest, Store
from tests.conftest import PG_ADMIN_URL, never_retry
from tests.store.test_store_contract import LEASE, NOW, UNPACED, people
from tests.support.web_client import add_users, client, log_in, web_settings

TOKEN = "a-long-random-metrics-token-0123456789"
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@pytest.fixture
async def web(tmp_path: Path, store: Store) -> AsyncIterator[httpx.AsyncClient]:
    async with client(web_settings(tmp_path, metrics_token=TOKEN), store) as c:
        yield c


def bearer(token: str = TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def parse(exposition: str) -> Samples:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(exposition)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def by_labels(samples: Samples, name: str, *keys: str) -> dict[tuple[str, ...], float]:
    """The metric's samples keyed by the values of the named labels only."""
    return {
        tuple(dict(labels)[k] for k in keys): n for (sample, labels), n in samples.items() if sample == name
    }


def claims(store: Store, channel: str, n: int) -> list[int]:
    group = ClaimGroup("act", "t1", channel, (f"{channel}:t1",))
    batch = store.claim("w", ClaimRequest([group], {channel: n}, UNPACED), NOW, LEASE)
    return [c.delivery_id for c in batch.claims]


def attempt(delivery: int, channel: str, seconds: float, outcome: Outcome, **kw: object) -> AttemptResult:
    return AttemptResult(
        delivery,
        "act",
        "t1",
        channel,
        NOW,
        NOW + dt.timedelta(seconds=seconds),
        outcome,
        **kw,  # type: ignore[arg-type]
    )


@pytest.mark.parametrize("token", [None, ""])  # unset, or set but empty: no token either way
async def test_without_the_token_metrics_does_not_exist(
    tmp_path: Path, store: Store, token: str | None
) -> None:
    async with client(web_settings(tmp_path, metrics_token=token), store) as web:
        assert (await web.get("/metrics")).status_code == 404
        assert (await web.get("/metrics", headers=bearer())).status_code == 404
        assert (await web.get("/metrics", headers=bearer(""))).status_code == 404


async def test_metrics_wants_the_bearer_token_not_a_login(web: httpx.AsyncClient, store: Store) -> None:
    for headers in (
        {},
        bearer("wrong"),
        bearer(TOKEN[:-1]),
        bearer(TOKEN + "x"),
        {"Authorization": TOKEN},
        {"Authorization": f"Basic {TOKEN}"},
    ):
        got = await web.get("/metrics", headers=headers)
        assert got.status_code == 401, headers
        assert got.headers["www-authenticate"].startswith("Bearer")
        assert "dispatcher_" not in got.text
    add_users(store)
    assert (await log_in(web, Role.ADMIN.label)).status_code == 303
    assert (await web.get("/metrics")).status_code == 401  # a browser session is not enough
    got = await web.get("/metrics", headers={"Authorization": f"bearer {TOKEN}"})  # scheme: any case
    assert got.status_code == 200 and got.headers["content-type"].startswith("text/plain; version=0.0.4")


async def test_metrics_report_what_the_store_holds(web: httpx.AsyncClient, store: Store) -> None:
    store.import_supporters(people(4), NOW)
    store.plan("act", [("t1", "email"), ("t1", "fax")], NOW)
    e1, e2 = claims(store, "email", 2)
    f1, f2 = claims(store, "fax", 2)
    job = Submission("file", "job-1", "+442079460000", 2)
    store.record(
        "w",
        [
            attempt(e1, "email", 0.3, Outcome.SENT),
            attempt(e2, "email", 3.0, Outcome.FAILED, code=550, detail="550 5.1.1 no such user"),
            attempt(f1, "fax", 7.0, Outcome.RETRY, detail="busy: 486 busy here", next_attempt_at=NOW),
            attempt(f2, "fax", 2.0, Outcome.SUBMITTED, detail="submitted", submission=job),
        ],
        never_retry,
    )
    # The provider's word on f2, three minutes later: not the dispatcher's latency, but a failure.
    late = NOW + dt.timedelta(minutes=3)
    no_answer = ProviderEvent("file", "job-1", False, late, reason="no answer", failure="no answer")
    assert store.resolve(no_answer, "webhook", never_retry) is Resolution.APPLIED
    now = dt.datetime.now(dt.UTC)  # the app's clock
    for worker, seen, stopped in (
        ("w-running", now, None),
        ("w-stale", now - dt.timedelta(seconds=60), None),
        ("w-stopped", now, now),
    ):
        store.heartbeat(WorkerBeat(worker, now - dt.timedelta(hours=1), seen, 3, 7, stopped))

    got = await web.get("/metrics", headers=bearer())
    assert got.status_code == 200 and got.headers["cache-control"] == "no-store"
    m = parse(got.text)

    assert by_labels(m, "dispatcher_attempts_total", "channel", "outcome") == {
        ("email", "sent"): 1,
        ("email", "failed"): 1,
        ("fax", "retry"): 1,
        ("fax", "submitted"): 1,
        ("fax", "failed"): 1,
    }
    assert value(m, "dispatcher_attempts_total", action="act", channel="email", outcome="sent") == 1

    assert by_labels(m, "dispatcher_deliveries", "channel", "status") == {
        ("email", "sent"): 1,
        ("email", "failed"): 1,
        ("email", "pending"): 2,
        ("fax", "pending"): 3,  # f1 waits for its retry
        ("fax", "failed"): 1,
    }

    def bucket(channel: str, le: str) -> float | None:
        return value(m, "dispatcher_attempt_seconds_bucket", channel=channel, le=le)

    assert [bucket("email", le) for le in ("0.25", "0.5", "2.5", "5.0", "+Inf")] == [0, 1, 1, 2, 2]
    assert value(m, "dispatcher_attempt_seconds_count", channel="email") == 2
    assert value(m, "dispatcher_attempt_seconds_sum", channel="email") == pytest.approx(3.3)
    # The fax's three minutes at the provider are not counted: submission 2 s, the busy try 7 s.
    assert [bucket("fax", le) for le in ("1.0", "2.5", "5.0", "10.0", "60.0", "+Inf")] == [0, 1, 1, 2, 2, 2]
    assert value(m, "dispatcher_attempt_seconds_sum", channel="fax") == pytest.approx(9.0)

    failures = {
        (dict(labels)["provider"], dict(labels)["failure"]): n
        for (name, labels), n in m.items()
        if name == "dispatcher_fax_failures_total"
    }
    assert failures == {("unknown", "busy"): 1, ("file", "no answer"): 1}

    assert value(m, "dispatcher_worker_last_seen_seconds", worker="w-stale") == pytest.approx(
        (now - dt.timedelta(seconds=60)).timestamp(), abs=1e-3
    )
    assert value(m, "dispatcher_worker_holding", worker="w-running") == 3
    up = {w: value(m, "dispatcher_worker_up", worker=w) for w in ("w-running", "w-stale", "w-stopped")}
    assert up == {"w-running": 1, "w-stale": 0, "w-stopped": 0}

    # The app's own registry, not prometheus-client's global one.
    assert "dispatcher_attempts" not in {f.name for f in prometheus_client.REGISTRY.collect()}


async def test_an_empty_store_gives_empty_families(web: httpx.AsyncClient) -> None:
    got = await web.get("/metrics", headers=bearer())
    families = {f.name: f for f in text_string_to_metric_families(got.text)}
    assert {"dispatcher_attempts", "dispatcher_deliveries", "dispatcher_attempt_seconds"} <= set(families)
    assert all(not f.samples for name, f in families.items() if name.startswith("dispatcher_"))


def drop_database(url: str) -> None:
    """The database disappears under the running app: the SQLite file deleted, or the
    PostgreSQL database dropped (its sessions terminated)."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        assert parsed.database
        for suffix in ("", "-wal", "-shm"):
            Path(parsed.database + suffix).unlink(missing_ok=True)
        return
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE "{parsed.database}" WITH (FORCE)'))
    admin.dispose()


async def test_healthz_reads_the_store_and_fails_without_it(
    web: httpx.AsyncClient, store: Store, db_url: str
) -> None:
    ok = await web.get("/healthz")
    assert ok.status_code == 200 and ok.text == "ok\n"
    # Close the pool: an open SQLite connection would go on reading the deleted file's inode.
    store.close()
    drop_database(db_url)
    gone = await web.get("/healthz")
    assert gone.status_code == 503 and gone.text == "store unavailable\n"
    assert (await web.get("/metrics", headers=bearer())).status_code == 503
    assert (await web.get("/healthz")).status_code == 503  # and it stays so, no half-answer
