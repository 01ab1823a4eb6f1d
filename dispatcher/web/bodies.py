"""Request bodies bounded per route, before any of it is kept.

Starlette reads a form whole (up to 1,000 fields of 1 MiB each) and a plain body whole, and a
chunked body declares no size. This middleware refuses with 413 as soon as the declared length,
or the bytes counted so far, pass the route's limit: a stranger cannot make a process hold
megabytes per request, nor keep it reading a body that never ends.
"""

from __future__ import annotations

from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from dispatcher.web.webhooks import MAX_BODY as WEBHOOK_BODY

FORM_BODY = 64 * 1024  # the longest form (the opt-in, with its own words) is a few KiB
# Longest prefix first. None: the route bounds its own body (the API, to answer in JSON).
LIMITS: tuple[tuple[str, int | None], ...] = (("/webhooks/fax/", WEBHOOK_BODY), ("/api/", None))


class _TooLarge(Exception):
    pass


def limit_for(path: str) -> int | None:
    return next((limit for prefix, limit in LIMITS if path.startswith(prefix)), FORM_BODY)


def _declared(scope: Scope) -> int | None:
    """The Content-Length, or None; one that is not a number counts as too large."""
    for name, value in scope["headers"]:
        if name == b"content-length":
            return int(value) if value.isdigit() else 1 << 62
    return None


class BodyLimit:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        limit = limit_for(scope["path"]) if scope["type"] == "http" else None
        if limit is None:
            await self.app(scope, receive, send)
            return
        declared = _declared(scope)
        if declared is not None and declared > limit:
            await _refuse(scope, receive, send)
            return
        counted, started = 0, False

        async def counting() -> Message:
            nonlocal counted
            message = await receive()
            counted += len(message.get("body", b""))
            if counted > limit:
                raise _TooLarge
            return message

        async def watching(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting, watching)
        except _TooLarge:
            if started:  # too late for a 413: the server closes the connection
                raise
            await _refuse(scope, receive, send)


async def _refuse(scope: Scope, receive: Receive, send: Send) -> None:
    # Connection: close, so the server stops reading the rest of what was sent.
    response = PlainTextResponse("request body too large\n", status_code=413, headers={"Connection": "close"})
    await response(scope, receive, send)
