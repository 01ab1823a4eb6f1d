"""The web app's routes and middleware, and the app built for a store and its settings.

Every route module imports the request context from ``context``, below this one, so that
nothing imports the app back.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles

from dispatcher.providers.factory import make_provider
from dispatcher.sending.backoff import fax_backoff
from dispatcher.settings import Settings
from dispatcher.store import Store
from dispatcher.web import (
    api,
    dashboard,
    login,
    logs,
    media,
    metrics,
    optin,
    preview,
    supporters,
    users,
    webhooks,
)
from dispatcher.web.bodies import BodyLimit
from dispatcher.web.context import Context
from dispatcher.web.headers import SecurityHeaders


def create_app(ctx: Context) -> Starlette:
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await ctx.fax.close()

    routes = [
        *metrics.routes,
        *api.routes,
        *webhooks.routes,
        *media.routes,
        *login.routes,
        *dashboard.routes,
        *logs.routes,
        *preview.routes,
        *users.routes,
        *supporters.routes,
        *optin.routes,
        Mount("/static", StaticFiles(directory=Path(__file__).parent / "static"), name="static"),
    ]
    https = urlsplit(ctx.settings.public_url or "").scheme == "https"
    middleware = [Middleware(SecurityHeaders, hsts=https), Middleware(BodyLimit)]
    app = Starlette(routes=routes, lifespan=lifespan, middleware=middleware)
    app.state.ctx = ctx
    return app


# A bearer token is the whole credential of the API (people's details) and of /metrics, and
# nothing limits the guesses: a short one could be found by trying.
TOKEN_MIN = 32


def check_tokens(settings: Settings) -> None:
    """ValueError naming a bearer token that is set but too short (never showing it)."""
    for name, token in (("API", settings.api_token), ("METRICS", settings.metrics_token)):
        if token and 0 < len(token.get_secret_value()) < TOKEN_MIN:
            raise ValueError(
                f"DISPATCHER_{name}_TOKEN is shorter than {TOKEN_MIN} characters; "
                "make one with `openssl rand -hex 32`"
            )


def app_for(settings: Settings, store: Store) -> Starlette:
    """The web app over this store, verifying webhooks for the configured fax provider."""
    check_tokens(settings)
    fax = make_provider(settings, store.instance_secret())
    return create_app(Context(settings, store, fax, fax_backoff(settings), lambda: dt.datetime.now(dt.UTC)))
