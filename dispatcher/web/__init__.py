"""The web app: one ASGI app for providers' webhooks and fax media now, and for the operators'
dashboard and the supporters' pages as they come (each a module of routes mounted here).

It talks to the store through a worker thread (the store is synchronous) and holds no state of
its own, so several processes can serve it in front of one database.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles

from dispatcher.backoff import Backoff, fax_backoff
from dispatcher.config import Action, Settings, load_actions
from dispatcher.providers import FaxProvider
from dispatcher.store import Store
from dispatcher.web.limits import SlidingWindow


@dataclass
class Context:
    settings: Settings
    store: Store
    fax: FaxProvider
    fax_retry: Backoff
    clock: Callable[[], dt.datetime]
    # Failed logins per account and per address, per 15 minutes (see limits.py).
    by_account: SlidingWindow = field(default_factory=lambda: SlidingWindow(5, 900))
    by_address: SlidingWindow = field(default_factory=lambda: SlidingWindow(20, 900))
    # Opt-in forms accepted per client address and per email address, per hour (see optin.py).
    joins_by_address: SlidingWindow = field(default_factory=lambda: SlidingWindow(10, 3600))
    joins_by_email: SlidingWindow = field(default_factory=lambda: SlidingWindow(3, 3600))
    # The action files as last read, and the names, times and sizes they were read at.
    loaded: tuple[tuple[tuple[str, int, int], ...], dict[str, Action]] | None = None

    def actions(self) -> dict[str, Action]:
        """The action files, parsed again only when one of them changed (a page would
        otherwise parse every YAML file on every request)."""
        folder = self.settings.actions_dir
        files = sorted([*folder.glob("*.yaml"), *folder.glob("*.yml")])
        stamp = tuple((f.name, f.stat().st_mtime_ns, f.stat().st_size) for f in files)
        if self.loaded is None or self.loaded[0] != stamp:
            self.loaded = (stamp, load_actions(folder).actions)
        return self.loaded[1]


def context(request: Request) -> Context:
    ctx: Context = request.app.state.ctx
    return ctx


def create_app(ctx: Context) -> Starlette:
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
    from dispatcher.web.headers import SecurityHeaders

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
    from dispatcher.providers.factory import make_provider

    check_tokens(settings)
    fax = make_provider(settings, store.instance_secret())
    return create_app(Context(settings, store, fax, fax_backoff(settings), lambda: dt.datetime.now(dt.UTC)))
