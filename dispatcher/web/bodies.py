"""Request bodies bounded per route, before any of it is kept.

Starlette reads a form whole (up to 1,000 fields of 1 MiB each) and a plain body whole, and a
chunked body declares no size. This middleware refuses with 413 as soon as the declared length,
or the bytes counted so far, pass the route's limit: a stranger cannot make a process hold
megabytes per request, nor keep it reading a body that never ends. A body that stalls for
``BODY_IDLE`` seconds is answered 408.
"""

from __future__ import annotations

import asyncio

from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from dispatcher.web.webhooks import MAX_BODY as WEBHOOK_BODY

BODY_IDLE = 10.0
FORM_BODY = 64 * 1024  # the longest form (the opt-in, with its own words) is a few KiB
# Longest prefix first. None: the route bounds its own body (the API, to answer in JSON).
LIMITS: tuple[tuple[str, int | None], ...] = (("/webhooks/fax/", WEBHOOK_BODY), ("/api/", None))


class _Refused(Exception):
    def __init__(self, status: int, text: str) -> None:
        self.status, self.text = status, text


TOO_LARGE = (413, "request body too large\n")
TOO_SLOW = (408, "the request body stopped arriving\n")


def limit_for(path: str) -> int | None:
    return next((limit for prefix, limit in LIMITS if path.startswith(prefix)), FORM_BODY)


def _declared(scope: Scope) -> int | None:
    """The Content-Length, or None; one that is not a number counts as too large."""
    for name, value in scope["headers"]:
        if name == b"content-length":
            return int(value) if value.isdigit() else 1 << 62
    return None


class BodyLimit:
    """``idle``: seconds a body may stall between two pieces (uvicorn waits for ever, and a
    client trickling a byte at a time would hold its connection and task as long as it likes)."""

    def __init__(self, app: ASGIApp, idle: float | None = None) -> None:
        self.app, self.idle = app, idle or BODY_IDLE

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = limit_for(scope["path"])
        declared = _declared(scope)
        if limit is not None and declared is not None and declared > limit:
            await _refuse(scope, receive, send, *TOO_LARGE)
            return
        counted, whole, started = 0, False, False

        async def counting() -> Message:
            nonlocal counted, whole
            if whole:  # after the body, receive() waits for a disconnect, as long as it takes
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), self.idle)
            except TimeoutError:
                raise _Refused(*TOO_SLOW) from None
            counted += len(message.get("body", b""))
            whole = not message.get("more_body", False)
            if limit is not None and counted > limit:
                raise _Refused(*TOO_LARGE)
            return message

        async def watching(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting, watching)
        except _Refused as refused:
            if started:  # too late to answer: the server closes the connection
                raise
            await _refuse(scope, receive, send, refused.status, refused.text)


async def _refuse(scope: Scope, receive: Receive, send: Send, status: int, text: str) -> None:
    # Connection: close, so the server stops reading the rest of what was sent.
    response = PlainTextResponse(text, status_code=status, headers={"Connection": "close"})
    await response(scope, receive, send)
