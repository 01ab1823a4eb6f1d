"""Headers every response carries, whatever route made it."""

from __future__ import annotations

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# A year, the value browsers' preload lists ask for; no includeSubDomains: the organisation's
# other hosts under the same domain are not ours to bind to https.
HSTS = "max-age=31536000"


class Hsts:
    """Strict-Transport-Security on every response when the public URL is https: after one
    visit, a browser never again tries plain http (where a network attacker could answer)."""

    def __init__(self, app: ASGIApp, enabled: bool) -> None:
        self.app, self.enabled = app, enabled

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not self.enabled or scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def adding(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message).setdefault("Strict-Transport-Security", HSTS)
            await send(message)

        await self.app(scope, receive, adding)
