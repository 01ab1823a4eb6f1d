"""The operators' and staff dashboard: overview, an action, staff controls, requeues.

Every route states the role it needs (``requires``); the pages hide what a role cannot do, but
the check that counts is here, on the server.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from dispatcher.accounts import Role
from dispatcher.actions import controls
from dispatcher.actions.model import Action
from dispatcher.sending import forecast, why
from dispatcher.store.accounts import AuditEntry
from dispatcher.store.reports import LogFilter
from dispatcher.web.auth import address, current_user, requires
from dispatcher.web.context import Context, context
from dispatcher.web.pages import forbidden, render
from dispatcher.web.staff.logs import page_id
from dispatcher.web.staff.summary import BAR, ActionRow, action_rows


def _overview(ctx: Context, advise: tuple[str, ...] = ()) -> list[ActionRow]:
    store, now = ctx.store, ctx.clock()
    return action_rows(
        ctx.actions(),
        store.action_states(),
        store.reports.progress(),
        store.reports.sent_since(now - dt.timedelta(hours=1)),
        store.queue_counts(),
        ctx.settings,
        now,
        forecast.held(ctx.settings, ctx.clock, store.action_holds(now)),
        bool(forecast.running(store.workers(), now)),
        advise,
        store.reports.cap_usage(now),
    )


def _dispatchers(ctx: Context) -> dict[str, Any]:
    """For the banner: whether any dispatcher runs, and those gone silent (since when)."""
    workers, now = ctx.store.workers(), ctx.clock()
    quiet = [(w.worker_id, int((now - w.last_seen).total_seconds())) for w in forecast.silent(workers, now)]
    return {"dispatching": bool(forecast.running(workers, now)), "silent": quiet, "limit": forecast.SILENT}


@requires(Role.VIEWER)
async def overview(request: Request) -> Response:
    ctx = context(request)
    rows = await run_in_threadpool(_overview, ctx)
    return render(request, "overview.html", rows=rows, bar=BAR, **await run_in_threadpool(_dispatchers, ctx))


@requires(Role.VIEWER)
async def overview_json(request: Request) -> Response:
    """The overview's numbers, for the page to refresh itself without reloading."""
    rows = await run_in_threadpool(_overview, context(request))
    data = {
        r.id: {
            "status": r.status,
            "left": r.left,
            "per_hour": r.per_hour,
            "at_risk": r.at_risk,
            "forecast": r.forecast,
            "warns": r.warns,
            "counts": r.counts,
        }
        for r in rows
    }
    return JSONResponse(data, headers={"Cache-Control": "no-store"})


def _action_page(ctx: Context, action_id: str) -> dict[str, Any] | None:
    action = ctx.actions().get(action_id)
    if action is None:
        return None
    store, reports = ctx.store, ctx.store.reports
    queues = [q for q in store.queue_counts() if q.action_id == action_id]
    # Its lanes walked with every action's: a domain's and an address's caps are shared.
    row = next(r for r in _overview(ctx, advise=(action_id,)) if r.id == action_id)
    return {
        **_dispatchers(ctx),
        "action": action,
        "row": row,
        "hold": forecast.fresh_holds(ctx.settings, ctx.clock, store.action_holds(ctx.clock())).get(action_id),
        "queues": queues,
        # Server replies may quote a supporter: no one reads them here with the person in.
        "recent": reports.attempts_page(LogFilter(action_id), 30, before_id=2**62, redact=True),
        "reasons": reports.failure_reasons(action_id, redact=True),
        "failed": reports.failed_deliveries(action_id, 20, redact=True),
        "pages": [(p, n) for a, p, n in store.fax_pages() if a == action_id],
        **_controls(ctx, action),
    }


def _controls(ctx: Context, action: Action) -> dict[str, Any]:
    """Only the controls that can apply now, and until when a close can be taken back."""
    state, now = ctx.store.action_states().get(action.id), ctx.clock()
    available = controls.available(action, state, now)
    return {
        "controls": available,
        "staff_controls": [c for c in available if c not in controls.REQUEUES],
        "reopen_until": controls.reopen_until(action, state, now),
        "closed_by": state.updated_by if state and state.status == "closed" else None,
        "grace_hours": f"{controls.REOPEN_GRACE.total_seconds() / 3600:g}",
    }


@requires(Role.VIEWER)
async def action_page(request: Request) -> Response:
    page = await run_in_threadpool(_action_page, context(request), request.path_params["action_id"])
    if page is None:
        return forbidden(request, "no such action", status=404)
    return render(request, "action.html", bar=BAR, **page)


@requires(Role.VIEWER)
async def delivery_page(request: Request) -> Response:
    """Why one letter is where it is (as ``dispatcher why`` says). Replies redacted, no supporter
    named and nothing that ties a supporter's letters together (consent number, cap, times to the
    second: ids are sequential, so a walk would group them), for every role; the operator's full
    view is ``dispatcher why`` on the host."""
    ctx = context(request)
    try:
        delivery_id = page_id(request.path_params["delivery_id"])
    except ValueError:
        delivery_id = None
    found = None
    if delivery_id is not None:
        found = await run_in_threadpool(
            why.explain, ctx.store, ctx.settings, delivery_id, ctx.clock, redact=True
        )
    if found is None:
        return forbidden(request, "no such delivery", status=404)
    return render(request, "delivery.html", letter=found, recent=found.attempts)


CONTROLS = {
    "pause": controls.pause,
    "resume": controls.resume,
    "reopen": controls.reopen,
    "release": controls.release,
}


@requires(Role.STAFF)
async def control(request: Request) -> Response:
    """Pause, resume, close (the action id typed to confirm), reopen, extend or release a hold:
    the same controls as the CLI, audited the same way."""
    ctx, what = context(request), request.url.path.rsplit("/", 1)[1]
    action = (await run_in_threadpool(ctx.actions)).get(request.path_params["action_id"])
    user = await current_user(request)
    if action is None or user is None:
        return forbidden(request, "no such action", status=404)
    form = await request.form()
    if what == "close" and str(form.get("confirm", "")).strip() != action.id:
        return forbidden(request, f"to close it, type the action id {action.id} in the box", status=400)
    try:
        await run_in_threadpool(
            _apply, ctx, what, action, user.name, address(request), str(form.get("deadline", ""))
        )
    except (controls.ControlError, ValueError) as exc:
        return forbidden(request, str(exc), status=409)
    return RedirectResponse(f"/actions/{action.id}", status_code=303)


def _apply(ctx: Context, what: str, action: Action, by: str, where: str, deadline: str) -> None:
    now = ctx.clock()
    if what == "close":
        controls.close(ctx.store, action, by, now, where)
    elif what == "extend":
        until = (
            dt.date.fromisoformat(deadline) if len(deadline) == 10 else dt.datetime.fromisoformat(deadline)
        )
        controls.extend(ctx.store, action, until, by, now, where)
    else:
        CONTROLS[what](ctx.store, action, by, now, where)


@requires(Role.OPERATOR)
async def requeue(request: Request) -> Response:
    """Failed deliveries back to the queue (all of an action's, or one), or retries due now."""
    ctx, action_id, what = (
        context(request),
        request.path_params["action_id"],
        request.url.path.rsplit("/", 1)[1],
    )
    form, user = await request.form(), await current_user(request)
    assert user is not None
    action = (await run_in_threadpool(ctx.actions)).get(action_id)
    if action is None:
        return forbidden(request, "no such action", status=404)
    if what not in (await run_in_threadpool(_controls, ctx, action))["controls"]:
        return forbidden(request, f"{action_id} is closed or a draft: nothing of it can be sent", status=409)
    delivery = str(form.get("delivery_id") or "")
    try:  # an id that is no number must not mean every failed letter of the action
        one = page_id(delivery)
    except ValueError:
        return forbidden(request, "no such delivery", status=400)
    now = ctx.clock()
    if what == "retry-now":
        count = await run_in_threadpool(ctx.store.retry_now, action_id, now)
    else:
        count = await run_in_threadpool(ctx.store.requeue_failed, action_id, now, one)
    detail = f"{count} deliveries" + (f" (delivery {delivery})" if delivery else "")
    entry = AuditEntry(now, user.name, address(request), what, action_id, detail)
    await run_in_threadpool(ctx.store.accounts.audit, entry)
    return RedirectResponse(f"/actions/{action_id}", status_code=303)


routes = [
    Route("/", overview),
    Route("/api/overview", overview_json),
    Route("/actions/{action_id}", action_page),
    Route("/deliveries/{delivery_id}", delivery_page),
    *(
        Route(f"/actions/{{action_id}}/{w}", control, methods=["POST"])
        for w in ("pause", "resume", "close", "reopen", "extend", "release")
    ),
    *(Route(f"/actions/{{action_id}}/{w}", requeue, methods=["POST"]) for w in ("requeue", "retry-now")),
]
