"""Fax PDFs for providers that fetch them, under signed expiring URLs (see providers.media)."""

from __future__ import annotations

import logging

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from dispatcher.providers.media import MEDIA_PATH, media_reference
from dispatcher.web.context import context

log = logging.getLogger("dispatcher.web")


async def fax_pdf(request: Request) -> Response:
    ctx = context(request)
    reference = media_reference(ctx.store.instance_secret(), request.path_params["token"])
    data = None if reference is None else await run_in_threadpool(ctx.store.media, reference)
    if data is None:
        log.warning("fax media: refused %s (forged, expired or gone)", request.client)
        return PlainTextResponse("not found\n", status_code=404)
    # The letter is personal: no cache on the way may keep it.
    headers = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}
    return Response(data, media_type="application/pdf", headers=headers)


routes = [Route(MEDIA_PATH + "{token}.pdf", fax_pdf, methods=["GET", "HEAD"])]
