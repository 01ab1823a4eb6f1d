"""Logging in and out, sessions, roles and CSRF tokens.

A session is a random token: the browser holds it signed in an HttpOnly, SameSite=Lax cookie
(Secure when the public URL is https); the store holds its SHA-256 and its expiry, so logout and
removing the user end it at once. Every state-changing request carries a CSRF token derived
from the session; the login form, which has no session yet, uses a double-submit cookie.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import logging
import secrets
from collections.abc import Awaitable, Callable
from functools import wraps
from urllib.parse import quote, urlsplit

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from dispatcher.accounts import DECOY_HASH, Role, User, password_matches
from dispatcher.store.accounts import AuditEntry
from dispatcher.web.context import Context, context
from dispatcher.web.limits import client_key
from dispatcher.web.pages import forbidden
from dispatcher.web.session import COOKIE, LOGIN_COOKIE, csrf_token, session_token, signer

log = logging.getLogger("dispatcher.web")

SESSION_TTL = dt.timedelta(hours=12)

Endpoint = Callable[[Request], Awaitable[Response]]


def address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _secure(ctx: Context) -> bool:
    return urlsplit(ctx.settings.public_url or "").scheme == "https"


async def current_user(request: Request) -> User | None:
    if not hasattr(request.state, "user"):
        token = session_token(request)
        ctx = context(request)
        user = (
            None
            if token is None
            else await run_in_threadpool(ctx.store.accounts.session_user, _digest(token), ctx.clock())
        )
        request.state.user = user
    found: User | None = request.state.user
    return found


async def csrf_ok(request: Request) -> bool:
    """The form's token matches this browser's session or login cookie. Without either there is
    nothing to match: the token of no cookie at all is one value, the same for every stranger."""
    form = await request.form()
    sent = form.get("csrf")
    if not (session_token(request) or request.cookies.get(LOGIN_COOKIE)):
        return False
    return isinstance(sent, str) and hmac.compare_digest(sent, csrf_token(request))


def requires(role: Role) -> Callable[[Endpoint], Endpoint]:
    """Checked on the server for every request: who is logged in, their role, and (for
    anything but GET) the CSRF token."""

    def decorate(endpoint: Endpoint) -> Endpoint:
        @wraps(endpoint)
        async def guarded(request: Request) -> Response:
            user = await current_user(request)
            if user is None:
                if request.method in ("GET", "HEAD"):
                    return RedirectResponse(f"/login?next={quote(request.url.path)}", status_code=303)
                return forbidden(request, "log in first", status=401)
            if not user.may(role):
                log.warning(
                    "%s (%s) refused %s %s", user.name, user.role.label, request.method, request.url.path
                )
                return forbidden(request, f"this needs the {role.label} role")
            if request.method not in ("GET", "HEAD") and not await csrf_ok(request):
                log.warning("%s: missing or wrong CSRF token on %s", user.name, request.url.path)
                return forbidden(request, "the form expired or did not come from this site; reload and retry")
            return await endpoint(request)

        return guarded

    return decorate


async def log_in(request: Request, name: str, password: str) -> User | str:
    """The user, or why not (the same words whether the name or the password was wrong)."""
    ctx, where = context(request), address(request)
    network = client_key(where)
    wait = max(ctx.by_account.blocked(name), ctx.by_address.blocked(network))
    if wait:
        return f"too many failed logins; try again in {int(wait) // 60 + 1} minutes"
    found = await run_in_threadpool(ctx.store.accounts.credentials, name)
    # Hash checked even for an unknown name, so the time taken does not tell which names exist.
    stored = found[1] if found else DECOY_HASH
    ok = await run_in_threadpool(password_matches, stored, password)
    if not (found and ok):
        ctx.by_account.hit(name)
        ctx.by_address.hit(network)
        log.warning("failed login for %r from %s", name[:64], where)
        return "wrong name or password"
    ctx.by_account.clear(name)
    return found[0]


async def start_session(request: Request, user: User, response: Response) -> None:
    ctx = context(request)
    token = secrets.token_urlsafe(32)
    expires = ctx.clock() + SESSION_TTL
    await run_in_threadpool(ctx.store.accounts.start_session, _digest(token), user, expires, address(request))
    await run_in_threadpool(
        ctx.store.accounts.audit, AuditEntry(ctx.clock(), user.name, address(request), "login")
    )
    response.set_cookie(
        COOKIE,
        signer(ctx).sign(token).decode(),
        max_age=int(SESSION_TTL.total_seconds()),
        httponly=True,
        samesite="lax",
        secure=_secure(ctx),
    )
    response.delete_cookie(LOGIN_COOKIE)


async def end_session(request: Request, response: Response) -> None:
    token = session_token(request)
    if token:
        await run_in_threadpool(context(request).store.accounts.end_session, _digest(token))
    response.delete_cookie(COOKIE)


def new_login_token() -> str:
    return secrets.token_urlsafe(24)


def login_cookie(request: Request, response: Response, token: str) -> None:
    """The login form's double-submit token: the form carries its HMAC, the cookie the token."""
    secure = _secure(context(request))
    response.set_cookie(LOGIN_COOKIE, token, max_age=3600, httponly=True, samesite="strict", secure=secure)
