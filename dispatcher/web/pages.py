"""Server-rendered HTML: one Jinja2 environment, autoescaped, with Babel's formatting.

Pages are in English for now; dates and numbers go through Babel with the page's locale, so a
translation needs only the words.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from babel.dates import format_datetime, format_timedelta
from babel.numbers import format_decimal
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse

from dispatcher.accounts import Role
from dispatcher.web.session import csrf_token

HERE = Path(__file__).parent
LOCALE = "en"

env = Environment(
    loader=FileSystemLoader(HERE / "templates"),
    autoescape=select_autoescape(["html"], default=True),
    trim_blocks=True,
    lstrip_blocks=True,
)


def _when(value: dt.datetime | None, zone: Any = dt.UTC) -> str:
    if value is None:
        return "–"
    return format_datetime(value.astimezone(zone), "yyyy-MM-dd HH:mm zzz", locale=LOCALE)


def _span(seconds: float) -> str:
    return format_timedelta(dt.timedelta(seconds=seconds), threshold=1.5, locale=LOCALE)


env.filters["when"] = _when
env.filters["span"] = _span
env.filters["number"] = lambda n: format_decimal(n, locale=LOCALE)
env.globals["Role"] = Role


def render(request: Request, template: str, status: int = 200, **values: Any) -> HTMLResponse:
    values.setdefault("csrf", csrf_token(request))
    page = env.get_template(template).render(
        request=request, user=getattr(request.state, "user", None), **values
    )
    headers = {
        # Everything is served from here: no inline script, no third-party anything.
        "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'; form-action 'self'",
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "same-origin",
        "Cache-Control": "no-store",
    }
    return HTMLResponse(page, status_code=status, headers=headers)


def forbidden(request: Request, why: str, status: int = 403) -> HTMLResponse:
    return render(request, "error.html", status=status, why=why)
