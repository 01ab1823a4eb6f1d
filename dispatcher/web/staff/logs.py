"""The send log (filtered, paged, exported), the workers' heartbeats and the audit log."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from urllib.parse import urlencode

from starlette.concurrency import iterate_in_threadpool, run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from dispatcher import capabilities
from dispatcher.accounts import Role
from dispatcher.models import Outcome
from dispatcher.sending.forecast import SILENT
from dispatcher.sending.sendlog import LOG_FIELDS, csv_chunks, log_values
from dispatcher.store import Store
from dispatcher.store.accounts import entries
from dispatcher.store.reports import LogFilter
from dispatcher.web.auth import requires
from dispatcher.web.context import context
from dispatcher.web.pages import forbidden, render

PAGE = 100
LAST_ID = 2**62  # below the largest integer SQLite and PostgreSQL's bigint hold
STALE = SILENT  # four missed heartbeats: the worker is gone


def page_id(value: str | None) -> int | None:
    """A ``before`` row id: ASCII digits that fit the database's integers, or ValueError."""
    if not value:
        return None
    if not (value.isascii() and value.isdigit() and int(value) <= LAST_ID):
        raise ValueError(f"not a row id: {value[:20]!r}")
    return int(value)


def _day(value: str | None) -> dt.datetime | None:
    if not value:
        return None
    return dt.datetime.combine(dt.date.fromisoformat(value), dt.time(), tzinfo=dt.UTC)


def _filter(request: Request) -> tuple[LogFilter, dict[str, str]]:
    q = request.query_params
    kept = {k: q[k] for k in ("action", "target", "channel", "outcome", "since", "until") if q.get(k)}
    until = _day(q.get("until"))
    where = LogFilter(
        q.get("action") or None,
        q.get("target") or None,
        q.get("channel") or None,
        q.get("outcome") or None,
        _day(q.get("since")),
        # "until" a day includes that day; the last day there is has no end to bound.
        until + dt.timedelta(days=1) if until and until.date() < dt.date.max else None,
    )
    return where, kept


@requires(Role.VIEWER)
async def send_log(request: Request) -> Response:
    try:
        where, kept = _filter(request)
        before = page_id(request.query_params.get("before")) or LAST_ID
    except ValueError:
        return forbidden(request, "a date is YYYY-MM-DD and a page number a number", status=400)
    rows = await run_in_threadpool(
        context(request).store.reports.attempts_page, where, PAGE, before_id=before, redact=True
    )
    return render(
        request,
        "log.html",
        recent=rows,
        f=where,
        since=kept.get("since", ""),
        until=kept.get("until", ""),
        outcomes=[o.value for o in Outcome],
        channels=list(capabilities.KINDS),
        query=urlencode(kept),
        older=rows[-1].id if len(rows) == PAGE else None,
    )


def _all(store: Store, where: LogFilter) -> Iterator[list[object]]:
    after = 0
    # Replies without the supporters they may quote, as on the page.
    while rows := store.reports.attempts_page(where, 2000, after_id=after, redact=True):
        yield from (log_values(r) for r in rows)
        after = rows[-1].id


@requires(Role.VIEWER)
async def send_log_csv(request: Request) -> Response:
    """The filtered log as CSV, streamed page by page; formulas neutralised."""
    try:
        where, _ = _filter(request)
    except ValueError:
        return forbidden(request, "a date is YYYY-MM-DD", status=400)
    chunks = csv_chunks(LOG_FIELDS, _all(context(request).store, where))
    headers = {"Content-Disposition": 'attachment; filename="send-log.csv"', "Cache-Control": "no-store"}
    return StreamingResponse(
        iterate_in_threadpool(chunks), media_type="text/csv; charset=utf-8", headers=headers
    )


@requires(Role.VIEWER)
async def workers(request: Request) -> Response:
    ctx = context(request)
    beats = await run_in_threadpool(ctx.store.workers)
    now = ctx.clock()

    def state(stopped: dt.datetime | None, seen: dt.datetime) -> str:
        return "stopped" if stopped else ("stale" if now - seen > STALE else "running")

    return render(request, "workers.html", workers=[(w, state(w.stopped_at, w.last_seen)) for w in beats])


@requires(Role.VIEWER)
async def audit(request: Request) -> Response:
    try:
        page = page_id(request.query_params.get("before"))
    except ValueError:
        return forbidden(request, "a page number is a number", status=400)
    rows = await run_in_threadpool(context(request).store.accounts.audit_entries, page, PAGE)
    return render(request, "audit.html", entries=rows, older=rows[-1][0] if len(rows) == PAGE else None)


AUDIT_FIELDS = ["at", "actor", "address", "action", "subject", "detail"]


@requires(Role.VIEWER)
async def audit_csv(request: Request) -> Response:
    rows = ([getattr(e, f) for f in AUDIT_FIELDS] for e in entries(context(request).store.accounts))
    chunks = csv_chunks(
        AUDIT_FIELDS, ([v.isoformat() if isinstance(v, dt.datetime) else v for v in r] for r in rows)
    )
    headers = {"Content-Disposition": 'attachment; filename="audit-log.csv"', "Cache-Control": "no-store"}
    return StreamingResponse(
        iterate_in_threadpool(chunks), media_type="text/csv; charset=utf-8", headers=headers
    )


routes = [
    Route("/log", send_log),
    Route("/log.csv", send_log_csv),
    Route("/workers", workers),
    Route("/audit", audit),
    Route("/audit.csv", audit_csv),
]
