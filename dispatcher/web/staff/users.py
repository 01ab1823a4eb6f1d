"""Accounts, for admins: the same operations as ``dispatcher users``, audited the same way."""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from dispatcher.accounts import Role, check_name, hash_password
from dispatcher.store.accounts import AuditEntry
from dispatcher.web.auth import address, current_user, requires
from dispatcher.web.context import context
from dispatcher.web.pages import forbidden, render


async def _audit(request: Request, what: str, subject: str, detail: str = "") -> None:
    ctx, user = context(request), await current_user(request)
    assert user is not None
    entry = AuditEntry(ctx.clock(), user.name, address(request), what, subject, detail)
    await run_in_threadpool(ctx.store.accounts.audit, entry)


@requires(Role.ADMIN)
async def users_page(request: Request) -> Response:
    everyone = await run_in_threadpool(context(request).store.accounts.all_users)
    return render(request, "users.html", users=everyone, roles=[r.label for r in Role])


@requires(Role.ADMIN)
async def add_user(request: Request) -> Response:
    form, ctx = await request.form(), context(request)
    name, role = str(form.get("name", "")), str(form.get("role", ""))
    try:
        check_name(name)
        chosen = Role.named(role)
        hashed = await run_in_threadpool(hash_password, str(form.get("password", "")))
    except ValueError as exc:
        return forbidden(request, str(exc), status=400)
    if await run_in_threadpool(ctx.store.accounts.credentials, name):
        return forbidden(request, f"there is already a user {name!r}", status=409)
    await run_in_threadpool(ctx.store.accounts.add, name, chosen, hashed, ctx.clock())
    await _audit(request, "user added", name, chosen.label)
    return RedirectResponse("/users", status_code=303)


@requires(Role.ADMIN)
async def change_user(request: Request) -> Response:
    form, ctx = await request.form(), context(request)
    name, what = request.path_params["name"], request.url.path.rsplit("/", 1)[1]
    me = await current_user(request)
    if me is not None and me.name == name:  # an admin cannot lock the last door behind them
        return forbidden(request, "change or remove your own account from the CLI", status=409)
    if what == "remove":
        done = await run_in_threadpool(ctx.store.accounts.remove, name)
        detail = ""
    else:
        try:
            role = Role.named(str(form.get("role", "")))
        except ValueError as exc:
            return forbidden(request, str(exc), status=400)
        done = await run_in_threadpool(ctx.store.accounts.set_role, name, role, ctx.clock())
        detail = role.label
    if not done:
        return forbidden(request, f"no user {name!r}", status=404)
    await _audit(request, "user removed" if what == "remove" else "role changed", name, detail)
    return RedirectResponse("/users", status_code=303)


routes = [
    Route("/users", users_page),
    Route("/users/add", add_user, methods=["POST"]),
    Route("/users/{name}/role", change_user, methods=["POST"]),
    Route("/users/{name}/remove", change_user, methods=["POST"]),
]
