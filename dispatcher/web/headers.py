"""Headers every response carries, whatever route made it."""

from __future__ import annotations

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# A year, the value browsers' preload lists ask for; no includeSubDomains: the organisation's
# other hosts under the same domain are not ours to bind to https.
HSTS = "max-age=31536000"


class SecurityHeaders:
    """On every response, pages or not (CSV, JSON, PDF, plain-text errors): ``nosniff``, so a
    browser never runs a download as a page; and Strict-Transport-Security when the public URL
    is https: after one visit, a browser never again tries plain http, where a network attacker
    could answer."""

    def __init__(self, app: ASGIApp, hsts: bool) -> None:
        self.app, self.hsts = app, hsts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def adding(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers.setdefault("X-Content-Type-Options", "nosniff")
                if self.hsts:
                    headers.setdefault("Strict-Transport-Security", HSTS)
            await send(message)

        await self.app(scope, receive, adding)
