"""The login and logout pages."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from dispatcher.accounts import Role
from dispatcher.web.auth import (
    csrf_ok,
    end_session,
    log_in,
    login_cookie,
    new_login_token,
    requires,
    start_session,
)
from dispatcher.web.pages import forbidden, render
from dispatcher.web.session import LOGIN_COOKIE, csrf_token


def _next(value: object) -> str:
    """Only a path on this site: never an open redirect to another one."""
    path = value if isinstance(value, str) else "/"
    return path if path.startswith("/") and not path.startswith("//") and "\\" not in path else "/"


async def login_page(request: Request) -> Response:
    token = request.cookies.get(LOGIN_COOKIE) or new_login_token()
    target = _next(request.query_params.get("next"))
    response = render(
        request, "login.html", csrf=csrf_token(request, token), next=target, name="", problem=""
    )
    login_cookie(request, response, token)
    return response


async def login(request: Request) -> Response:
    if not await csrf_ok(request):
        return forbidden(request, "the login form expired; reload the page and try again")
    form = await request.form()
    name, password = str(form.get("name", ""))[:64], str(form.get("password", ""))
    target = _next(form.get("next"))
    outcome = await log_in(request, name, password)
    if isinstance(outcome, str):
        status = 429 if outcome.startswith("too many") else 401
        return render(request, "login.html", status=status, next=target, name=name, problem=outcome)
    response = RedirectResponse(target, status_code=303)
    await start_session(request, outcome, response)
    return response


@requires(Role.VIEWER)
async def logout(request: Request) -> Response:
    response = RedirectResponse("/login", status_code=303)
    await end_session(request, response)
    return response


routes = [
    Route("/login", login_page, methods=["GET"]),
    Route("/login", login, methods=["POST"]),
    Route("/logout", logout, methods=["POST"]),
]
