"""The dashboard's and /metrics' queries on a big store: N deliveries, about 1.25 N attempts.

    .venv/bin/python bench/dashboard_scale.py --deliveries 1000000 --db both [--rounds 5] [--keep]

For each database (a SQLite file under /tmp; PostgreSQL ``dispatcher_bench``, created and dropped
through ``postgresql+psycopg:///postgres``):

1. fills the store in bulk (INSERT ... SELECT over a generated series, not the planner): 20
   actions x 5 targets x 2 channels (email, fax), N / 200 supporters; 65 % of the letters sent,
   19 % pending (a third of them after a failed try), 5 % failed for good (three attempts each),
   the rest expired, cancelled, in flight or at a fax provider; a sent fax has two attempt rows
   (the submission and the provider's word). Attempts finished over the last 7 days;
2. times every query the overview (``/``), an action's page, the send log (``/log``) and
   ``/metrics`` run, once to warm up and then ``--rounds`` times (median and slowest), and one
   full GET of each page through httpx's ASGITransport, logged in as a viewer;
3. prints each query's plan (PostgreSQL: EXPLAIN; SQLite: EXPLAIN QUERY PLAN) and flags full
   scans of ``deliveries`` and ``attempts``.

PostgreSQL is VACUUM ANALYZEd after the load (autovacuum would do it a little later); SQLite gets
no ANALYZE, as the store never runs one.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import re
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import Connection, create_engine, event, text
from sqlalchemy.engine import make_url

from dispatcher.accounts import Role, hash_password
from dispatcher.models import SupporterRecord, WorkerBeat
from dispatcher.settings import Settings
from dispatcher.store import Store, open_store
from dispatcher.store.reports import LogFilter
from dispatcher.web import app_for
from dispatcher.web.machine.metrics import LATENCY_BUCKETS

REPO = Path(__file__).resolve().parent.parent

ACTIONS, TARGETS, CHANNELS = 20, 5, 2
GROUPS = ACTIONS * TARGETS * CHANNELS
ACTION = "bench-7"  # the action whose page is timed
RARE = "bench-rare"  # ten letters sent a week ago: the oldest attempts, a page the log must find
PG_ADMIN = "postgresql+psycopg:///postgres"
PG_NAME = "dispatcher_bench"
PASSWORD = "bench password, not a secret"  # noqa: S105 (a throwaway account in a throwaway db)
TOKEN = "bench-metrics-token"  # noqa: S105
CSRF = re.compile(r'name="csrf" value="([0-9a-f]{64})"')
SLOW = 1.0  # seconds: a page query slower than this at 1M deliveries needs an index


# Filling -----------------------------------------------------------------------------------------


class Sql:
    """The few fragments that differ between the two databases."""

    def __init__(self, dialect: str) -> None:
        self.pg = dialect == "postgresql"

    def numbers(self, name: str) -> str:
        """A CTE ``name(i)`` counting from 0 to :last."""
        if self.pg:
            return f"{name}(i) AS (SELECT generate_series(0, :last))"
        return f"{name}(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM {name} WHERE i < :last)"  # noqa: S608

    def shift(self, moment: str, seconds: str) -> str:
        """``moment`` moved by ``seconds`` (an SQL number, may be negative)."""
        if self.pg:
            return f"({moment} + ({seconds}) * interval '1 second')"
        # Naive UTC text with microseconds, as the store's UTCDateTime writes it.
        return f"(strftime('%Y-%m-%d %H:%M:%f', {moment}, printf('%+.3f seconds', {seconds})) || '000')"

    def now(self) -> str:
        return "CAST(:now AS timestamptz)" if self.pg else ":now"


def deliveries_sql(q: Sql) -> str:
    created = q.shift(q.now(), "-691200 + (i % 3600)")
    touched = q.shift(q.now(), "-((i * 13) % 604800)")  # the last attempt: within the last 7 days
    status = (
        "CASE WHEN r < 65 THEN 'sent' WHEN r < 84 THEN 'pending' WHEN r < 89 THEN 'failed'"
        " WHEN r < 93 THEN 'expired' WHEN r < 96 THEN 'cancelled' WHEN r < 98 THEN 'sending'"
        " WHEN ch = 1 THEN 'submitted' ELSE 'sent' END"
    )
    return f"""
WITH RECURSIVE {q.numbers("g")},
src AS (SELECT i, i % {GROUPS} AS grp, i / {GROUPS} AS s FROM g),
cls AS (
    SELECT i, s, grp / {TARGETS * CHANNELS} AS a, (grp / {CHANNELS}) % {TARGETS} AS t, grp % {CHANNELS} AS ch,
           (s * 7919 + grp * 31) % 100 AS r
    FROM src
),
d AS (SELECT cls.*, {status} AS status, {created} AS created, {touched} AS touched FROM cls)
INSERT INTO deliveries (
    action_id, supporter_id, target_id, channel, status, attempts, next_attempt_at, lease_owner,
    lease_until, language, last_error, created_at, updated_at, sent_at, provider, provider_job,
    submitted_at
)
SELECT
    'bench-' || a, :first + s, 't' || t, CASE ch WHEN 0 THEN 'email' ELSE 'fax' END, status,
    CASE WHEN status IN ('sent', 'submitted') THEN 1 WHEN status = 'failed' THEN 3
         WHEN status = 'pending' AND r >= 78 THEN 1 ELSE 0 END,
    CASE WHEN status = 'pending' AND r >= 78 THEN {q.shift(q.now(), "(i * 17) % 3600")}
         WHEN status = 'pending' THEN {q.shift(q.now(), "-60 * r")} ELSE created END,
    CASE WHEN status = 'sending' THEN 'bench-w0' END,
    CASE WHEN status = 'sending' THEN {q.shift(q.now(), "60")} END,
    CASE WHEN status IN ('sent', 'failed') THEN 'en' END,
    CASE WHEN status = 'failed' AND ch = 0 THEN '550 5.1.1 mailbox unavailable'
         WHEN status = 'failed' THEN 'gave up after 3 attempts: no answer: no answer'
         WHEN status = 'pending' AND r >= 78 AND ch = 0 THEN '451 4.7.1 greylisted, try again later'
         WHEN status = 'pending' AND r >= 78 THEN 'busy: line busy' END,
    created,
    CASE WHEN status IN ('pending', 'expired', 'cancelled') AND r < 78 THEN created ELSE touched END,
    CASE WHEN status = 'sent' THEN touched END,
    CASE WHEN status = 'submitted' THEN 'file' END,
    CASE WHEN status = 'submitted' THEN 'job-' || i END,
    CASE WHEN status = 'submitted' THEN touched END
FROM d
"""  # noqa: S608 (built from constants)


def attempts_sql(q: Sql) -> str:
    """Attempt rows of every delivery that had one, the last finishing at its ``updated_at``."""
    outcome = (
        "CASE WHEN status = 'sent' AND channel = 'email' THEN 'sent'"
        " WHEN status = 'sent' THEN CASE WHEN k = 1 THEN 'submitted' ELSE 'sent' END"
        " WHEN status = 'failed' THEN CASE WHEN k < 3 THEN 'retry' ELSE 'failed' END"
        " WHEN status = 'submitted' THEN 'submitted' ELSE 'retry' END"
    )
    # A quarter of the fax failures are submissions the provider refused: no provider recorded.
    provider = (
        "CASE WHEN channel = 'fax' AND NOT (outcome IN ('retry', 'failed') AND id % 4 = 0) THEN 'file' END"
    )
    took = (
        "CASE WHEN provider IS NOT NULL AND outcome <> 'submitted' THEN 90 + id % 60"
        " WHEN channel = 'email' THEN 0.05 + (id * 37 % 2000) / 1000.0"
        " ELSE 0.5 + (id * 37 % 15000) / 1000.0 END"
    )
    back = "(n - k) * 1200"  # 20 minutes between tries
    return f"""
WITH k(k) AS (VALUES (1), (2), (3)),
x AS (
    SELECT d.id, d.action_id, d.target_id, d.channel, d.status, d.updated_at, k.k,
           CASE WHEN d.status = 'sent' AND d.channel = 'fax' THEN 2 WHEN d.status = 'failed' THEN 3
                ELSE 1 END AS n
    FROM deliveries d CROSS JOIN k
    WHERE d.status IN ('sent', 'failed', 'submitted') OR (d.status = 'pending' AND d.attempts > 0)
),
y AS (SELECT x.*, {outcome} AS outcome FROM x WHERE k <= n),
z AS (SELECT y.*, {provider} AS provider FROM y)
INSERT INTO attempts (
    delivery_id, action_id, target_id, channel, started_at, finished_at, outcome, code, detail,
    worker, provider, job_id, destination, pages, duration
)
SELECT
    id, action_id, target_id, channel,
    {q.shift("updated_at", f"-({back}) - ({took})")},
    {q.shift("updated_at", f"-({back})")},
    outcome,
    CASE WHEN channel = 'fax' THEN NULL WHEN outcome = 'sent' THEN 250 WHEN outcome = 'retry' THEN 451
         ELSE 550 END,
    CASE WHEN channel = 'email' AND outcome = 'sent' THEN '250 2.0.0 Ok: queued'
         WHEN channel = 'email' AND outcome = 'retry' THEN '451 4.7.1 greylisted, try again later'
         WHEN channel = 'email' THEN '550 5.1.1 mailbox unavailable'
         WHEN outcome = 'submitted' THEN 'submitted to file'
         WHEN outcome = 'sent' THEN ''
         WHEN outcome = 'failed' THEN 'gave up after 3 attempts: no answer: no answer'
         WHEN k = 1 THEN 'busy: line busy' ELSE 'no answer: no answer' END,
    'bench-w' || (id % 4),
    provider,
    CASE WHEN provider IS NOT NULL THEN 'job-' || id || '-' || k END,
    CASE WHEN channel = 'fax' THEN '+442079460000' END,
    CASE WHEN provider IS NOT NULL AND outcome IN ('submitted', 'sent') THEN 2 END,
    CASE WHEN provider IS NOT NULL AND outcome <> 'submitted' THEN 74.5 END
FROM z
"""  # noqa: S608 (built from constants)


# The indexes this bench showed the dashboard needs (now in the schema, migration 0005): each
# turns a scan of the table, or an index walk with a lookup per row, into a covering read.
# --without-dashboard-indexes drops them first, for the baseline.
DASHBOARD_INDEXES = (
    "ix_deliveries_action_id_status_attempts",  # progress()
    "ix_attempts_outcome_finished_at_action_id",  # sent_since()
    "ix_attempts_outcome_action_id_provider_pages",  # fax_pages()
    "ix_attempts_action_id_channel_outcome",  # outcome_counts() (/metrics)
)


def fill(store: Store, n: int, now: dt.datetime, without_indexes: bool = False) -> dict[str, float]:
    engine = store.engine  # type: ignore[attr-defined]
    q = Sql(engine.dialect.name)
    people = -(-n // GROUPS)
    took: dict[str, float] = {}
    start = time.perf_counter()
    store.import_supporters(
        (
            SupporterRecord(f"s{i}@example.net", f"Supporter {i}", "en", "Town", "GB", ("all",), now)
            for i in range(people)
        ),
        now,
    )
    took["supporters"] = time.perf_counter() - start
    stamp: object = now if q.pg else now.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
    old: object = now - dt.timedelta(days=8)
    if not q.pg:
        old = now.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
    with engine.begin() as conn:
        first = conn.execute(text("SELECT min(id) FROM supporters")).scalar_one()
        conn.execute(
            text(
                "INSERT INTO deliveries (action_id, supporter_id, target_id, channel, status, attempts,"
                " next_attempt_at, language, created_at, updated_at, sent_at)"
                " SELECT :rare, id, 't0', 'email', 'sent', 1, :old, 'en', :old, :old, :old"
                " FROM supporters ORDER BY id LIMIT 10"
            ),
            {"old": old, "rare": RARE},
        )
        start = time.perf_counter()
        conn.execute(text(deliveries_sql(q)), {"last": n - 1, "first": first, "now": stamp})
        took["deliveries"] = time.perf_counter() - start
    with engine.begin() as conn:
        start = time.perf_counter()
        conn.execute(text(attempts_sql(q)))
        took["attempts"] = time.perf_counter() - start
    start = time.perf_counter()
    if q.pg:
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM ANALYZE"))
    else:
        raw = engine.raw_connection()  # outside a transaction (the store's connections begin one)
        try:
            raw.cursor().execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            raw.close()
    took["vacuum/checkpoint"] = time.perf_counter() - start
    if without_indexes:
        with engine.begin() as conn:
            for name in DASHBOARD_INDEXES:
                conn.execute(text(f"DROP INDEX {name}"))
    for i in range(4):
        store.heartbeat(WorkerBeat(f"bench-w{i}", now - dt.timedelta(hours=2), now, 40, 1000, None))
    return took


def count(store: Store, table: str) -> int:
    with store.engine.connect() as conn:  # type: ignore[attr-defined]
        return int(conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one())  # noqa: S608


def write_actions(directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for a in range(ACTIONS):
        targets = "".join(
            f"""  - id: t{t}
    name: Official {t}
    role: to
    languages: [en]
    email: t{t}.a{a}@example.org
    fax: +44 20 7946 0{a * TARGETS + t:03d}
    channels: [email, fax]
"""
            for t in range(TARGETS)
        )
        (directory / f"bench-{a}.yaml").write_text(
            f"""id: bench-{a}
title: Bench action {a}
deadline: 2035-12-31
timezone: Europe/London
status: active
languages: [en]
template_set: ua-61-21-update-1
targets:
{targets}""",
            encoding="utf-8",
        )


# Timing ------------------------------------------------------------------------------------------


@dataclass
class Timing:
    median: float
    slowest: float


@dataclass
class Result:
    db: str
    deliveries: int = 0
    attempts: int = 0
    fill: dict[str, float] = field(default_factory=dict)
    queries: dict[str, Timing] = field(default_factory=dict)
    pages: dict[str, Timing] = field(default_factory=dict)
    plans: dict[str, list[str]] = field(default_factory=dict)
    flags: list[str] = field(default_factory=list)


def timed(fn: Callable[[], object], rounds: int) -> Timing:
    fn()  # warm up
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return Timing(statistics.median(times), max(times))


def queries(store: Store, now: dt.datetime, middle: int) -> dict[str, Callable[[], object]]:
    r = store.reports
    return {
        "action_states()": store.action_states,
        "queue_counts()": store.queue_counts,
        "reports.progress()": r.progress,
        "reports.sent_since(now-1h)": lambda: r.sent_since(now - dt.timedelta(hours=1)),
        "reports.failure_reasons(a)": lambda: r.failure_reasons(ACTION),
        "reports.failed_deliveries(a)": lambda: r.failed_deliveries(ACTION, 20),
        "attempts_page(a, 30) newest": lambda: r.attempts_page(LogFilter(ACTION), 30, before_id=2**62),
        "attempts_page(a, 100) deep": lambda: r.attempts_page(LogFilter(ACTION), 100, before_id=middle),
        "attempts_page(all, 100) newest": lambda: r.attempts_page(LogFilter(), 100, before_id=2**62),
        "attempts_page(rare, 30) newest": lambda: r.attempts_page(LogFilter(RARE), 30, before_id=2**62),
        "fax_pages()": store.fax_pages,
        "reports.outcome_counts()": r.outcome_counts,
        "reports.attempt_latency()": lambda: r.attempt_latency(LATENCY_BUCKETS),
        "reports.fax_failures()": r.fax_failures,
        "workers()": store.workers,
    }


# Which queries each page runs (for the table).
OVERVIEW = ("action_states()", "queue_counts()", "reports.progress()", "reports.sent_since(now-1h)")
ACTION_PAGE = (
    "reports.failure_reasons(a)",
    "reports.failed_deliveries(a)",
    "attempts_page(a, 30) newest",
    "fax_pages()",
)
METRICS = (
    "reports.outcome_counts()",
    "reports.attempt_latency()",
    "reports.fax_failures()",
    "workers()",
)


def statements(store: Store, fn: Callable[[], object]) -> list[tuple[str, Any]]:
    """The SELECTs ``fn`` sends, with their parameters."""
    engine = store.engine  # type: ignore[attr-defined]
    seen: list[tuple[str, Any]] = []

    def note(
        conn: Connection, cursor: Any, statement: str, parameters: Any, context: Any, many: bool
    ) -> None:
        if statement.lstrip().upper().startswith(("SELECT", "WITH")):
            seen.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", note)
    try:
        fn()
    finally:
        event.remove(engine, "before_cursor_execute", note)
    return seen


def explain(store: Store, name: str, fn: Callable[[], object], result: Result) -> None:
    engine = store.engine  # type: ignore[attr-defined]
    pg = engine.dialect.name == "postgresql"
    lines: list[str] = []
    for statement, parameters in statements(store, fn):
        prefix = "EXPLAIN (COSTS OFF) " if pg else "EXPLAIN QUERY PLAN "
        with engine.connect() as conn:
            rows = conn.exec_driver_sql(prefix + statement, parameters or ()).all()
        lines.extend(str(row[0]) if pg else str(row[-1]) for row in rows)
    result.plans[name] = lines
    for line in lines:
        full = (
            re.search(r"Seq Scan on (attempts|deliveries)", line)
            if pg
            else re.match(r"\s*SCAN (attempts|deliveries)\b", line)
        )
        if full:
            result.flags.append(f"{name}: {line.strip()}")


async def pages(store: Store, tmp: Path, rounds: int, middle: int) -> dict[str, Timing]:
    settings = Settings.model_validate(
        {
            "actions_dir": tmp / "actions",
            "templates_dir": REPO / "templates",
            "outbox": tmp / "outbox",
            "fax_outbox": tmp / "fax-outbox",
            "metrics_token": TOKEN,
        }
    )
    store.accounts.add("bench-viewer", Role.VIEWER, hash_password(PASSWORD), dt.datetime.now(dt.UTC))
    transport = httpx.ASGITransport(app=app_for(settings, store), client=("192.0.2.10", 50000))
    out: dict[str, Timing] = {}
    async with httpx.AsyncClient(transport=transport, base_url="http://bench", timeout=600) as web:
        login = await web.get("/login")
        found = CSRF.search(login.text)
        assert found, "no CSRF token on the login page"
        form = {"name": "bench-viewer", "password": PASSWORD, "csrf": found.group(1), "next": "/"}
        assert (await web.post("/login", data=form)).status_code == 303, "the bench viewer cannot log in"
        for path in (
            "/",
            f"/actions/{ACTION}",
            "/log",
            f"/log?action={ACTION}&before={middle}",
            f"/log?action={RARE}",
            "/metrics",
        ):
            headers = {"Authorization": f"Bearer {TOKEN}"} if path == "/metrics" else {}
            times = []
            for i in range(rounds + 1):
                start = time.perf_counter()
                got = await web.get(path, headers=headers)
                if i:
                    times.append(time.perf_counter() - start)
                assert got.status_code == 200, (path, got.status_code, got.text[:300])
            out[f"GET {path}"] = Timing(statistics.median(times), max(times))
    return out


# Running -----------------------------------------------------------------------------------------


def say(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def databases(which: str, tmp: Path, pg_admin: str) -> Iterator[tuple[str, str]]:
    if which in ("sqlite", "both"):
        yield "sqlite", f"sqlite:///{tmp / 'bench.db'}"
    if which in ("postgres", "both"):
        yield "postgres", make_url(pg_admin).set(database=PG_NAME).render_as_string(hide_password=False)


def pg_database(pg_admin: str, create: bool) -> None:
    admin = create_engine(pg_admin, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{PG_NAME}" WITH (FORCE)'))
        if create:
            conn.execute(text(f'CREATE DATABASE "{PG_NAME}"'))
    admin.dispose()


def run_one(db: str, url: str, args: argparse.Namespace, tmp: Path) -> Result:
    result = Result(db)
    if db == "postgres":
        pg_database(args.pg_admin, create=True)
    store = open_store(url)
    try:
        now = dt.datetime.now(dt.UTC)
        say(f"{db}: filling {args.deliveries:,} deliveries")
        result.fill = fill(store, args.deliveries, now, args.without_dashboard_indexes)
        result.deliveries, result.attempts = count(store, "deliveries"), count(store, "attempts")
        seconds = sum(result.fill.values())
        say(f"{db}: {result.deliveries:,} deliveries, {result.attempts:,} attempts in {seconds:.0f} s")
        with store.engine.connect() as conn:  # type: ignore[attr-defined]
            low, high = conn.execute(text("SELECT min(id), max(id) FROM attempts")).one()
        middle = (int(low) + int(high)) // 2
        for name, fn in queries(store, now, middle).items():
            result.queries[name] = timed(fn, args.rounds)
            explain(store, name, fn, result)
            say(f"{db}: {name:34} {result.queries[name].median * 1000:9.1f} ms")
        result.pages = asyncio.run(pages(store, tmp, args.rounds, middle))
        for name, t in result.pages.items():
            say(f"{db}: {name:34} {t.median * 1000:9.1f} ms")
    finally:
        store.close()
        if db == "postgres" and not args.keep:
            pg_database(args.pg_admin, create=False)
    return result


def report(results: list[Result], args: argparse.Namespace) -> str:
    out = [
        f"command: .venv/bin/python bench/dashboard_scale.py --deliveries {args.deliveries} --db {args.db} "
        f"--rounds {args.rounds}"
        + (" --without-dashboard-indexes" if args.without_dashboard_indexes else ""),
        "",
    ]
    for r in results:
        fill = ", ".join(f"{k} {v:.1f} s" for k, v in r.fill.items())
        out.append(f"{r.db}: {r.deliveries:,} deliveries, {r.attempts:,} attempts; fill: {fill}")
    out.append("")
    head = "| query (page) | " + " | ".join(f"{r.db} median ms | slowest" for r in results) + " |"
    out += [head, "|---|" + "---:|---:|" * len(results)]
    names = list(results[0].queries) + list(results[0].pages)
    for name in names:
        where = (
            "overview"
            if name in OVERVIEW
            else "action"
            if name in ACTION_PAGE
            else "metrics"
            if name in METRICS
            else "log"
            if name.startswith("attempts_page")
            else ""
        )
        cells = []
        for r in results:
            t = r.queries.get(name) or r.pages[name]
            mark = " ⚠" if t.median > SLOW else ""
            cells.append(f"{t.median * 1000:.1f}{mark} | {t.slowest * 1000:.1f}")
        label = f"{name} ({where})" if where else name
        out.append(f"| {label} | " + " | ".join(cells) + " |")
    for r in results:
        out += ["", f"## {r.db}: query plans"]
        for name, lines in r.plans.items():
            out.append(f"-- {name}")
            out += [f"   {line if len(line) < 160 else line[:157] + '...'}" for line in lines]
        out.append(f"{r.db}: full scans of deliveries/attempts:" + ("" if r.flags else " none"))
        out += [f"  ! {flag}" for flag in r.flags]
        paged = [f for f in r.flags if f.startswith("attempts_page")]
        out.append(f"{r.db}: paged log scans attempts: " + ("YES: " + "; ".join(paged) if paged else "no"))
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--deliveries", type=int, default=1_000_000)
    parser.add_argument("--db", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--pg-admin", default=PG_ADMIN, help="a PostgreSQL URL to create the bench database from"
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the SQLite file and the PostgreSQL database"
    )
    parser.add_argument(
        "--without-dashboard-indexes",
        action="store_true",
        help="drop the dashboard's indexes first (DASHBOARD_INDEXES): the baseline",
    )
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="dispatcher-bench-", dir="/tmp"))
    write_actions(tmp / "actions")
    results = []
    try:
        for db, url in databases(args.db, tmp, args.pg_admin):
            results.append(run_one(db, url, args, tmp))
    finally:
        if args.keep:
            say(f"kept {tmp}" + (f" and database {PG_NAME}" if args.db != "sqlite" else ""))
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    print(report(results, args))


if __name__ == "__main__":
    main()
