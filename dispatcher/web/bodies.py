"""Request bodies bounded per route, before any of it is kept.

Starlette reads a form whole (up to 1,000 fields of 1 MiB each) and a plain body whole, and a
chunked body declares no size. This middleware refuses with 413 as soon as the declared length,
or the bytes counted so far, pass the route's limit: a stranger cannot make a process hold
megabytes per request, nor keep it reading a body that never ends. A body that stalls for
``BODY_IDLE`` seconds, or is not whole within its route class's deadline (``DEADLINES``), is
answered 408: a byte sent just under the idle bound each time would otherwise hold a connection
for as long as the body's length allows. An answer given before its body was read closes the
connection, as the server would otherwise keep taking the rest of it.
"""

from __future__ import annotations

import asyncio

from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

BODY_IDLE = 10.0
# A provider's status is a few hundred bytes, but Sinch's callback carries the fax itself (base64).
WEBHOOK_BODY = 8 * 1024 * 1024
FORM_BODY = 64 * 1024  # the longest form (the opt-in, with its own words) is a few KiB
# Route classes by path prefix, longest first; every other path takes forms.
ROUTES: tuple[tuple[str, str], ...] = (("/webhooks/fax/", "webhook"), ("/api/", "api"))
# None: the route bounds its own body (the API, to answer in JSON).
LIMITS: dict[str, int | None] = {"form": FORM_BODY, "webhook": WEBHOOK_BODY, "api": None}
# Seconds from the request's headers to its whole body. A form is a few KiB typed by a person
# (even over a poor mobile link); a provider's webhook may carry a fax of up to 8 MiB (at least
# 70 KB/s then); an API call is a script's upload of a few consents.
DEADLINES: dict[str, float] = {"form": 30.0, "webhook": 120.0, "api": 60.0}


class _Refused(Exception):
    def __init__(self, status: int, text: str) -> None:
        self.status, self.text = status, text


TOO_LARGE = (413, "request body too large\n")
TOO_SLOW = (408, "the request body arrived too slowly\n")
CLOSE = (b"connection", b"close")


def route_class(path: str) -> str:
    return next((kind for prefix, kind in ROUTES if path.startswith(prefix)), "form")


def limit_for(path: str) -> int | None:
    return LIMITS[route_class(path)]


def _has_body(scope: Scope) -> bool:
    headers = dict(scope["headers"])
    return b"transfer-encoding" in headers or headers.get(b"content-length", b"0") not in (b"", b"0")


def _declared(scope: Scope) -> int | None:
    """The Content-Length, or None; one that is not a number counts as too large."""
    for name, value in scope["headers"]:
        if name == b"content-length":
            return int(value) if value.isdigit() else 1 << 62
    return None


class BodyLimit:
    """``idle``: seconds a body may stall between two pieces (uvicorn waits for ever, and a
    client trickling a byte at a time would hold its connection and task as long as it likes);
    the route class's deadline bounds the whole body."""

    def __init__(self, app: ASGIApp, idle: float | None = None) -> None:
        self.app, self.idle = app, idle or BODY_IDLE

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        kind = route_class(scope["path"])
        limit, deadline = LIMITS[kind], _clock() + DEADLINES[kind]
        declared = _declared(scope)
        if limit is not None and declared is not None and declared > limit:
            await _refuse(scope, receive, send, *TOO_LARGE)
            return
        counted, whole, started = 0, not _has_body(scope), False

        async def counting() -> Message:
            nonlocal counted, whole
            if whole:  # after the body, receive() waits for a disconnect, as long as it takes
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), min(self.idle, deadline - _clock()))
            except TimeoutError:
                raise _Refused(*TOO_SLOW) from None
            counted += len(message.get("body", b""))
            whole = not message.get("more_body", False)
            if limit is not None and counted > limit:
                raise _Refused(*TOO_LARGE)
            return message

        async def watching(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                if not whole:  # the rest of the body is unread: nothing to keep the connection for
                    message = {**message, "headers": [*message.get("headers", []), CLOSE]}
            await send(message)

        try:
            await self.app(scope, counting, watching)
        except _Refused as refused:
            if started:  # too late to answer: the server closes the connection
                raise
            await _refuse(scope, receive, send, refused.status, refused.text)


def _clock() -> float:
    return asyncio.get_running_loop().time()


async def _refuse(scope: Scope, receive: Receive, send: Send, status: int, text: str) -> None:
    # Connection: close, so the server stops reading the rest of what was sent.
    response = PlainTextResponse(text, status_code=status, headers={"Connection": "close"})
    await response(scope, receive, send)
