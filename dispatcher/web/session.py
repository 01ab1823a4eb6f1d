"""The session and login cookies, and the CSRF token derived from them.

Below both ``auth`` (which logs people in and guards endpoints) and ``pages`` (which puts the
token in every form), so that neither has to import the other back.
"""

from __future__ import annotations

import hashlib
import hmac

from itsdangerous import BadSignature, Signer
from starlette.requests import Request

from dispatcher.web.context import Context, context

COOKIE = "dispatcher_session"
LOGIN_COOKIE = "dispatcher_login"


def signer(ctx: Context) -> Signer:
    return Signer(ctx.store.instance_secret(), salt="web-session")


def session_token(request: Request) -> str | None:
    raw = request.cookies.get(COOKIE)
    if not raw:
        return None
    try:
        return signer(context(request)).unsign(raw).decode()
    except BadSignature:
        return None


def csrf_token(request: Request, login_token: str | None = None) -> str:
    token = login_token or session_token(request) or request.cookies.get(LOGIN_COOKIE, "")
    key = context(request).store.instance_secret()
    return hmac.new(key, f"csrf:{token}".encode(), hashlib.sha256).hexdigest()
