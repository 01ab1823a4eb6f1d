"""Running the web app under uvicorn with bounds on what one client can hold.

uvicorn times out idle keep-alive connections but not a request whose headers never finish: a
client that sends half a request line keeps its connection, and a few thousand such clients
keep every connection. ``HeaderTimeout`` closes a connection whose request headers are not all
in after ``header_timeout`` seconds; ``limit_concurrency`` answers 503 past that many
connections and tasks, so a flood queues nothing behind it.
"""

from __future__ import annotations

import asyncio
from typing import Any

import h11
import uvicorn
from starlette.types import ASGIApp
from uvicorn.protocols.http.h11_impl import H11Protocol


class HeaderTimeout(H11Protocol):
    header_timeout = 10.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.conn.their_state is h11.IDLE:  # a request begun (or none yet): its headers are due
            if self._header_timer is None:
                self._arm()
        else:
            self._disarm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._header_timer = self.loop.call_later(self.header_timeout, self._expired)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _expired(self) -> None:
        self._header_timer = None
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self.transport.close()


def protocol(header_timeout: float) -> type[HeaderTimeout]:
    return type("HeaderTimeout", (HeaderTimeout,), {"header_timeout": header_timeout})


def run(
    app: ASGIApp, host: str, port: int, proxies: str, header_timeout: float, limit_concurrency: int
) -> None:
    """Serve ``app``; forwarded headers only from the ``proxies`` named (comma-separated)."""
    uvicorn.run(
        app,
        host=host,
        port=port,
        http=protocol(header_timeout),
        limit_concurrency=limit_concurrency,
        proxy_headers=bool(proxies),
        forwarded_allow_ips=proxies or None,
        log_level="info",
        access_log=False,  # media URLs carry tokens
    )
