"""Providers' webhooks: verified, then applied once.

A forged, stale or malformed webhook, or a replay of one already applied, gets a 4xx and a log
line and changes nothing. A verified one is applied in the same transaction that notes it.
"""

from __future__ import annotations

import logging
from urllib.parse import parse_qsl

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from dispatcher.providers import Webhook, WebhookRefused
from dispatcher.web.bodies import WEBHOOK_BODY
from dispatcher.web.context import context

log = logging.getLogger("dispatcher.web")


async def fax_event(request: Request) -> PlainTextResponse:
    ctx = context(request)
    name = request.path_params["provider"]
    if name != ctx.fax.name:
        return PlainTextResponse("unknown provider\n", status_code=404)
    try:
        webhook = await _read(request, ctx.settings.public_url)
        verified = ctx.fax.verify(webhook, ctx.clock())
    except WebhookRefused as exc:
        log.warning("webhook %s from %s refused: %s", name, request.client, exc.reason)
        # A client that sends credentials only when challenged (Basic, in Sinch's callback URL).
        challenge = {"WWW-Authenticate": 'Basic realm="webhooks"'} if exc.status == 401 else {}
        return PlainTextResponse(f"{exc.reason}\n", status_code=exc.status, headers=challenge)
    outcome = await run_in_threadpool(
        ctx.store.accept_webhook, name, verified.message, verified.event, ctx.fax_retry.after, ctx.clock()
    )
    event = verified.event
    if outcome is None and event is not None:
        log.warning("webhook %s from %s refused: a replay of %s", name, request.client, verified.message)
        return PlainTextResponse("already received\n", status_code=409)
    if event is not None:
        log.info("webhook %s: job %s %s (%s)", name, event.job_id, outcome, event.failure or "delivered")
    return PlainTextResponse("ok\n")


async def _read(request: Request, public_url: str | None) -> Webhook:
    declared = int(request.headers.get("content-length") or 0)
    if declared > WEBHOOK_BODY:
        raise WebhookRefused("body too large", status=413)
    body = await request.body()
    if len(body) > WEBHOOK_BODY:
        raise WebhookRefused("body too large", status=413)
    content_type = request.headers.get("content-type", "")
    form: dict[str, str] = {}
    if content_type.startswith("application/x-www-form-urlencoded"):
        form = dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
    elif content_type.startswith("multipart/form-data"):
        parsed = await request.form()
        form = {k: v for k, v in parsed.items() if isinstance(v, str)}
    # What the provider signed is the URL it called: ours as published, not as proxied to us.
    base = (public_url or str(request.base_url)).rstrip("/")
    query = f"?{request.url.query}" if request.url.query else ""
    headers = {k.lower(): v for k, v in request.headers.items()}
    return Webhook(base + request.url.path + query, headers, body, content_type, form)


routes = [Route("/webhooks/fax/{provider}", fax_event, methods=["POST"])]
