"""Staff withdraw a supporter's consent on their behalf (a phone call, a letter). The page lists
nobody: it takes an email and says what happened, and the audit log names no one."""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from dispatcher.accounts import Role
from dispatcher.store.accounts import AuditEntry
from dispatcher.web.auth import address, current_user, requires
from dispatcher.web.context import context
from dispatcher.web.pages import render


@requires(Role.STAFF)
async def supporters_page(request: Request) -> Response:
    return render(request, "supporters.html", done=None)


@requires(Role.STAFF)
async def revoke(request: Request) -> Response:
    ctx, user = context(request), await current_user(request)
    assert user is not None
    email = str((await request.form()).get("email", ""))[:320]
    cancelled = await run_in_threadpool(ctx.store.people.revoke, email, ctx.clock(), "dashboard")
    if cancelled is None:
        return render(request, "supporters.html", status=404, done="No supporter has that email address.")
    entry = AuditEntry(ctx.clock(), user.name, address(request), "consent revoked", "a supporter")
    await run_in_threadpool(ctx.store.accounts.audit, entry)
    done = f"Consent withdrawn; {cancelled} unsent letters cancelled. Nothing more goes out in their name."
    return render(request, "supporters.html", done=done)


routes = [Route("/supporters", supporters_page), Route("/supporters/revoke", revoke, methods=["POST"])]
