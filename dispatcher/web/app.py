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
from dispatcher.web.bearer import check_tokens
from dispatcher.web.bodies import BodyLimit
from dispatcher.web.context import Context
from dispatcher.web.headers import SecurityHeaders
from dispatcher.web.machine import api, media, metrics, webhooks
from dispatcher.web.public import optin
from dispatcher.web.staff import dashboard, login, logs, preview, proof, supporters, users


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
        *proof.routes,
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


def app_for(settings: Settings, store: Store) -> Starlette:
    """The web app over this store, verifying webhooks for the configured fax provider."""
    check_tokens(settings)
    fax = make_provider(settings, store.instance_secret())
    return create_app(Context(settings, store, fax, fax_backoff(settings), lambda: dt.datetime.now(dt.UTC)))
